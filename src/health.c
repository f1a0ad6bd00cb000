/*
 * Active checks, as HAProxy's `check inter rise fall`: every interval each
 * ready or unhealthy worker gets a TCP connect, or an HTTP request whose
 * status must match.  `fall` failures in a row take it out of rotation,
 * `rise` passes in a row bring it back.  The verdict is the worker's to
 * apply (worker_check_result); this file only gathers the evidence.
 */
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health.h"
#include "log.h"
#include "proxy.h"
#include "service.h"
#include "socketnautd.h"
#include "worker.h"

#define HEALTH_REPLY_MAX 128 /* enough for "HTTP/1.1 200 ..." */

struct health {
	struct worker *w;
	struct sn_health_conf
		     conf; /* as the worker started: reloads leave it */
	int          fd;
	int          passes;   /* in a row */
	int          failures; /* in a row */
	size_t       sent;
	size_t       got;
	char         reply[HEALTH_REPLY_MAX];
	char        *request;
	size_t       reqlen;
	struct event io;
	struct event timer;
};

static void health_run(evutil_socket_t, short, void *);
static void health_io(evutil_socket_t, short, void *);

static const struct sn_health_conf *
health_conf(const struct health *h)
{
	return (&h->conf);
}

/* Wait for what the check needs next, within the check's timeout. */
static void
health_wait(struct health *h, short what)
{
	const struct sn_health_conf *hc = health_conf(h);
	struct timeval               tv;

	if (event_initialized(&h->io))
		event_del(&h->io);
	event_assign(&h->io, sn_base, h->fd, what | EV_PERSIST, health_io, h);
	tv.tv_sec = hc->timeout / 1000;
	tv.tv_usec = (hc->timeout % 1000) * 1000;
	event_add(&h->io, &tv);
}

static void
health_schedule(struct health *h, long long ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(&h->timer, &tv);
}

static void
health_close(struct health *h)
{
	if (h->fd == -1)
		return;
	if (event_initialized(&h->io))
		event_del(&h->io);
	close(h->fd);
	h->fd = -1;
}

/* One check is over: count it, tell the worker when rise or fall is reached. */
static void
health_done(struct health *h, int ok, const char *why)
{
	const struct sn_health_conf *hc = health_conf(h);
	struct worker               *w = h->w;
	char                         msg[160];

	health_close(h);
	health_schedule(h, hc->interval);
	if (ok) {
		h->failures = 0;
		if (h->passes < hc->rise)
			h->passes++;
		if (h->passes >= hc->rise && w->state == WORKER_UNHEALTHY) {
			snprintf(msg, sizeof msg, "%d check%s passed",
			    h->passes, h->passes == 1 ? "" : "s");
			worker_check_result(w, 1, msg);
		}
		return;
	}
	h->passes = 0;
	if (h->failures < hc->fall)
		h->failures++;
	if (h->failures >= hc->fall && w->state == WORKER_READY) {
		snprintf(msg, sizeof msg, "%d check%s failed, last: %s",
		    h->failures, h->failures == 1 ? "" : "s", why);
		worker_check_result(w, 0, msg);
	} else if (h->failures < hc->fall)
		worker_log(LOG_DEBUG, w, "health check failed: %s", why);
}

/* "HTTP/1.x NNN": the status, or -1 when the reply is not HTTP. */
static int
health_status(const char *reply, size_t len)
{
	int status;

	if (len < 12 || strncmp(reply, "HTTP/1.", 7) != 0 || reply[8] != ' ')
		return (-1);
	if (sscanf(reply + 9, "%3d", &status) != 1)
		return (-1);
	return (status);
}

static void
health_read(struct health *h)
{
	char    why[64];
	ssize_t n;
	int     status;

	n = read(h->fd, h->reply + h->got, sizeof h->reply - 1 - h->got);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0)
		h->got += n;
	if (n > 0 && h->got < 12 && h->got < sizeof h->reply - 1)
		return;
	if (n == -1) {
		health_done(h, 0, strerror(errno));
		return;
	}
	h->reply[h->got] = '\0';
	if ((status = health_status(h->reply, h->got)) == -1) {
		health_done(h, 0, "not an HTTP reply");
		return;
	}
	snprintf(why, sizeof why, "status %d, expected %d", status,
	    health_conf(h)->expect);
	health_done(h, status == health_conf(h)->expect, why);
}

static void
health_io(evutil_socket_t fd, short events, void *arg)
{
	struct health *h = arg;
	socklen_t      len = sizeof(int);
	ssize_t        n;
	int            error = 0;

	if (events & EV_TIMEOUT) {
		health_done(h, 0, "timed out");
		return;
	}
	if (h->sent == 0 && (events & EV_WRITE)) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == -1)
			error = errno;
		if (error != 0) {
			health_done(h, 0, strerror(error));
			return;
		}
		if (h->reqlen == 0) {
			health_done(h, 1, "connected");
			return;
		}
	}
	if (h->sent < h->reqlen) {
		n = send(fd, h->request + h->sent, h->reqlen - h->sent,
		    MSG_NOSIGNAL);
		if (n == -1 && errno != EAGAIN && errno != EINTR) {
			health_done(h, 0, strerror(errno));
			return;
		}
		if (n > 0)
			h->sent += n;
		if (h->sent == h->reqlen && !health_conf(h)->http)
			health_done(h, 1, "connected");
		else if (h->sent == h->reqlen)
			health_wait(h, EV_READ);
		return;
	}
	if (events & EV_READ)
		health_read(h);
}

/* Start one check: connect, then (http) send the request and read the status.
 */
static void
health_run(evutil_socket_t unused, short events, void *arg)
{
	struct health               *h = arg;
	const struct sn_health_conf *hc = health_conf(h);
	struct worker               *w = h->w;

	(void)unused;
	(void)events;
	health_close(h);
	h->sent = h->got = 0;
	h->fd = socket(w->addr.ss.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd == -1) {
		/* Our problem (fds), not the worker's: try again later. */
		health_schedule(h, hc->interval);
		return;
	}
	if (connect(h->fd, (struct sockaddr *)&w->addr.ss, w->addr.len) == -1 &&
	    errno != EINPROGRESS) {
		health_done(h, 0, strerror(errno));
		return;
	}
	health_wait(h, EV_WRITE);
}

/*
 * What a check sends first when the service speaks PROXY to its workers,
 * so that a worker requiring the header takes the check: v2 LOCAL (our
 * own connection); for v1 a TCP4 line from this host to itself, ports 0,
 * since some servers (gunicorn) refuse "PROXY UNKNOWN".
 */
static ssize_t
health_proxy_header(enum proxy_version v, char *out, size_t len)
{
	struct sockaddr_in lo;

	if (v == PROXY_OFF)
		return (0);
	if (v == PROXY_V2)
		return (proxy_encode(out, len, v, NULL, NULL, NULL, 0));
	memset(&lo, 0, sizeof lo);
	lo.sin_family = AF_INET;
	lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return (proxy_encode(out, len, v, (struct sockaddr *)&lo,
	    (struct sockaddr *)&lo, NULL, 0));
}

/* The worker is ready: check it every interval from now on. */
void
health_start(struct worker *w)
{
	const struct sn_health_conf *hc = &w->svc->conf->health;
	struct health               *h;
	char                         hdr[PROXY_OUT_MAX], *http = NULL;
	ssize_t                      hlen;
	size_t                       len = 0;

	if (!hc->enabled || w->health != NULL)
		return;
	h = xcalloc(1, sizeof *h);
	h->w = w;
	h->conf = *hc;
	h->conf.path = NULL; /* only the request below uses it */
	h->fd = -1;
	hlen =
	    health_proxy_header(w->svc->conf->proxy_protocol, hdr, sizeof hdr);
	if (hlen < 0)
		hlen = 0;
	if (hc->http) {
		http = xasprintf(
		    "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: socketnautd-health-check\r\nConnection: close\r\n\r\n",
		    hc->path);
		len = strlen(http);
	}
	if (hlen + len > 0) {
		h->request = xcalloc(1, hlen + len);
		memcpy(h->request, hdr, hlen);
		if (len > 0)
			memcpy(h->request + hlen, http, len);
		h->reqlen = hlen + len;
	}
	free(http);
	evtimer_assign(&h->timer, sn_base, health_run, h);
	health_schedule(h, hc->interval);
	w->health = h;
}

/* Out of rotation on other evidence: passes before it do not count. */
void
health_reset(struct worker *w)
{
	if (w->health != NULL)
		w->health->passes = w->health->failures = 0;
}

void
health_stop(struct worker *w)
{
	struct health *h = w->health;

	if (h == NULL)
		return;
	health_close(h);
	event_del(&h->timer);
	free(h->request);
	free(h);
	w->health = NULL;
}
