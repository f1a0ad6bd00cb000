/*
 * The daemon's state for operators: the status snapshot (schema version
 * STATUS_SCHEMA_VERSION, documented in socketnautctl(8)) as JSON or as a
 * table, and the table of live connections.  Answers about thousands of
 * services or connections are written a piece at a time (status_stream),
 * so that a caller can send as the reader takes them; each piece is read
 * from the live structures, nothing is copied or held between pieces.
 */
#include <sys/socket.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "service.h"
#include "spawner.h"
#include "status.h"

#define STATUS_CONNS_PER_PIECE 256

static struct service_head *status_services;
static long long            status_started; /* ms */
static unsigned long        reloads_ok, reloads_failed;
static int                  reload_last = -1; /* -1 none, 0 failed, 1 ok */
static long long            reload_at;        /* ms */

void
status_init(struct service_head *services)
{
	status_services = services;
	status_started = now_ms();
}

/* A reload ended: counted for the snapshot. */
void
status_reloaded(int ok)
{
	if (ok)
		reloads_ok++;
	else
		reloads_failed++;
	reload_last = ok;
	reload_at = now_ms();
}

/* s as a JSON string: quotes, backslashes and control bytes escaped. */
void
status_json_string(struct evbuffer *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *run = p;

	evbuffer_add(out, "\"", 1);
	for (; *p != '\0'; p++) {
		if (*p >= 0x20 && *p != '"' && *p != '\\' && *p != 0x7f)
			continue;
		evbuffer_add(out, run, p - run);
		if (*p == '"' || *p == '\\')
			evbuffer_add_printf(out, "\\%c", *p);
		else
			evbuffer_add_printf(out, "\\u%04x", *p);
		run = p + 1;
	}
	evbuffer_add(out, run, p - run);
	evbuffer_add(out, "\"", 1);
}

static double
status_secs(long long ms)
{
	return (ms > 0 ? ms / 1000.0 : 0.0);
}

static const char *
status_worker_state(enum worker_state s)
{
	switch (s) {
	case WORKER_NEW:
	case WORKER_STARTING:
		return ("starting");
	case WORKER_READY:
		return ("ready");
	case WORKER_UNHEALTHY:
		return ("unhealthy");
	case WORKER_DRAINING:
		return ("draining");
	case WORKER_STOPPING:
		return ("stopping");
	case WORKER_EXITED:
		break;
	}
	return ("exited");
}

/* Active checks only: without health_check a worker is "unchecked". */
static const char *
status_health(const struct worker *w)
{
	if (!w->svc->conf->health.enabled)
		return ("unchecked");
	if (w->state == WORKER_UNHEALTHY)
		return ("down");
	if (w->state == WORKER_READY || w->state == WORKER_DRAINING)
		return ("up");
	return ("unchecked");
}

static const char *
status_relay_state(enum relay_state s)
{
	switch (s) {
	case RELAY_HANDSHAKE:
		return ("handshake");
	case RELAY_QUEUED:
		return ("queued");
	case RELAY_CONNECTING:
		return ("connecting");
	case RELAY_OPEN:
		return ("open");
	case RELAY_CLOSING:
		break;
	}
	return ("closing");
}

static const char *
status_backend(enum sn_backend b)
{
	switch (b) {
	case BACKEND_UNIX:
		return ("unix");
	case BACKEND_TCP:
		return ("tcp");
	case BACKEND_AGENT:
		break;
	}
	return ("agent");
}

static long long
status_backoff_ms(const struct service *svc)
{
	long long left = svc->backoff_until - now_ms();

	return (left > 0 ? left : 0);
}

static const char *
status_service_state(const struct service *svc)
{
	if (svc->stopping)
		return ("stopping");
	if (status_backoff_ms(svc) > 0)
		return ("backoff");
	return ("running");
}

/* Resident memory of a live worker, in kB; -1 when /proc does not say. */
static long
status_rss_kb(const struct worker *w)
{
	char    path[64], buf[4096], *p;
	ssize_t n;
	long    kb;
	int     fd;

	if (!worker_alive(w) || w->pid <= 0)
		return (-1);
	snprintf(path, sizeof path, "/proc/%ld/status", (long)w->pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (-1);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return (-1);
	buf[n] = '\0';
	if ((p = strstr(buf, "\nVmRSS:")) == NULL ||
	    sscanf(p + 7, "%ld", &kb) != 1)
		return (-1);
	return (kb);
}

/* Where relays reach the worker; NULL before an agent said. */
static const char *
status_worker_address(const struct worker *w, char *buf, size_t len)
{
	if (w->sockpath != NULL) {
		snprintf(buf, len, "unix:%s", w->sockpath);
		return (buf);
	}
	if (w->addr.len == 0)
		return (NULL);
	return (addr_str((const struct sockaddr *)&w->addr.ss, buf, len));
}

static unsigned long
status_restarts(const struct worker *w)
{
	const struct service *svc = w->svc;

	if (w->generation != svc->generation || w->slot < 0 ||
	    w->slot >= svc->nslots)
		return (0);
	return (svc->restarts[w->slot]);
}

static void
status_json_worker(struct evbuffer *out, const struct worker *w, long long now)
{
	char        buf[ADDRSTRLEN + 128];
	const char *addr;
	long        rss = status_rss_kb(w);
	long long   since;

	evbuffer_add_printf(out,
	    "{\"pid\":%ld,\"slot\":%d,\"serial\":%u,\"generation\":%u,\"state\":\"%s\",\"health\":\"%s\",\"connections\":%d,\"accepted\":%lu,\"served\":%lu,\"age_s\":%.3f,\"restarts\":%lu,",
	    (long)w->pid, w->slot, w->serial, w->generation,
	    status_worker_state(w->state), status_health(w), w->nconns,
	    w->accepted, w->served, status_secs(now - w->started),
	    status_restarts(w));
	if (rss >= 0)
		evbuffer_add_printf(out, "\"rss_kb\":%ld,", rss);
	else
		evbuffer_add_printf(out, "\"rss_kb\":null,");
	if (spawner_late_child(NULL, w->pid, &since) > 0)
		evbuffer_add_printf(
		    out, "\"exec_late_s\":%.3f,", status_secs(now - since));
	else
		evbuffer_add_printf(out, "\"exec_late_s\":null,");
	evbuffer_add_printf(out, "\"address\":");
	if ((addr = status_worker_address(w, buf, sizeof buf)) != NULL)
		status_json_string(out, addr);
	else
		evbuffer_add_printf(out, "null");
	evbuffer_add_printf(out, ",\"address_refused\":");
	if (w->refused != NULL)
		status_json_string(out, w->refused);
	else
		evbuffer_add_printf(out, "null");
	evbuffer_add_printf(out, "}");
}

/* The addresses a service listens on: bound sockets, else as configured. */
static void
status_json_listen(struct evbuffer *out, const struct service *svc)
{
	char   buf[ADDRSTRLEN];
	size_t i;

	evbuffer_add_printf(out, "\"listen\":[");
	if (svc->nlisteners > 0) {
		for (i = 0; i < svc->nlisteners; i++) {
			evbuffer_add_printf(out, "%s", i > 0 ? "," : "");
			status_json_string(out, svc->listeners[i].name);
		}
	} else {
		for (i = 0; i < svc->conf->nlisten; i++) {
			addr_str(
			    (const struct sockaddr *)&svc->conf->listen[i].ss,
			    buf, sizeof buf);
			evbuffer_add_printf(out, "%s", i > 0 ? "," : "");
			status_json_string(out, buf);
		}
	}
	evbuffer_add_printf(out, "],");
}

static void
status_json_service(struct evbuffer *out, const struct service *svc)
{
	const struct sn_service_conf *sc = svc->conf;
	const struct worker          *w;
	long long                     now = now_ms();
	int                           first = 1;

	evbuffer_add_printf(out, "{\"name\":");
	status_json_string(out, sc->name);
	evbuffer_add_printf(out, ",");
	status_json_listen(out, svc);
	evbuffer_add_printf(out,
	    "\"backend\":\"%s\",\"state\":\"%s\",\"generation\":%u,\"min_workers\":%d,\"max_workers\":%d,\"workers_online\":%d,\"workers_ready\":%d,\"connections\":%d,\"queued\":%d,\"max_queue\":%d,\"backoff_ms\":%lld,\"workers\":[",
	    status_backend(sc->backend), status_service_state(svc),
	    svc->generation, sc->min_workers, sc->max_workers, svc->online,
	    svc->ready, svc->nconns, svc->nqueued, sc->max_queue,
	    status_backoff_ms(svc));
	TAILQ_FOREACH (w, &svc->workers, entry) {
		if (!first)
			evbuffer_add_printf(out, ",");
		first = 0;
		status_json_worker(out, w, now);
	}
	evbuffer_add_printf(out, "]}");
}

static void
status_json_begin(struct evbuffer *out)
{
	long long now = now_ms();

	evbuffer_add_printf(out,
	    "{\"version\":%d,\"time\":%lld,\"pid\":%ld,\"uptime_s\":%.3f,\"reloads\":{\"ok\":%lu,\"failed\":%lu,\"last_result\":\"%s\",\"last_age_s\":",
	    STATUS_SCHEMA_VERSION, (long long)time(NULL), (long)getpid(),
	    status_secs(now - status_started), reloads_ok, reloads_failed,
	    reload_last < 0 ? "none" : (reload_last ? "ok" : "failed"));
	if (reload_last < 0)
		evbuffer_add_printf(out, "null");
	else
		evbuffer_add_printf(out, "%.3f", status_secs(now - reload_at));
	evbuffer_add_printf(out, "},\"services\":[");
}

static void
status_table_begin(struct evbuffer *out)
{
	long long now = now_ms();

	evbuffer_add_printf(out,
	    "socketnautd pid %ld, up %.1fs, reloads %lu ok, %lu failed (last: %s)\n",
	    (long)getpid(), status_secs(now - status_started), reloads_ok,
	    reloads_failed,
	    reload_last < 0 ? "none" : (reload_last ? "ok" : "failed"));
}

static void
status_table_service(struct evbuffer *out, const struct service *svc)
{
	const struct sn_service_conf *sc = svc->conf;
	const struct worker          *w;
	long long                     now = now_ms();
	char                          rss[32];
	long                          kb;

	evbuffer_add_printf(out,
	    "\nservice %s: %s, %s backend, generation %u, %d/%d ready (min %d, max %d), %d connection%s, %d queued, back-off %lldms\n",
	    sc->name, status_service_state(svc), status_backend(sc->backend),
	    svc->generation, svc->ready, svc->online, sc->min_workers,
	    sc->max_workers, svc->nconns, svc->nconns == 1 ? "" : "s",
	    svc->nqueued, status_backoff_ms(svc));
	if (TAILQ_EMPTY(&svc->workers))
		return;
	evbuffer_add_printf(out,
	    "  %-8s %4s %4s %-9s %-9s %6s %9s %9s %9s %8s %9s\n", "PID", "SLOT",
	    "GEN", "STATE", "HEALTH", "CONNS", "ACCEPTED", "SERVED", "AGE",
	    "RESTARTS", "RSS");
	TAILQ_FOREACH (w, &svc->workers, entry) {
		if ((kb = status_rss_kb(w)) >= 0)
			snprintf(rss, sizeof rss, "%ldk", kb);
		else
			snprintf(rss, sizeof rss, "-");
		evbuffer_add_printf(out,
		    "  %-8ld %4d %4u %-9s %-9s %6d %9lu %9lu %8.1fs %8lu %9s\n",
		    (long)w->pid, w->slot, w->generation,
		    status_worker_state(w->state), status_health(w), w->nconns,
		    w->accepted, w->served, status_secs(now - w->started),
		    status_restarts(w), rss);
	}
}

/* The local address a client reached: the listener's. */
static const char *
status_relay_listener(const struct relay *r, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t               sl = sizeof ss;

	if (r->cfd == -1 ||
	    getsockname(r->cfd, (struct sockaddr *)&ss, &sl) == -1)
		return (NULL);
	return (addr_str((struct sockaddr *)&ss, buf, len));
}

static void
status_conn_row(struct evbuffer *out, const struct relay *r, const char *peer,
    const char *listener, long pid, long long now)
{
	char worker[24], wait[24];

	if (pid > 0)
		snprintf(worker, sizeof worker, "%ld", pid);
	else
		snprintf(worker, sizeof worker, "-");
	if (r->state != RELAY_QUEUED)
		snprintf(wait, sizeof wait, "%.1fs",
		    status_secs(r->since - r->accepted));
	else
		snprintf(wait, sizeof wait, "-");
	evbuffer_add_printf(out,
	    "%-16s %-24s %-24s %8s %-10s %8.1fs %8s %12llu %12llu\n",
	    r->svc->conf->name, peer, listener != NULL ? listener : "-", worker,
	    status_relay_state(r->state), status_secs(now - r->accepted), wait,
	    (unsigned long long)r->up.total, (unsigned long long)r->down.total);
}

static void
status_conn(struct evbuffer *out, const struct relay *r, int json, int first)
{
	char        peer[ADDRSTRLEN], local[ADDRSTRLEN];
	const char *listener = status_relay_listener(r, local, sizeof local);
	long long   now = now_coarse_ms();
	long        pid = r->worker != NULL ? (long)r->worker->pid : 0;
	int         waited = r->state != RELAY_QUEUED;

	relay_peer(r, peer, sizeof peer);
	if (!json) {
		status_conn_row(out, r, peer, listener, pid, now);
		return;
	}
	evbuffer_add_printf(out, "%s{\"service\":", first ? "" : ",");
	status_json_string(out, r->svc->conf->name);
	evbuffer_add_printf(out, ",\"client\":");
	status_json_string(out, peer);
	evbuffer_add_printf(out, ",\"listener\":");
	if (listener != NULL)
		status_json_string(out, listener);
	else
		evbuffer_add_printf(out, "null");
	if (pid > 0)
		evbuffer_add_printf(out, ",\"worker_pid\":%ld", pid);
	else
		evbuffer_add_printf(out, ",\"worker_pid\":null");
	evbuffer_add_printf(out, ",\"state\":\"%s\",\"age_s\":%.3f",
	    status_relay_state(r->state), status_secs(now - r->accepted));
	if (waited)
		evbuffer_add_printf(out, ",\"queue_wait_s\":%.3f",
		    status_secs(r->since - r->accepted));
	else
		evbuffer_add_printf(out, ",\"queue_wait_s\":null");
	evbuffer_add_printf(out, ",\"bytes_in\":%llu,\"bytes_out\":%llu}",
	    (unsigned long long)r->up.total, (unsigned long long)r->down.total);
}

/*
 * A connection handed to a worker (mode handoff): state "handed", and no
 * bytes, which the master never sees.
 */
static void
status_handed(struct evbuffer *out, const struct service *svc,
    const struct handoff *h, int json, int first)
{
	struct handoff_view v;
	char                peer[ADDRSTRLEN];
	long long           now = now_coarse_ms();

	handoff_view(h, &v);
	addr_str(v.peer, peer, sizeof peer);
	if (!json) {
		evbuffer_add_printf(out,
		    "%-16s %-24s %-24s %8ld %-10s %8.1fs %7.1fs %12s %12s\n",
		    svc->conf->name, peer,
		    v.listener != NULL ? v.listener : "-", v.pid, "handed",
		    status_secs(now - v.accepted), status_secs(v.waited), "-",
		    "-");
		return;
	}
	evbuffer_add_printf(out, "%s{\"service\":", first ? "" : ",");
	status_json_string(out, svc->conf->name);
	evbuffer_add_printf(out, ",\"client\":");
	status_json_string(out, peer);
	evbuffer_add_printf(out, ",\"listener\":");
	if (v.listener != NULL)
		status_json_string(out, v.listener);
	else
		evbuffer_add_printf(out, "null");
	evbuffer_add_printf(out,
	    ",\"worker_pid\":%ld,\"state\":\"handed\",\"age_s\":%.3f,\"queue_wait_s\":%.3f,\"bytes_in\":null,\"bytes_out\":null}",
	    v.pid, status_secs(now - v.accepted), status_secs(v.waited));
}

static const struct service *
status_nth_service(size_t n)
{
	const struct service *svc;

	/* Removed by a reload, still draining: shown, "stopping". */
	TAILQ_FOREACH (svc, status_services, entry) {
		if (n-- == 0)
			return (svc);
	}
	return (NULL);
}

static const struct relay *
status_nth_relay(const struct service *svc, size_t n)
{
	const struct relay *r;

	TAILQ_FOREACH (r, &svc->relays, all) {
		if (n-- == 0)
			return (r);
	}
	return (NULL);
}

void
status_cursor_init(
    struct status_cursor *c, enum status_kind kind, const char *filter)
{
	memset(c, 0, sizeof *c);
	c->kind = kind;
	if (filter != NULL)
		snprintf(c->filter, sizeof c->filter, "%s", filter);
}

/* The next relays of the current service; 1 once it has no more. */
static int
status_conns_piece(struct status_cursor *c, struct evbuffer *out,
    const struct service *svc, size_t limit)
{
	const struct relay   *r = status_nth_relay(svc, c->item);
	const struct handoff *h;
	size_t                nrelays = 0, i;
	int                   n = 0;

	for (; r != NULL; r = TAILQ_NEXT(r, all)) {
		if (n++ >= STATUS_CONNS_PER_PIECE ||
		    evbuffer_get_length(out) >= limit)
			return (0);
		status_conn(out, r, c->kind == CONNS_JSON, !c->wrote);
		c->wrote = 1;
		c->item++;
	}
	/* Then the connections handed to workers, numbered after them. */
	TAILQ_FOREACH (r, &svc->relays, all)
		nrelays++;
	h = handoff_first(svc);
	for (i = nrelays; h != NULL && i < c->item; i++)
		h = handoff_next(h);
	for (; h != NULL; h = handoff_next(h)) {
		if (n++ >= STATUS_CONNS_PER_PIECE ||
		    evbuffer_get_length(out) >= limit)
			return (0);
		status_handed(out, svc, h, c->kind == CONNS_JSON, !c->wrote);
		c->wrote = 1;
		c->item++;
	}
	return (1);
}

static void
status_begin(struct status_cursor *c, struct evbuffer *out)
{
	switch (c->kind) {
	case STATUS_JSON:
		status_json_begin(out);
		break;
	case STATUS_TABLE:
		status_table_begin(out);
		break;
	case CONNS_JSON:
		evbuffer_add_printf(out, "{\"version\":%d,\"connections\":[",
		    STATUS_SCHEMA_VERSION);
		break;
	case CONNS_TABLE:
		evbuffer_add_printf(out,
		    "%-16s %-24s %-24s %8s %-10s %9s %8s %12s %12s\n",
		    "SERVICE", "CLIENT", "LISTENER", "WORKER", "STATE", "AGE",
		    "QWAIT", "BYTES_IN", "BYTES_OUT");
		break;
	}
	c->begun = 1;
}

static void
status_end(struct status_cursor *c, struct evbuffer *out)
{
	if (c->kind == STATUS_JSON || c->kind == CONNS_JSON)
		evbuffer_add_printf(out, "]}\n");
	c->done = 1;
}

/*
 * Append the next pieces of the answer until out holds limit bytes or the
 * answer is complete; returns 1 when it is.  Services are found again by
 * position at each call: one removed meanwhile shifts the rest, which a
 * snapshot taken over time may show (never a freed one).
 */
int
status_stream(struct status_cursor *c, struct evbuffer *out, size_t limit)
{
	const struct service *svc;
	int conns = c->kind == CONNS_JSON || c->kind == CONNS_TABLE;

	if (c->done)
		return (1);
	if (!c->begun)
		status_begin(c, out);
	while (evbuffer_get_length(out) < limit) {
		if ((svc = status_nth_service(c->svc)) == NULL) {
			status_end(c, out);
			return (1);
		}
		if (conns && c->filter[0] != '\0' &&
		    strcmp(c->filter, svc->conf->name) != 0) {
			c->svc++;
			continue;
		}
		if (!conns) {
			if (c->kind == STATUS_JSON) {
				if (c->svc > 0)
					evbuffer_add(out, ",", 1);
				status_json_service(out, svc);
			} else
				status_table_service(out, svc);
			c->svc++;
			continue;
		}
		if (!status_conns_piece(c, out, svc, limit))
			return (0);
		c->svc++;
		c->item = 0;
	}
	return (0);
}

/* The whole snapshot at once (the stats listener's /status.json). */
void
status_json(struct evbuffer *out)
{
	struct status_cursor c;

	status_cursor_init(&c, STATUS_JSON, NULL);
	status_stream(&c, out, (size_t)-1);
}
