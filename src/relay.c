/*
 * The byte path between a client and a worker.  Each direction reads into
 * a buffer from a small free list and writes straight on; the buffer goes
 * back at once unless the destination could not take it all, and then it
 * stays with that direction, uncopied, and the source is not read until it
 * drains (backpressure).  Which worker a
 * client goes to, and where it goes when that fails, is the pool's call
 * (service.c); the relay tells it what happened.  Each socket of an open
 * relay has one persistent edge-triggered event for both directions, added
 * once: cready and wready keep what an edge said a socket is ready for
 * until a read or write finds it used up, so a direction that blocks or
 * drains costs no epoll_ctl (a bulk transfer through TLS made six per
 * 64 KiB toggling level-triggered interest), and an idle connection costs
 * two events.
 */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accesslog.h"
#include "control.h"
#include "handoff.h"
#include "listener.h"
#include "log.h"
#include "proxy.h"
#include "relay.h"
#include "service.h"
#include "socketnautd.h"
#include "tls.h"
#include "worker.h"

#define RELAY_SCRATCH    (64 * 1024)
#define RELAY_REPLAY_MAX (16 * 1024) /* kept to move a client, at most */
#define RELAY_OWED_US    20000       /* a silent client's header goes alone */
#define RELAY_ROUNDS     4 /* reads per direction, then others' turn */
#define RELAY_EVENTS     (EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST)
#define RELAY_AT_EOF     0x1000 /* in cready/wready: the next read is the end */

/*
 * Relay buffers, with room before what is read for a proxy_protocol header
 * to go with it.  Freed ones wait in a short list: a busy relay takes and
 * gives back one per read, and neither malloc nor the kernel (heap growth
 * and trimming, page faults) sees it.
 */
#define RELAY_BUF      (PROXY_OUT_MAX + RELAY_SCRATCH)
#define RELAY_BUF_KEEP 32
static char *relay_bufs[RELAY_BUF_KEEP];
static int   relay_nbufs;

static void relay_client_cb(evutil_socket_t, short, void *);
static void relay_worker_cb(evutil_socket_t, short, void *);
static void relay_connected(evutil_socket_t, short, void *);
static void relay_timeout(evutil_socket_t, short, void *);
static void relay_connect_failed(struct relay *, int);
static void relay_unkick(struct relay *);

/* The client side, through TLS when the service terminates it. */
static ssize_t relay_recv(struct relay *, int, void *, size_t);
static ssize_t relay_send(struct relay *, int, const void *, size_t);
static void    relay_shut_wr(struct relay *, int);
static void    relay_tls_close(struct relay *);
static size_t  relay_tls_tlvs(struct relay *, struct proxy_tlv *,
     struct tls_info *, unsigned char *, size_t, size_t);

static char *
relay_buf_get(void)
{
	if (relay_nbufs > 0)
		return (relay_bufs[--relay_nbufs]);
	return (xreallocarray(NULL, 1, RELAY_BUF));
}

static void
relay_buf_put(char *buf)
{
	if (buf == NULL)
		return;
	if (relay_nbufs < RELAY_BUF_KEEP)
		relay_bufs[relay_nbufs++] = buf;
	else
		free(buf);
}

/* Monotonic: a step of the wall clock neither expires nor extends timeouts. */
static long long
relay_now(void)
{
	return (now_coarse_ms());
}

static void
ms_to_tv(long long ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

const char *
relay_peer(const struct relay *r, char *buf, size_t len)
{
	return (addr_str(&r->peer.sa, buf, len));
}

/* A PROXY header named the address the client reached. */
void
relay_set_local(struct relay *r, const struct sockaddr *local)
{
	memcpy(&r->local, local,
	    local->sa_family == AF_INET6 ? sizeof r->local.sin6
					 : sizeof r->local.sin);
}

/* cev as a plain timer (the client is not read until a worker is connected). */
static void
relay_timer(struct relay *r, event_callback_fn cb, long long ms)
{
	struct timeval tv;

	event_del(&r->cev);
	evtimer_assign(&r->cev, sn_base, cb, r);
	ms_to_tv(ms > 0 ? ms : 1, &tv);
	evtimer_add(&r->cev, &tv);
}

/* A client was accepted: it waits for dispatch. */
struct relay *
relay_new(
    struct listener *l, int fd, const struct sockaddr *sa, socklen_t salen)
{
	static uint64_t serial;
	struct service *svc = l->svc;
	struct relay   *r;
	int             one = 1;

	r = xcalloc(1, sizeof *r);
	r->svc = svc;
	r->listener = l;
	r->half_end = -1;
	r->cfd = fd;
	r->wfd = -1;
	r->state = RELAY_QUEUED;
	r->keep = 1;
	r->accepted = r->queued = r->since = relay_now();
	r->wait_since = r->accepted;
	if (salen > sizeof r->peer)
		salen = sizeof r->peer;
	memcpy(&r->peer, sa, salen);
	r->id = ++serial;
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	evtimer_assign(&r->cev, sn_base, relay_timeout, r);
	TAILQ_INSERT_TAIL(&svc->relays, r, all);
	svc->nconns++;
	return (r);
}

/* Queue the client in its service; queue_timeout runs from its queueing. */
static void
relay_enqueue(struct relay *r, int first)
{
	if (r->state != RELAY_QUEUED)
		r->wait_since = relay_now();
	relay_unwait(r);
	if (first)
		TAILQ_INSERT_HEAD(&r->svc->queue, r, entry);
	else
		TAILQ_INSERT_TAIL(&r->svc->queue, r, entry);
	r->svc->nqueued++;
	r->waiting = 1;
	r->state = RELAY_QUEUED;
	relay_timer(r, relay_timeout,
	    r->svc->conf->queue_timeout - (relay_now() - r->queued));
}

/* At the end of the queue: a new client, or one whose worker failed it. */
void
relay_wait(struct relay *r)
{
	relay_enqueue(r, 0);
}

/*
 * At the head of the queue: it was taken from there (or found it empty)
 * and its worker turned out to be full, so it keeps its turn.
 */
void
relay_wait_first(struct relay *r)
{
	relay_enqueue(r, 1);
}

void
relay_unwait(struct relay *r)
{
	if (r->waiting) {
		TAILQ_REMOVE(&r->svc->queue, r, entry);
		r->svc->nqueued--;
		r->waiting = 0;
	}
}

/* Bytes went to the worker: it owes a reply. */
static void
relay_sent(struct relay *r)
{
	struct worker *w = r->worker;

	w->progress = r->last_active;
	if (!r->awaiting) {
		r->awaiting = 1;
		w->awaiting++;
	}
}

/* The client can no longer be moved: drop the copy of what it sent. */
static void
relay_forget(struct relay *r)
{
	r->keep = 0;
	free(r->replay);
	r->replay = NULL;
}

/* Bytes came from the worker: it is not stalled on this client. */
static void
relay_replied(struct relay *r)
{
	struct worker *w = r->worker;

	w->progress = r->last_active;
	if (r->awaiting) {
		r->awaiting = 0;
		w->awaiting--;
	}
	if (!r->replied) {
		r->replied = 1;
		relay_forget(r);
	}
}

static void
relay_detach(struct relay *r)
{
	struct worker *w = r->worker;

	if (w == NULL)
		return;
	if (r->awaiting) {
		r->awaiting = 0;
		w->awaiting--;
	}
	if (r->finished) {
		r->finished = 0;
		w->finished--;
	}
	r->worker = NULL;
	worker_release(w);
}

/*
 * The client leaves the queue (for a worker, or closed): its time there
 * adds up over requeues; the histogram counts each client's first wait.
 */
static void
relay_waited(struct relay *r)
{
	if (r->state != RELAY_QUEUED)
		return;
	r->waited += relay_now() - r->wait_since;
	if (!r->wait_counted) {
		r->wait_counted = 1;
		counters_wait(&r->svc->ctr, r->waited);
	}
}

/* Its worker's process ended other than cleanly: it did not just hang up. */
static int
relay_worker_died(const struct relay *r)
{
	return (r->worker != NULL && r->worker->reaped &&
	    r->worker->exit != WORKER_EXIT_CLEAN);
}

/* Bytes delivered each way, for the relay and for the service. */
static void
relay_count(struct relay *r, struct relay_half *h, ssize_t n)
{
	h->total += n;
	if (h == &r->up)
		r->svc->ctr.bytes_in += n;
	else
		r->svc->ctr.bytes_out += n;
}

/*
 * Close both sockets and let go of the worker and the service now; the
 * memory goes once the current callback is over, so callers up the stack
 * see RELAY_CLOSING rather than freed memory.  end says why (error: the
 * errno behind it, or 0); it is counted and access-logged here.
 */
void
relay_close(struct relay *r, enum relay_end end, int error)
{
	struct service *svc = r->svc;
	char            peer[ADDRSTRLEN];

	if (r->state == RELAY_CLOSING)
		return;
	relay_waited(r);
	svc->ctr.closed[end]++;
	if (svc->alog != NULL)
		accesslog_relay(svc->alog, r, end, error);
	/* Formatting the address costs a fifth of a connection's CPU. */
	if (log_getlevel() < LOG_DEBUG)
		;
	else if (r->worker != NULL)
		worker_log(LOG_DEBUG, r->worker, "client %s: %s%s%s",
		    relay_peer(r, peer, sizeof peer), relay_end_name(end),
		    error ? ": " : "", error ? strerror(error) : "");
	else
		log_debug("service %s: client %s: %s%s%s", svc->conf->name,
		    relay_peer(r, peer, sizeof peer), relay_end_name(end),
		    error ? ": " : "", error ? strerror(error) : "");
	relay_unwait(r);
	relay_unkick(r);
	control_peer_del(r);
	relay_detach(r);
	event_del(&r->cev);
	if (event_initialized(&r->wev))
		event_del(&r->wev);
	relay_buf_put(r->up.buf);
	relay_buf_put(r->down.buf);
	free(r->replay);
	r->up.buf = r->down.buf = r->replay = NULL;
	relay_tls_close(r);
	close(r->cfd);
	if (r->wfd != -1)
		close(r->wfd);
	r->cfd = r->wfd = -1;
	TAILQ_REMOVE(&svc->relays, r, all);
	r->state = RELAY_CLOSING;
	daemon_defer_free(r);
	service_relay_done(svc);
}

/*
 * mode handoff: the worker now holds the client (handoff.c keeps the
 * record that counts it); we drop our copy of the fd and the relay, but
 * not the worker's or the service's count.
 */
void
relay_handed(struct relay *r)
{
	relay_unwait(r);
	relay_unkick(r);
	control_peer_del(r);
	event_del(&r->cev);
	if (event_initialized(&r->wev))
		event_del(&r->wev);
	relay_buf_put(r->up.buf);
	relay_buf_put(r->down.buf);
	free(r->replay);
	r->up.buf = r->down.buf = r->replay = NULL;
	close(r->cfd);
	r->cfd = -1;
	if (r->finished) {
		r->finished = 0;
		r->worker->finished--;
	}
	r->worker = NULL;
	TAILQ_REMOVE(&r->svc->relays, r, all);
	r->state = RELAY_CLOSING;
	daemon_defer_free(r);
}

/*
 * What the worker has not read of what it was sent, as the kernel counts
 * it (SIOCOUTQ: buffer space, so at least the bytes); -1 when it cannot
 * tell (TCP: loopback acknowledges what the worker has not read).
 */
int
relay_unread(const struct relay *r)
{
	int unread;

	if (r->state != RELAY_OPEN || r->worker == NULL ||
	    r->worker->addr.ss.ss_family != AF_UNIX ||
	    ioctl(r->wfd, SIOCOUTQ, &unread) == -1)
		return (-1);
	return (unread);
}

/*
 * Whether the client can go to another worker without the risk that this
 * one acted on its request: the worker sent nothing back and left every
 * byte it was sent unread (on a Unix socket the kernel still holds at
 * least that much for it), or it was sent nothing.  The kernel counts
 * buffer space, not bytes, so a worker that read a first part and then
 * stalled can pass for one that read nothing; socketnaut.conf(5) says so.
 */
int
relay_replayable(struct relay *r)
{
	size_t sent;
	int    unread;

	if (r->state != RELAY_OPEN || r->replied || r->up.done)
		return (0);
	if (r->replaylen == 0)
		return (1);
	if (!r->keep)
		return (0);
	sent = r->replaylen - (r->up.buf != NULL ? r->up.len - r->up.off : 0);
	unread = relay_unread(r);
	return (unread > 0 && (size_t)unread >= sent);
}

/*
 * Leave the worker connection (failed, or its worker stalled) and go back
 * to waiting for a worker; what the client sent goes again to the next.
 */
void
relay_rewind(struct relay *r)
{
	if (r->state == RELAY_OPEN) {
		r->queued = relay_now();
		relay_buf_put(r->up.buf);
		r->up.buf = NULL;
		r->up.off = r->up.len = 0;
		if (r->replay != NULL) {
			/* At most RELAY_REPLAY_MAX: it fits. */
			r->up.buf = relay_buf_get();
			memcpy(r->up.buf, r->replay, r->replaylen);
			r->up.len = r->replaylen;
		}
		relay_buf_put(r->down.buf);
		r->down.buf = NULL;
		r->down.off = r->down.len = 0;
		r->down.done = 0;
	}
	relay_unkick(r);
	control_peer_del(r);
	event_del(&r->cev);
	if (r->wfd != -1) {
		if (event_initialized(&r->wev))
			event_del(&r->wev);
		close(r->wfd);
		r->wfd = -1;
	}
	relay_detach(r);
	r->cmask = r->wmask = 0;
	r->cready = r->wready = 0;
	r->state = RELAY_QUEUED;
	r->wait_since = relay_now();
}

/* How long the proxy_protocol header waits for the client's first bytes. */
static const struct timeval *
relay_owed_tv(void)
{
	static const struct timeval *tv;
	struct timeval               owed = { 0, RELAY_OWED_US };

	if (tv == NULL)
		tv = event_base_init_common_timeout(sn_base, &owed);
	return (tv);
}

/*
 * Relays with work left after their RELAY_ROUNDS run again after the next
 * poll (a zero timer, not event_active: libevent would run those in the
 * same pass, and a relay with endless work would starve every socket).
 */
static TAILQ_HEAD(, relay) kicks = TAILQ_HEAD_INITIALIZER(kicks);
static struct event kick_ev;

static void relay_pump(struct relay *);

static void
relay_kicks_cb(evutil_socket_t fd, short events, void *arg)
{
	struct relay *r;
	int           n = 0;

	(void)fd;
	(void)events;
	(void)arg;
	TAILQ_FOREACH (r, &kicks, kick)
		n++;
	/* Only those already there: one kicked again waits for its turn. */
	while (n-- > 0 && (r = TAILQ_FIRST(&kicks)) != NULL) {
		relay_unkick(r);
		if (r->state == RELAY_OPEN)
			relay_pump(r);
	}
}

static void
relay_kick(struct relay *r)
{
	static const struct timeval now = { 0, 0 };

	if (r->kicked)
		return;
	if (!event_initialized(&kick_ev))
		evtimer_assign(&kick_ev, sn_base, relay_kicks_cb, NULL);
	TAILQ_INSERT_TAIL(&kicks, r, kick);
	r->kicked = 1;
	if (!evtimer_pending(&kick_ev, NULL))
		evtimer_add(&kick_ev, &now);
}

static void
relay_unkick(struct relay *r)
{
	if (r->kicked) {
		TAILQ_REMOVE(&kicks, r, kick);
		r->kicked = 0;
	}
}

/* What the client socket must be ready for to read, or to write (TLS). */
static int
relay_client_can(const struct relay *r, short op)
{
	short need = op;

	if (r->tls != NULL)
		need = op == EV_READ ? r->tlsrd : r->tlswr;
	return ((r->cready & need) != 0);
}

/* What can move now. */
enum {
	RELAY_FLUSH_DOWN = 1, /* pending bytes to the client */
	RELAY_FLUSH_UP = 2,   /* pending bytes to the worker */
	RELAY_READ_UP = 4,    /* the client has bytes */
	RELAY_READ_DOWN = 8   /* the worker has bytes */
};

static int
relay_work(const struct relay *r)
{
	int work = 0;

	if (r->down.buf != NULL && relay_client_can(r, EV_WRITE))
		work |= RELAY_FLUSH_DOWN;
	if (r->up.buf != NULL && (r->wready & EV_WRITE))
		work |= RELAY_FLUSH_UP;
	if (r->up.buf == NULL && !r->up.done && relay_client_can(r, EV_READ))
		work |= RELAY_READ_UP;
	if (r->down.buf == NULL && !r->down.done && (r->wready & EV_READ))
		work |= RELAY_READ_DOWN;
	return (work);
}

/* Add an OPEN relay's events once; run it again if it has work left. */
static void
relay_update(struct relay *r)
{
	if (!r->cmask) {
		event_assign(
		    &r->cev, sn_base, r->cfd, RELAY_EVENTS, relay_client_cb, r);
		event_add(&r->cev, r->owed ? relay_owed_tv() : r->svc->idle_tv);
		r->cmask = 1;
	}
	if (!r->wmask) {
		event_assign(
		    &r->wev, sn_base, r->wfd, RELAY_EVENTS, relay_worker_cb, r);
		event_add(&r->wev, r->svc->idle_tv);
		r->wmask = 1;
	}
	if (relay_work(r))
		relay_kick(r);
}

/*
 * proxy_protocol: the header goes first on every worker connection, so a
 * client moved to another worker is announced again to that one.  A new
 * socket's send buffer is empty, so a short send means a broken one.
 */
static ssize_t
relay_proxy_encode(struct relay *r, char *hdr)
{
	static unsigned  pid;
	struct proxy_tlv tlv[4];
	struct tls_info  info;
	unsigned char    ssl[160];
	char             id[40];
	socklen_t        len = sizeof r->local;
	size_t           ntlv = 1;

	if (r->local.sa.sa_family == AF_UNSPEC && r->listener != NULL)
		r->local = r->listener->local;
	if (r->local.sa.sa_family == AF_UNSPEC &&
	    getsockname(r->cfd, &r->local.sa, &len) == -1)
		r->local.sa.sa_family = AF_UNSPEC;
	if (pid == 0)
		pid = (unsigned)getpid();
	tlv[0].type = PROXY_TLV_UNIQUE_ID;
	tlv[0].len = (uint16_t)snprintf(
	    id, sizeof id, "%x-%llx", pid, (unsigned long long)r->id);
	tlv[0].value = id;
	if (r->tls != NULL)
		ntlv += relay_tls_tlvs(r, tlv + 1, &info, ssl, sizeof ssl,
		    PROXY_OUT_MAX - 64 - tlv[0].len);
	return (proxy_encode(hdr, PROXY_OUT_MAX, r->svc->conf->proxy_protocol,
	    &r->peer.sa, &r->local.sa, tlv, ntlv));
}

/*
 * The header alone: for a moved client (its request waits in up.buf) or a
 * client that has sent nothing yet.
 */
/*
 * The header went: the client's event, if it waited with the short owed
 * timeout, is added again by relay_update with the idle one.
 */
static void
relay_paid(struct relay *r)
{
	r->owed = 0;
	if (r->state == RELAY_OPEN && r->cmask)
		event_add(
		    &r->cev, r->svc->idle_tv); /* only the timeout moves */
}

static int
relay_proxy_header(struct relay *r)
{
	char    hdr[PROXY_OUT_MAX];
	ssize_t n, w;

	relay_paid(r);
	if ((n = relay_proxy_encode(r, hdr)) == -1) {
		errno = EINVAL;
		return (-1);
	}
	w = send(r->wfd, hdr, n, MSG_NOSIGNAL);
	if (w == n)
		return (0);
	if (w >= 0)
		errno = EIO;
	return (-1);
}

/* Both sides are connected: start moving bytes. */
static void
relay_open(struct relay *r)
{
	/*
	 * proxy_protocol: the header goes with the client's first bytes in
	 * one send (relay_read), or alone if the client says nothing for
	 * RELAY_OWED_US (a protocol where the server speaks first).
	 */
	r->owed = r->svc->conf->proxy_protocol != PROXY_OFF;
	if (r->owed && r->up.buf != NULL && relay_proxy_header(r) == -1) {
		relay_connect_failed(r, errno);
		return;
	}
	event_del(&r->cev);
	if (event_initialized(&r->wev))
		event_del(&r->wev);
	worker_connected(r->worker);
	r->state = RELAY_OPEN;
	r->last_active = r->opened = relay_now();
	/* Only a Unix worker can show it never read what it was sent. */
	if (r->worker->addr.ss.ss_family != AF_UNIX)
		relay_forget(r);
	r->cmask = r->wmask = 0;
	/* Adding the events reports what each socket is ready for. */
	r->cready = r->wready = 0;
	r->tlsrd = EV_READ;
	r->tlswr = EV_WRITE;
	if (r->tls != NULL && tls_conn_more(r->tls))
		r->cready |= EV_READ; /* read with the handshake */
	relay_update(r);
	if (r->up.buf != NULL)
		relay_sent(r); /* a moved client's request waits to go */
}

static void
relay_try_connect(struct relay *r)
{
	struct worker *w = r->worker;
	struct timeval tv;
	int            one = 1, rc, error;

	if (r->svc->conf->mode == MODE_HANDOFF) {
		handoff_give(r);
		return;
	}
	if (r->wfd == -1) {
		r->wfd = socket(w->addr.ss.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (r->wfd == -1 && (errno == EMFILE || errno == ENFILE)) {
			/* Out of fds: the client waits for one to free up. */
			relay_detach(r);
			relay_wait(r);
			service_fd_exhausted(r->svc);
			return;
		}
		if (r->wfd == -1) {
			error = errno;
			log_warn("service %s: socket", r->svc->conf->name);
			relay_close(r, RELAY_END_ERROR, error);
			return;
		}
		if (w->addr.ss.ss_family != AF_UNIX)
			setsockopt(
			    r->wfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		else
			control_bind(r, w);
	}
	rc = connect(r->wfd, (struct sockaddr *)&w->addr.ss, w->addr.len);
	error = errno;
	/*
	 * Index the connection for peer-info queries before the loop runs
	 * again: the worker may accept and ask before our connect completes.
	 */
	if ((rc == 0 || error == EINPROGRESS) && r->svc->conf->control &&
	    r->peer_worker == NULL)
		control_peer_add(w, r);
	if (rc == 0) {
		relay_open(r);
		return;
	}
	if (error == EINPROGRESS) {
		event_assign(
		    &r->wev, sn_base, r->wfd, EV_WRITE, relay_connected, r);
		ms_to_tv(
		    r->svc->conf->connect_timeout - (relay_now() - r->since),
		    &tv);
		event_add(&r->wev, &tv);
		return;
	}
	/* EAGAIN: a Unix socket's backlog is full; the pool calls it busy. */
	relay_connect_failed(r, error);
}

/*
 * A failed connect: a line each, within the service's budget; those over
 * it are counted and the next line says how many.  A worker that cannot be
 * reached fails every client that waits for it, in one burst.
 */
static void
relay_connect_log(struct relay *r, int error)
{
	struct service *svc = r->svc;
	char            peer[ADDRSTRLEN];

	if (!control_log_take(&svc->connect_log, relay_now(), 0)) {
		svc->connect_unlogged++;
		return;
	}
	if (svc->connect_unlogged == 0)
		worker_log(LOG_WARNING, r->worker, "client %s: connect: %s",
		    relay_peer(r, peer, sizeof peer), strerror(error));
	else
		worker_log(LOG_WARNING, r->worker,
		    "client %s: connect: %s (%lu more connect failures not logged)",
		    relay_peer(r, peer, sizeof peer), strerror(error),
		    svc->connect_unlogged);
	svc->connect_unlogged = 0;
}

/* The pool decides where the client goes after a failed connect. */
static void
relay_connect_failed(struct relay *r, int error)
{
	if (error != EAGAIN) {
		r->svc->ctr.connect_failures++;
		relay_connect_log(r, error);
	}
	service_connect_failed(r, error);
}

/* Connect the client to the ready worker the pool assigned it. */
void
relay_connect(struct relay *r)
{
	relay_unwait(r);
	relay_waited(r);
	event_del(&r->cev);
	r->state = RELAY_CONNECTING;
	r->since = relay_now();
	relay_try_connect(r);
}

static void
relay_connected(evutil_socket_t fd, short events, void *arg)
{
	struct relay *r = arg;
	socklen_t     len = sizeof(int);
	int           error = 0;

	if (events & EV_TIMEOUT) {
		relay_connect_failed(r, ETIMEDOUT);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == -1)
		error = errno;
	if (error != 0) {
		relay_connect_failed(r, error);
		return;
	}
	relay_open(r);
}

/* queue_timeout: the client waited too long for a worker. */
static void
relay_timeout(evutil_socket_t fd, short events, void *arg)
{
	struct relay *r = arg;

	(void)fd;
	(void)events;
	service_queue_timeout(r->svc);
	relay_close(r, RELAY_END_QUEUE_TIMEOUT, 0);
}

/*
 * One direction is finished, because side (RELAY_END_CLIENT or _WORKER)
 * ended it.  The relay closes when both are, ended by the side that ended
 * first, or when we are shutting down and the worker has answered in full.
 */
static void
relay_half_done(struct relay *r, struct relay_half *h, enum relay_end side)
{
	h->done = 1;
	if (h == &r->down && side == RELAY_END_WORKER && r->worker != NULL &&
	    !r->finished) {
		/*
		 * The worker has said all it will: its slot is free for the
		 * next client now, not once this one has read the end and
		 * hung up (a busy client can take 50-150ms).
		 */
		r->finished = 1;
		r->worker->finished++;
		if (r->worker->state == WORKER_READY)
			service_slot_freed(r->svc, r->worker);
	}
	relay_buf_put(h->buf);
	h->buf = NULL;
	h->off = h->len = 0;
	if (r->half_end == -1)
		r->half_end = side;
	if (r->up.done && r->down.done)
		relay_close(r,
		    r->half_end == RELAY_END_WORKER && relay_worker_died(r)
			? RELAY_END_WORKER_DIED
			: (enum relay_end)r->half_end,
		    0);
	else if (r->down.done && r->svc->stopping)
		relay_close(r, RELAY_END_SHUTDOWN, 0);
}

/*
 * Shutting down: a client whose worker has finished answering has nothing
 * more to wait for; do not hold the shutdown for it to hang up.
 */
void
relay_finished(struct relay *r)
{
	if ((r->state == RELAY_OPEN && r->down.done) ||
	    r->state == RELAY_HANDSHAKE)
		relay_close(r, RELAY_END_SHUTDOWN, 0);
}

/*
 * Count what the client sent before the worker's first byte back, and
 * keep a copy of it while that stays small, to move the client if need be.
 */
static void
relay_keep(struct relay *r, const char *buf, size_t n)
{
	if (r->replied)
		return;
	if (r->keep && r->replaylen + n > RELAY_REPLAY_MAX)
		relay_forget(r);
	if (r->keep) {
		r->replay = xreallocarray(r->replay, 1, r->replaylen + n);
		memcpy(r->replay + r->replaylen, buf, n);
	}
	r->replaylen += n;
}

/*
 * Bytes dst could not take yet (from p to end in buf): they wait in h, in
 * the buffer they were read into, and reading pauses.
 */
static void
relay_pending(struct relay_half *h, char *buf, const char *p, const char *end)
{
	h->buf = buf;
	h->off = (size_t)(p - buf);
	h->len = (size_t)(end - buf);
}

/*
 * The proxy_protocol header is owed: with the client's first bytes it goes
 * in the same send, put just before them in the buffer (*out, *hl); with none
 * yet (the client waits for the server to speak, or sent a FIN) alone.
 */
static int
relay_read_owed(struct relay *r, ssize_t n, char **out, ssize_t *hl)
{
	char hdr[PROXY_OUT_MAX];

	if (n <= 0) {
		if (n == -1 && errno != EAGAIN && errno != EINTR)
			return (0); /* the read error closes it */
		if (relay_proxy_header(r) == -1) {
			relay_close(r, RELAY_END_ERROR, errno);
			return (-1);
		}
		return (0);
	}
	if ((*hl = relay_proxy_encode(r, hdr)) == -1) {
		relay_close(r, RELAY_END_ERROR, EINVAL);
		return (-1);
	}
	*out -= *hl;
	memcpy(*out, hdr, *hl);
	relay_paid(r);
	return (0);
}

static void
relay_read(struct relay *r, struct relay_half *h, int src, int dst)
{
	char   *buf = relay_buf_get(), *data = buf + PROXY_OUT_MAX, *out = data;
	ssize_t n, w, hl = 0;

	n = relay_recv(r, src, data, RELAY_SCRATCH);
	if (h == &r->up && r->owed && relay_read_owed(r, n, &out, &hl) == -1) {
		relay_buf_put(buf);
		return;
	}
	if (n > 0) {
		r->last_active = relay_now();
		if (h == &r->up)
			relay_keep(r, data, n);
		else
			relay_replied(r);
		w = relay_send(r, dst, out, hl + n);
		if (w > 0 && w < hl) {
			/* Not even the header went (a full buffer): all waits.
			 */
			relay_pending(h, buf, out + w, data + n);
			return;
		}
		if (w > 0) {
			w -= hl; /* what follows the header is the client's */
			relay_count(r, h, w);
		}
		if (w > 0 && h == &r->up)
			relay_sent(r);
		if (w == n) {
			relay_buf_put(buf);
			return;
		}
		if (w == -1) {
			if (errno != EAGAIN && errno != EINTR) {
				relay_buf_put(buf);
				/* The destination will take nothing more. */
				shutdown(src, SHUT_RD);
				relay_half_done(r, h,
				    h == &r->up ? RELAY_END_WORKER
						: RELAY_END_CLIENT);
				return;
			}
			if (hl > 0) {
				relay_pending(h, buf, out, data + n);
				return;
			}
			w = 0;
		}
		relay_pending(h, buf, data + w, data + n);
		return;
	}
	relay_buf_put(buf);
	if (n == 0) {
		/*
		 * FIN: nothing is pending (we do not read while it is).  When
		 * the other direction is over too, close() sends the FIN.
		 */
		if (!(h == &r->up ? r->down.done : r->up.done))
			relay_shut_wr(r, dst);
		relay_half_done(
		    r, h, h == &r->up ? RELAY_END_CLIENT : RELAY_END_WORKER);
		return;
	}
	if (errno != EAGAIN && errno != EINTR)
		relay_close(r,
		    h == &r->down && relay_worker_died(r)
			? RELAY_END_WORKER_DIED
			: RELAY_END_ERROR,
		    errno);
}

/* Send pending bytes to dst. */
static void
relay_flush(struct relay *r, struct relay_half *h, int dst)
{
	ssize_t w;

	w = relay_send(r, dst, h->buf + h->off, h->len - h->off);
	if (w == -1) {
		if (errno != EAGAIN && errno != EINTR)
			relay_half_done(r, h,
			    h == &r->up ? RELAY_END_WORKER : RELAY_END_CLIENT);
		return;
	}
	r->last_active = relay_now();
	relay_count(r, h, w);
	if (h == &r->up)
		relay_sent(r);
	h->off += w;
	if (h->off == h->len) {
		relay_buf_put(h->buf);
		h->buf = NULL;
		h->off = h->len = 0;
	}
}

static int
relay_idle(struct relay *r, short events)
{
	if (!(events & EV_TIMEOUT))
		return (0);
	if (relay_now() - r->last_active < r->svc->conf->idle_timeout)
		return (0);
	relay_close(r, RELAY_END_IDLE, 0);
	return (1);
}

/*
 * Move what can move: pending bytes first, then fresh reads, each
 * direction until its socket is used up or RELAY_ROUNDS reads went; a
 * relay with work left runs again after the next poll.
 */
static void
relay_pump(struct relay *r)
{
	int i, work;

	for (i = 0; i < RELAY_ROUNDS && (work = relay_work(r)) != 0; i++) {
		if (work & RELAY_FLUSH_DOWN)
			relay_flush(r, &r->down, r->cfd);
		if (r->state == RELAY_CLOSING)
			return;
		if (work & RELAY_FLUSH_UP)
			relay_flush(r, &r->up, r->wfd);
		if (r->state == RELAY_CLOSING)
			return;
		if ((work & RELAY_READ_UP) && r->up.buf == NULL && !r->up.done)
			relay_read(r, &r->up, r->cfd, r->wfd);
		if (r->state == RELAY_CLOSING)
			return;
		if ((work & RELAY_READ_DOWN) && r->down.buf == NULL &&
		    !r->down.done)
			relay_read(r, &r->down, r->wfd, r->cfd);
		if (r->state == RELAY_CLOSING)
			return;
	}
	relay_update(r);
}

/* An edge on one socket: note what it is ready for, then move bytes. */
static void
relay_io(struct relay *r, short events, short *ready)
{
	if (relay_idle(r, events))
		return;
	/*
	 * The idle timer's tick: look again at both sockets, so that even an
	 * edge the readiness bookkeeping lost costs a wait, not a hang.
	 */
	if (events & EV_TIMEOUT) {
		r->cready |= EV_READ | EV_WRITE;
		r->wready |= EV_READ | EV_WRITE;
	}
	*ready |= events & (EV_READ | EV_WRITE | EV_CLOSED);
	/* A hang-up: reads find the end (libevent reports it as EV_READ). */
	if (events & EV_CLOSED)
		*ready |= EV_READ;
	relay_unkick(r);
	relay_pump(r);
}

static void
relay_client_cb(evutil_socket_t fd, short events, void *arg)
{
	struct relay *r = arg;

	(void)fd;
	/* The client has said nothing: the worker may speak first. */
	if (r->owed && events == EV_TIMEOUT) {
		if (relay_proxy_header(r) == -1) {
			relay_close(r, RELAY_END_ERROR, errno);
			return;
		}
		relay_update(r);
		return;
	}
	relay_io(r, events, &r->cready);
}

static void
relay_worker_cb(evutil_socket_t fd, short events, void *arg)
{
	struct relay *r = arg;

	(void)fd;
	relay_io(r, events, &r->wready);
}

/*
 * TLS on the client side.  The handshake comes before the pool sees the
 * client: one that never completes it (a scanner, a plaintext client, a
 * slow one) holds no worker, no queue place and starts no worker, and
 * the worker's first peer-info query already has SNI and ALPN.
 */
static ssize_t
relay_recv(struct relay *r, int fd, void *buf, size_t len)
{
	short  *ready = fd == r->cfd ? &r->cready : &r->wready;
	ssize_t n;

	if (r->tls == NULL || fd != r->cfd) {
		if (*ready & RELAY_AT_EOF)
			return (0);
		n = read(fd, buf, len);
		/*
		 * Short: the socket is drained, and what comes later makes a
		 * new edge.  Short after the peer's end was signalled: every
		 * byte before the end is read, so the end is next (no read
		 * needed to learn it).
		 */
		if (n > 0 && (size_t)n < len && (*ready & EV_CLOSED))
			*ready |= RELAY_AT_EOF;
		else if ((n == -1 && errno == EAGAIN) ||
		    (n > 0 && (size_t)n < len))
			*ready &= ~EV_READ;
		return (n);
	}
	n = tls_conn_read(r->tls, buf, len);
	r->tlsrd = EV_READ;
	if (n == -1 && errno == EAGAIN) {
		/* For the socket to give, or to take (a key update). */
		r->tlsrd = tls_conn_want(r->tls);
		*ready &= ~r->tlsrd;
	} else if (n > 0 && !tls_conn_more(r->tls) && !(*ready & EV_CLOSED))
		*ready &= ~EV_READ; /* it read until the socket had no more */
	return (n);
}

static ssize_t
relay_send(struct relay *r, int fd, const void *buf, size_t len)
{
	short  *ready = fd == r->cfd ? &r->cready : &r->wready;
	ssize_t n;

	if (r->tls == NULL || fd != r->cfd) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if ((n == -1 && errno == EAGAIN) || (n >= 0 && (size_t)n < len))
			*ready &= ~EV_WRITE;
		return (n);
	}
	n = tls_conn_write(r->tls, buf, len);
	r->tlswr = EV_WRITE;
	if (n == -1 && errno == EAGAIN) {
		r->tlswr = tls_conn_want(r->tls);
		*ready &= ~r->tlswr;
	} else if (n >= 0 && (size_t)n < len)
		*ready &= ~EV_WRITE; /* a partial write stopped at EAGAIN */
	return (n);
}

/* The worker finished: close_notify, then the TCP half-close. */
static void
relay_shut_wr(struct relay *r, int fd)
{
	if (r->tls != NULL && fd == r->cfd)
		tls_conn_close_notify(r->tls);
	shutdown(fd, SHUT_WR);
}

static void relay_handshake_cb(evutil_socket_t, short, void *);

/* Wait for what the handshake needs, within handshake_timeout. */
static void
relay_handshake_wait(struct relay *r)
{
	struct timeval tv;
	long long      left;

	/* A reload may have taken the service's tls section away meanwhile. */
	left = r->svc->conf->tls != NULL ? r->svc->conf->tls->handshake_timeout
					 : TLS_HANDSHAKE_TIMEOUT;
	left -= relay_now() - r->accepted;
	ms_to_tv(left > 0 ? left : 1, &tv);
	/* Still waiting for the same: only the timeout moves (no epoll_ctl). */
	if (r->cmask != tls_conn_want(r->tls)) {
		if (r->cmask > 0)
			event_del(&r->cev);
		r->cmask = tls_conn_want(r->tls);
		event_assign(&r->cev, sn_base, r->cfd, r->cmask | EV_PERSIST,
		    relay_handshake_cb, r);
	}
	event_add(&r->cev, &tv);
}

/* TLS failures: one line per connection, at most 10 a second. */
static struct control_bucket tls_log = { 0, 0, 10, 20 };

/* Count and log a handshake that failed, once. */
static void
relay_handshake_failed(struct relay *r, enum relay_end end)
{
	const char *why = tls_conn_error(r->tls);
	char        peer[ADDRSTRLEN];

	if (end == RELAY_END_TLS_TIMEOUT)
		why = "handshake timeout";
	if (control_log_take(&tls_log, relay_now(), 0))
		log_info("service %s: client %s: TLS handshake: %s",
		    r->svc->conf->name, relay_peer(r, peer, sizeof peer),
		    why != NULL ? why : "failed");
	relay_close(r, end, 0);
}

static void
relay_handshake_step(struct relay *r)
{
	switch (tls_conn_handshake(r->tls)) {
	case TLS_HANDSHAKE_DONE:
		if (r->cmask > 0)
			event_del(&r->cev);
		r->cmask = 0;
		evtimer_assign(&r->cev, sn_base, relay_timeout, r);
		r->state = RELAY_QUEUED;
		r->queued = r->since = r->wait_since = relay_now();
		service_dispatch(r->svc, r);
		return;
	case TLS_HANDSHAKE_WANT:
		relay_handshake_wait(r);
		return;
	}
	switch (tls_conn_failure(r->tls)) {
	case TLS_FAILURE_PLAINTEXT:
		relay_handshake_failed(r, RELAY_END_TLS_PLAINTEXT);
		break;
	case TLS_FAILURE_ABORTED:
		relay_handshake_failed(r, RELAY_END_TLS_ABORTED);
		break;
	default:
		relay_handshake_failed(r, RELAY_END_TLS_FAILED);
		break;
	}
}

static void
relay_handshake_cb(evutil_socket_t fd, short events, void *arg)
{
	struct relay *r = arg;

	(void)fd;
	if (events & EV_TIMEOUT) {
		relay_handshake_failed(r, RELAY_END_TLS_TIMEOUT);
		return;
	}
	relay_handshake_step(r);
}

/*
 * A client of a TLS service: start its handshake (1), or say that the
 * service has no TLS (0); the pool gets the client once it is done.
 */
int
relay_handshake(struct relay *r)
{
	struct tls_conf *t = r->svc->conf->tls;

	if (t == NULL || t->tls == NULL)
		return (0);
	r->state = RELAY_HANDSHAKE;
	if ((r->tls = tls_conn_new(t->tls, r->cfd)) == NULL) {
		relay_close(r, RELAY_END_ERROR, ENOMEM);
		return (1);
	}
	relay_handshake_step(r);
	return (1);
}

/* A TLS error is logged once, when the connection ends. */
static void
relay_tls_close(struct relay *r)
{
	const char *why;
	char        peer[ADDRSTRLEN];

	if (r->tls == NULL)
		return;
	if (r->state != RELAY_HANDSHAKE &&
	    (why = tls_conn_error(r->tls)) != NULL &&
	    control_log_take(&tls_log, relay_now(), 0))
		log_info("service %s: client %s: TLS: %s", r->svc->conf->name,
		    relay_peer(r, peer, sizeof peer), why);
	tls_conn_free(r->tls);
	r->tls = NULL;
}

/*
 * PROXY v2 TLVs for a TLS client (up to three): PP2_TYPE_SSL, then the
 * server name (PP2_TYPE_AUTHORITY) and the ALPN protocol (PP2_TYPE_ALPN)
 * while they fit in room bytes.
 */
static size_t
relay_tls_tlvs(struct relay *r, struct proxy_tlv *tlv, struct tls_info *info,
    unsigned char *ssl, size_t ssllen, size_t room)
{
	size_t n = 0, len;

	tls_conn_info(r->tls, info);
	if ((len = tls_proxy_ssl(info, ssl, ssllen)) > 0 && 3 + len <= room) {
		tlv[n].type = PROXY_TLV_SSL;
		tlv[n].len = (uint16_t)len;
		tlv[n++].value = ssl;
		room -= 3 + len;
	}
	if ((len = strlen(info->sni)) > 0 && 3 + len <= room) {
		tlv[n].type = PROXY_TLV_AUTHORITY;
		tlv[n].len = (uint16_t)len;
		tlv[n++].value = info->sni;
		room -= 3 + len;
	}
	if ((len = strlen(info->alpn)) > 0 && 3 + len <= room) {
		tlv[n].type = PROXY_TLV_ALPN;
		tlv[n].len = (uint16_t)len;
		tlv[n++].value = info->alpn;
	}
	return (n);
}
