/* What the daemon's main loop offers the rest of the master. */
#ifndef SN_SOCKETNAUTD_H
#define SN_SOCKETNAUTD_H

#include <sys/resource.h>

#include <event2/event.h>

#define SOCKETNAUTD_VERSION "0.1.0"

extern struct event_base *sn_base;
extern struct rlimit      worker_nofile;  /* the limit we started with */
extern int                daemon_started; /* the first services are up */

struct sn_addr;

void daemon_status_changed(void);
void daemon_check(void);
void daemon_defer_free(void *);
int  daemon_listens_on(const struct sn_addr *);
int  daemon_draining(void);

/* For the admin socket (admin.c). */
struct service;
typedef void    config_error_fn(const char *msg, void *arg);
int             daemon_reload(config_error_fn *, void *arg);
void            daemon_shutdown(void);
struct service *daemon_service(const char *name);
struct service *daemon_service_next(struct service *);

#endif
