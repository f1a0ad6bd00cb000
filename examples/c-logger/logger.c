/*
 * socketnaut-c-logger: a small single-process HTTP worker showing
 * libsocketnaut.  For every request it asks socketnautd for the real
 * client address and port of the relayed connection, logs the request with
 * it through the daemon's log, and answers with it in the body.  It drains
 * when asked: stops accepting, finishes its requests, says so, exits.
 *
 * It listens on the Unix socket path given as its argument ({socket}),
 * else $SOCKETNAUT_SOCKET (backend "unix"), else 127.0.0.1:$PORT (backend
 * "tcp"), else on 127.0.0.1 port 0 and reports the port the kernel chose
 * in its ready message (backend "agent").  Without socketnautd it serves
 * too, and logs to stderr.
 */
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <socketnaut.h>

#define MAX_CONNS 256
#define REQ_MAX   8192
#define QUERY_MS  2000  /* then answer without the client address */
#define CONN_MS   30000 /* a client that never sends a request */

enum conn_state {
	CONN_FREE,
	CONN_READING,
	CONN_QUERYING,
	CONN_WRITING,
};

struct conn {
	enum conn_state state;
	int             fd;
	int64_t         since;
	uint32_t        query;
	char            req[REQ_MAX];
	size_t          reqlen;
	char            out[1024];
	size_t          outlen;
	size_t          outoff;
};

static struct sn_agent *agent;
static struct conn      conns[MAX_CONNS];
static int              listen_fd = -1;
static int              draining;

static void __attribute__((format(printf, 2, 3)))
logmsg(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (agent != NULL)
		sn_agent_vlog(agent, level, fmt, ap);
	else {
		fprintf(stderr, "socketnaut-c-logger[%ld]: ", (long)getpid());
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Listen where socketnautd says; returns the port when it is ours to report. */
static int
listen_on(const char *path, int *port)
{
	struct sockaddr_un sun;
	struct sockaddr_in sin;
	socklen_t          len = sizeof sin;
	const char        *p;
	int                fd;

	*port = 0;
	if (path != NULL) {
		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		if (strlen(path) >= sizeof sun.sun_path) {
			fprintf(stderr, "socket path too long: %s\n", path);
			return (-1);
		}
		strcpy(sun.sun_path, path);
		if ((fd = socket(AF_UNIX,
			 SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
			return (-1);
		unlink(path);
		if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1 ||
		    listen(fd, 128) == -1) {
			fprintf(stderr, "%s: %s\n", path, strerror(errno));
			close(fd);
			return (-1);
		}
		return (fd);
	}
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((p = getenv("PORT")) != NULL)
		sin.sin_port = htons((uint16_t)atoi(p));
	if ((fd = socket(
		 AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		return (-1);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1 ||
	    listen(fd, 128) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) == -1) {
		fprintf(stderr, "127.0.0.1: %s\n", strerror(errno));
		close(fd);
		return (-1);
	}
	if (p == NULL)
		*port = ntohs(sin.sin_port);
	return (fd);
}

static void
conn_close(struct conn *c)
{
	close(c->fd);
	c->fd = -1;
	c->state = CONN_FREE;
}

/* Log the request and queue the answer; info is NULL when unknown. */
static void
conn_answer(struct conn *c, const struct sn_peer_info *info)
{
	char   client[SN_AGENT_ADDRSTRLEN + 16], via[SN_AGENT_ADDRSTRLEN + 16];
	char   body[512];
	size_t mlen, tlen;
	int    n;

	mlen = strcspn(c->req, " \r\n");
	tlen = mlen < c->reqlen ? strcspn(c->req + mlen + 1, " \r\n") : 0;
	if (info != NULL) {
		snprintf(client, sizeof client,
		    info->remote.family == AF_INET6 ? "[%s]:%d" : "%s:%d",
		    info->remote.address, info->remote.port);
		snprintf(via, sizeof via,
		    info->local.family == AF_INET6 ? "[%s]:%d" : "%s:%d",
		    info->local.address, info->local.port);
	} else {
		snprintf(client, sizeof client, "unknown");
		snprintf(via, sizeof via, "unknown");
	}
	logmsg(LOG_INFO, "%.*s %.*s from %s via %s",
	    (int)(mlen > 16 ? 16 : mlen), c->req,
	    (int)(tlen > 200 ? 200 : tlen), c->req + mlen + (mlen < c->reqlen),
	    client, via);
	n = snprintf(body, sizeof body,
	    "your address: %s\nlistener: %s\nworker pid: %ld\n", client, via,
	    (long)getpid());
	n = snprintf(c->out, sizeof c->out,
	    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	    "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
	    n, body);
	c->outlen = (size_t)n < sizeof c->out ? (size_t)n : sizeof c->out - 1;
	c->outoff = 0;
	c->state = CONN_WRITING;
}

static void
on_peer_info(
    struct sn_agent *a, uint32_t id, const struct sn_peer_info *info, void *arg)
{
	int i;

	(void)a;
	(void)arg;
	for (i = 0; i < MAX_CONNS; i++) {
		if (conns[i].state == CONN_QUERYING && conns[i].query == id) {
			conn_answer(&conns[i], info);
			return;
		}
	}
}

static void
on_drain(struct sn_agent *a, void *arg)
{
	(void)a;
	(void)arg;
	draining = 1;
	if (listen_fd != -1) {
		close(listen_fd);
		listen_fd = -1;
	}
}

static void
conn_request(struct conn *c)
{
	if (agent == NULL ||
	    sn_agent_peer_query(agent, c->fd, &c->query) == -1) {
		conn_answer(c, NULL);
		return;
	}
	c->state = CONN_QUERYING;
	c->since = now_ms();
}

static void
conn_read(struct conn *c)
{
	ssize_t n;

	n = recv(c->fd, c->req + c->reqlen, sizeof c->req - 1 - c->reqlen, 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->reqlen += (size_t)n;
	c->req[c->reqlen] = '\0';
	if (strstr(c->req, "\r\n\r\n") != NULL ||
	    strstr(c->req, "\n\n") != NULL || c->reqlen == sizeof c->req - 1)
		conn_request(c);
}

static void
conn_write(struct conn *c)
{
	ssize_t n;

	n = send(
	    c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == -1) {
		conn_close(c);
		return;
	}
	c->outoff += (size_t)n;
	if (c->outoff == c->outlen) {
		shutdown(c->fd, SHUT_WR);
		conn_close(c);
	}
}

static void
accept_all(void)
{
	int fd, i;

	for (;;) {
		fd = accept4(
		    listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1)
			return;
		for (i = 0; i < MAX_CONNS; i++) {
			if (conns[i].state == CONN_FREE)
				break;
		}
		if (i == MAX_CONNS) {
			close(fd);
			continue;
		}
		memset(&conns[i], 0, sizeof conns[i]);
		conns[i].fd = fd;
		conns[i].state = CONN_READING;
		conns[i].since = now_ms();
	}
}

/* Requests whose answer is overdue get one without the client address. */
static void
conns_expire(void)
{
	int64_t now = now_ms();
	int     i;

	for (i = 0; i < MAX_CONNS; i++) {
		if (conns[i].state == CONN_QUERYING &&
		    (agent == NULL || now - conns[i].since > QUERY_MS))
			conn_answer(&conns[i], NULL);
		else if (conns[i].state == CONN_READING &&
		    now - conns[i].since > CONN_MS)
			conn_close(&conns[i]);
	}
}

static int
conns_busy(void)
{
	int i;

	for (i = 0; i < MAX_CONNS; i++) {
		if (conns[i].state != CONN_FREE)
			return (1);
	}
	return (0);
}

int
main(int argc, char **argv)
{
	struct pollfd pfd[MAX_CONNS + 2];
	int           who[MAX_CONNS + 2];
	const char   *path;
	int           n, i, port;

	signal(SIGPIPE, SIG_IGN);
	path = argc > 1 ? argv[1] : getenv("SOCKETNAUT_SOCKET");
	if ((agent = sn_agent_open()) == NULL && errno != ENOENT)
		fprintf(stderr, "control channel: %s\n", strerror(errno));
	sn_agent_set_callbacks(agent, on_peer_info, on_drain, NULL);
	if ((listen_fd = listen_on(path, &port)) == -1)
		return (1);
	/* Backend "agent": the master connects to the port reported here. */
	if ((port != 0 ? sn_agent_ready_port(agent, port)
		       : sn_agent_ready(agent, NULL)) == -1)
		fprintf(stderr, "ready: %s\n", strerror(errno));
	if (port != 0)
		logmsg(LOG_INFO, "listening on 127.0.0.1:%d", port);

	for (;;) {
		if (draining && !conns_busy()) {
			logmsg(LOG_INFO, "drained, exiting");
			sn_agent_drained(agent);
			sn_agent_close(agent);
			return (0);
		}
		n = 0;
		if (agent != NULL) {
			pfd[n].fd = sn_agent_fd(agent);
			pfd[n].events =
			    POLLIN | (sn_agent_want_write(agent) ? POLLOUT : 0);
			who[n++] = -1;
		}
		if (listen_fd != -1) {
			pfd[n].fd = listen_fd;
			pfd[n].events = POLLIN;
			who[n++] = -2;
		}
		for (i = 0; i < MAX_CONNS; i++) {
			if (conns[i].state == CONN_READING ||
			    conns[i].state == CONN_WRITING) {
				pfd[n].fd = conns[i].fd;
				pfd[n].events = conns[i].state == CONN_READING
				    ? POLLIN
				    : POLLOUT;
				who[n++] = i;
			}
		}
		if (poll(pfd, n, 500) == -1 && errno != EINTR) {
			perror("poll");
			return (1);
		}
		for (i = 0; i < n; i++) {
			if (pfd[i].revents == 0)
				continue;
			if (who[i] == -1) {
				if (sn_agent_process(agent) == -1) {
					/* The master went away: serve on. */
					fprintf(stderr, "control channel: %s\n",
					    strerror(errno));
					sn_agent_close(agent);
					agent = NULL;
				}
			} else if (who[i] == -2) {
				if (listen_fd != -1)
					accept_all();
			} else if (conns[who[i]].state == CONN_READING)
				conn_read(&conns[who[i]]);
			else if (conns[who[i]].state == CONN_WRITING)
				conn_write(&conns[who[i]]);
		}
		conns_expire();
	}
}
