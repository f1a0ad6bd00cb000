/* Connections handed to agent workers over their control channel. */
#ifndef SN_HANDOFF_H
#define SN_HANDOFF_H

#include <sys/queue.h>

#include <stdint.h>

#include "socketnaut/proto.h"

struct relay;
struct worker;

#define HANDOFF_BUCKETS 64

struct handoff;
struct handoff_node;
TAILQ_HEAD(handoff_head, handoff);

void handoff_give(struct relay *);
int  handoff_closed(struct worker *, const struct sn_msg *, const char **why);
void handoff_worker_exited(struct worker *);
void handoff_worker_free(struct worker *);
void handoff_init(struct worker *);
int  handoff_node_pair(int *, char **cause);
void handoff_node_open(struct worker *, int fd);
void handoff_node_close(struct worker *, const char *why);

#endif
