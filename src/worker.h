/* One worker process: spawn, readiness, stop, exit. */
#ifndef SN_WORKER_H
#define SN_WORKER_H

#include <sys/queue.h>
#include <sys/types.h>

#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "control.h"
#include "handoff.h"
#include "relay.h"
#include "util.h"

struct output;
struct service;
struct sockdir;

/*
 * starting -> ready <-> unhealthy -> stopping -> exited; ready -> draining
 * (an old generation after a reload) -> stopping.  Only worker_set_state()
 * changes it, and with it the service's counters that follow from it.
 */
enum worker_state {
	WORKER_NEW,       /* not forked yet */
	WORKER_STARTING,  /* forked, not accepting connections yet */
	WORKER_READY,     /* in rotation */
	WORKER_UNHEALTHY, /* alive, out of rotation: refused, stalled, checks */
	WORKER_DRAINING,  /* old generation: no new clients, stops when idle */
	WORKER_STOPPING,  /* asked to exit */
	WORKER_EXITED,    /* reaped; kept while relays still point here */
};

struct worker {
	TAILQ_ENTRY(worker) entry;
	struct service    *svc;
	enum worker_state  state;
	pid_t              pid;
	int                slot;   /* {index}, 0..max_workers-1 */
	unsigned           serial; /* unique in the daemon: socket name */
	unsigned           generation;
	char              *sockpath;  /* unix backend */
	struct sockdir    *dir;       /* its service's socket directory */
	int                pinfd;     /* O_PATH fd of its socket (sockdir.c) */
	uid_t              uid;       /* it runs as: owner of its socket */
	int                port;      /* tcp backend */
	struct sn_addr     addr;      /* where relays connect */
	char              *refused;   /* why its TCP listener is not its own */
	uint32_t           owned_ino; /* its TCP listener, once found its own */
	int                nconns;    /* relays assigned to it */
	int                finished;  /* of those, the ones it has ended */
	int                awaiting;  /* relays waiting for its reply */
	long long          started;   /* ms */
	long long          progress;  /* ms: bytes last moved to or from it */
	unsigned long long cpu;       /* CPU ticks at the last sample */
	long long          cpu_since; /* ms: CPU time last seen moving */
	unsigned long      served;    /* connections it answered */
	unsigned long      accepted;  /* connections given to it */
	int                fails;     /* connect failures in a row */
	int                probefd;
	int                execfd; /* exec-failure pipe, -1 after */
	int                exec_failed;
	int                failed; /* killed for not getting ready */
	int                was_ready;
	int                reaped; /* the process is gone */
	int                termed; /* SIGTERM sent */
	enum worker_exit   exit;   /* how it ended, once reaped */
	int                cgroup; /* runs in cgroup worker-SERIAL */
	struct control    *control;
	struct health     *health; /* active checks, if configured */
	struct relay_head  peers[CONTROL_PEER_BUCKETS];
	int                npeers_inode; /* of them, found by inode only */
	struct event       timer; /* probe, ready, retire or kill timer */
	struct event       execev;

	/* Its log budget, shared by LOG frames and its output. */
	struct control_bucket logs;
	struct output        *output; /* its stdout and stderr, captured */

	/* mode handoff: the connections it holds, counted in nconns */
	struct handoff_head  handed[HANDOFF_BUCKETS];
	int                  nhanded;
	struct handoff_node *node; /* handoff_channel node */

	/*
	 * The pool's (service.c): its listen backlog was found full, so it
	 * takes no new client until full_until (ms; 0: it has room).
	 */
	long long     full_until;
	long long     full_ms;     /* that back-off */
	unsigned long full_served; /* served when it was found full */
};
TAILQ_HEAD(worker_head, worker);

struct health;

struct worker *worker_spawn(struct service *, int slot, char **cause);
int            worker_in_rotation(const struct worker *);
int            worker_alive(const struct worker *);
void           worker_stop(struct worker *, const char *why);
void           worker_retire(struct worker *, long long ms);
void           worker_kill(struct worker *);
void           worker_give_up(struct worker *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int  worker_failed_start(const struct worker *);
void worker_exited(struct worker *, int status);
void worker_release(struct worker *);
int  worker_reported_ready(struct worker *, const char *addr, char **cause);
void worker_connect_failed(struct worker *, int error);
void worker_connected(struct worker *);
void worker_stalled(struct worker *, long long idle_ms);
void worker_handoff_refused(struct worker *, const char *why);
void worker_drain_handed(struct worker *);
long long worker_cpu_idle_ms(struct worker *, long long now);
void      worker_check_result(struct worker *, int ok, const char *why);
void      worker_abandon(struct worker *);
void      worker_free(struct worker *);
void      worker_log(int pri, const struct worker *, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
