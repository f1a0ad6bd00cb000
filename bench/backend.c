/*
 * bench-backend: the HTTP/1.1 server behind every proxy in `make bench`.
 *
 * One process, one thread, epoll (level-triggered), keep-alive, pipelining
 * handled in order.  Routes:
 *
 *   GET  /             a small response (13 bytes of body)
 *   GET  /bytes?n=N    N bytes of body, streamed from a static block
 *   POST /echo         the request body (Content-Length) sent back
 *
 * --delay MS makes the process block (nanosleep, the whole process) MS
 * milliseconds per request before answering, like a busy single-process
 * application server.
 *
 * Listening socket, first match wins:
 *   LISTEN_FDS/LISTEN_PID (socket activation: fd 3)
 *   --socket PATH         a Unix stream socket (an existing path is replaced)
 *   --port N              127.0.0.1:N with SO_REUSEPORT (several processes
 *                         can share the port: the bench's "direct" case)
 *   --handoff             none: socketnautd hands it each client over its
 *                         control channel (mode handoff, libsocketnaut)
 *
 * BENCH_BACKEND_TRACE=FILE (environment, for bench/timeline.py): one line
 * per connection when it closes, appended to FILE: "pid accept first_byte
 * request response_out close requests" in microseconds of CLOCK_REALTIME
 * (0: did not happen), so a burst's per-worker timeline can be drawn.
 *
 * SIGTERM or SIGINT: exit 0 (removing the socket path it created).
 */
#define _GNU_SOURCE

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <socketnaut.h>

#define MAX_HEADER   (16 * 1024)
#define MAX_BODY     (64 * 1024 * 1024)
#define MAX_BYTES    (1ULL << 40)
#define READ_SIZE    (64 * 1024)
#define BLOCK_SIZE   (256 * 1024)
#define MAX_EVENTS   256
#define ACCEPT_BATCH 64
#define SMALL_BODY   "Hello, bench\n"

struct conn {
	int       fd;
	char     *in; /* received, not yet consumed */
	size_t    in_len;
	size_t    in_cap;
	char     *out; /* response head (and echo body) */
	size_t    out_len;
	size_t    out_off;
	uint64_t  stream_left; /* generated body bytes to send */
	int       close_after; /* close once the response is out */
	int       want_out;    /* EPOLLOUT registered */
	int       header;      /* a PROXY header may come first */
	uint32_t  handoff_id;  /* --handoff: reported when it closes */
	long long t_accept;    /* BENCH_BACKEND_TRACE: us, realtime */
	long long t_first;     /* first request byte read */
	long long t_request;   /* last request complete (before the delay) */
	long long t_out;       /* last response fully written */
	unsigned  nreq;
};

static volatile sig_atomic_t stop;
static int                   epfd;
static int                   lfd = -1;
static unsigned              delay_ms;
static char                  block[BLOCK_SIZE];
static int                   is_tcp;
static long long             paused_until;  /* accept paused (EMFILE) */
static int                   proxy_header;  /* --proxy-protocol */
static struct sn_agent      *agent;         /* --handoff */
static int                   trace_fd = -1; /* BENCH_BACKEND_TRACE */

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
die(const char *what)
{
	fprintf(stderr, "bench-backend: %s: %s\n", what, strerror(errno));
	exit(1);
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static long long
now_real_us(void)
{
	struct timespec ts;

	if (trace_fd == -1)
		return (0);
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

static void
trace_conn(const struct conn *c)
{
	char buf[256];
	int  n;

	n = snprintf(buf, sizeof buf, "%ld %lld %lld %lld %lld %lld %u\n",
	    (long)getpid(), c->t_accept, c->t_first, c->t_request, c->t_out,
	    now_real_us(), c->nreq);
	if (n > 0 && (size_t)n < sizeof buf && write(trace_fd, buf, n) != n)
		trace_fd = -1;
}

static void
conn_free(struct conn *c)
{
	if (trace_fd != -1)
		trace_conn(c);
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (agent != NULL)
		sn_agent_handoff_closed(agent, c->handoff_id);
	free(c->in);
	free(c->out);
	free(c);
}

static int
set_events(struct conn *c, int want_out)
{
	struct epoll_event ev;

	if (c->want_out == want_out)
		return (0);
	memset(&ev, 0, sizeof ev);
	ev.events = want_out ? EPOLLOUT : EPOLLIN;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1)
		return (-1);
	c->want_out = want_out;
	return (0);
}

static int
out_append(struct conn *c, const char *data, size_t len)
{
	char *p;

	if (c->out_len + len > SIZE_MAX / 2)
		return (-1);
	p = realloc(c->out, c->out_len + len);
	if (p == NULL)
		return (-1);
	c->out = p;
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	return (0);
}

static int
respond_head(struct conn *c, const char *status, uint64_t length)
{
	char head[256];
	int  n;

	n = snprintf(head, sizeof head,
	    "HTTP/1.1 %s\r\nServer: bench-backend\r\n"
	    "Content-Type: application/octet-stream\r\n"
	    "Content-Length: %llu\r\n%s\r\n",
	    status, (unsigned long long)length,
	    c->close_after ? "Connection: close\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof head)
		return (-1);
	return (out_append(c, head, (size_t)n));
}

/* Header value of NAME in the head [p, end), or NULL; *vlen gets its size. */
static const char *
header(const char *p, const char *end, const char *name, size_t *vlen)
{
	size_t      nlen = strlen(name);
	const char *eol, *v;

	/* skip the request line */
	if ((p = memmem(p, (size_t)(end - p), "\r\n", 2)) == NULL)
		return (NULL);
	p += 2;
	while (p < end) {
		if ((eol = memmem(p, (size_t)(end - p), "\r\n", 2)) == NULL)
			eol = end;
		if ((size_t)(eol - p) > nlen && p[nlen] == ':' &&
		    strncasecmp(p, name, nlen) == 0) {
			v = p + nlen + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*vlen = (size_t)(eol - v);
			while (*vlen > 0 &&
			    (v[*vlen - 1] == ' ' || v[*vlen - 1] == '\t'))
				(*vlen)--;
			return (v);
		}
		p = eol + 2;
	}
	return (NULL);
}

/*
 * Handle one complete request at the start of c->in, if there is one.
 * Returns 1 when a request was handled, 0 when more bytes are needed,
 * -1 to drop the connection.
 */
static int
handle_request(struct conn *c)
{
	const char *end, *sp1, *sp2, *v;
	size_t      head_len, vlen, body_len = 0, path_len;
	char        num[32];
	int         http10;
	uint64_t    n;

	end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
	if (end == NULL)
		return (c->in_len > MAX_HEADER ? -1 : 0);
	head_len = (size_t)(end - c->in) + 4;
	end += 2; /* head without the blank line */

	sp1 = memchr(c->in, ' ', (size_t)(end - c->in));
	if (sp1 == NULL)
		return (-1);
	sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
	if (sp2 == NULL)
		return (-1);
	http10 = (size_t)(end - sp2) > 9 && memcmp(sp2 + 1, "HTTP/1.0", 8) == 0;

	if ((v = header(c->in, end, "Content-Length", &vlen)) != NULL) {
		if (vlen == 0 || vlen >= sizeof num)
			return (-1);
		memcpy(num, v, vlen);
		num[vlen] = '\0';
		errno = 0;
		n = strtoull(num, NULL, 10);
		if (errno != 0 || n > MAX_BODY)
			return (-1);
		body_len = (size_t)n;
	}
	if (c->in_len < head_len + body_len) {
		if (c->in_cap < head_len + body_len) {
			char *p = realloc(c->in, head_len + body_len);
			if (p == NULL)
				return (-1);
			c->in = p;
			c->in_cap = head_len + body_len;
		}
		return (0);
	}

	c->close_after = http10;
	if ((v = header(c->in, end, "Connection", &vlen)) != NULL) {
		if (vlen == 5 && strncasecmp(v, "close", 5) == 0)
			c->close_after = 1;
		else if (vlen == 10 && strncasecmp(v, "keep-alive", 10) == 0)
			c->close_after = 0;
	}

	c->t_request = now_real_us();
	c->nreq++;
	if (delay_ms > 0) {
		struct timespec ts = { delay_ms / 1000,
			(long)(delay_ms % 1000) * 1000000L };
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR && !stop)
			;
	}

	path_len = (size_t)(sp2 - sp1 - 1);
	if ((size_t)(sp1 - c->in) == 3 && memcmp(c->in, "GET", 3) == 0 &&
	    path_len == 1 && sp1[1] == '/') {
		if (respond_head(c, "200 OK", sizeof SMALL_BODY - 1) == -1 ||
		    out_append(c, SMALL_BODY, sizeof SMALL_BODY - 1) == -1)
			return (-1);
	} else if ((size_t)(sp1 - c->in) == 3 && memcmp(c->in, "GET", 3) == 0 &&
	    path_len > 9 && memcmp(sp1 + 1, "/bytes?n=", 9) == 0) {
		vlen = path_len - 9;
		if (vlen >= sizeof num)
			return (-1);
		memcpy(num, sp1 + 10, vlen);
		num[vlen] = '\0';
		errno = 0;
		n = strtoull(num, NULL, 10);
		if (errno != 0 || n > MAX_BYTES)
			return (-1);
		if (respond_head(c, "200 OK", n) == -1)
			return (-1);
		c->stream_left = n;
	} else if ((size_t)(sp1 - c->in) == 4 &&
	    memcmp(c->in, "POST", 4) == 0 && path_len == 5 &&
	    memcmp(sp1 + 1, "/echo", 5) == 0) {
		if (respond_head(c, "200 OK", body_len) == -1 ||
		    out_append(c, c->in + head_len, body_len) == -1)
			return (-1);
	} else {
		if (respond_head(c, "404 Not Found", 0) == -1)
			return (-1);
	}

	memmove(c->in, c->in + head_len + body_len,
	    c->in_len - head_len - body_len);
	c->in_len -= head_len + body_len;
	return (1);
}

/* Send what is pending. Returns 1 when all is out, 0 on EAGAIN, -1 on error. */
static int
flush_out(struct conn *c)
{
	ssize_t n;
	size_t  len;

	while (c->out_off < c->out_len) {
		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
		    MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return (errno == EAGAIN ? 0 : -1);
		}
		c->out_off += (size_t)n;
	}
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	while (c->stream_left > 0) {
		len = c->stream_left < BLOCK_SIZE ? c->stream_left : BLOCK_SIZE;
		n = send(c->fd, block, len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return (errno == EAGAIN ? 0 : -1);
		}
		c->stream_left -= (uint64_t)n;
	}
	return (1);
}

/* Answer every complete request, in order.  -1: drop the connection. */
static int
process(struct conn *c)
{
	int r;

	for (;;) {
		if (c->out_len > 0 || c->stream_left > 0) {
			r = flush_out(c);
			if (r == -1)
				return (-1);
			if (r == 0)
				return (set_events(c, 1));
			if (c->nreq > 0)
				c->t_out = now_real_us();
		}
		if (c->close_after)
			return (-1); /* response out: close */
		if (c->in_len == 0)
			break;
		r = handle_request(c);
		if (r == -1)
			return (-1);
		if (r == 0)
			break;
	}
	if (c->in_len == 0 && c->in != NULL) {
		/* idle connections keep no buffer */
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
	}
	return (set_events(c, 0));
}

/*
 * --proxy-protocol: skip a PROXY header (v1 line or v2 block) at the start
 * of a connection, as a server behind proxy_protocol must; 0 while it is
 * incomplete, -1 when it is malformed.  A connection that starts with
 * anything else has none.
 */
static int
skip_proxy_header(struct conn *c)
{
	static const char sig[12] = "\r\n\r\n\0\r\nQUIT\n";
	const char       *eol;
	size_t            len;

	if (c->in_len >= 16 && memcmp(c->in, sig, sizeof sig) == 0) {
		len = 16 +
		    (((unsigned char)c->in[14] << 8) |
			(unsigned char)c->in[15]);
		if (c->in_len < len)
			return (0);
	} else if (c->in_len >= 6 && memcmp(c->in, "PROXY ", 6) == 0) {
		eol =
		    memmem(c->in, c->in_len < 108 ? c->in_len : 108, "\r\n", 2);
		if (eol == NULL)
			return (c->in_len < 108 ? 0 : -1);
		len = (size_t)(eol - c->in) + 2;
	} else if (c->in_len < 16 &&
	    (memcmp(c->in, sig, c->in_len < 12 ? c->in_len : 12) == 0 ||
		memcmp(c->in, "PROXY ", c->in_len < 6 ? c->in_len : 6) == 0))
		return (0);
	else {
		c->header = 0; /* none: the same backend serves A and B */
		return (1);
	}
	memmove(c->in, c->in + len, c->in_len - len);
	c->in_len -= len;
	c->header = 0;
	return (1);
}

static int
on_readable(struct conn *c)
{
	ssize_t n;
	size_t  room;
	char   *p;

	if (c->in_cap - c->in_len < READ_SIZE / 4) {
		room = c->in_cap < READ_SIZE ? READ_SIZE : c->in_cap * 2;
		if ((p = realloc(c->in, room)) == NULL)
			return (-1);
		c->in = p;
		c->in_cap = room;
	}
	n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
	if (n == 0)
		return (-1);
	if (n == -1)
		return (errno == EAGAIN || errno == EINTR ? 0 : -1);
	if (c->t_first == 0)
		c->t_first = now_real_us();
	c->in_len += (size_t)n;
	if (c->header && (n = skip_proxy_header(c)) <= 0)
		return ((int)n);
	return (process(c));
}

static void
accept_some(void)
{
	struct epoll_event ev;
	struct conn       *c;
	int                fd, i, one = 1;

	uint32_t id = 0;

	for (i = 0; i < ACCEPT_BATCH; i++) {
		if (agent != NULL) {
			/* socketnautd handed us the client (mode handoff). */
			if ((fd = sn_agent_accept(agent, NULL, &id)) == -1) {
				if (errno != EAGAIN)
					die("sn_agent_accept");
				return;
			}
		} else
			fd = accept4(
			    lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* pause accepting for 100 ms */
				epoll_ctl(epfd, EPOLL_CTL_DEL, lfd, NULL);
				paused_until = now_ms() + 100;
			}
			return;
		}
		if (is_tcp)
			setsockopt(
			    fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if ((c = calloc(1, sizeof *c)) == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->t_accept = now_real_us();
		c->header = proxy_header;
		c->handoff_id = id;
		memset(&ev, 0, sizeof ev);
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
			close(fd);
			free(c);
		}
	}
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: bench-backend [--delay MS] [--proxy-protocol] "
	    "(--socket PATH | --port N | --handoff | socket activation)\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = { { "socket", required_argument,
						  NULL, 's' },
		{ "port", required_argument, NULL, 'p' },
		{ "delay", required_argument, NULL, 'd' },
		{ "proxy-protocol", no_argument, NULL, 'P' },
		{ "handoff", no_argument, NULL, 'H' }, { NULL, 0, NULL, 0 } };
	struct epoll_event         ev, evs[MAX_EVENTS];
	struct sigaction           sa;
	struct rlimit              rl;
	const char                *path = NULL, *s;
	char                      *endp;
	long                       port = -1, v;
	int                        ch, i, n, one = 1, timeout;
	int                        made_path = 0, handoff = 0;

	while ((ch = getopt_long(argc, argv, "s:p:d:H", opts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			handoff = 1;
			break;
		case 's':
			path = optarg;
			break;
		case 'p':
			port = strtol(optarg, &endp, 10);
			if (*endp != '\0' || port < 1 || port > 65535)
				usage();
			break;
		case 'P':
			proxy_header = 1;
			break;
		case 'd':
			v = strtol(optarg, &endp, 10);
			if (*endp != '\0' || v < 0 || v > 60000)
				usage();
			delay_ms = (unsigned)v;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	memset(block, 'x', sizeof block);
	if ((s = getenv("BENCH_BACKEND_TRACE")) != NULL && *s != '\0')
		trace_fd =
		    open(s, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	if (handoff) {
		/* No listener: the control channel brings the clients. */
		if ((agent = sn_agent_open()) == NULL)
			die("sn_agent_open");
		lfd = sn_agent_fd(agent);
	} else if ((s = getenv("LISTEN_FDS")) != NULL && atoi(s) >= 1 &&
	    (getenv("LISTEN_PID") == NULL ||
		atol(getenv("LISTEN_PID")) == (long)getpid())) {
		lfd = 3;
		fcntl(lfd, F_SETFD, FD_CLOEXEC);
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDNAMES");
	} else if (path != NULL) {
		struct sockaddr_un sun;

		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		if (strlen(path) >= sizeof sun.sun_path) {
			fprintf(
			    stderr, "bench-backend: socket path too long\n");
			return (1);
		}
		strcpy(sun.sun_path, path);
		lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (lfd == -1)
			die("socket");
		unlink(path);
		if (bind(lfd, (struct sockaddr *)&sun, sizeof sun) == -1)
			die("bind");
		made_path = 1;
		if (listen(lfd, 4096) == -1)
			die("listen");
	} else if (port > 0) {
		struct sockaddr_in sin;

		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)port);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (lfd == -1)
			die("socket");
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (setsockopt(
			lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == -1)
			die("SO_REUSEPORT");
		if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) == -1)
			die("bind");
		if (listen(lfd, 4096) == -1)
			die("listen");
		is_tcp = 1;
	} else
		usage();
	if (fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) == -1)
		die("fcntl");

	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		die("epoll_create1");
	memset(&ev, 0, sizeof ev);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) == -1)
		die("epoll_ctl");
	if (agent != NULL && sn_agent_ready(agent, NULL) == -1)
		die("sn_agent_ready");

	while (!stop) {
		timeout = -1;
		if (paused_until != 0) {
			long long left = paused_until - now_ms();
			if (left <= 0) {
				paused_until = 0;
				memset(&ev, 0, sizeof ev);
				ev.events = EPOLLIN;
				ev.data.ptr = NULL;
				epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
			} else
				timeout = (int)left;
		}
		n = epoll_wait(epfd, evs, MAX_EVENTS, timeout);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			int          r;

			if (c == NULL) {
				accept_some();
				continue;
			}
			if (c->want_out)
				r = (evs[i].events &
					(EPOLLOUT | EPOLLERR | EPOLLHUP))
				    ? process(c)
				    : 0;
			else
				r = on_readable(c);
			if (r == -1)
				conn_free(c);
		}
	}
	if (made_path)
		unlink(path);
	return (0);
}
