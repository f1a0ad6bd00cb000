/*
 * The master's end of each worker's control channel (a socketpair made at
 * spawn, so nothing else can reach it).  Workers run user code: whatever
 * they send is parsed strictly and bounded, a protocol error closes that
 * worker's channel only, and a worker that stops reading its channel loses
 * it instead of growing the master's memory.
 */
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "handoff.h"
#include "log.h"
#include "relay.h"
#include "service.h"
#include "socketnautd.h"
#include "tls.h"
#include "worker.h"

#define CONTROL_FRAMES_PER_READ 64 /* then yield to others */
#define CONTROL_DROP_MS         100 /* half a read of frames wasted in: a flood */
#define CONTROL_OUT_MAX         (256 * 1024) /* unread replies */
#define CONTROL_LOG_MAX         1024

/*
 * A worker's log budget is its service's worker_log_rate (by default a
 * burst of 200 lines, then 100 a second); each started 256 bytes of text
 * count as a line, so bytes are bounded as well as lines.
 */
#define CONTROL_LOG_UNIT  256  /* bytes of text that count as one line */
#define CONTROL_LOG_TELL  1000 /* ms: at most one "suppressed" line per */
#define CONTROL_LOG_PAUSE 10   /* ms without reading a flooding worker */

static void control_read(evutil_socket_t, short, void *);
static void control_log_tell(evutil_socket_t, short, void *);

static const struct timeval zero = { 0, 0 };
static unsigned             master_pid; /* getpid() is a system call */
static void                 control_write(evutil_socket_t, short, void *);

/* The master's pid, in the names of its Unix connections' ends. */
static unsigned
control_pid(void)
{
	if (master_pid == 0)
		master_pid = (unsigned)getpid();
	return (master_pid);
}

struct control *
control_open(struct worker *w, int fd)
{
	struct control *c;

	c = xcalloc(1, sizeof *c);
	c->w = w;
	c->fd = fd;
	fd_nonblock(fd);
	event_assign(
	    &c->rev, sn_base, fd, EV_READ | EV_PERSIST, control_read, c);
	event_assign(
	    &c->wev, sn_base, fd, EV_WRITE | EV_PERSIST, control_write, c);
	/* More frames are buffered: read them after the next poll, not now. */
	evtimer_assign(&c->more, sn_base, control_read, c);
	evtimer_assign(&c->summary, sn_base, control_log_tell, c);
	event_add(&c->rev, NULL);
	return (c);
}

void
control_close(struct control *c, const char *why)
{
	struct worker *w = c->w;

	control_log_tell(-1, 0, c);
	if (why != NULL)
		worker_log(
		    LOG_WARNING, w, "control channel: %s, closing it", why);
	event_del(&c->rev);
	event_del(&c->wev);
	event_del(&c->more);
	event_del(&c->summary);
	close(c->fd);
	free(c->out);
	free(c);
	w->control = NULL;
	if (w->svc->conf->backend == BACKEND_AGENT && w->pid > 0 &&
	    !w->exec_failed && w->state == WORKER_STARTING) {
		/* It can no longer tell us where it listens. */
		worker_give_up(w, "control channel lost before ready");
	} else if (w->svc->conf->mode == MODE_HANDOFF)
		worker_handoff_refused(w, "its control channel is closed");
}

/* Queue a frame; a worker that leaves too much unread loses its channel. */
static int
control_send(struct control *c, uint8_t type, const char *payload, size_t len)
{
	size_t  need = SN_PROTO_HDR + len;
	ssize_t n;

	if (c->outlen - c->outoff + need > CONTROL_OUT_MAX) {
		control_close(c, "the worker does not read it");
		return (-1);
	}
	if (c->outoff > 0 && c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	c->out = xreallocarray(c->out, 1, c->outlen + need);
	n = sn_proto_frame(c->out + c->outlen, need, type, payload, len);
	if (n == -1)
		fatalx("control_send: frame of %zu bytes", len);
	c->outlen += n;
	/* Sent once per loop turn, however many replies a turn makes. */
	event_add(&c->wev, NULL);
	return (0);
}

static void
control_write(evutil_socket_t fd, short events, void *arg)
{
	struct control *c = arg;
	ssize_t         n;

	(void)events;
	while (c->outoff < c->outlen) {
		n = send(fd, c->out + c->outoff, c->outlen - c->outoff,
		    MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			control_close(c, strerror(errno));
			return;
		}
		c->outoff += n;
	}
	if (c->outoff == c->outlen) {
		free(c->out);
		c->out = NULL;
		c->outoff = c->outlen = 0;
		event_del(&c->wev);
	} else
		event_add(&c->wev, NULL);
}

/*
 * Send one frame with fd attached (SCM_RIGHTS rides with its first byte),
 * never queued behind other output: -1 with EAGAIN when the channel's
 * socket buffer or our queue is not empty, so the fd stays ours.
 */
int
control_send_fd(
    struct control *c, uint8_t type, const char *payload, size_t len, int fd)
{
	unsigned char  frame[SN_PROTO_HDR + SN_PROTO_MAX];
	struct worker *w = c->w;
	ssize_t        n, flen;

	if (c->outoff < c->outlen) {
		control_write(c->fd, EV_WRITE, c);
		if (w->control != c) {
			errno = EPIPE;
			return (-1);
		}
		if (c->outoff < c->outlen) {
			errno = EAGAIN;
			return (-1);
		}
	}
	if ((flen = sn_proto_frame(frame, sizeof frame, type, payload, len)) ==
	    -1)
		fatalx("control_send_fd: frame of %zu bytes", len);
	n = fd_send(c->fd, frame, (size_t)flen, fd);
	if (n == -1)
		return (-1);
	if (n < flen) {
		/* The fd went with the first bytes; the rest waits its turn. */
		c->out = xreallocarray(c->out, 1, (size_t)(flen - n));
		memcpy(c->out, frame + n, (size_t)(flen - n));
		c->outoff = 0;
		c->outlen = (size_t)(flen - n);
		event_add(&c->wev, NULL);
	}
	return (0);
}

void
control_drain(struct control *c)
{
	if (control_send(c, SN_MSG_DRAIN, NULL, 0) == 0)
		c->drain_sent = 1;
}

#define CONTROL_INO_EXTRA 4     /* inode lookups a second beyond its relays */
#define CONTROL_NAME_TELL 10000 /* ms: at most one "cannot name" line per */

/* An IPv4 address in IPv6 clothes is the IPv4 address. */
static void
control_addr_unmap(union proxy_sockaddr *a)
{
	struct sockaddr_in sin;

	if (a->sa.sa_family != AF_INET6 ||
	    !IN6_IS_ADDR_V4MAPPED(&a->sin6.sin6_addr))
		return;
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = a->sin6.sin6_port;
	memcpy(&sin.sin_addr, &a->sin6.sin6_addr.s6_addr[12], 4);
	memset(a, 0, sizeof *a);
	a->sin = sin;
}

/* Whether two addresses are the same address and port. */
static int
control_addr_equal(const union proxy_sockaddr *a, const union proxy_sockaddr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return (0);
	if (a->sa.sa_family == AF_INET)
		return (a->sin.sin_port == b->sin.sin_port &&
		    a->sin.sin_addr.s_addr == b->sin.sin_addr.s_addr);
	return (a->sin6.sin6_port == b->sin6.sin6_port &&
	    memcmp(&a->sin6.sin6_addr, &b->sin6.sin6_addr,
		sizeof a->sin6.sin6_addr) == 0);
}

/* A decimal number of at most maxlen digits, 1 to max; 0 otherwise. */
static unsigned long long
control_key_number(const char *p, size_t maxlen, unsigned long long max)
{
	unsigned long long v;

	if (*p == '\0' || strlen(p) > maxlen ||
	    strspn(p, "0123456789") != strlen(p))
		return (0);
	v = strtoull(p, NULL, 10);
	return (v <= max ? v : 0);
}

/*
 * "HOST:PORT" or "[HOST6]:PORT": the master's end of a TCP connection,
 * address and port, as the worker's getpeername() sees it.
 */
static int
control_key_tcp(const char *s, struct control_key *k)
{
	char        host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(s, ':');
	size_t      n;
	unsigned    port;
	int         ok;

	if (colon == NULL ||
	    (port = (unsigned)control_key_number(colon + 1, 5, 65535)) == 0)
		return (-1);
	if ((n = (size_t)(colon - s)) < 2 || n >= sizeof host)
		return (-1);
	memcpy(host, s, n);
	host[n] = '\0';
	if (host[0] == '[' && host[n - 1] == ']') {
		host[n - 1] = '\0';
		k->addr.sin6.sin6_family = AF_INET6;
		k->addr.sin6.sin6_port = htons(port);
		ok = inet_pton(AF_INET6, host + 1, &k->addr.sin6.sin6_addr);
	} else {
		k->addr.sin.sin_family = AF_INET;
		k->addr.sin.sin_port = htons(port);
		ok = inet_pton(AF_INET, host, &k->addr.sin.sin_addr);
	}
	if (ok != 1)
		return (-1);
	control_addr_unmap(&k->addr);
	k->kind = RELAY_PEER_TCP;
	k->key = port;
	return (0);
}

/* "@sn-PID-SERIAL-TAG", the name control_bind() gave our end. */
static int
control_key_name(const char *s, struct control_key *k)
{
	char        want[32];
	const char *p, *dash;
	size_t      n;

	n = (size_t)snprintf(want, sizeof want, "@sn-%x-", control_pid());
	if (strncmp(s, want, n) != 0)
		return (-1);
	p = s + n;
	if ((dash = strchr(p, '-')) == NULL || dash == p || dash - p > 8 ||
	    strspn(p, "0123456789abcdef") != (size_t)(dash - p) ||
	    strlen(dash + 1) != 16 ||
	    strspn(dash + 1, "0123456789abcdef") != 16)
		return (-1);
	k->kind = RELAY_PEER_NAME;
	k->key = (uint32_t)strtoul(p, NULL, 16);
	k->tag = strtoull(dash + 1, NULL, 16);
	return (0);
}

/*
 * Which connection a key names: see PEER-INFO KEYS in socketnaut-agent(7).
 * A bare port, which older agents sent for TCP, is refused: another local
 * user can connect to the worker from that port of another address.
 */
void
control_key_parse(const char *s, struct control_key *k)
{
	unsigned long long ino;

	memset(k, 0, sizeof *k);
	if (strncmp(s, "ino:", 4) == 0) {
		if ((ino = control_key_number(s + 4, 10, UINT32_MAX)) != 0) {
			k->kind = RELAY_PEER_INODE;
			k->key = (uint32_t)ino;
		}
	} else if (s[0] == '@') {
		if (control_key_name(s, k) == -1)
			k->kind = RELAY_PEER_NONE;
	} else if (control_key_number(s, 5, 65535) != 0)
		k->bare = 1;
	else if (control_key_tcp(s, k) == -1)
		k->kind = RELAY_PEER_NONE;
}

/*
 * Whether the master names its end of the worker's Unix connections: only
 * for a worker that has spoken on its control channel (an agent says
 * hello first), so a plain worker's peer is unnamed, never a made-up name.
 */
int
control_names_peers(const struct worker *w)
{
	return (w->control != NULL && w->control->spoke);
}

/*
 * 64 random bits for a name.  Names are listed in /proc/net/unix, so each
 * has its own: one seen tells nothing of the next.
 */
static int
control_name_tag(uint64_t *tag)
{
	static uint64_t pool[32];
	static size_t   left;
	ssize_t         n;

	if (left == 0) {
		/* Early at boot the pool may not be ready: no name, then. */
		n = getrandom(pool, sizeof pool, GRND_NONBLOCK);
		if (n != (ssize_t)sizeof pool) {
			if (n >= 0)
				errno = EAGAIN;
			return (-1);
		}
		left = sizeof pool / sizeof pool[0];
	}
	*tag = pool[--left];
	return (0);
}

/* Bind our end to a new name; -1 with errno set when it cannot be. */
static int
control_bind_name(struct relay *r)
{
	static uint32_t    serial;
	struct sockaddr_un sun;
	int                n;

	if (control_name_tag(&r->name_tag) == -1)
		return (-1);
	if (++serial == 0)
		serial = 1;
	r->key = serial;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	n = snprintf(sun.sun_path + 1, sizeof sun.sun_path - 1,
	    "sn-%x-%x-%016llx", control_pid(), r->key,
	    (unsigned long long)r->name_tag);
	return (bind(r->wfd, (struct sockaddr *)&sun,
	    offsetof(struct sockaddr_un, sun_path) + 1 + n));
}

/*
 * Before connecting to a Unix worker that names its peers: name our end
 * "@sn-PID-SERIAL-TAG" so the worker can tell us which connection it asks
 * about, with no lookup of the name afterwards.  Anyone may bind abstract
 * names, so the TAG is random, and a name taken is tried once more.
 */
void
control_bind(struct relay *r, struct worker *w)
{
	static long long told;
	static unsigned  untold;
	long long        now;
	int              rc;

	r->peer_kind = RELAY_PEER_NONE;
	if (!control_names_peers(w))
		return;
	if ((rc = control_bind_name(r)) == -1 && errno == EADDRINUSE)
		rc = control_bind_name(r);
	if (rc == 0) {
		r->peer_kind = RELAY_PEER_BOUND;
		return;
	}
	/* Its queries now take the inode path, bounded but slower. */
	now = now_coarse_ms();
	if (told != 0 && now - told < CONTROL_NAME_TELL) {
		untold++;
		return;
	}
	worker_log(LOG_WARNING, w,
	    "cannot name the master's end of a connection (%u more since the last such line): %s",
	    untold, strerror(errno));
	told = now;
	untold = 0;
}

/*
 * The inode of the peer of the Unix socket with inode ino, from the
 * kernel's sock_diag; 0 when it cannot tell.  The kernel walks all Unix
 * sockets to find ino, so callers bound how often they ask.  It answers
 * within send(), so the reply is read without waiting.
 */
static uint32_t
control_diag_peer(uint32_t ino)
{
	struct {
		struct nlmsghdr      nlh;
		struct unix_diag_req req;
	} q;
	union {
		struct nlmsghdr nlh;
		char            buf[512];
	} reply;
	struct unix_diag_msg *dm;
	struct rtattr        *rta;
	static int            nl = -1;
	ssize_t               n;
	uint32_t              peer = 0;
	int                   len;

	if (nl == -1)
		nl = socket(AF_NETLINK,
		    SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    NETLINK_SOCK_DIAG);
	if (nl == -1)
		return (0);
	memset(&q, 0, sizeof q);
	q.nlh.nlmsg_len = sizeof q;
	q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	q.nlh.nlmsg_flags = NLM_F_REQUEST;
	q.req.sdiag_family = AF_UNIX;
	q.req.udiag_states = ~0U;
	q.req.udiag_ino = ino;
	q.req.udiag_show = UDIAG_SHOW_PEER;
	q.req.udiag_cookie[0] = q.req.udiag_cookie[1] = ~0U;
	while (recv(nl, &reply, sizeof reply, MSG_DONTWAIT) > 0)
		; /* a late reply to an earlier query */
	if (send(nl, &q, sizeof q, 0) != (ssize_t)sizeof q ||
	    (n = recv(nl, &reply, sizeof reply, MSG_DONTWAIT)) <
		(ssize_t)NLMSG_LENGTH(sizeof *dm) ||
	    !NLMSG_OK(&reply.nlh, (size_t)n) ||
	    reply.nlh.nlmsg_type != SOCK_DIAG_BY_FAMILY)
		return (0);
	dm = NLMSG_DATA(&reply.nlh);
	if (dm->udiag_ino != ino)
		return (0);
	len = (int)reply.nlh.nlmsg_len - (int)NLMSG_LENGTH(sizeof *dm);
	for (rta = (struct rtattr *)(dm + 1); RTA_OK(rta, len);
	     rta = RTA_NEXT(rta, len)) {
		if (rta->rta_type == UNIX_DIAG_PEER &&
		    RTA_PAYLOAD(rta) >= sizeof peer)
			memcpy(&peer, RTA_DATA(rta), sizeof peer);
	}
	return (peer);
}

/*
 * An "ino:" key names the worker's end of an unnamed connection (made
 * before its agent spoke): one sock_diag lookup gives that socket's peer,
 * which is ours if the connection is this worker's.  Each lookup walks
 * every Unix socket on the host, so a worker gets at most one a query,
 * none without unnamed connections, and a budget of about one a second
 * for each; beyond it the answer is "unknown".
 */
static int
control_key_inode(struct control *c, struct control_key *k)
{
	struct worker *w = c->w;

	if (w->npeers_inode == 0)
		return (-1);
	c->inodes.rate = c->inodes.burst = w->npeers_inode + CONTROL_INO_EXTRA;
	if (!control_log_take(&c->inodes, now_coarse_ms(), 0))
		return (-1);
	if ((k->key = control_diag_peer(k->key)) == 0)
		return (-1);
	return (0);
}

/* The worker's relay a key names, or NULL. */
static struct relay *
control_peer_find(struct control *c, struct control_key *k)
{
	struct worker *w = c->w;
	struct relay  *r;

	if (k->kind == RELAY_PEER_INODE && control_key_inode(c, k) == -1)
		return (NULL);
	TAILQ_FOREACH (r, &w->peers[k->key % CONTROL_PEER_BUCKETS], keyed) {
		if (r->peer_kind != k->kind || r->key != k->key)
			continue;
		if (k->kind == RELAY_PEER_NAME && r->name_tag != k->tag)
			continue;
		if (k->kind == RELAY_PEER_TCP &&
		    !control_addr_equal(&r->wend, &k->addr))
			continue;
		return (r);
	}
	return (NULL);
}

/* How the worker sees our end of the relay: its key, or -1 for none. */
static int
control_peer_key(struct worker *w, struct relay *r)
{
	struct stat st;
	socklen_t   len = sizeof r->wend;

	if (w->addr.ss.ss_family == AF_UNIX) {
		if (r->peer_kind == RELAY_PEER_BOUND) {
			r->peer_kind = RELAY_PEER_NAME;
			return (0);
		}
		/* Unnamed: the inode of our end, which sock_diag reports. */
		if (fstat(r->wfd, &st) == -1)
			return (-1);
		r->peer_kind = RELAY_PEER_INODE;
		r->key = (uint32_t)st.st_ino;
		return (0);
	}
	if (getsockname(r->wfd, &r->wend.sa, &len) == -1)
		return (-1);
	control_addr_unmap(&r->wend);
	r->peer_kind = RELAY_PEER_TCP;
	/* sin_port and sin6_port sit at the same offset. */
	r->key = ntohs(r->wend.sin6.sin6_port);
	return (0);
}

/* Index a relay under the address its worker sees as its peer. */
void
control_peer_add(struct worker *w, struct relay *r)
{
	if (control_peer_key(w, r) == -1) {
		r->peer_kind = RELAY_PEER_NONE;
		return;
	}
	if (r->peer_kind == RELAY_PEER_INODE)
		w->npeers_inode++;
	TAILQ_INSERT_TAIL(&w->peers[r->key % CONTROL_PEER_BUCKETS], r, keyed);
	r->peer_worker = w;
}

void
control_peer_del(struct relay *r)
{
	struct worker *w = r->peer_worker;

	if (w != NULL) {
		TAILQ_REMOVE(
		    &w->peers[r->key % CONTROL_PEER_BUCKETS], r, keyed);
		if (r->peer_kind == RELAY_PEER_INODE)
			w->npeers_inode--;
	}
	r->peer_worker = NULL;
	r->peer_kind = RELAY_PEER_NONE;
}

/* One side of a peer-info or handoff message: SIDE_address, _family, _port. */
void
control_addr_fields(FILE *f, const char *side, const struct sockaddr *ss)
{
	char        host[INET6_ADDRSTRLEN];
	const void *a;
	unsigned    port;

	if (ss->sa_family == AF_INET) {
		a = &((const struct sockaddr_in *)ss)->sin_addr;
		port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
	} else if (ss->sa_family == AF_INET6) {
		a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	} else
		return;
	inet_ntop(ss->sa_family, a, host, sizeof host);
	/* An IPv4 client on a dual-stack listener: report it as IPv4. */
	if (ss->sa_family == AF_INET6 && strncmp(host, "::ffff:", 7) == 0 &&
	    strchr(host, '.') != NULL) {
		fprintf(f, "%s_address=%s\n%s_family=IPv4\n%s_port=%u\n", side,
		    host + 7, side, side, port);
		return;
	}
	fprintf(f, "%s_address=%s\n%s_family=%s\n%s_port=%u\n", side, host,
	    side, ss->sa_family == AF_INET ? "IPv4" : "IPv6", side, port);
}

/* tls_* keys, for a client of a TLS service (older agents ignore them). */
static void
tls_fields(FILE *f, const struct relay *r)
{
	struct tls_info info;

	if (r->tls == NULL)
		return;
	tls_conn_info(r->tls, &info);
	fprintf(
	    f, "tls_version=%s\ntls_cipher=%s\n", info.version, info.cipher);
	if (info.sni[0] != '\0')
		fprintf(f, "tls_sni=%s\n", info.sni);
	if (info.alpn[0] != '\0')
		fprintf(f, "tls_alpn=%s\n", info.alpn);
	if (info.subject[0] != '\0')
		fprintf(f, "tls_client_subject=%s\ntls_client_verified=%d\n",
		    info.subject, info.verified);
}

static void
control_peer_query(struct control *c, const struct sn_msg *m)
{
	struct relay           *r = NULL;
	struct sockaddr_storage local;
	socklen_t               llen = sizeof local;
	struct control_key      k;
	char                    id[32], key[SN_PROTO_MAX + 1], *buf = NULL;
	size_t                  len = 0;
	FILE                   *f;

	if (sn_proto_field(m, "id", id, sizeof id) == -1 ||
	    strspn(id, "0123456789") != strlen(id) || id[0] == '\0' ||
	    sn_proto_field(m, "key", key, sizeof key) == -1) {
		control_close(c, "peer-query without a numeric id and a key");
		return;
	}
	control_key_parse(key, &k);
	if (k.bare && !c->bare_told) {
		c->bare_told = 1;
		worker_log(LOG_WARNING, c->w,
		    "peer-query with a bare port as key, answered unknown: the agent must send ADDRESS:PORT (socketnaut-agent(7))");
	}
	if (k.kind != RELAY_PEER_NONE)
		r = control_peer_find(c, &k);
	if ((f = open_memstream(&buf, &len)) == NULL)
		fatal("open_memstream");
	fprintf(f, "id=%s\n", id);
	if (r != NULL && r->local.sa.sa_family != AF_UNSPEC)
		memcpy(&local, &r->local, sizeof r->local);
	if (r == NULL ||
	    (r->local.sa.sa_family == AF_UNSPEC &&
		getsockname(r->cfd, (struct sockaddr *)&local, &llen) == -1))
		fprintf(f, "status=unknown\n");
	else {
		fprintf(f, "status=ok\n");
		control_addr_fields(f, "remote", &r->peer.sa);
		control_addr_fields(f, "local", (struct sockaddr *)&local);
		tls_fields(f, r);
	}
	fclose(f);
	control_send(c, SN_MSG_PEER_INFO, buf, len - 1);
	free(buf);
}

/* A text field longer than we keep: its start, cut (it is only a log line). */
static int
control_text_cut(const struct sn_msg *m, char *out, size_t outlen)
{
	const char *p = m->payload, *end = p + m->len, *nl;
	size_t      n;

	while (p < end) {
		if (end - p >= 5 && memcmp(p, "text=", 5) == 0) {
			n = (size_t)(end - p - 5);
			if (n >= outlen)
				n = outlen - 1;
			memcpy(out, p + 5, n);
			out[n] = '\0';
			return (0);
		}
		if ((nl = memchr(p, '\n', end - p)) == NULL)
			break;
		p = nl + 1;
	}
	return (-1);
}

/*
 * Charge a log line of textlen bytes to a worker's bucket.  Returns 1 when
 * it may be written, 0 when it is over the budget and must be dropped.
 */
int
control_log_take(struct control_bucket *b, long long now, size_t textlen)
{
	long long cost, full = b->burst * 1000LL;

	/* N lines a second is N thousandths of a line a ms. */
	if (now > b->at) {
		b->tokens += (now - b->at) * b->rate;
		if (b->tokens > full)
			b->tokens = full;
		b->at = now;
	}
	cost = textlen <= CONTROL_LOG_UNIT
	    ? 1
	    : (long long)((textlen + CONTROL_LOG_UNIT - 1) / CONTROL_LOG_UNIT);
	cost *= 1000;
	if (b->tokens < cost)
		return (0);
	b->tokens -= cost;
	return (1);
}

/* One line for the log lines dropped since the last such line. */
static void
control_log_tell(evutil_socket_t fd, short events, void *arg)
{
	struct control *c = arg;

	(void)fd;
	(void)events;
	if (c->suppressed == 0)
		return;
	worker_log(LOG_WARNING, c->w, "%llu log line%s suppressed",
	    c->suppressed, c->suppressed == 1 ? "" : "s");
	c->suppressed = 0;
}

static void
control_log(struct control *c, const struct sn_msg *m)
{
	struct worker *w = c->w;
	char           level[4], text[CONTROL_LOG_MAX + 1], *p;
	int            pri;

	if (sn_proto_field(m, "level", level, sizeof level) == -1 ||
	    level[0] < '0' || level[0] > '7' || level[1] != '\0') {
		control_close(c, "log message without a level 0 to 7");
		return;
	}
	if (sn_proto_field(m, "text", text, sizeof text) == -1 &&
	    control_text_cut(m, text, sizeof text) == -1) {
		control_close(c, "log message without text");
		return;
	}
	for (p = text; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	}
	/* A worker's line is never more urgent than an error. */
	pri = level[0] - '0';
	if (pri < LOG_ERR)
		pri = LOG_ERR;
	if (pri > log_getlevel()) {
		c->dropping++; /* filtered out: no budget, but a flood still */
		return;
	}
	if (!control_log_take(&w->logs, now_coarse_ms(), strlen(text))) {
		c->dropping++;
		if (c->suppressed++ == 0) {
			struct timeval tv = { CONTROL_LOG_TELL / 1000,
				(CONTROL_LOG_TELL % 1000) * 1000 };

			evtimer_add(&c->summary, &tv);
		}
		return;
	}
	worker_log(pri, w, "%s", text);
}

static void
control_ready(struct control *c, const struct sn_msg *m)
{
	struct worker *w = c->w;
	char           addr[128], *cause = NULL;

	/*
	 * The first READY may find the worker already ready (our connection
	 * test was first) or stopping: a race, not abuse.  A second is.
	 */
	if (c->readied++) {
		control_close(c, "ready sent twice");
		return;
	}
	if (sn_proto_field(m, "address", addr, sizeof addr) == -1 &&
	    sn_proto_field(m, "port", addr, sizeof addr) == -1)
		addr[0] = '\0';
	if (worker_reported_ready(w, addr, &cause) == -1) {
		worker_give_up(w, "%s", cause);
		free(cause);
	}
}

/* Returns -1 when the channel was closed. */
static int
control_dispatch(struct control *c, const struct sn_msg *m)
{
	struct worker *w = c->w;
	const char    *why;

	switch (m->type) {
	case SN_MSG_READY:
		control_ready(c, m);
		break;
	case SN_MSG_HELLO:
		/* Again from each process that opens an inherited channel. */
		c->hello++;
		c->dropping++; /* so a flood of them is paused */
		break;
	case SN_MSG_PEER_QUERY:
		control_peer_query(c, m);
		break;
	case SN_MSG_LOG:
		control_log(c, m);
		break;
	case SN_MSG_CLOSED:
		if (handoff_closed(w, m, &why) == -1) {
			control_close(c, why);
			return (-1);
		}
		break;
	case SN_MSG_DRAINED:
		/* An answer to DRAIN or SIGTERM: never unasked, never twice. */
		if (!c->drain_sent && w->state != WORKER_STOPPING) {
			control_close(c, "drained without a drain request");
			return (-1);
		}
		if (c->drained++) {
			control_close(c, "drained sent twice");
			return (-1);
		}
		worker_log(LOG_INFO, w, "drained");
		break;
	default:
		control_close(c, "unexpected message from a worker");
		return (-1);
	}
	return (w->control == c ? 0 : -1);
}

/*
 * Over its log budget by a batch of lines: read this worker again a little
 * later, so a flood costs us a few reads every CONTROL_LOG_PAUSE ms.
 */
static void
control_pause(struct control *c)
{
	struct timeval tv = { 0, CONTROL_LOG_PAUSE * 1000 };

	event_del(&c->rev);
	c->paused = 1;
	c->dropping = 0;
	evtimer_add(&c->more, &tv);
}

static void
control_read(evutil_socket_t fd, short events, void *arg)
{
	struct control *c = arg;
	struct sn_msg   m;
	const char     *cause;
	ssize_t         n, used;
	size_t          off = 0;
	int             frames = 0;

	(void)fd; /* -1 when called as the "more" timer */
	(void)events;
	if (c->paused) {
		c->paused = 0;
		event_add(&c->rev, NULL);
	}
	/* Frames that did nothing are counted over CONTROL_DROP_MS at a time.
	 */
	if (now_coarse_ms() - c->drop_since >= CONTROL_DROP_MS) {
		c->dropping = 0;
		c->drop_since = now_coarse_ms();
	}
	if (c->inlen < sizeof c->in) {
		n = recv(c->fd, c->in + c->inlen, sizeof c->in - c->inlen, 0);
		if (n == 0 || (n == -1 && errno == ECONNRESET)) {
			worker_log(LOG_DEBUG, c->w, "control channel closed");
			control_close(c, NULL);
			return;
		}
		if (n == -1 && errno != EAGAIN && errno != EINTR) {
			control_close(c, strerror(errno));
			return;
		}
		if (n > 0)
			c->inlen += n;
	}
	for (;;) {
		used = sn_proto_parse(c->in + off, c->inlen - off, &m, &cause);
		if (used == -1) {
			control_close(c, cause);
			return;
		}
		if (used == 0)
			break;
		off += used;
		c->spoke = 1;
		if (control_dispatch(c, &m) == -1)
			return;
		if (++frames == CONTROL_FRAMES_PER_READ) {
			/* A flood: let other events run, then come back. */
			evtimer_add(&c->more, &zero);
			break;
		}
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	/*
	 * A flood of frames that do nothing (LOG lines dropped or filtered
	 * out, HELLO): reading it flat out would only burn our CPU.
	 */
	if (c->dropping >= CONTROL_FRAMES_PER_READ / 2)
		control_pause(c);
}
