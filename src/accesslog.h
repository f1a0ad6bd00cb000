/* The access log: one line per client connection, at its close. */
#ifndef SN_ACCESSLOG_H
#define SN_ACCESSLOG_H

#include "counters.h"

struct relay;

int  accesslog_open(const char *target, char **cause);
void accesslog_reopen(void);
void accesslog_close(void);
int  accesslog_on(void);
void accesslog_relay(const struct relay *, enum relay_end, int error);

#endif
