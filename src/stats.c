/*
 * The stats listener (stats_listen): libevent's evhttp serving /metrics in
 * the Prometheus text exposition format, /status.json (the admin socket's
 * status snapshot) and /status, a page that shows it.  It may face a
 * network: GET and HEAD only, small requests, a timeout, and at most
 * STATS_CONNS connections at once: a new one closes the oldest, so idle
 * or slow connections cannot lock an operator out.
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "config.h"
#include "counters.h"
#include "listener.h"
#include "log.h"
#include "service.h"
#include "socketnautd.h"
#include "stats.h"
#include "status.h"

#define STATS_CONNS       32
#define STATS_TIMEOUT_S   10
#define STATS_HEADERS_MAX 8192
#define STATS_BODY_MAX    1024
#define STATS_BACKLOG     64
#define STATS_SWEEP_MS    200

static struct {
	struct evhttp              *http;
	struct evhttp_bound_socket *bound;
	char                       *listen; /* as configured */
	struct service_head        *services;
	struct stats_conn          *conns; /* oldest first */
	size_t                      nconns;
	size_t                      nlive; /* not closed by us yet */
	struct event                sweep;
	int                         sweep_set;
	struct listener_guard       guard;
} st;

/* A connection of evhttp's whose bufferevent we hold a reference to. */
struct stats_conn {
	struct bufferevent *bev;
	int                 evicted; /* shut down to make room */
};

static void stats_sweep(void);

static void
stats_sweep_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	stats_sweep();
}

/*
 * Accept while evhttp has let go of the connections we closed; until it
 * has, new clients wait in the kernel's backlog.
 */
static void
stats_accepting(void)
{
	struct evconnlistener *l;

	if (st.bound == NULL || listener_guard_paused(&st.guard))
		return;
	l = evhttp_bound_socket_get_listener(st.bound);
	if (st.nconns >= 2 * STATS_CONNS)
		evconnlistener_disable(l);
	else
		evconnlistener_enable(l);
}

/* Make room: shut the oldest connection down; evhttp sees it end. */
static void
stats_evict(void)
{
	size_t i;
	int    fd;

	for (i = 0; i < st.nconns; i++) {
		if (st.conns[i].evicted)
			continue;
		if ((fd = bufferevent_getfd(st.conns[i].bev)) != -1)
			shutdown(fd, SHUT_RDWR);
		st.conns[i].evicted = 1;
		st.nlive--;
		return;
	}
}

/*
 * evhttp (2.1) neither limits nor reports its connections, so each one's
 * bufferevent is ours (stats_bev) and we keep a reference to it: once
 * evhttp frees it, bufferevent_free() has cleared its callbacks, and
 * dropping our reference closes the socket.  Runs before each new
 * connection and every STATS_SWEEP_MS while any are open.
 */
static void
stats_sweep(void)
{
	struct timeval       tv = { 0, STATS_SWEEP_MS * 1000 };
	bufferevent_event_cb cb;
	size_t               i = 0;

	while (i < st.nconns) {
		bufferevent_getcb(st.conns[i].bev, NULL, NULL, &cb, NULL);
		if (cb != NULL) {
			i++;
			continue;
		}
		bufferevent_decref(st.conns[i].bev);
		if (!st.conns[i].evicted)
			st.nlive--;
		st.nconns--;
		memmove(&st.conns[i], &st.conns[i + 1],
		    (st.nconns - i) * sizeof *st.conns);
	}
	stats_accepting();
	if (!st.sweep_set) {
		evtimer_assign(&st.sweep, sn_base, stats_sweep_cb, NULL);
		st.sweep_set = 1;
	}
	if (st.nconns > 0 && !evtimer_pending(&st.sweep, NULL))
		evtimer_add(&st.sweep, &tv);
}

/* A new connection's bufferevent: counted until evhttp is done with it. */
static struct bufferevent *
stats_bev(struct event_base *base, void *arg)
{
	struct bufferevent *bev;

	(void)arg;
	stats_sweep();
	if ((bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) ==
	    NULL)
		return (NULL);
	bufferevent_incref(bev);
	/*
	 * evhttp reads on while it writes a reply: a client pipelining
	 * requests and reading slowly would grow its input without bound.
	 */
	bufferevent_setwatermark(bev, EV_READ, 0, 2 * STATS_HEADERS_MAX);
	if (st.nlive >= STATS_CONNS)
		stats_evict();
	st.conns = xreallocarray(st.conns, st.nconns + 1, sizeof *st.conns);
	st.conns[st.nconns].bev = bev;
	st.conns[st.nconns++].evicted = 0;
	st.nlive++;
	stats_accepting();
	return (bev);
}

/* A label value: backslash, double quote and newline escaped. */
static void
stats_label(struct evbuffer *b, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			evbuffer_add_printf(b, "\\%c", *v);
		else if (*v == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, v, 1);
	}
}

static void
stats_head(
    struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP socketnaut_%s %s\n", name, help);
	evbuffer_add_printf(b, "# TYPE socketnaut_%s %s\n", name, type);
}

/* One sample of a per-service series: name{service="x"[,extra]} value. */
static void
stats_sample(struct evbuffer *b, const char *name, const struct service *svc,
    const char *extra, unsigned long long v)
{
	evbuffer_add_printf(b, "socketnaut_%s{service=\"", name);
	stats_label(b, svc->conf->name);
	evbuffer_add_printf(b, "\"%s%s} %llu\n", extra != NULL ? "," : "",
	    extra ? extra : "", v);
}

/* What the services in service.c count, for every service listed. */
enum stats_field {
	F_ACCEPTED,
	F_ACTIVE,
	F_BYTES_IN,
	F_BYTES_OUT,
	F_QUEUED,
	F_READY,
	F_ONLINE,
	F_STARTS,
	F_RESTARTS,
	F_CONNECT_FAILURES,
	F_PROXY_REFUSED,
};

static unsigned long long
stats_field(const struct service *svc, enum stats_field f)
{
	const struct service_counters *c = &svc->ctr;

	switch (f) {
	case F_ACCEPTED:
		return (c->accepted);
	case F_ACTIVE:
		return (svc->nconns);
	case F_BYTES_IN:
		return (c->bytes_in);
	case F_BYTES_OUT:
		return (c->bytes_out);
	case F_QUEUED:
		return (svc->nqueued);
	case F_READY:
		return (svc->ready);
	case F_ONLINE:
		return (svc->online);
	case F_STARTS:
		return (c->worker_starts);
	case F_RESTARTS:
		return (c->worker_restarts);
	case F_CONNECT_FAILURES:
		return (c->connect_failures);
	case F_PROXY_REFUSED:
		return (svc->proxy_refused);
	}
	return (0);
}

static const struct {
	const char      *name;
	const char      *type;
	enum stats_field field;
	const char      *help;
} stats_simple[] = {
	{ "connections_accepted_total", "counter", F_ACCEPTED,
	    "Client connections accepted." },
	{ "connections_active", "gauge", F_ACTIVE,
	    "Client connections open now, queued ones included." },
	{ "received_bytes_total", "counter", F_BYTES_IN,
	    "Bytes from clients delivered to workers." },
	{ "sent_bytes_total", "counter", F_BYTES_OUT,
	    "Bytes from workers delivered to clients." },
	{ "queue_depth", "gauge", F_QUEUED,
	    "Clients waiting in the service queue for a worker." },
	{ "workers_ready", "gauge", F_READY,
	    "Workers of the current generation in rotation." },
	{ "workers_online", "gauge", F_ONLINE,
	    "Workers of the current generation starting or ready." },
	{ "worker_starts_total", "counter", F_STARTS,
	    "Worker processes started." },
	{ "worker_restarts_total", "counter", F_RESTARTS,
	    "Worker starts that replaced a worker that crashed or was killed." },
	{ "connect_failures_total", "counter", F_CONNECT_FAILURES,
	    "Connects to a worker that failed (refused, timed out, other errors; a full Unix backlog means busy and is not counted)." },
	{ "proxy_refused_total", "counter", F_PROXY_REFUSED,
	    "Clients of an accept_proxy service closed for their PROXY header: untrusted source, malformed, too long or too slow." },
};

static int
stats_listed(const struct service *svc)
{
	return (!svc->removed);
}

static void
stats_simple_series(struct evbuffer *b, struct service_head *services)
{
	struct service *svc;
	size_t          i;

	for (i = 0; i < sizeof stats_simple / sizeof stats_simple[0]; i++) {
		stats_head(b, stats_simple[i].name, stats_simple[i].type,
		    stats_simple[i].help);
		TAILQ_FOREACH (svc, services, entry) {
			if (stats_listed(svc))
				stats_sample(b, stats_simple[i].name, svc, NULL,
				    stats_field(svc, stats_simple[i].field));
		}
	}
}

/* Series with a second label: close reasons, exit kinds, health. */
static void
stats_labelled_series(struct evbuffer *b, struct service_head *services)
{
	struct service *svc;
	char            extra[64];
	int             i;

	stats_head(b, "connections_closed_total", "counter",
	    "Client connections closed, by why they ended.");
	TAILQ_FOREACH (svc, services, entry) {
		for (i = 0; i < RELAY_END_COUNT && stats_listed(svc); i++) {
			snprintf(extra, sizeof extra, "reason=\"%s\"",
			    relay_end_name(i));
			stats_sample(b, "connections_closed_total", svc, extra,
			    svc->ctr.closed[i]);
		}
	}
	stats_head(b, "worker_exits_total", "counter",
	    "Worker processes that ended: clean (status 0 or asked to stop), crash, killed (SIGKILL from the daemon).");
	TAILQ_FOREACH (svc, services, entry) {
		for (i = 0; i < WORKER_EXIT_COUNT && stats_listed(svc); i++) {
			snprintf(extra, sizeof extra, "kind=\"%s\"",
			    worker_exit_name(i));
			stats_sample(b, "worker_exits_total", svc, extra,
			    svc->ctr.worker_exits[i]);
		}
	}
	stats_head(b, "worker_health_transitions_total", "counter",
	    "Workers that left the rotation on evidence (down) or came back (up).");
	TAILQ_FOREACH (svc, services, entry) {
		if (!stats_listed(svc))
			continue;
		stats_sample(b, "worker_health_transitions_total", svc,
		    "to=\"down\"", svc->ctr.health_down);
		stats_sample(b, "worker_health_transitions_total", svc,
		    "to=\"up\"", svc->ctr.health_up);
	}
}

static void
stats_histogram(struct evbuffer *b, struct service_head *services)
{
	struct service *svc;
	char            extra[64];
	uint64_t        sum;
	int             i;

	stats_head(b, "queue_wait_seconds", "histogram",
	    "Time each client waited in the service queue before its first worker connect (or its close).");
	TAILQ_FOREACH (svc, services, entry) {
		if (!stats_listed(svc))
			continue;
		sum = 0;
		for (i = 0; i <= COUNTERS_WAIT_BUCKETS; i++) {
			sum += svc->ctr.wait_buckets[i];
			if (i < COUNTERS_WAIT_BUCKETS)
				snprintf(extra, sizeof extra, "le=\"%g\"",
				    counters_wait_bounds[i] / 1000.0);
			else
				snprintf(extra, sizeof extra, "le=\"+Inf\"");
			stats_sample(
			    b, "queue_wait_seconds_bucket", svc, extra, sum);
		}
		evbuffer_add_printf(
		    b, "socketnaut_queue_wait_seconds_sum{service=\"");
		stats_label(b, svc->conf->name);
		evbuffer_add_printf(
		    b, "\"} %.3f\n", svc->ctr.wait_sum_ms / 1000.0);
		stats_sample(b, "queue_wait_seconds_count", svc, NULL,
		    svc->ctr.wait_count);
	}
}

static void
stats_daemon_series(struct evbuffer *b)
{
	stats_head(b, "reloads_total", "counter",
	    "Configuration reloads (SIGHUP), by result.");
	evbuffer_add_printf(b,
	    "socketnaut_reloads_total{result=\"ok\"} %llu\n"
	    "socketnaut_reloads_total{result=\"failed\"} %llu\n",
	    (unsigned long long)daemon_counters.reloads_ok,
	    (unsigned long long)daemon_counters.reloads_failed);
}

static void
stats_metrics(struct evhttp_request *req)
{
	struct evbuffer     *b = evbuffer_new();
	struct service_head *services = st.services;

	if (b == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	stats_simple_series(b, services);
	stats_labelled_series(b, services);
	stats_histogram(b, services);
	stats_daemon_series(b);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", b);
	evbuffer_free(b);
}

/*
 * /status: one self-contained page (no external assets) that fetches
 * /status.json every 2 s and draws a table per service, a row per worker.
 * Every value goes in with textContent, never as markup.
 */
static const char stats_page[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>socketnautd status</title>\n"
    "<style>\n"
    "body { font: 13px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; background: #fafafa; }\n"
    "h1 { font-size: 18px; margin: 0 0 .2em; }\n"
    "h2 { font-size: 15px; margin: 1.4em 0 .3em; }\n"
    "#meta, .svcmeta { color: #555; margin-bottom: .4em; }\n"
    "#stale { display: none; background: #c62828; color: #fff; padding: .3em .6em; margin: .5em 0; }\n"
    "table { border-collapse: collapse; background: #fff; min-width: 60em; }\n"
    "th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; white-space: nowrap; }\n"
    "th { background: #e8eaf0; }\n"
    "td.l, th.l { text-align: left; }\n"
    "tr.ready td { background: #e6f4e6; }\n"
    "tr.starting td { background: #fff8d6; }\n"
    "tr.unhealthy td, tr.draining td { background: #ffe6cc; }\n"
    "tr.stopping td, tr.exited td { background: #eee; color: #777; }\n"
    "span.state { font-weight: bold; }\n"
    "span.running { color: #2e7d32; }\n"
    "span.backoff, span.stopping { color: #c62828; }\n"
    "</style>\n"
    "</head>\n"
    "<body>\n"
    "<h1>socketnautd</h1>\n"
    "<div id=\"meta\">loading /status.json&hellip;</div>\n"
    "<div id=\"stale\"></div>\n"
    "<div id=\"services\"></div>\n"
    "<script>\n"
    "\"use strict\";\n"
    "var last = 0;\n"
    "function el(tag, text, cls) {\n"
    "  var e = document.createElement(tag);\n"
    "  if (text !== undefined && text !== null) e.textContent = String(text);\n"
    "  if (cls) e.className = cls;\n"
    "  return e;\n"
    "}\n"
    "function age(s) {\n"
    "  if (s === null || s === undefined) return \"-\";\n"
    "  s = Math.floor(s);\n"
    "  if (s < 60) return s + \"s\";\n"
    "  if (s < 3600) return Math.floor(s / 60) + \"m\" + (s % 60) + \"s\";\n"
    "  if (s < 86400) return Math.floor(s / 3600) + \"h\" + Math.floor(s % 3600 / 60) + \"m\";\n"
    "  return Math.floor(s / 86400) + \"d\" + Math.floor(s % 86400 / 3600) + \"h\";\n"
    "}\n"
    "var cols = [[\"pid\", \"l\"], [\"slot\"], [\"generation\", \"\", \"gen\"], [\"state\", \"l\"],\n"
    "  [\"health\", \"l\"], [\"connections\", \"\", \"conns\"], [\"accepted\"], [\"served\"],\n"
    "  [\"age_s\", \"\", \"age\"], [\"restarts\"], [\"rss_kb\", \"\", \"RSS KiB\"], [\"address\", \"l\"]];\n"
    "function service(s) {\n"
    "  var box = el(\"section\");\n"
    "  box.id = \"service-\" + s.name;\n"
    "  var h = el(\"h2\", \"service \" + s.name + \" \");\n"
    "  h.appendChild(el(\"span\", s.state, \"state \" + s.state));\n"
    "  box.appendChild(h);\n"
    "  box.appendChild(el(\"div\", \"listen \" + s.listen.join(\", \") + \" \\u2022 backend \" +\n"
    "    s.backend + \" \\u2022 generation \" + s.generation + \" \\u2022 workers \" +\n"
    "    s.workers_ready + \" ready / \" + s.workers_online + \" online (min \" +\n"
    "    s.min_workers + \", max \" + s.max_workers + \") \\u2022 connections \" +\n"
    "    s.connections + \" \\u2022 queued \" + s.queued +\n"
    "    (s.max_queue ? \" / \" + s.max_queue : \"\") +\n"
    "    (s.backoff_ms ? \" \\u2022 next start in \" + s.backoff_ms + \"ms\" : \"\"), \"svcmeta\"));\n"
    "  var t = el(\"table\"), hr = el(\"tr\");\n"
    "  cols.forEach(function (c) { hr.appendChild(el(\"th\", c[2] || c[0], c[1])); });\n"
    "  t.appendChild(hr);\n"
    "  s.workers.forEach(function (w) {\n"
    "    var tr = el(\"tr\", null, w.state);\n"
    "    tr.setAttribute(\"data-pid\", w.pid);\n"
    "    cols.forEach(function (c) {\n"
    "      var v = w[c[0]];\n"
    "      if (c[0] === \"age_s\") v = age(v);\n"
    "      if (v === null || v === undefined) v = \"-\";\n"
    "      tr.appendChild(el(\"td\", v, c[1]));\n"
    "    });\n"
    "    t.appendChild(tr);\n"
    "  });\n"
    "  if (s.workers.length === 0) {\n"
    "    var tr = el(\"tr\"), td = el(\"td\", \"no workers\", \"l\");\n"
    "    td.colSpan = cols.length;\n"
    "    tr.appendChild(td);\n"
    "    t.appendChild(tr);\n"
    "  }\n"
    "  box.appendChild(t);\n"
    "  return box;\n"
    "}\n"
    "function render(st) {\n"
    "  var r = st.reloads || {};\n"
    "  document.getElementById(\"meta\").textContent = \"pid \" + st.pid + \" \\u2022 up \" +\n"
    "    age(st.uptime_s) + \" \\u2022 reloads \" + (r.ok || 0) + \" ok, \" + (r.failed || 0) +\n"
    "    \" failed\" + (r.last_result && r.last_result !== \"none\" ? \" (last \" +\n"
    "    r.last_result + \", \" + age(r.last_age_s) + \" ago)\" : \"\") + \" \\u2022 updated \" +\n"
    "    new Date(st.time * 1000).toISOString().replace(\".000\", \"\");\n"
    "  var box = document.getElementById(\"services\");\n"
    "  while (box.firstChild) box.removeChild(box.firstChild);\n"
    "  st.services.forEach(function (s) { box.appendChild(service(s)); });\n"
    "}\n"
    "function stale(msg) {\n"
    "  var s = document.getElementById(\"stale\");\n"
    "  s.textContent = msg;\n"
    "  s.style.display = msg ? \"block\" : \"none\";\n"
    "}\n"
    "function load() {\n"
    "  fetch(\"/status.json\", {cache: \"no-store\"}).then(function (resp) {\n"
    "    if (!resp.ok) throw new Error(\"HTTP \" + resp.status);\n"
    "    return resp.json();\n"
    "  }).then(function (st) {\n"
    "    last = Date.now();\n"
    "    stale(\"\");\n"
    "    render(st);\n"
    "  }).catch(function (e) {\n"
    "    stale(\"cannot reach the daemon (\" + e.message + \")\" + (last ?\n"
    "      \"; what is shown is \" + age((Date.now() - last) / 1000) + \" old\" : \"\"));\n"
    "  });\n"
    "}\n"
    "load();\n"
    "setInterval(load, 2000);\n"
    "</script>\n"
    "</body>\n"
    "</html>\n";

static void
stats_send(struct evhttp_request *req, const char *type, struct evbuffer *b)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", type);
	evhttp_send_reply(req, HTTP_OK, "OK", b);
}

static void
stats_status(struct evhttp_request *req, int json)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer  *b = evbuffer_new();

	if (b == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	if (json) {
		status_json(b);
		stats_send(req, "application/json", b);
	} else {
		evbuffer_add_reference(
		    b, stats_page, sizeof stats_page - 1, NULL, NULL);
		evhttp_add_header(h, "Content-Security-Policy",
		    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'");
		evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
		stats_send(req, "text/html; charset=utf-8", b);
	}
	evbuffer_free(b);
}

/*
 * /health and /health/SERVICE for load balancers: 200 while the service
 * (every service, for /health) has a ready worker, 503 when it has none,
 * stops, or the daemon drains (drain_delay), 404 for an unknown service.
 */
static void
stats_health(struct evhttp_request *req, const char *name)
{
	struct evbuffer *b = evbuffer_new();
	struct service  *svc;
	const char      *why;
	int              code = HTTP_OK, found = 0;

	if (b == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	if (daemon_draining()) {
		code = HTTP_SERVUNAVAIL;
		evbuffer_add_printf(b, "draining\n");
	}
	TAILQ_FOREACH (svc, st.services, entry) {
		if (svc->removed ||
		    (name != NULL && strcmp(name, svc->conf->name) != 0))
			continue;
		found = 1;
		if ((why = service_unavailable(svc)) != NULL)
			code = HTTP_SERVUNAVAIL;
		evbuffer_add_printf(
		    b, "%s: %s\n", svc->conf->name, why != NULL ? why : "ok");
	}
	if (name != NULL && !found) {
		evbuffer_free(b);
		evhttp_send_error(req, HTTP_NOTFOUND, NULL);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; charset=utf-8");
	evhttp_send_reply(
	    req, code, code == HTTP_OK ? "OK" : "Service Unavailable", b);
	evbuffer_free(b);
}

static void
stats_request(struct evhttp_request *req, void *arg)
{
	const char *path;

	(void)arg;
	path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Cache-Control", "no-store");
	if (path == NULL)
		evhttp_send_error(req, HTTP_NOTFOUND, NULL);
	else if (strcmp(path, "/metrics") == 0)
		stats_metrics(req);
	else if (strcmp(path, "/health") == 0)
		stats_health(req, NULL);
	else if (strncmp(path, "/health/", 8) == 0)
		stats_health(req, path + 8);
	else if (strcmp(path, "/status.json") == 0)
		stats_status(req, 1);
	else if (strcmp(path, "/status") == 0)
		stats_status(req, 0);
	else
		evhttp_send_error(req, HTTP_NOTFOUND, NULL);
}

static int
stats_socket(const struct sn_addr *a, char **cause)
{
	int fd, one = 1;

	fd = socket(
	    a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	/* The new master of a binary upgrade binds it before we close it. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1 ||
	    listen(fd, STATS_BACKLOG) == -1)
		goto fail;
	return (fd);
fail:
	*cause =
	    xasprintf("cannot listen on %s: %s", st.listen, strerror(errno));
	if (fd != -1)
		close(fd);
	return (-1);
}

/* Listen on stats_listen, if set. */
int
stats_start(
    const struct sn_config *conf, struct service_head *services, char **cause)
{
	int fd;

	st.services = services;
	if (conf->stats_listen == NULL)
		return (0);
	st.listen = xstrdup(conf->stats_listen);
	if ((fd = stats_socket(&conf->stats_addr, cause)) == -1) {
		stats_stop();
		return (-1);
	}
	if ((st.http = evhttp_new(sn_base)) == NULL ||
	    (st.bound = evhttp_accept_socket_with_handle(st.http, fd)) ==
		NULL) {
		*cause = xasprintf("cannot serve HTTP on %s", st.listen);
		close(fd);
		stats_stop();
		return (-1);
	}
	evhttp_set_allowed_methods(st.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(st.http, STATS_HEADERS_MAX);
	evhttp_set_max_body_size(st.http, STATS_BODY_MAX);
	evhttp_set_timeout(st.http, STATS_TIMEOUT_S);
	evhttp_set_bevcb(st.http, stats_bev, NULL);
	evhttp_set_gencb(st.http, stats_request, NULL);
	listener_guard_init(&st.guard,
	    evhttp_bound_socket_get_listener(st.bound), "stats",
	    stats_accepting);
	log_info("stats: listening on %s", st.listen);
	return (0);
}

/* A reload moved or removed the listener; the same address keeps it. */
int
stats_reload(const struct sn_config *conf, char **cause)
{
	if ((st.listen == NULL && conf->stats_listen == NULL) ||
	    (st.listen != NULL && conf->stats_listen != NULL &&
		strcmp(st.listen, conf->stats_listen) == 0))
		return (0);
	stats_stop();
	return (stats_start(conf, st.services, cause));
}

void
stats_stop(void)
{
	listener_guard_free(&st.guard);
	if (st.http != NULL)
		evhttp_free(st.http);
	st.bound = NULL;
	while (st.nconns > 0)
		bufferevent_decref(st.conns[--st.nconns].bev);
	st.nlive = 0;
	free(st.conns);
	st.conns = NULL;
	if (st.sweep_set)
		event_del(&st.sweep);
	st.sweep_set = 0;
	free(st.listen);
	st.http = NULL;
	st.bound = NULL;
	st.listen = NULL;
}
