/*
 * Counters: plain fields, incremented on the line where the event happens
 * (one writer each, named in counters.h), read by the stats listener and
 * the admin socket.  Only the histogram needs a function.
 */
#include <stddef.h>

#include "counters.h"

struct daemon_counters daemon_counters = { 0, 0, -1, 0 };

const long long counters_wait_bounds[COUNTERS_WAIT_BUCKETS] = { 1, 5, 10, 50,
	100, 500, 1000, 5000, 10000, 30000, 60000 };

static const char *end_names[RELAY_END_COUNT] = {
	"client_close",
	"worker_close",
	"idle_timeout",
	"queue_timeout",
	"connect_failed",
	"refused",
	"worker_died",
	"shutdown",
	"error",
	"handed",
	"tls_plaintext",
	"tls_aborted",
	"tls_handshake_timeout",
	"tls_handshake_failed",
};

static const char *exit_names[WORKER_EXIT_COUNT] = {
	"clean",
	"crash",
	"killed",
};

const char *
relay_end_name(enum relay_end e)
{
	if ((unsigned)e >= RELAY_END_COUNT)
		return ("unknown");
	return (end_names[e]);
}

const char *
worker_exit_name(enum worker_exit e)
{
	if ((unsigned)e >= WORKER_EXIT_COUNT)
		return ("unknown");
	return (exit_names[e]);
}

/* One connection's wait in the queue, in ms (Prometheus wants seconds). */
void
counters_wait(struct service_counters *c, long long ms)
{
	size_t i;

	if (ms < 0)
		ms = 0;
	for (i = 0; i < COUNTERS_WAIT_BUCKETS; i++) {
		if (ms <= counters_wait_bounds[i])
			break;
	}
	c->wait_buckets[i]++;
	c->wait_count++;
	c->wait_sum_ms += ms;
}
