/* Active health checks of a worker: a TCP connect or an HTTP request. */
#ifndef SN_HEALTH_H
#define SN_HEALTH_H

struct worker;

void health_start(struct worker *);
void health_reset(struct worker *);
void health_stop(struct worker *);

#endif
