/* One service: its public listeners, its worker pool and its policy. */
#ifndef SN_SERVICE_H
#define SN_SERVICE_H

#include <sys/queue.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "config.h"
#include "counters.h"
#include "listener.h"
#include "relay.h"
#include "worker.h"

struct sockdir;

/*
 * {index} values: a worker keeps its slot until its process is gone, so a
 * replacement started meanwhile (the other out of rotation, or exiting)
 * takes another; online workers never exceed max_workers.
 */
#define SERVICE_SLOTS(sc) (2 * (sc)->max_workers)

struct service {
	TAILQ_ENTRY(service) entry;
	struct sn_config       *owner; /* holds conf; refcounted */
	struct sn_service_conf *conf;
	struct listener        *listeners;
	size_t                  nlisteners;
	struct sockdir         *sockdir; /* held open; NULL with backend tcp */
	int                     accepting; /* listeners enabled */
	struct worker_head      workers;
	int                     online; /* STARTING + READY, this generation */
	int                     ready;  /* READY, this generation */
	unsigned char          *slots;  /* held by a live worker process */
	unsigned long          *restarts; /* per slot: crashes replaced */
	int                     nslots;   /* size of both */
	unsigned long           crashes;  /* for the next worker started */
	unsigned                generation;
	struct relay_head       queue;    /* clients with no worker yet */
	struct relay_head       relays;   /* every client of the service */
	struct handoff_head     handed;   /* and those handed to workers */
	int                     nconns;   /* relays alive, queued included */
	int                     nqueued;  /* relays on the queue */
	int                     failures; /* quick exits in a row */
	long long               backoff_until; /* ms */
	int                     stopping;
	int                     handover;  /* stopping after an upgrade */
	int                     removed;   /* by a reload: free once stopped */
	int                     seen;      /* in the file being reloaded */
	long long               fd_warned; /* ms: EMFILE last logged */
	long long               queue_warned;   /* ms: queue_timeout logged */
	unsigned long           queue_timeouts; /* since then */
	const struct timeval   *idle_tv;        /* libevent common timeout */
	struct event            check;          /* workers_checking_interval */
	struct event            watch;          /* stall_timeout */
	struct event            respawn;
	struct event            drain; /* the queue, after a slot frees */
	struct event            shutdown;
	struct service_counters ctr;  /* kept across reloads */
	struct accesslog       *alog; /* NULL: access_log off */

	/* accept_proxy: clients closed, of them since the last line, its ms */
	unsigned long proxy_refused;
	unsigned long proxy_unlogged;
	long long     proxy_warned;

	/* Back-offs of full workers: due at full_next (ms; 0: none). */
	struct event full;
	long long    full_next;

	/* Failed connects logged, and those over the budget since the last. */
	struct control_bucket connect_log;
	unsigned long         connect_unlogged;
};
TAILQ_HEAD(service_head, service);

/* The pool's choice for one new connection. */
struct pick {
	struct worker *worker; /* NULL: none usable */
	int            spawn;  /* start a new worker for it */
};

struct service *service_new(struct sn_config *, struct sn_service_conf *);
int
service_reload(struct service *, struct sn_config *, struct sn_service_conf *);
int         service_start(struct service *, char **cause);
void        service_stop(struct service *, int now);
void        service_handover(struct service *);
void        service_update_accepting(struct service *);
void        service_free(struct service *);
struct pick service_pick(const struct service *, const struct relay *);
void
service_accepted(struct listener *, int fd, const struct sockaddr *, socklen_t);
void        service_dispatch(struct service *, struct relay *);
void        service_connect_failed(struct relay *, int error);
void        service_relay_done(struct service *);
void        service_queue_timeout(struct service *);
void        service_slot_freed(struct service *, struct worker *);
void        service_fd_exhausted(struct service *);
void        service_worker_ready(struct service *, struct worker *);
void        service_worker_gone(struct service *);
int         service_move_clients(struct service *, struct worker *);
void        service_reap(struct service *, struct worker *, int status);
int         service_stopped(const struct service *);
const char *service_unavailable(const struct service *);
long long   service_backoff_ms(int failures);
int         service_scale(struct service *, int min, int max, char **cause);
void        service_restart(struct service *);
int         service_drain_worker(struct service *, pid_t, char **cause);

void service_accepted_as(struct listener *, int fd, const struct sockaddr *peer,
    socklen_t, const struct sockaddr *local);

#endif
