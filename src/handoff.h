/* Connections handed to agent workers over their control channel. */
#ifndef SN_HANDOFF_H
#define SN_HANDOFF_H

#include <sys/queue.h>

#include <stdint.h>

#include "socketnaut/proto.h"

struct relay;
struct service;
struct sockaddr;
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

/* What conns shows of a handed connection. */
struct handoff_view {
	const struct sockaddr *peer;
	const char            *listener; /* NULL: unknown */
	long                   pid;      /* its worker */
	long long              accepted; /* ms */
	long long              waited;   /* ms in the queue */
};
const struct handoff *handoff_first(const struct service *);
const struct handoff *handoff_next(const struct handoff *);
void handoff_view(const struct handoff *, struct handoff_view *);
int  handoff_node_pair(int *, char **cause);
void handoff_node_open(struct worker *, int fd);
void handoff_node_close(struct worker *, const char *why);

#endif
