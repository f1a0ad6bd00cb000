/* What happened, counted where it happens: for /metrics and the admin socket.
 */
#ifndef SN_COUNTERS_H
#define SN_COUNTERS_H

#include <stdint.h>

/*
 * Why a client connection ended: exactly one per connection, chosen by
 * the close path (relay.c, service.c).  relay_end_name() gives the word
 * used in the access log and the metrics' reason label.
 */
enum relay_end {
	RELAY_END_CLIENT,         /* the client hung up first */
	RELAY_END_WORKER,         /* the worker hung up first */
	RELAY_END_IDLE,           /* idle_timeout */
	RELAY_END_QUEUE_TIMEOUT,  /* queue_timeout: no worker in time */
	RELAY_END_CONNECT_FAILED, /* no worker could take it */
	RELAY_END_REFUSED,        /* every worker tried refused it */
	RELAY_END_WORKER_DIED,    /* its worker's process ended under it */
	RELAY_END_SHUTDOWN,       /* the daemon or the service stopped */
	RELAY_END_ERROR,          /* a socket error (errno says which) */
	RELAY_END_HANDED,        /* handed off: its worker reported the close */
	RELAY_END_TLS_PLAINTEXT, /* tls: not TLS (an HTTP request, say) */
	RELAY_END_TLS_ABORTED,   /* tls: the client left mid-handshake */
	RELAY_END_TLS_TIMEOUT,   /* tls: handshake_timeout */
	RELAY_END_TLS_FAILED,    /* tls: refused (version, cipher, cert...) */
	RELAY_END_COUNT,
};

/* How a worker process ended. */
enum worker_exit {
	WORKER_EXIT_CLEAN,  /* status 0, or the SIGTERM we sent */
	WORKER_EXIT_CRASH,  /* any other status or signal */
	WORKER_EXIT_KILLED, /* the SIGKILL we sent (stalled, not ready, ...) */
	WORKER_EXIT_COUNT,
};

/* Upper bounds (ms) of the queue wait histogram; one more for +Inf. */
#define COUNTERS_WAIT_BUCKETS 11
extern const long long counters_wait_bounds[COUNTERS_WAIT_BUCKETS];

/*
 * One service's counters, kept in struct service across reloads; gauges
 * (queue depth, ready workers) are the service's own fields.  Each is
 * written in one place only: see the comment at each.
 */
struct service_counters {
	uint64_t accepted;                /* service_accepted */
	uint64_t closed[RELAY_END_COUNT]; /* relay_close */
	uint64_t bytes_in;                /* relay: delivered to workers */
	uint64_t bytes_out;               /* relay: delivered to clients */
	uint64_t connect_failures;        /* relay_connect_failed */
	uint64_t worker_starts;           /* worker_spawn */
	uint64_t worker_exits[WORKER_EXIT_COUNT]; /* worker_exited */
	uint64_t worker_restarts;    /* worker_spawn after a crash */
	uint64_t crashes_unreplaced; /* crashes no start replaced yet */
	uint64_t health_down;        /* worker_set_state */
	uint64_t health_up;          /* worker_set_state */
	uint64_t wait_buckets[COUNTERS_WAIT_BUCKETS + 1]; /* relay.c */
	uint64_t wait_count;
	uint64_t wait_sum_ms;
};

/* Daemon-wide: reloads by result (socketnautd.c). */
struct daemon_counters {
	uint64_t  reloads_ok;
	uint64_t  reloads_failed;
	int       last_reload_ok; /* -1: none yet */
	long long last_reload;    /* ms, monotonic */
};

extern struct daemon_counters daemon_counters;

const char *relay_end_name(enum relay_end);
const char *worker_exit_name(enum worker_exit);
void        counters_wait(struct service_counters *, long long ms);

#endif
