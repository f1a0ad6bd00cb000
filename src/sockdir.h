/* Runtime and socket directories: created, checked, never followed. */
#ifndef SN_SOCKDIR_H
#define SN_SOCKDIR_H

#include <sys/types.h>

#include "util.h"

/* A service's socket directory, held open; refcounted (service, workers). */
struct sockdir;

int sockdir_check(const char *runtime_dir, char **cause);
int sockdir_open_own(const char *path, char **cause);
/* sockdir_open_file: only whether it would open; a device is fine too. */
#define SOCKDIR_FILE_CHECK 0x1
#define SOCKDIR_FILE_DEV   0x2
int   sockdir_open_file(const char *path, int oflags, int how, char **cause);
int   sockdir_open_read(const char *path, char **cause);
char *sockdir_owner(uid_t);
struct sockdir *sockdir_open(const char *runtime_dir, const char *name,
    int give, uid_t uid, gid_t gid, int clean, char **cause);
int             sockdir_give(struct sockdir *, uid_t uid, gid_t gid, char **);
struct sockdir *sockdir_ref(struct sockdir *);
void            sockdir_unref(struct sockdir *);
void            sockdir_remove(struct sockdir *);
const char     *sockdir_path(const struct sockdir *);
const char     *sockdir_child(const struct sockdir *, const char *path);
int             sockdir_unlink(const struct sockdir *, const char *name);
int  sockdir_pin(const struct sockdir *, const char *name, uid_t owner,
     int *pinfd, struct sn_addr *addr, char **cause);
int  sockdir_pin_give(int pinfd, uid_t uid, gid_t gid);
void sockdir_clean_prefix(const struct sockdir *, const char *prefix);

#endif
