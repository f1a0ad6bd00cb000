/* Small helpers shared by every part of the daemon. */
#ifndef SN_UTIL_H
#define SN_UTIL_H

#include <sys/socket.h>
#include <sys/stat.h>

#include <stddef.h>

#define MS_PER_SEC 1000LL

/* One socket address, as parsed from "host:port". */
struct sn_addr {
	struct sockaddr_storage ss;
	socklen_t               len;
	int                     dualstack; /* "*": IPv6 socket, v4 too */
};

/* Values substituted for {socket}, {port}, {index} and {service}. */
struct template_vars {
	const char *socket;
	int         port;
	int         index;
	const char *service;
};

void *xcalloc(size_t, size_t);
void *xreallocarray(void *, size_t, size_t);
char *xstrdup(const char *);
char *xasprintf(const char *, ...) __attribute__((format(printf, 1, 2)));

int    duration_parse(const char *, long long *, char **);
int    command_split(const char *, char ***, char **);
void   argv_free(char **);
size_t argv_count(char *const *);
char  *template_expand(const char *, const struct template_vars *, char **);
int    addr_parse(const char *, struct sn_addr **, size_t *, char **);
int    addr_parse_numeric(const char *, struct sn_addr *, char **);
int    addr_is_loopback(const struct sn_addr *);
const char *addr_str(const struct sockaddr *, char *, size_t);
char       *path_lookup(const char *, const char *);
char       *path_lookup_within(const char *, const char *, long);
int         stat_within(const char *, struct stat *, long);
int         fd_nonblock(int);
ssize_t     fd_send(int, const void *, size_t, int);
long long   now_ms(void);
long long   now_coarse_ms(void);

#define ADDRSTRLEN 128

#endif
