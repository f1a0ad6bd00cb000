/* Access logs: one line per client connection, at its close. */
#ifndef SN_ACCESSLOG_H
#define SN_ACCESSLOG_H

#include "counters.h"

struct accesslog;
struct relay;
struct service;
struct sockaddr;

int  accesslog_get(const char *target, struct accesslog **, char **cause);
void accesslog_put(struct accesslog *);
void accesslog_reopen(void);
void accesslog_flush_all(void);
void accesslog_relay(
    struct accesslog *, const struct relay *, enum relay_end, int error);
void accesslog_handed(struct accesslog *, const struct service *,
    const struct sockaddr *client, const char *listener, long pid,
    long long queue_ms, long long accepted, enum relay_end);

#endif
