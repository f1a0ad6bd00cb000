/*
 * libsocketnaut: the worker's end of the control channel (the protocol is
 * in include/socketnaut/proto.h and socketnaut-agent(7)).  The fd is
 * nonblocking so that any event loop can watch it: output that the socket
 * does not take at once waits in a bounded buffer, input is read until
 * EAGAIN and dispatched to callbacks.  Bytes from the master are parsed as
 * strictly as the master parses ours; anything malformed kills the channel
 * (every later call fails with EPROTO), never the worker.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "socketnaut.h"
#include "socketnaut/proto.h"

#define AGENT_ENV      "SOCKETNAUT_CONTROL_FD"
#define AGENT_OUT_MAX  (64 * 1024) /* queued output, then ENOBUFS */
#define AGENT_CLOSE_MS 1000        /* sn_agent_close's flush */
#define AGENT_KEY_MAX  63          /* the master's limit on a key */
#define AGENT_SYNC_ID  0x80000000u /* ids of blocking queries */
#define AGENT_PENDING  256         /* handed connections not yet accepted */
#define AGENT_FDS      8           /* descriptors one recvmsg may carry */

/* A connection handed to us: pending until accepted, then open. */
struct agent_handed {
	int                 fd;
	uint32_t            id;
	struct sn_peer_info peer;
};

/* A blocking sn_agent_peer_info waiting for its reply. */
struct agent_waiter {
	uint32_t             id;
	int                  done;
	int                  found;
	struct sn_peer_info *out;
	struct sn_peer_tls  *tls; /* sn_agent_peer_tls: its tls_ fields */
	struct agent_waiter *next;
};

struct sn_agent {
	int                    fd;
	int                    error;   /* the channel is dead */
	int                    drain;   /* a drain message came */
	int                    depth;   /* callbacks running */
	int                    closing; /* closed from a callback */
	uint32_t               next_id;
	uint32_t               next_sync_id;
	sn_agent_peer_info_cb *on_peer_info;
	sn_agent_drain_cb     *on_drain;
	void                  *arg;
	struct agent_waiter   *waiters;
	int                    fds[AGENT_PENDING + AGENT_FDS]; /* unclaimed */
	size_t                 nfds;
	struct agent_handed    pending[AGENT_PENDING]; /* to accept */
	size_t                 npending;
	struct agent_handed   *open; /* accepted, close not reported */
	size_t                 nopen;
	size_t                 openmax;
	size_t                 inlen;
	size_t                 outoff;
	size_t                 outlen;
	unsigned char          in[SN_PROTO_HDR + SN_PROTO_MAX];
	unsigned char          out[AGENT_OUT_MAX];
};

static int agent_send(struct sn_agent *, uint8_t, const char *, size_t);

static int
agent_fail(struct sn_agent *a, int error)
{
	if (a->error == 0)
		a->error = error;
	errno = a->error;
	return (-1);
}

/* Fails with the channel's error once it is dead. */
static int
agent_usable(struct sn_agent *a)
{
	if (a->error != 0) {
		errno = a->error;
		return (0);
	}
	if (a->closing) {
		errno = ECANCELED;
		return (0);
	}
	return (1);
}

static int64_t
agent_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Milliseconds left until deadline, for poll(2); -1 waits forever. */
static int
agent_left(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return (-1);
	left = deadline - agent_now();
	if (left <= 0)
		return (0);
	return (left > INT_MAX ? INT_MAX : (int)left);
}

static int64_t
agent_deadline(int timeout_ms)
{
	return (timeout_ms < 0 ? -1 : agent_now() + timeout_ms);
}

struct sn_agent *
sn_agent_open(void)
{
	struct sn_agent *a;
	const char      *s;
	char            *end;
	long             fd;
	int              v, flags;
	socklen_t        len = sizeof v;

	if ((s = getenv(AGENT_ENV)) == NULL || *s == '\0') {
		errno = ENOENT;
		return (NULL);
	}
	errno = 0;
	fd = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || fd < 0 || fd > INT_MAX || *s < '0' ||
	    *s > '9') {
		errno = EINVAL;
		return (NULL);
	}
	if ((flags = fcntl((int)fd, F_GETFL)) == -1)
		return (NULL);
	if (getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &v, &len) == -1)
		return (NULL);
	if (v != AF_UNIX) {
		errno = EPROTOTYPE;
		return (NULL);
	}
	len = sizeof v;
	if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &v, &len) == -1)
		return (NULL);
	if (v != SOCK_STREAM) {
		errno = EPROTOTYPE;
		return (NULL);
	}
	/* Programs the worker runs must not inherit the channel. */
	if (fcntl((int)fd, F_SETFL, flags | O_NONBLOCK) == -1 ||
	    fcntl((int)fd, F_SETFD, FD_CLOEXEC) == -1)
		return (NULL);
	if ((a = calloc(1, sizeof *a)) == NULL)
		return (NULL);
	a->fd = (int)fd;
	a->next_id = 1;
	a->next_sync_id = AGENT_SYNC_ID;
	/* Before the worker listens: its connections get peer-info names. */
	agent_send(a, SN_MSG_HELLO, NULL, 0);
	return (a);
}

int
sn_agent_fd(const struct sn_agent *a)
{
	return (a == NULL ? -1 : a->fd);
}

void
sn_agent_set_callbacks(struct sn_agent *a, sn_agent_peer_info_cb *on_peer_info,
    sn_agent_drain_cb *on_drain, void *arg)
{
	if (a == NULL)
		return;
	a->on_peer_info = on_peer_info;
	a->on_drain = on_drain;
	a->arg = arg;
}

int
sn_agent_want_write(const struct sn_agent *a)
{
	return (a != NULL && a->error == 0 && a->outoff < a->outlen);
}

int
sn_agent_drain_requested(const struct sn_agent *a)
{
	return (a != NULL && a->drain);
}

/* Send what is queued, as far as the socket takes it now. */
static int
agent_write(struct sn_agent *a)
{
	ssize_t n;

	while (a->outoff < a->outlen) {
		n = send(a->fd, a->out + a->outoff, a->outlen - a->outoff,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return (0);
			return (agent_fail(a, errno));
		}
		a->outoff += (size_t)n;
	}
	a->outoff = a->outlen = 0;
	return (0);
}

/* Queue one whole frame, or nothing (ENOBUFS when the buffer is full). */
static int
agent_queue(struct sn_agent *a, uint8_t type, const char *payload, size_t len)
{
	size_t  need = SN_PROTO_HDR + len;
	ssize_t n;

	if (len > SN_PROTO_MAX) {
		errno = EMSGSIZE;
		return (-1);
	}
	if (a->outlen - a->outoff + need > sizeof a->out) {
		errno = ENOBUFS;
		return (-1);
	}
	if (a->outlen + need > sizeof a->out) {
		memmove(a->out, a->out + a->outoff, a->outlen - a->outoff);
		a->outlen -= a->outoff;
		a->outoff = 0;
	}
	n = sn_proto_frame(
	    a->out + a->outlen, sizeof a->out - a->outlen, type, payload, len);
	if (n == -1) {
		errno = EMSGSIZE;
		return (-1);
	}
	a->outlen += (size_t)n;
	return (0);
}

static int
agent_send(struct sn_agent *a, uint8_t type, const char *payload, size_t len)
{
	if (!agent_usable(a))
		return (-1);
	if (agent_queue(a, type, payload, len) == -1) {
		if (errno != ENOBUFS || agent_write(a) == -1 ||
		    agent_queue(a, type, payload, len) == -1)
			return (-1);
	}
	return (agent_write(a));
}

/* Wait until the fd is ready for events or the deadline passes. */
static int
agent_poll(struct sn_agent *a, short events, int64_t deadline)
{
	struct pollfd pfd;
	int           ms, n;

	for (;;) {
		ms = agent_left(deadline);
		if (ms == 0) {
			errno = ETIMEDOUT;
			return (-1);
		}
		pfd.fd = a->fd;
		pfd.events = events;
		pfd.revents = 0;
		n = poll(&pfd, 1, ms);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return (-1);
		if (n > 0)
			return (0);
	}
}

int
sn_agent_flush(struct sn_agent *a, int timeout_ms)
{
	int64_t deadline = agent_deadline(timeout_ms);

	if (a == NULL)
		return (0);
	if (!agent_usable(a))
		return (-1);
	for (;;) {
		if (agent_write(a) == -1)
			return (-1);
		if (a->outoff == a->outlen)
			return (0);
		if (agent_poll(a, POLLOUT, deadline) == -1)
			return (-1);
	}
}

int
sn_agent_ready(struct sn_agent *a, const char *address)
{
	char        buf[SN_PROTO_MAX + 1];
	const char *p;
	int         n;

	if (address == NULL) {
		if (a == NULL)
			return (0);
		return (agent_send(a, SN_MSG_READY, NULL, 0));
	}
	for (p = address; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			break;
	}
	if (*address == '\0' || *p != '\0') {
		errno = EINVAL;
		return (-1);
	}
	n = snprintf(buf, sizeof buf, "address=%s", address);
	if (n < 0 || n > SN_PROTO_MAX) {
		errno = EMSGSIZE;
		return (-1);
	}
	if (a == NULL)
		return (0);
	return (agent_send(a, SN_MSG_READY, buf, (size_t)n));
}

int
sn_agent_ready_port(struct sn_agent *a, int port)
{
	char buf[32];
	int  n;

	if (port < 1 || port > 65535) {
		errno = EINVAL;
		return (-1);
	}
	if (a == NULL)
		return (0);
	n = snprintf(buf, sizeof buf, "port=%d", port);
	return (agent_send(a, SN_MSG_READY, buf, (size_t)n));
}

int
sn_agent_vlog(struct sn_agent *a, int level, const char *fmt, va_list ap)
{
	char   buf[SN_PROTO_MAX + 1];
	int    n, m;
	size_t len;

	if (level < 0 || level > 7) {
		errno = EINVAL;
		return (-1);
	}
	if (a == NULL)
		return (0);
	n = snprintf(buf, sizeof buf, "level=%d\ntext=", level);
	m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
	if (m < 0)
		return (-1);
	/* A longer line is cut (the master keeps 1024 bytes anyway). */
	len = (size_t)n + (size_t)m;
	if (len > SN_PROTO_MAX)
		len = SN_PROTO_MAX;
	return (agent_send(a, SN_MSG_LOG, buf, len));
}

int
sn_agent_log(struct sn_agent *a, int level, const char *fmt, ...)
{
	va_list ap;
	int     rc;

	va_start(ap, fmt);
	rc = sn_agent_vlog(a, level, fmt, ap);
	va_end(ap);
	return (rc);
}

int
sn_agent_drained(struct sn_agent *a)
{
	if (a == NULL)
		return (0);
	return (agent_send(a, SN_MSG_DRAINED, NULL, 0));
}

/*
 * The key of a TCP connection: the peer's address and port, "HOST:PORT" or
 * "[HOST6]:PORT".  The port alone would not do: another local user can
 * connect from the master's port on another loopback address.
 */
static int
agent_tcp_key(const struct sockaddr_storage *ss, char *key, size_t len)
{
	const struct sockaddr_in  *sin = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	char                       host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
		return (
		    snprintf(key, len, "%s:%u", host, ntohs(sin->sin_port)));
	}
	inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
	return (snprintf(key, len, "[%s]:%u", host, ntohs(sin6->sin6_port)));
}

/*
 * The key of an accepted connection: how the worker sees the master's end
 * of it, the peer address and port for TCP or "@" and the abstract name
 * for Unix sockets; "ino:" and our end's inode when the master left its
 * end unnamed (the connection came before this agent said hello).
 */
int
sn_agent_peer_key(int fd, char *key, size_t len)
{
	struct sockaddr_storage ss;
	struct sockaddr_un     *sun = (struct sockaddr_un *)&ss;
	struct stat             st;
	socklen_t               sl = sizeof ss;
	size_t                  off = offsetof(struct sockaddr_un, sun_path);
	size_t                  nlen, i;
	int                     n;

	memset(&ss, 0, sizeof ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == -1)
		return (-1);
	switch (ss.ss_family) {
	case AF_INET:
	case AF_INET6:
		n = agent_tcp_key(&ss, key, len);
		break;
	case AF_UNIX:
		if (sl <= off && fstat(fd, &st) == 0) {
			n = snprintf(key, len, "ino:%llu",
			    (unsigned long long)st.st_ino);
			break;
		}
		/* Only an abstract name identifies the master's end. */
		if (sl <= off + 1 || sun->sun_path[0] != '\0') {
			errno = EADDRNOTAVAIL;
			return (-1);
		}
		nlen = sl - off - 1;
		if (nlen + 1 > AGENT_KEY_MAX) {
			errno = EADDRNOTAVAIL;
			return (-1);
		}
		for (i = 0; i < nlen; i++) {
			if (sun->sun_path[1 + i] <= ' ' ||
			    sun->sun_path[1 + i] >= 0x7f) {
				errno = EADDRNOTAVAIL;
				return (-1);
			}
		}
		n = snprintf(key, len, "@%.*s", (int)nlen, sun->sun_path + 1);
		break;
	default:
		errno = EAFNOSUPPORT;
		return (-1);
	}
	if (n < 0 || (size_t)n >= len) {
		errno = ENOSPC;
		return (-1);
	}
	return (0);
}

static int
agent_query(struct sn_agent *a, int fd, uint32_t id)
{
	char key[AGENT_KEY_MAX + 1], buf[128];
	int  n;

	if (sn_agent_peer_key(fd, key, sizeof key) == -1)
		return (-1);
	n = snprintf(buf, sizeof buf, "id=%lu\nkey=%s", (unsigned long)id, key);
	if (agent_queue(a, SN_MSG_PEER_QUERY, buf, (size_t)n) == -1)
		return (-1);
	return (0);
}

int
sn_agent_peer_query(struct sn_agent *a, int fd, uint32_t *idp)
{
	uint32_t id;

	if (a == NULL) {
		errno = ENOTCONN;
		return (-1);
	}
	if (!agent_usable(a))
		return (-1);
	id = a->next_id;
	if (agent_query(a, fd, id) == -1) {
		if (errno != ENOBUFS || agent_write(a) == -1 ||
		    agent_query(a, fd, id) == -1)
			return (-1);
	}
	a->next_id = id + 1 >= AGENT_SYNC_ID ? 1 : id + 1;
	if (idp != NULL)
		*idp = id;
	return (agent_write(a));
}

/* A decimal field: digits only, at most max. */
static int
agent_number(const struct sn_msg *m, const char *key, unsigned long max,
    unsigned long *out)
{
	char          v[16], *end;
	unsigned long n;

	if (sn_proto_field(m, key, v, sizeof v) == -1 || v[0] == '\0' ||
	    strspn(v, "0123456789") != strlen(v) || strlen(v) > 10)
		return (-1);
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno != 0 || n > max)
		return (-1);
	*out = n;
	return (0);
}

/* One side of a peer-info reply: PREFIX_address, _family and _port. */
static int
agent_addr(const struct sn_msg *m, const char *side, struct sn_peer_addr *pa)
{
	char          key[32], family[8];
	unsigned char bin[sizeof(struct in6_addr)];
	unsigned long port;

	snprintf(key, sizeof key, "%s_family", side);
	if (sn_proto_field(m, key, family, sizeof family) == -1)
		return (-1);
	if (strcmp(family, "IPv4") == 0)
		pa->family = AF_INET;
	else if (strcmp(family, "IPv6") == 0)
		pa->family = AF_INET6;
	else
		return (-1);
	snprintf(key, sizeof key, "%s_address", side);
	if (sn_proto_field(m, key, pa->address, sizeof pa->address) == -1 ||
	    inet_pton(pa->family, pa->address, bin) != 1)
		return (-1);
	snprintf(key, sizeof key, "%s_port", side);
	if (agent_number(m, key, 65535, &port) == -1)
		return (-1);
	pa->port = (int)port;
	return (0);
}

/* The tls_ fields of a peer-info reply: all optional. */
static void
agent_peer_tls_msg(const struct sn_msg *m, struct sn_peer_tls *t)
{
	char v[4];

	memset(t, 0, sizeof *t);
	if (sn_proto_field(m, "tls_version", t->version, sizeof t->version) ==
	    -1)
		t->version[0] = '\0';
	if (sn_proto_field(m, "tls_cipher", t->cipher, sizeof t->cipher) == -1)
		t->cipher[0] = '\0';
	if (sn_proto_field(m, "tls_sni", t->sni, sizeof t->sni) == -1)
		t->sni[0] = '\0';
	if (sn_proto_field(m, "tls_alpn", t->alpn, sizeof t->alpn) == -1)
		t->alpn[0] = '\0';
	if (sn_proto_field(m, "tls_client_subject", t->client_subject,
		sizeof t->client_subject) == -1)
		t->client_subject[0] = '\0';
	t->client_verified =
	    sn_proto_field(m, "tls_client_verified", v, sizeof v) == 0 &&
	    strcmp(v, "1") == 0;
}

/* Decode a peer-info reply; *found is 0 for status=unknown. */
static int
agent_peer_info_msg(
    const struct sn_msg *m, uint32_t *id, int *found, struct sn_peer_info *pi)
{
	char          status[16];
	unsigned long n;

	if (agent_number(m, "id", UINT32_MAX, &n) == -1 ||
	    sn_proto_field(m, "status", status, sizeof status) == -1)
		return (-1);
	*id = (uint32_t)n;
	if (strcmp(status, "unknown") == 0) {
		*found = 0;
		return (0);
	}
	if (strcmp(status, "ok") != 0 ||
	    agent_addr(m, "remote", &pi->remote) == -1 ||
	    agent_addr(m, "local", &pi->local) == -1)
		return (-1);
	*found = 1;
	return (0);
}

static void
agent_deliver(struct sn_agent *a, uint32_t id, int found,
    const struct sn_peer_info *pi, const struct sn_peer_tls *tls)
{
	struct agent_waiter *w;

	for (w = a->waiters; w != NULL; w = w->next) {
		if (w->id == id && !w->done) {
			w->done = 1;
			w->found = found;
			if (found)
				*w->out = *pi;
			if (found && w->tls != NULL)
				*w->tls = *tls;
			return;
		}
	}
	/* A reply to a blocking query that timed out: nobody wants it. */
	if (id >= AGENT_SYNC_ID || a->on_peer_info == NULL)
		return;
	a->depth++;
	a->on_peer_info(a, id, found ? pi : NULL, a->arg);
	a->depth--;
}

/*
 * A handoff frame: its fd came with its first byte (the oldest one not
 * claimed yet).  It waits for sn_agent_accept.
 */
static int
agent_handoff_msg(struct sn_agent *a, const struct sn_msg *m)
{
	struct agent_handed *h;
	unsigned long        id;

	if (a->nfds == 0 || a->npending == AGENT_PENDING ||
	    agent_number(m, "id", UINT32_MAX, &id) == -1 || id == 0)
		return (-1);
	h = &a->pending[a->npending];
	memset(h, 0, sizeof *h);
	if (agent_addr(m, "remote", &h->peer.remote) == -1 ||
	    agent_addr(m, "local", &h->peer.local) == -1)
		return (-1);
	h->id = (uint32_t)id;
	h->fd = a->fds[0];
	memmove(a->fds, a->fds + 1, (a->nfds - 1) * sizeof *a->fds);
	a->nfds--;
	a->npending++;
	return (0);
}

/*
 * Dispatch every whole frame in the input buffer.  Each is taken out of
 * the buffer before its callback runs, so a callback may call into the
 * library again.  Returns the number of frames, or -1.
 */
static int
agent_dispatch(struct sn_agent *a)
{
	struct sn_msg       m;
	struct sn_peer_info pi;
	struct sn_peer_tls  tls;
	const char         *cause = NULL;
	ssize_t             used;
	uint32_t            id = 0;
	uint8_t             type;
	int                 found = 0, count = 0;

	while (a->error == 0 && !a->closing) {
		used = sn_proto_parse(a->in, a->inlen, &m, &cause);
		if (used == 0)
			break;
		if (used == -1)
			return (agent_fail(a, EPROTO));
		type = m.type;
		/* Full of connections not accepted yet: the rest waits. */
		if (type == SN_MSG_HANDOFF && a->npending == AGENT_PENDING)
			break;
		switch (type) {
		case SN_MSG_PEER_INFO:
			memset(&pi, 0, sizeof pi);
			if (agent_peer_info_msg(&m, &id, &found, &pi) == -1)
				return (agent_fail(a, EPROTO));
			agent_peer_tls_msg(&m, &tls);
			break;
		case SN_MSG_DRAIN:
			break;
		case SN_MSG_HANDOFF:
			if (agent_handoff_msg(a, &m) == -1)
				return (agent_fail(a, EPROTO));
			break;
		default:
			/* A message only a worker sends. */
			return (agent_fail(a, EPROTO));
		}
		memmove(a->in, a->in + used, a->inlen - (size_t)used);
		a->inlen -= (size_t)used;
		count++;
		if (type == SN_MSG_PEER_INFO)
			agent_deliver(a, id, found, &pi, &tls);
		else if (type == SN_MSG_DRAIN) {
			a->drain = 1;
			if (a->on_drain != NULL) {
				a->depth++;
				a->on_drain(a, a->arg);
				a->depth--;
			}
		}
	}
	if (a->error != 0) {
		errno = a->error;
		return (-1);
	}
	return (count);
}

/*
 * recv, keeping the descriptors that come with the bytes (one per handoff
 * frame, in order).  Descriptors we cannot keep kill the channel.
 */
static ssize_t
agent_recv(struct sn_agent *a)
{
	char            cbuf[CMSG_SPACE(AGENT_FDS * sizeof(int))];
	struct msghdr   msg;
	struct iovec    iov;
	struct cmsghdr *cm;
	ssize_t         n;
	size_t          k, i;
	int             fd, bad = 0;

	memset(&msg, 0, sizeof msg);
	iov.iov_base = a->in + a->inlen;
	iov.iov_len = sizeof a->in - a->inlen;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof cbuf;
	n = recvmsg(a->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n == -1)
		return (-1);
	for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < k; i++) {
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
			if (a->nfds == sizeof a->fds / sizeof a->fds[0]) {
				close(fd);
				bad = 1;
			} else
				a->fds[a->nfds++] = fd;
		}
	}
	if (bad || (msg.msg_flags & MSG_CTRUNC)) {
		errno = EPROTO;
		return (-1);
	}
	return (n);
}

/* Read what is there (until EAGAIN) and dispatch it. */
static int
agent_input(struct sn_agent *a)
{
	ssize_t n;
	int     count = 0, c;

	for (;;) {
		if ((c = agent_dispatch(a)) == -1)
			return (-1);
		count += c;
		if (a->closing)
			return (count);
		/* Handed connections not taken yet: the master waits. */
		if (a->npending == AGENT_PENDING)
			return (count);
		n = agent_recv(a);
		if (n > 0) {
			a->inlen += (size_t)n;
			continue;
		}
		if (n == 0)
			return (agent_fail(a, EPIPE));
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return (count);
		return (agent_fail(a, errno));
	}
}

static void agent_free(struct sn_agent *);
static int  agent_peer_sync(
     struct sn_agent *, int, struct sn_peer_info *, struct sn_peer_tls *, int);

int
sn_agent_process(struct sn_agent *a)
{
	int rc, saved;

	if (a == NULL)
		return (0);
	if (!agent_usable(a))
		return (-1);
	/* Input first: a drain that came before an error is still seen. */
	rc = agent_input(a);
	if (rc != -1 && !a->closing && agent_write(a) == -1)
		rc = -1;
	if (a->closing && a->depth == 0) {
		saved = errno;
		agent_free(a);
		errno = saved;
	}
	return (rc);
}

/* A handed connection: the master told us its peers when it handed it. */
static int
agent_handed_info(struct sn_agent *a, int fd, struct sn_peer_info *out)
{
	size_t i;

	for (i = 0; i < a->nopen; i++) {
		if (a->open[i].fd == fd) {
			*out = a->open[i].peer;
			return (0);
		}
	}
	return (-1);
}

/*
 * The next connection the master handed us (mode handoff): its fd
 * (nonblocking, close-on-exec), its peers and the id to report its close
 * with.  -1 with EAGAIN when none waits: call again when sn_agent_fd is
 * readable.
 */
int
sn_agent_accept(struct sn_agent *a, struct sn_peer_info *peer, uint32_t *id)
{
	struct agent_handed h, *o;
	size_t              n;

	if (a == NULL) {
		errno = ENOTCONN;
		return (-1);
	}
	if (!agent_usable(a))
		return (-1);
	if (a->npending == 0 && sn_agent_process(a) == -1)
		return (-1);
	if (a->npending == 0) {
		errno = EAGAIN;
		return (-1);
	}
	if (a->nopen == a->openmax) {
		n = a->openmax == 0 ? 64 : a->openmax * 2;
		if ((o = realloc(a->open, n * sizeof *o)) == NULL)
			return (-1);
		a->open = o;
		a->openmax = n;
	}
	h = a->pending[0];
	memmove(a->pending, a->pending + 1, --a->npending * sizeof h);
	a->open[a->nopen++] = h;
	if (peer != NULL)
		*peer = h.peer;
	if (id != NULL)
		*id = h.id;
	return (h.fd);
}

/*
 * A handed connection is closed (by the caller, before or after): the
 * master stops counting it against this worker.
 */
int
sn_agent_handoff_closed(struct sn_agent *a, uint32_t id)
{
	char   buf[32];
	size_t i;
	int    n;

	if (a == NULL) {
		errno = ENOTCONN;
		return (-1);
	}
	for (i = 0; i < a->nopen; i++) {
		if (a->open[i].id == id)
			break;
	}
	if (i == a->nopen) {
		errno = ENOENT;
		return (-1);
	}
	a->open[i] = a->open[--a->nopen];
	n = snprintf(buf, sizeof buf, "id=%lu", (unsigned long)id);
	return (agent_send(a, SN_MSG_CLOSED, buf, (size_t)n));
}

int
sn_agent_peer_info(
    struct sn_agent *a, int fd, struct sn_peer_info *out, int timeout_ms)
{
	return (agent_peer_sync(a, fd, out, NULL, timeout_ms));
}

/* The same, with the TLS facts of a client of a TLS service. */
int
sn_agent_peer_tls(struct sn_agent *a, int fd, struct sn_peer_info *out,
    struct sn_peer_tls *tls, int timeout_ms)
{
	return (agent_peer_sync(a, fd, out, tls, timeout_ms));
}

/* A blocking peer-info query; tls, when not NULL, gets the tls_ fields. */
static int
agent_peer_sync(struct sn_agent *a, int fd, struct sn_peer_info *out,
    struct sn_peer_tls *tls, int timeout_ms)
{
	struct agent_waiter w, **wp;
	int64_t             deadline = agent_deadline(timeout_ms);
	int                 rc = -1, error = 0;

	if (a == NULL) {
		errno = ENOTCONN;
		return (-1);
	}
	if (!agent_usable(a))
		return (-1);
	if (agent_handed_info(a, fd, out) == 0)
		return (0);
	memset(&w, 0, sizeof w);
	w.id = a->next_sync_id;
	w.out = out;
	w.tls = tls;
	/* When the queue is full, wait for room within the timeout. */
	while (agent_query(a, fd, w.id) == -1) {
		if (errno != ENOBUFS || agent_write(a) == -1)
			return (-1);
		if (a->outoff == a->outlen) {
			errno = ENOBUFS;
			return (-1);
		}
		if (agent_poll(a, POLLOUT, deadline) == -1)
			return (-1);
	}
	a->next_sync_id = w.id + 1 < AGENT_SYNC_ID ? AGENT_SYNC_ID : w.id + 1;
	w.next = a->waiters;
	a->waiters = &w;
	for (;;) {
		if (agent_write(a) == -1 || agent_input(a) == -1) {
			error = errno;
			break;
		}
		if (w.done) {
			rc = w.found ? 0 : -1;
			error = w.found ? 0 : ENOENT;
			break;
		}
		if (a->closing) {
			error = ECANCELED;
			break;
		}
		if (agent_poll(a,
			POLLIN | (a->outoff < a->outlen ? POLLOUT : 0),
			deadline) == -1) {
			error = errno;
			break;
		}
	}
	for (wp = &a->waiters; *wp != NULL; wp = &(*wp)->next) {
		if (*wp == &w) {
			*wp = w.next;
			break;
		}
	}
	if (a->closing && a->depth == 0)
		agent_free(a);
	if (rc == -1)
		errno = error;
	return (rc);
}

static void
agent_free(struct sn_agent *a)
{
	size_t i;

	for (i = 0; i < a->nfds; i++)
		close(a->fds[i]);
	for (i = 0; i < a->npending; i++)
		close(a->pending[i].fd);
	free(a->open);
	close(a->fd);
	free(a);
}

void
sn_agent_close(struct sn_agent *a)
{
	int saved = errno;

	if (a == NULL)
		return;
	if (a->depth > 0) {
		/* From a callback: the library call that ran it frees it. */
		a->closing = 1;
		return;
	}
	if (a->error == 0)
		sn_agent_flush(a, AGENT_CLOSE_MS);
	agent_free(a);
	errno = saved;
}
