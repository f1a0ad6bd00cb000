/*
 * socketnaut-handoff-worker: a small HTTP/1.1 worker for services in mode
 * handoff, showing sn_agent_accept in an epoll loop.  socketnautd hands it
 * each client's socket over the control channel; it answers every request
 * with its pid and the client's peers (as the master told them, as
 * sn_agent_peer_info tells them, and as getpeername sees them), keeps the
 * connection alive unless asked not to, and reports each close.  "/hang"
 * is never answered.  On drain it finishes its connections, says so and
 * exits.
 *
 * For tests: SN_HANDOFF_STOP_READING=SLOT:N makes the worker of that slot
 * stop reading its control channel after N connections, as a worker stuck
 * in a long computation would.
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <socketnaut.h>

#define MAX_CONNS 1024
#define REQ_MAX   8192

struct conn {
	int                 fd; /* -1: free */
	uint32_t            id;
	struct sn_peer_info peer;
	char                req[REQ_MAX];
	size_t              reqlen;
	int                 hang;
};

static struct sn_agent *agent;
static struct conn      conns[MAX_CONNS];
static int              ep = -1, draining, nconns, reading = 1;
static long long        drain_at; /* ms */

#define DRAIN_IDLE_MS 1000

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}
static long accepted, stop_reading = -1;

static void
conn_close(struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	nconns--;
	/* The master counts it against us until we say it closed. */
	if (sn_agent_handoff_closed(agent, c->id) == -1)
		fprintf(stderr, "handoff-worker: report close: %s\n",
		    strerror(errno));
}

static void
peer_str(const struct sn_peer_addr *p, char *buf, size_t len)
{
	snprintf(buf, len, p->family == AF_INET6 ? "[%s]:%d" : "%s:%d",
	    p->address, p->port);
}

/* Answer one request; returns 1 to keep the connection open. */
static int
conn_answer(struct conn *c, int keep)
{
	struct sockaddr_storage ss;
	struct sn_peer_info     pi;
	socklen_t               sl = sizeof ss;
	char body[1024], hdr[256], remote[96], local[96], asked[96], seen[96];
	char host[INET6_ADDRSTRLEN];
	int  n, m, port = 0;

	peer_str(&c->peer.remote, remote, sizeof remote);
	peer_str(&c->peer.local, local, sizeof local);
	if (sn_agent_peer_info(agent, c->fd, &pi, 1000) == 0)
		peer_str(&pi.remote, asked, sizeof asked);
	else
		snprintf(asked, sizeof asked, "unknown");
	host[0] = '\0';
	if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			inet_ntop(AF_INET,
			    &((struct sockaddr_in *)&ss)->sin_addr, host,
			    sizeof host);
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			inet_ntop(AF_INET6,
			    &((struct sockaddr_in6 *)&ss)->sin6_addr, host,
			    sizeof host);
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	}
	snprintf(seen, sizeof seen, "%s:%d", host, port);
	n = snprintf(body, sizeof body,
	    "pid=%ld id=%lu remote=%s local=%s asked=%s getpeername=%s\n",
	    (long)getpid(), (unsigned long)c->id, remote, local, asked, seen);
	keep = keep && !draining;
	m = snprintf(hdr, sizeof hdr,
	    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n",
	    n, keep ? "" : "Connection: close\r\n");
	/* Small answers: the socket buffer takes them whole. */
	if (write(c->fd, hdr, (size_t)m) != m ||
	    write(c->fd, body, (size_t)n) != n)
		return (0);
	return (keep);
}

static void
conn_read(struct conn *c)
{
	char   *end;
	ssize_t n;
	size_t  used;
	int     keep;

	for (;;) {
		n = read(c->fd, c->req + c->reqlen, sizeof c->req - c->reqlen);
		if (n == -1 && errno == EAGAIN)
			break;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		c->reqlen += (size_t)n;
		while (!c->hang &&
		    (end = memmem(c->req, c->reqlen, "\r\n\r\n", 4)) != NULL) {
			used = (size_t)(end - c->req) + 4;
			*end = '\0';
			if (strncmp(c->req, "GET /hang ", 10) == 0) {
				c->hang = 1;
				break;
			}
			keep =
			    strcasestr(c->req, "connection: close") == NULL &&
			    strstr(c->req, "HTTP/1.0") == NULL;
			memmove(c->req, c->req + used, c->reqlen - used);
			c->reqlen -= used;
			if (!conn_answer(c, keep)) {
				conn_close(c);
				return;
			}
		}
		if (c->reqlen == sizeof c->req) {
			conn_close(c);
			return;
		}
	}
}

static void
take_connections(void)
{
	struct epoll_event ev;
	struct conn       *c;
	int                fd, i;

	while (reading) {
		struct sn_peer_info pi;
		uint32_t            id;

		if ((fd = sn_agent_accept(agent, &pi, &id)) == -1) {
			if (errno != EAGAIN) {
				fprintf(stderr, "handoff-worker: accept: %s\n",
				    strerror(errno));
				exit(1);
			}
			return;
		}
		for (i = 0; i < MAX_CONNS && conns[i].fd != -1; i++)
			;
		if (i == MAX_CONNS) {
			close(fd);
			sn_agent_handoff_closed(agent, id);
			continue;
		}
		c = &conns[i];
		memset(c, 0, sizeof *c);
		c->fd = fd;
		c->id = id;
		c->peer = pi;
		nconns++;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		if (++accepted == stop_reading) {
			epoll_ctl(ep, EPOLL_CTL_DEL, sn_agent_fd(agent), NULL);
			reading = 0;
		}
	}
}

static void
on_drain(struct sn_agent *a, void *arg)
{
	int i;

	(void)a;
	(void)arg;
	draining = 1;
	drain_at = now_ms();
	(void)i;
}

/*
 * Draining: each connection's next answer says Connection: close; one
 * that stays idle for DRAIN_IDLE_MS is closed then (closing it at once
 * could cross a request already on its way: a failed request for it).
 */
static void
close_idle(void)
{
	int i;

	if (!draining || now_ms() - drain_at < DRAIN_IDLE_MS)
		return;
	for (i = 0; i < MAX_CONNS; i++) {
		if (conns[i].fd != -1 && conns[i].reqlen == 0 && !conns[i].hang)
			conn_close(&conns[i]);
	}
}

int
main(void)
{
	struct epoll_event ev, evs[64];
	const char        *s, *w;
	char              *end;
	int                i, n;

	if ((agent = sn_agent_open()) == NULL) {
		fprintf(stderr, "handoff-worker: no control channel: %s\n",
		    strerror(errno));
		return (1);
	}
	/* "SLOT:N": the worker of that slot only. */
	if ((s = getenv("SN_HANDOFF_STOP_READING")) != NULL &&
	    (w = getenv("SOCKETNAUT_WORKER")) != NULL &&
	    strtol(s, &end, 10) == strtol(w, NULL, 10) && *end == ':')
		stop_reading = strtol(end + 1, NULL, 10);
	for (i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;
	sn_agent_set_callbacks(agent, NULL, on_drain, NULL);
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		return (1);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, sn_agent_fd(agent), &ev);
	if (sn_agent_ready(agent, NULL) == -1)
		return (1);
	while (!draining || nconns > 0) {
		n = epoll_wait(ep, evs, 64, draining ? 100 : -1);
		for (i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL) {
				if (reading && sn_agent_process(agent) == -1)
					return (1);
				take_connections();
			} else
				conn_read(evs[i].data.ptr);
		}
		if (sn_agent_want_write(agent))
			sn_agent_flush(agent, 1000);
		close_idle();
	}
	sn_agent_drained(agent);
	sn_agent_close(agent);
	return (0);
}
