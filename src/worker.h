/* One worker process: spawn, readiness, stop, exit. */
#ifndef SN_WORKER_H
#define SN_WORKER_H

#include <sys/queue.h>
#include <sys/types.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "control.h"
#include "relay.h"
#include "util.h"

struct service;
struct sockdir;

enum worker_state {
	WORKER_STARTING, /* forked, not accepting connections yet */
	WORKER_READY,
	WORKER_STOPPING, /* asked to exit, gets no new connections */
	WORKER_EXITED,   /* reaped; kept while relays still point here */
};

struct worker {
	TAILQ_ENTRY(worker) entry;
	struct service   *svc;
	enum worker_state state;
	pid_t             pid;
	int               slot;   /* {index}, 0..max_workers-1 */
	unsigned          serial; /* unique in the daemon: socket name */
	unsigned          generation;
	char             *sockpath; /* unix backend */
	struct sockdir   *dir;      /* its service's socket directory */
	int               pinfd;    /* O_PATH fd of its socket (sockdir.c) */
	uid_t             uid;      /* it runs as: owner of its socket */
	int               port;     /* tcp backend */
	struct sn_addr    addr;     /* where relays connect */
	int               nconns;   /* relays assigned to it */
	struct relay_head waiting;  /* relays waiting for readiness */
	long long         started;  /* ms */
	int               probefd;
	int               execfd; /* exec-failure pipe, -1 after */
	int               exec_failed;
	int               failed;   /* killed for not getting ready */
	int               reaped;   /* the process is gone */
	int               retiring; /* old generation: stop when idle */
	int               termed;   /* SIGTERM sent */
	struct control   *control;
	struct relay_head peers[CONTROL_PEER_BUCKETS];
	struct event      timer; /* probe, ready or kill timer */
	struct event      execev;
};
TAILQ_HEAD(worker_head, worker);

struct worker *worker_spawn(struct service *, int, char **);
void           worker_stop(struct worker *, const char *);
void           worker_retire(struct worker *, long long);
void           worker_kill(struct worker *);
int            worker_exited(struct worker *, int);
void           worker_release(struct worker *);
int            worker_reported_ready(struct worker *, const char *, char **);
void           worker_free(struct worker *);

#endif
