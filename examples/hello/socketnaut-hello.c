/*
 * socketnaut-hello: the example worker bundled with socketnautd.  A small
 * single-process, single-threaded HTTP/1.1 server, the kind socketnautd
 * scales, with a few routes that integration tests use to make slow, large,
 * dripping or crashing responses.  It listens on the socket systemd-style
 * activation passes as fd 3, else on a Unix socket (--socket, or
 * $SOCKETNAUT_SOCKET), else on 127.0.0.1 (--port, or $PORT).
 */
#define _GNU_SOURCE

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADER      (16 * 1024)
#define MAX_BODY        (64ULL * 1024 * 1024)
#define MAX_STREAM      (1024ULL * 1024 * 1024)
#define MAX_MS          3600000ULL
#define READ_SIZE       (64 * 1024)
#define CHUNK_SIZE      (64 * 1024)
#define WRITE_TURN      (1024 * 1024) /* per connection and round */
#define KEEP_BUFFER     (1024 * 1024) /* larger idle buffers go */
#define ACCEPT_BATCH    64
#define ACCEPT_PAUSE_NS (100 * 1000000LL)
#define LINGER_NS       (2000 * 1000000LL)

struct buf {
	char  *data;
	size_t len;
	size_t cap;
};

struct conn {
	int        fd;
	struct buf in;
	size_t     need;      /* length of this request */
	int        continued; /* "100 Continue" sent for it */
	struct buf out;
	size_t     out_off;
	uint64_t   stream_left; /* generated body yet to send */
	uint64_t   stream_pos;
	int        drip;
	unsigned   drip_ms;
	int        drip_wait;
	int        eof;
	int        close_after;
	int64_t    linger_until; /* set once half-closed */
};

struct request {
	char        method[16];
	char        target[4096];
	size_t      path_len;
	const char *query;
	int         minor;
	int         head_only;
	int         has_length;
	uint64_t    length;
	int         chunked;
	int         expect_continue;
	int         conn_close;
	int         conn_keepalive;
};

static volatile sig_atomic_t quit;
static sigset_t              waitmask;
static int                   verbose;
static unsigned              delay_ms;
static const char           *worker = "-";
static long                  mypid;
static int                   test_routes; /* HELLO_TEST_ROUTES=1 */
static char                  pattern[CHUNK_SIZE + 26];
static struct conn         **conns;
static size_t                nconns;

static void __attribute__((format(printf, 1, 2))) logmsg(const char *fmt, ...)
{
	char    line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	/* One write per line, so lines of workers sharing stderr never mix. */
	fprintf(stderr, "socketnaut-hello: worker %s pid %ld: %s\n", worker,
	    mypid, line);
}

static void
on_signal(int sig)
{
	(void)sig;
	quit = 1;
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
}

/* Blocks the whole process as a busy server would; SIGTERM cuts it short. */
static void
sleep_ms(unsigned ms)
{
	int64_t         end = now_ns() + (int64_t)ms * 1000000, left;
	struct timespec ts;

	while (!quit && (left = end - now_ns()) > 0) {
		ts.tv_sec = left / 1000000000;
		ts.tv_nsec = left % 1000000000;
		ppoll(NULL, 0, &ts, &waitmask);
	}
}

/* Parses a plain decimal number no greater than max. */
static int
parse_number(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t n = 0;

	if (*s == '\0')
		return (-1);
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || n > max / 10 ||
		    n * 10 + (*s - '0') > max)
			return (-1);
		n = n * 10 + (*s - '0');
	}
	*out = n;
	return (0);
}

static int
buf_reserve(struct buf *b, size_t extra)
{
	size_t cap;
	char  *p;

	if (b->cap - b->len >= extra)
		return (0);
	cap = b->cap * 2;
	if (cap < b->len + extra)
		cap = b->len + extra;
	if ((p = realloc(b->data, cap)) == NULL)
		return (-1);
	b->data = p;
	b->cap = cap;
	return (0);
}

static int
buf_add(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) == -1)
		return (-1);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return (0);
}

/* Empties a buffer, giving back memory a large request or reply took. */
static void
buf_clear(struct buf *b)
{
	b->len = 0;
	if (b->cap > KEEP_BUFFER) {
		free(b->data);
		b->data = NULL;
		b->cap = 0;
	}
}

/* A character allowed in an HTTP token (RFC 9110 tchar). */
static int
is_tchar(int c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL));
}

/* Compares a counted string with a word, ignoring case. */
static int
token_is(const char *p, size_t len, const char *word)
{
	return (len == strlen(word) && strncasecmp(p, word, len) == 0);
}

/* Notes the close and keep-alive options of a Connection header. */
static void
http_connection(struct request *req, const char *p, size_t len)
{
	const char *end = p + len, *tok;

	while (p < end) {
		while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
			p++;
		for (tok = p; p < end && *p != ',' && *p != ' ' && *p != '\t';
		     p++)
			;
		if (token_is(tok, p - tok, "close"))
			req->conn_close = 1;
		else if (token_is(tok, p - tok, "keep-alive"))
			req->conn_keepalive = 1;
	}
}

/* Applies one header field; returns an error status or 0. */
static int
http_header(struct request *req, const char *name, size_t nlen, const char *v,
    size_t vlen)
{
	uint64_t n = 0;
	size_t   i;

	if (token_is(name, nlen, "content-length")) {
		if (vlen == 0)
			return (400);
		for (i = 0; i < vlen; i++) {
			if (v[i] < '0' || v[i] > '9')
				return (400);
			if (n <= MAX_BODY)
				n = n * 10 + (v[i] - '0');
		}
		if (req->has_length && req->length != n)
			return (400);
		req->has_length = 1;
		req->length = n;
		return (n > MAX_BODY ? 413 : 0);
	}
	if (token_is(name, nlen, "transfer-encoding"))
		req->chunked = 1;
	else if (token_is(name, nlen, "connection"))
		http_connection(req, v, vlen);
	else if (token_is(name, nlen, "expect") &&
	    token_is(v, vlen, "100-continue"))
		req->expect_continue = 1;
	return (0);
}

/* Parses the request line and CRLF-ended fields; returns an error status. */
static int
http_parse(const char *p, size_t len, struct request *req)
{
	const char *end = p + len, *eol, *sp, *colon, *v, *ve;
	size_t      n;
	int         status;

	memset(req, 0, sizeof *req);
	eol = memmem(p, end - p, "\r\n", 2);
	if ((sp = memchr(p, ' ', eol - p)) == NULL)
		return (400);
	if ((n = sp - p) == 0 || n >= sizeof req->method)
		return (400);
	for (v = p; v < sp; v++)
		if (!is_tchar((unsigned char)*v))
			return (400);
	memcpy(req->method, p, n);
	req->head_only = strcmp(req->method, "HEAD") == 0;

	p = sp + 1;
	if ((sp = memchr(p, ' ', eol - p)) == NULL || *p != '/')
		return (400);
	if ((n = sp - p) >= sizeof req->target)
		return (414);
	for (v = p; v < sp; v++)
		if ((unsigned char)*v <= ' ' || (unsigned char)*v >= 0x7f)
			return (400);
	memcpy(req->target, p, n);
	req->path_len = strcspn(req->target, "?");
	req->query = req->target + req->path_len;
	if (*req->query == '?')
		req->query++;

	p = sp + 1;
	if (eol - p != 8 || strncmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' ||
	    p[7] > '9')
		return (400);
	req->minor = p[7] - '0';

	for (p = eol + 2; p < end; p = eol + 2) {
		eol = memmem(p, end - p, "\r\n", 2);
		if ((colon = memchr(p, ':', eol - p)) == NULL || colon == p)
			return (400);
		for (v = p; v < colon; v++)
			if (!is_tchar((unsigned char)*v))
				return (400);
		for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t');)
			ve--;
		for (sp = v; sp < ve; sp++)
			if (((unsigned char)*sp < ' ' && *sp != '\t') ||
			    *sp == 0x7f)
				return (400);
		if ((status = http_header(req, p, colon - p, v, ve - v)) != 0)
			return (status);
	}
	return (0);
}

/* Finds name=value in the query string; without URL decoding. */
static int
query_get(const char *q, const char *name, char *val, size_t size)
{
	const char *end, *eq;
	size_t      len;

	for (; *q != '\0'; q = *end != '\0' ? end + 1 : end) {
		end = strchrnul(q, '&');
		if ((eq = memchr(q, '=', end - q)) == NULL)
			eq = end;
		if ((size_t)(eq - q) != strlen(name) ||
		    strncmp(q, name, eq - q) != 0)
			continue;
		len = eq < end ? end - eq - 1 : 0;
		if (len >= size)
			return (-1);
		memcpy(val, eq + 1, len);
		val[len] = '\0';
		return (0);
	}
	return (-1);
}

static int
query_number(const char *q, const char *name, uint64_t max, uint64_t *n)
{
	char val[32];

	if (query_get(q, name, val, sizeof val) == -1)
		return (-1);
	return (parse_number(val, max, n));
}

static const char *
status_text(int status)
{
	static const struct {
		int         status;
		const char *text;
	} texts[] = {
		{ 200, "OK" },
		{ 400, "Bad Request" },
		{ 404, "Not Found" },
		{ 411, "Length Required" },
		{ 413, "Content Too Large" },
		{ 414, "URI Too Long" },
		{ 431, "Request Header Fields Too Large" },
	};
	size_t i;

	for (i = 0; i < sizeof texts / sizeof texts[0]; i++)
		if (texts[i].status == status)
			return (texts[i].text);
	return ("Internal Server Error");
}

/* Queues the status line and header of a reply whose body is len bytes. */
static int
respond_head(
    struct conn *c, const struct request *req, int status, uint64_t len)
{
	const char *connection = "";
	char        head[256];
	int         n;

	if (c->close_after)
		connection = "Connection: close\r\n";
	else if (req->minor == 0)
		connection = "Connection: keep-alive\r\n";
	if (verbose)
		logmsg("%s %s %d %" PRIu64, req->method[0] ? req->method : "-",
		    req->target[0] ? req->target : "-", status, len);
	n = snprintf(head, sizeof head,
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: text/plain\r\n"
	    "Content-Length: %" PRIu64 "\r\n%s\r\n",
	    status, status_text(status), len, connection);
	return (buf_add(&c->out, head, n));
}

/* Queues a whole reply; returns 1, or -1 when memory runs out. */
static int
respond(struct conn *c, const struct request *req, int status, const char *body,
    size_t len)
{
	if (respond_head(c, req, status, len) == -1)
		return (-1);
	if (!req->head_only && buf_add(&c->out, body, len) == -1)
		return (-1);
	return (1);
}

static int __attribute__((format(printf, 4, 5))) respond_text(
    struct conn *c, const struct request *req, int status, const char *fmt, ...)
{
	char   *text;
	va_list ap;
	int     n;

	va_start(ap, fmt);
	n = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (n == -1)
		return (-1);
	n = respond(c, req, status, text, n);
	free(text);
	return (n);
}

/* Queues a reply whose body of n bytes is generated as it is sent. */
static int
respond_stream(struct conn *c, const struct request *req, uint64_t n, int drip,
    unsigned drip_ms)
{
	if (respond_head(c, req, 200, n) == -1)
		return (-1);
	c->stream_left = req->head_only ? 0 : n;
	c->stream_pos = 0;
	c->drip = drip;
	c->drip_ms = drip_ms;
	c->drip_wait = 1;
	return (1);
}

/* Replies to a request that cannot be answered, then hangs up. */
static int
respond_error(struct conn *c, const struct request *req, int status)
{
	c->close_after = 1;
	return (respond_text(c, req, status, "%s\n", status_text(status)));
}

static int
path_is(const struct request *req, const char *path)
{
	return (req->path_len == strlen(path) &&
	    strncmp(req->target, path, req->path_len) == 0);
}

/* Answers one complete request; returns 1, or -1 when memory runs out. */
static int
route(struct conn *c, const struct request *req, const char *body, size_t len)
{
	const char *q = req->query, *value;
	char        name[256];
	uint64_t    n, ms;
	int         get;

	if (req->minor >= 1)
		c->close_after = req->conn_close;
	else
		c->close_after = !req->conn_keepalive || req->conn_close;
	get = strcmp(req->method, "GET") == 0 || req->head_only;
	if (get && test_routes && path_is(req, "/exit") &&
	    query_number(q, "code", 255, &n) == 0)
		_exit((int)n);
	sleep_ms(delay_ms);

	if (strcmp(req->method, "POST") == 0)
		return (respond(c, req, 200, body, len));
	if (!get)
		return (respond_text(c, req, 404, "not found\n"));
	if (path_is(req, "/"))
		return (respond_text(c, req, 200,
		    "Hello, World! worker %s pid %ld\n", worker, mypid));
	if (path_is(req, "/pid"))
		return (respond_text(c, req, 200, "%ld\n", mypid));
	/* What lets a client stall, crash or read a worker: tests only. */
	if (!test_routes)
		return (respond_text(c, req, 404, "not found\n"));
	if (path_is(req, "/bytes")) {
		if (query_number(q, "n", MAX_STREAM, &n) == -1)
			return (respond_text(c, req, 400, "need n=BYTES\n"));
		return (respond_stream(c, req, n, 0, 0));
	}
	if (path_is(req, "/drip")) {
		if (query_number(q, "n", MAX_STREAM, &n) == -1 ||
		    query_number(q, "ms", MAX_MS, &ms) == -1)
			return (
			    respond_text(c, req, 400, "need n=BYTES&ms=MS\n"));
		return (respond_stream(c, req, n, 1, (unsigned)ms));
	}
	if (path_is(req, "/sleep")) {
		if (query_number(q, "ms", MAX_MS, &ms) == -1)
			return (respond_text(c, req, 400, "need ms=MS\n"));
		sleep_ms((unsigned)ms);
		return (respond_text(c, req, 200, "slept %" PRIu64 "\n", ms));
	}
	if (path_is(req, "/env")) {
		if (query_get(q, "name", name, sizeof name) == -1)
			return (respond_text(c, req, 400, "need name=VAR\n"));
		if ((value = getenv(name)) == NULL)
			return (respond_text(c, req, 404, "not found\n"));
		return (respond_text(c, req, 200, "%s\n", value));
	}
	if (path_is(req, "/exit"))
		return (respond_text(c, req, 400, "need code=0..255\n"));
	return (respond_text(c, req, 404, "not found\n"));
}

static void
conn_consume(struct conn *c, size_t n)
{
	memmove(c->in.data, c->in.data + n, c->in.len - n);
	c->in.len -= n;
	if (c->in.len == 0)
		buf_clear(&c->in);
}

/* Answers the first buffered request: 1 if answered, 0 if incomplete. */
static int
conn_handle(struct conn *c)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	struct request    req;
	const char       *end;
	size_t            skip = 0, hlen;
	int               status, r;

	while (skip + 1 < c->in.len && c->in.data[skip] == '\r' &&
	    c->in.data[skip + 1] == '\n')
		skip += 2;
	if (skip > 0)
		conn_consume(c, skip);
	if (c->in.len == 0)
		return (0);
	if ((end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4)) == NULL) {
		if (c->in.len > MAX_HEADER) {
			memset(&req, 0, sizeof req);
			return (respond_error(c, &req, 431));
		}
		return (0);
	}
	hlen = end + 4 - c->in.data;
	if (hlen > MAX_HEADER) {
		memset(&req, 0, sizeof req);
		return (respond_error(c, &req, 431));
	}
	if ((status = http_parse(c->in.data, hlen - 2, &req)) != 0)
		return (respond_error(c, &req, status));
	if (req.chunked)
		return (respond_error(c, &req, 411));
	if (c->in.len - hlen < req.length) {
		c->need = hlen + req.length;
		if (req.expect_continue && req.minor >= 1 && !c->continued) {
			c->continued = 1;
			return (buf_add(&c->out, cont, sizeof cont - 1) == -1
				? -1
				: 1);
		}
		return (0);
	}
	r = route(c, &req, c->in.data + hlen, req.length);
	conn_consume(c, hlen + req.length);
	c->need = 0;
	c->continued = 0;
	return (r);
}

/* Writes queued output: 1 once all is sent, 0 to wait for POLLOUT. */
static int
conn_flush(struct conn *c)
{
	const char *p;
	size_t      len, sent = 0;
	ssize_t     n;

	while (sent < WRITE_TURN) {
		if (c->out_off < c->out.len) {
			p = c->out.data + c->out_off;
			len = c->out.len - c->out_off;
		} else if (c->stream_left > 0) {
			p = pattern + c->stream_pos % 26;
			len = c->stream_left < CHUNK_SIZE ? c->stream_left
							  : CHUNK_SIZE;
			if (c->drip) {
				if (sent > 0)
					return (0); /* let others run */
				if (c->drip_wait)
					sleep_ms(c->drip_ms);
				c->drip_wait = 0;
				len = 1;
			}
		} else {
			c->out_off = 0;
			buf_clear(&c->out);
			return (1);
		}
		if ((n = write(c->fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return (0);
			return (-1);
		}
		sent += n;
		if (c->out_off < c->out.len)
			c->out_off += n;
		else {
			c->stream_left -= n;
			c->stream_pos += n;
			c->drip_wait = 1;
		}
	}
	return (0);
}

/* Reads what the peer sent; returns -1 when the connection is broken. */
static int
conn_read(struct conn *c)
{
	size_t  want = READ_SIZE;
	ssize_t n;

	if (c->need > c->in.len && c->need - c->in.len > want)
		want = c->need - c->in.len;
	if (buf_reserve(&c->in, want) == -1)
		return (-1);
	n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
	if (n == 0)
		c->eof = 1;
	else if (n > 0)
		c->in.len += n;
	else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return (-1);
	return (0);
}

/* Half-closes; reading on keeps late input from resetting our last reply. */
static int
conn_linger(struct conn *c)
{
	if (c->eof || shutdown(c->fd, SHUT_WR) == -1)
		return (-1);
	buf_clear(&c->in);
	c->linger_until = now_ns() + LINGER_NS;
	return (0);
}

/* Discards what a half-closed peer still sends; -1 once it is done. */
static int
conn_drain(struct conn *c)
{
	char    discard[4096];
	ssize_t n;

	while ((n = read(c->fd, discard, sizeof discard)) > 0)
		;
	if (n == 0 ||
	    (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		return (-1);
	return (0);
}

/* Answers buffered requests in order; -1 when the connection must close. */
static int
conn_run(struct conn *c)
{
	int r;

	for (;;) {
		if ((r = conn_flush(c)) != 1)
			return (r);
		if (c->close_after)
			return (conn_linger(c));
		if ((r = conn_handle(c)) == -1)
			return (-1);
		if (r == 0)
			return (c->eof ? -1 : 0);
	}
}

/* Reads wait while a reply is pending: pipelined input stays bounded. */
static short
conn_events(struct conn *c)
{
	if (c->linger_until == 0 &&
	    (c->out_off < c->out.len || c->stream_left > 0))
		return (POLLOUT);
	return (POLLIN);
}

static void
conn_free(struct conn *c)
{
	close(c->fd);
	free(c->in.data);
	free(c->out.data);
	free(c);
}

/* Accepts a batch of connections; on fd exhaustion pauses the listener. */
static void
conn_accept(int lfd, int64_t *pause_until)
{
	static size_t cap;
	struct conn  *c, **p;
	int           fd, i, one = 1;

	for (i = 0; i < ACCEPT_BATCH; i++) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			logmsg("accept: %s", strerror(errno));
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				*pause_until = now_ns() + ACCEPT_PAUSE_NS;
			return;
		}
		(void)setsockopt(
		    fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (nconns == cap) {
			if ((p = reallocarray(conns, cap ? cap * 2 : 64,
				 sizeof *p)) == NULL) {
				close(fd);
				return;
			}
			conns = p;
			cap = cap ? cap * 2 : 64;
		}
		if ((c = calloc(1, sizeof *c)) == NULL) {
			close(fd);
			return;
		}
		c->fd = fd;
		conns[nconns++] = c;
	}
}

/* Checks that fd 3 is a listening socket and prepares it for the loop. */
static int
listen_activated(void)
{
	int       accepting = 0, flags;
	socklen_t len = sizeof accepting;

	if (getsockopt(3, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == -1 ||
	    !accepting) {
		logmsg("LISTEN_FDS is set but fd 3 is not a listening socket");
		return (-1);
	}
	if ((flags = fcntl(3, F_GETFL)) == -1 ||
	    fcntl(3, F_SETFL, flags | O_NONBLOCK) == -1 ||
	    fcntl(3, F_SETFD, FD_CLOEXEC) == -1) {
		logmsg("fd 3: %s", strerror(errno));
		return (-1);
	}
	return (3);
}

static int
listen_unix(const char *path)
{
	struct sockaddr_un sun;
	struct stat        sb;
	int                fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		logmsg("%s: socket path too long", path);
		return (-1);
	}
	strcpy(sun.sun_path, path);
	if (lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode) &&
	    unlink(path) == -1) {
		logmsg("unlink %s: %s", path, strerror(errno));
		return (-1);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1 ||
	    listen(fd, 511) == -1) {
		logmsg("listen on %s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return (-1);
	}
	return (fd);
}

static int
listen_tcp(uint16_t port)
{
	struct sockaddr_in sin;
	int                fd, one = 1;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1 ||
	    listen(fd, 511) == -1) {
		logmsg("listen on 127.0.0.1:%u: %s", port, strerror(errno));
		if (fd != -1)
			close(fd);
		return (-1);
	}
	return (fd);
}

static void __attribute__((noreturn)) usage(void)
{
	fprintf(stderr,
	    "usage: socketnaut-hello [-v] [--delay MS] "
	    "[--socket PATH | --port PORT]\n"
	    "Without either it uses LISTEN_FDS/LISTEN_PID (fd 3), "
	    "$SOCKETNAUT_SOCKET or $PORT.\n");
	exit(2);
}

/* Returns the option's value, else the environment's, else NULL. */
static const char *
setting(const char *opt, const char *env)
{
	const char *v = getenv(env);

	if (opt != NULL)
		return (opt);
	return (v != NULL && *v != '\0' ? v : NULL);
}

/* Opens the listener by the first method selected; exits 2 if none is. */
static int
listen_open(const char *socket_opt, const char *port_opt)
{
	const char *fds = getenv("LISTEN_FDS");
	const char *pid = getenv("LISTEN_PID");
	const char *path, *port;
	uint64_t    n;

	if (fds != NULL && pid != NULL && strcmp(fds, "1") == 0 &&
	    parse_number(pid, INT32_MAX, &n) == 0 && (long)n == mypid)
		return (listen_activated());
	if ((path = setting(socket_opt, "SOCKETNAUT_SOCKET")) != NULL)
		return (listen_unix(path));
	if ((port = setting(port_opt, "PORT")) != NULL) {
		if (parse_number(port, 65535, &n) == -1 || n == 0) {
			logmsg("bad port: %s", port);
			exit(2);
		}
		return (listen_tcp((uint16_t)n));
	}
	usage();
}

/* SIGTERM and SIGINT stay blocked but while waiting, so none is missed. */
static void
signals_init(void)
{
	struct sigaction sa;
	sigset_t         block;

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
}

/* Drops connections that lingered too long; returns poll's timeout. */
static int64_t
conns_expire(int64_t now, int64_t pause_until)
{
	int64_t timeout = pause_until > now ? pause_until - now : -1;
	size_t  i, j;

	for (i = j = 0; i < nconns; i++) {
		if (conns[i]->linger_until != 0) {
			if (conns[i]->linger_until <= now) {
				conn_free(conns[i]);
				continue;
			}
			if (timeout == -1 ||
			    conns[i]->linger_until - now < timeout)
				timeout = conns[i]->linger_until - now;
		}
		conns[j++] = conns[i];
	}
	nconns = j;
	return (timeout);
}

/* The event loop: one poll over the listener and every connection. */
static void
serve(int lfd)
{
	struct pollfd  *pfd = NULL, *p;
	struct conn    *c;
	struct timespec ts;
	int64_t         now, timeout, pause_until = 0;
	size_t          i, j, npfd = 0, polled;
	int             r;

	while (!quit) {
		now = now_ns();
		timeout = conns_expire(now, pause_until);
		if (npfd < nconns + 1) {
			npfd = nconns + 1 + 64;
			if ((p = reallocarray(pfd, npfd, sizeof *p)) == NULL) {
				logmsg("out of memory");
				break;
			}
			pfd = p;
		}
		pfd[0].fd = pause_until > now ? -1 : lfd;
		pfd[0].events = POLLIN;
		for (i = 0; i < nconns; i++) {
			pfd[i + 1].fd = conns[i]->fd;
			pfd[i + 1].events = conn_events(conns[i]);
		}
		ts.tv_sec = timeout / 1000000000;
		ts.tv_nsec = timeout % 1000000000;
		polled = nconns;
		if (ppoll(pfd, polled + 1, timeout == -1 ? NULL : &ts,
			&waitmask) == -1) {
			if (errno == EINTR)
				continue;
			logmsg("poll: %s", strerror(errno));
			break;
		}
		for (i = j = 0; i < polled; i++) {
			c = conns[i];
			if (pfd[i + 1].revents == 0)
				r = 0;
			else if (c->linger_until != 0)
				r = conn_drain(c);
			else if (pfd[i + 1].events & POLLOUT)
				r = conn_run(c);
			else if ((r = conn_read(c)) == 0)
				r = conn_run(c);
			if (r == -1)
				conn_free(c);
			else
				conns[j++] = c;
		}
		nconns = j;
		if (pfd[0].revents & POLLIN)
			conn_accept(lfd, &pause_until);
	}
	free(pfd);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = { { "socket", required_argument,
						      NULL, 's' },
		{ "port", required_argument, NULL, 'p' },
		{ "delay", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
	const char                *socket_opt = NULL, *port_opt = NULL;
	const char                *delay_opt = NULL, *delay, *v;
	uint64_t                   n;
	size_t                     i;
	int                        ch, lfd;

	while ((ch = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			socket_opt = optarg;
			break;
		case 'p':
			port_opt = optarg;
			break;
		case 'd':
			delay_opt = optarg;
			break;
		case 'v':
			verbose = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	mypid = (long)getpid();
	test_routes =
	    (v = getenv("HELLO_TEST_ROUTES")) != NULL && strcmp(v, "1") == 0;
	if (setting(NULL, "SOCKETNAUT_WORKER") != NULL)
		worker = getenv("SOCKETNAUT_WORKER");
	if ((delay = setting(delay_opt, "HELLO_DELAY_MS")) != NULL) {
		if (parse_number(delay, MAX_MS, &n) == -1) {
			logmsg("bad delay: %s", delay);
			exit(2);
		}
		delay_ms = (unsigned)n;
	}
	for (i = 0; i < sizeof pattern; i++)
		pattern[i] = 'a' + i % 26;
	signals_init();

	if ((lfd = listen_open(socket_opt, port_opt)) == -1)
		exit(1);
	if (verbose)
		logmsg("listening");
	serve(lfd);
	close(lfd);
	for (i = 0; i < nconns; i++)
		conn_free(conns[i]);
	free(conns);
	return (quit ? 0 : 1);
}
