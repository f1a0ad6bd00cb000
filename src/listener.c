/*
 * A service's public sockets.  Accepts come in bounded batches so one busy
 * port cannot starve the loop; when the process runs out of descriptors a
 * listener pauses for a moment instead of spinning on a socket that stays
 * readable.  With accept_proxy, a client from a trusted load balancer is
 * held here until its PROXY header is read (peeked, then exactly the
 * header consumed, so the client's own bytes stay in the kernel).  What to
 * do with an accepted client is the service's call.
 */
#include <sys/socket.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "proxy.h"
#include "service.h"
#include "socketnautd.h"

#define ACCEPT_BATCH    64
#define INHERIT_FIRST   3    /* SD_LISTEN_FDS_START */
#define INHERIT_MAX_FDS 4096 /* more than any configuration binds */
#define PENDING_MAX     1024 /* clients of one listener owing a header */
#define PROXY_WARN_MS   1000 /* one refused-header line a second at most */

/* A listening socket passed to us, not yet claimed by a listener. */
struct inherited {
	int                     fd;
	int                     v6only;
	struct sockaddr_storage ss;
};

static struct inherited *inherited;
static size_t            ninherited;

/* A client whose PROXY header has not come in full yet. */
struct listener_pending {
	TAILQ_ENTRY(listener_pending) entry;
	struct listener     *l;
	int                  fd;
	union proxy_sockaddr peer;
	socklen_t            peerlen;
	struct event         ev;    /* readable, edge-triggered: new bytes */
	struct event         timer; /* proxy_timeout */
};

static void listener_accept(evutil_socket_t, short, void *);
static void listener_resume(evutil_socket_t, short, void *);

/* A passed fd we keep: a listening TCP socket; its address says which. */
static int
listener_inherit_one(int fd, struct inherited *in)
{
	socklen_t len = sizeof in->ss;
	int       v, one = sizeof v;

	in->fd = fd;
	in->v6only = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, (socklen_t *)&one) ==
		-1 ||
	    !v)
		return (-1);
	one = sizeof v;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, (socklen_t *)&one) == -1 ||
	    v != SOCK_STREAM ||
	    getsockname(fd, (struct sockaddr *)&in->ss, &len) == -1 ||
	    (in->ss.ss_family != AF_INET && in->ss.ss_family != AF_INET6))
		return (-1);
	one = sizeof v;
	if (in->ss.ss_family == AF_INET6 &&
	    getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, (socklen_t *)&one) ==
		0)
		in->v6only = v;
	fd_nonblock(fd);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	return (0);
}

/*
 * Sockets passed as systemd passes them (LISTEN_PID, LISTEN_FDS from fd 3):
 * a binary upgrade's old master (upgrade.c), or socket activation.  Each
 * is known by what the kernel says it is bound to, never by its name.
 */
void
listener_inherit(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	char        buf[ADDRSTRLEN], *end;
	long        n, i;

	if (pid == NULL || fds == NULL)
		goto out;
	errno = 0;
	n = strtol(pid, &end, 10);
	if (errno != 0 || *end != '\0' || n != (long)getpid())
		goto out;
	n = strtol(fds, &end, 10);
	if (errno != 0 || *end != '\0' || n < 0 || n > INHERIT_MAX_FDS) {
		log_warnx(
		    "LISTEN_FDS=%s: not a count of sockets, ignored", fds);
		goto out;
	}
	inherited = xcalloc(n + 1, sizeof *inherited);
	for (i = 0; i < n; i++) {
		if (listener_inherit_one(
			INHERIT_FIRST + i, &inherited[ninherited]) == -1) {
			log_warnx(
			    "passed fd %ld is not a listening TCP socket: closed",
			    INHERIT_FIRST + i);
			close(INHERIT_FIRST + i);
			continue;
		}
		addr_str((struct sockaddr *)&inherited[ninherited].ss, buf,
		    sizeof buf);
		log_debug(
		    "passed fd %ld: listening on %s", INHERIT_FIRST + i, buf);
		ninherited++;
	}
out:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

static in_port_t
listener_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (((const struct sockaddr_in *)ss)->sin_port);
	return (((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* Is the passed socket bound where a is (as listener_socket would bind)? */
static int
listener_same(const struct inherited *in, const struct sn_addr *a)
{
	const struct sockaddr_in  *s4 = (const struct sockaddr_in *)&in->ss;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&in->ss;
	const struct sockaddr_in  *a4 = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&a->ss;

	if (listener_port(&in->ss) != listener_port(&a->ss))
		return (0);
	if (a->dualstack)
		return (in->ss.ss_family == AF_INET6
			? !in->v6only && IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr)
			: s4->sin_addr.s_addr == htonl(INADDR_ANY));
	if (in->ss.ss_family != a->ss.ss_family)
		return (0);
	if (in->ss.ss_family == AF_INET)
		return (s4->sin_addr.s_addr == a4->sin_addr.s_addr);
	return (in->v6only &&
	    memcmp(&s6->sin6_addr, &a6->sin6_addr, sizeof s6->sin6_addr) == 0 &&
	    s6->sin6_scope_id == a6->sin6_scope_id);
}

/* The passed socket for a, taken off the list; -1 if there is none. */
static int
listener_take(const struct sn_addr *a)
{
	size_t i;
	int    fd;

	for (i = 0; i < ninherited; i++) {
		if (!listener_same(&inherited[i], a))
			continue;
		fd = inherited[i].fd;
		inherited[i] = inherited[--ninherited];
		return (fd);
	}
	return (-1);
}

/* The services are up: passed sockets no listen address wants go. */
void
listener_inherit_done(void)
{
	char   buf[ADDRSTRLEN];
	size_t i;

	for (i = 0; i < ninherited; i++) {
		addr_str((struct sockaddr *)&inherited[i].ss, buf, sizeof buf);
		log_notice(
		    "passed socket %s is no listen address of ours: closed",
		    buf);
		close(inherited[i].fd);
	}
	free(inherited);
	inherited = NULL;
	ninherited = 0;
}

/* "*" listens on IPv6 with IPv4 mapped, or on IPv4 alone without IPv6. */
static int
listener_socket(struct sn_addr *a)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
	in_port_t           port;
	int                 fd;

	fd = socket(
	    a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd != -1 || !a->dualstack || errno != EAFNOSUPPORT)
		return (fd);
	port = ((struct sockaddr_in6 *)&a->ss)->sin6_port;
	memset(&a->ss, 0, sizeof a->ss);
	sin->sin_family = AF_INET;
	sin->sin_port = port;
	a->len = sizeof *sin;
	return (socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
}

int
listener_open(
    struct listener *l, struct service *svc, struct sn_addr *a, char **cause)
{
	int one = 1, v6only = !a->dualstack;

	TAILQ_INIT(&l->pending);
	addr_str((struct sockaddr *)&a->ss, l->name, sizeof l->name);
	/* A specific address spares proxy_protocol a getsockname(). */
	if ((a->ss.ss_family == AF_INET &&
		((struct sockaddr_in *)&a->ss)->sin_addr.s_addr !=
		    htonl(INADDR_ANY)) ||
	    (a->ss.ss_family == AF_INET6 && !a->dualstack &&
		!IN6_IS_ADDR_UNSPECIFIED(
		    &((struct sockaddr_in6 *)&a->ss)->sin6_addr)))
		memcpy(&l->local, &a->ss,
		    a->ss.ss_family == AF_INET ? sizeof l->local.sin
					       : sizeof l->local.sin6);
	if (a->dualstack)
		snprintf(l->name, sizeof l->name, "*:%u",
		    ntohs(((struct sockaddr_in6 *)&a->ss)->sin6_port));
	l->svc = svc;
	if ((l->fd = listener_take(a)) != -1) {
		l->inherited = 1;
		if (listen(l->fd, svc->conf->backlog) == -1)
			goto fail;
		goto done;
	}
	if ((l->fd = listener_socket(a)) == -1)
		goto fail;
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (a->ss.ss_family == AF_INET6 &&
	    setsockopt(
		l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) == -1)
		goto fail;
	if (bind(l->fd, (struct sockaddr *)&a->ss, a->len) == -1 ||
	    listen(l->fd, svc->conf->backlog) == -1)
		goto fail;
done:
	event_assign(
	    &l->ev, sn_base, l->fd, EV_READ | EV_PERSIST, listener_accept, l);
	evtimer_assign(&l->resume, sn_base, listener_resume, l);
	return (0);
fail:
	*cause = xasprintf("service %s: cannot listen on %s: %s",
	    svc->conf->name, l->name, strerror(errno));
	if (l->fd != -1)
		close(l->fd);
	l->fd = -1;
	return (-1);
}

static void
listener_update(struct listener *l)
{
	if (l->fd == -1)
		return;
	if (l->enabled && !l->paused)
		event_add(&l->ev, NULL);
	else
		event_del(&l->ev);
}

void
listener_enable(struct listener *l, int on)
{
	l->enabled = on;
	listener_update(l);
}

/* Out of descriptors: stop accepting for ms. */
void
listener_pause(struct listener *l, long long ms)
{
	struct timeval tv;

	if (l->fd == -1 || l->paused)
		return;
	l->paused = 1;
	listener_update(l);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(&l->resume, &tv);
}

static void
listener_resume(evutil_socket_t fd, short events, void *arg)
{
	struct listener *l = arg;

	(void)fd;
	(void)events;
	l->paused = 0;
	listener_update(l);
}

/*
 * The guards (admin socket, stats), found by listener: libevent's error
 * callback gets no argument of ours when evhttp owns the listener.
 */
#define LISTENER_GUARDS   4
#define LISTENER_PAUSE_MS 100
static struct listener_guard *guards[LISTENER_GUARDS];

static struct listener_guard *
listener_guard_of(struct evconnlistener *l)
{
	size_t i;

	for (i = 0; i < LISTENER_GUARDS; i++)
		if (guards[i] != NULL && guards[i]->l == l)
			return (guards[i]);
	return (NULL);
}

static void
listener_guard_set(struct listener_guard *from, struct listener_guard *to)
{
	size_t i;

	for (i = 0; i < LISTENER_GUARDS; i++) {
		if (guards[i] == from) {
			guards[i] = to;
			return;
		}
	}
	fatalx("listener guards: none free");
}

static void
listener_guard_resume(evutil_socket_t fd, short events, void *arg)
{
	struct listener_guard *g = arg;

	(void)fd;
	(void)events;
	if (g->resume != NULL)
		g->resume();
	else
		evconnlistener_enable(g->l);
}

/*
 * libevent's accept failed.  Without this it logs and tries again at
 * once, a busy loop (and a log line each turn) while descriptors last
 * out: off for LISTENER_PAUSE_MS, one warning every 10 s.
 */
static void
listener_guard_error(struct evconnlistener *l, void *arg)
{
	struct listener_guard *g = listener_guard_of(l);
	struct timeval         tv = { 0, LISTENER_PAUSE_MS * 1000 };
	int                    error = EVUTIL_SOCKET_ERROR();

	(void)arg;
	if (g == NULL)
		return;
	if (error == EINTR || error == ECONNABORTED || error == EAGAIN)
		return;
	evconnlistener_disable(l);
	evtimer_add(&g->ev, &tv);
	if (now_ms() - g->warned >= 10000) {
		log_warnx("%s: accept: %s; pausing accepts for %dms at a time",
		    g->what, strerror(error), LISTENER_PAUSE_MS);
		g->warned = now_ms();
	}
}

void
listener_guard_init(struct listener_guard *g, struct evconnlistener *l,
    const char *what, void (*resume)(void))
{
	g->l = l;
	g->what = what;
	g->resume = resume;
	g->warned = -10000;
	evtimer_assign(&g->ev, sn_base, listener_guard_resume, g);
	listener_guard_set(NULL, g);
	evconnlistener_set_error_cb(l, listener_guard_error);
}

int
listener_guard_paused(const struct listener_guard *g)
{
	return (g->l != NULL && evtimer_pending(&g->ev, NULL));
}

void
listener_guard_free(struct listener_guard *g)
{
	if (g->l == NULL)
		return;
	event_del(&g->ev);
	listener_guard_set(g, NULL);
	g->l = NULL;
}

static void
listener_pending_free(struct listener_pending *p)
{
	TAILQ_REMOVE(&p->l->pending, p, entry);
	p->l->npending--;
	event_del(&p->ev);
	event_del(&p->timer);
	if (p->fd != -1)
		close(p->fd);
	free(p);
}

void
listener_close(struct listener *l)
{
	if (l->fd == -1)
		return;
	while (!TAILQ_EMPTY(&l->pending))
		listener_pending_free(TAILQ_FIRST(&l->pending));
	event_del(&l->ev);
	event_del(&l->resume);
	close(l->fd);
	l->fd = -1;
}

/*
 * A client refused for its PROXY header (or its source): counted, and one
 * line a second at most, with how many were refused since the last.
 */
static void
listener_refuse(
    struct listener *l, int fd, const struct sockaddr *peer, const char *why)
{
	struct service *svc = l->svc;
	long long       now = now_coarse_ms();
	char            addr[ADDRSTRLEN];

	close(fd);
	svc->proxy_refused++;
	svc->proxy_unlogged++;
	if (now - svc->proxy_warned < PROXY_WARN_MS)
		return;
	log_warnx(
	    "service %s: client %s on %s: %s, closed (%lu refused since the last such line)",
	    svc->conf->name, addr_str(peer, addr, sizeof addr), l->name, why,
	    svc->proxy_unlogged);
	svc->proxy_unlogged = 0;
	svc->proxy_warned = now;
}

/* The header is in: the client goes to the service as the one it names. */
static void
listener_pending_done(struct listener_pending *p, const struct proxy_hdr *h)
{
	struct listener     *l = p->l;
	union proxy_sockaddr peer = p->peer;
	socklen_t            peerlen = p->peerlen;
	int                  fd = p->fd;

	/* Its edge-triggered event goes first: libevent mixes no two kinds. */
	p->fd = -1;
	listener_pending_free(p);
	if (h->local) /* LOCAL or UNKNOWN: the balancer's own connection */
		service_accepted(l, fd, &peer.sa, peerlen);
	else
		service_accepted_as(l, fd, &h->src.sa,
		    h->src.sa.sa_family == AF_INET ? sizeof h->src.sin
						   : sizeof h->src.sin6,
		    &h->dst.sa);
}

/*
 * New bytes from a client owing its header: peek at all that came (at
 * most a header's worth), and once the header is whole take exactly it.
 */
static void
listener_pending_read(evutil_socket_t fd, short events, void *arg)
{
	struct listener_pending *p = arg;
	struct listener         *l = p->l;
	struct proxy_hdr         h;
	char                     buf[PROXY_IN_MAX];
	const char              *cause = NULL;
	ssize_t                  n, used;

	(void)events;
	n = recv(fd, buf, sizeof buf, MSG_PEEK);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		log_debug("service %s: client closed before its PROXY header",
		    l->svc->conf->name);
		listener_pending_free(p);
		return;
	}
	used = proxy_parse(buf, n, l->svc->conf->accept_proxy, &h, &cause);
	if (used == 0 && n == (ssize_t)sizeof buf)
		cause = "PROXY header too long";
	if (used == 0 && cause == NULL)
		return;
	if (used > 0 && recv(fd, buf, used, 0) != used)
		cause = "PROXY header could not be read";
	if (cause != NULL) {
		p->fd = -1;
		listener_refuse(l, fd, &p->peer.sa, cause);
		listener_pending_free(p);
		return;
	}
	listener_pending_done(p, &h);
}

static void
listener_pending_timeout(evutil_socket_t fd, short events, void *arg)
{
	struct listener_pending *p = arg;
	int                      cfd = p->fd;

	(void)fd;
	(void)events;
	p->fd = -1;
	listener_refuse(
	    p->l, cfd, &p->peer.sa, "no complete PROXY header in time");
	listener_pending_free(p);
}

/*
 * accept_proxy: a client from a trusted source waits here for its header;
 * any other is closed at once.
 */
static void
listener_pending_new(
    struct listener *l, int fd, const struct sockaddr *sa, socklen_t len)
{
	const struct sn_service_conf *sc = l->svc->conf;
	struct listener_pending      *p;
	struct timeval                tv;

	if (!proxy_cidr_match(sc->trusted_proxies, sc->ntrusted_proxies, sa)) {
		listener_refuse(l, fd, sa, "not in trusted_proxies");
		return;
	}
	if (l->npending >= PENDING_MAX) {
		listener_refuse(
		    l, fd, sa, "too many clients owe a PROXY header");
		return;
	}
	p = xcalloc(1, sizeof *p);
	p->l = l;
	p->fd = fd;
	if (len > sizeof p->peer)
		len = sizeof p->peer;
	memcpy(&p->peer, sa, len);
	p->peerlen = len;
	TAILQ_INSERT_TAIL(&l->pending, p, entry);
	l->npending++;
	/* Edge-triggered: peeked bytes stay readable until the header is whole.
	 */
	event_assign(&p->ev, sn_base, fd, EV_READ | EV_PERSIST | EV_ET,
	    listener_pending_read, p);
	evtimer_assign(&p->timer, sn_base, listener_pending_timeout, p);
	tv.tv_sec = sc->proxy_timeout / 1000;
	tv.tv_usec = (sc->proxy_timeout % 1000) * 1000;
	event_add(&p->ev, NULL);
	evtimer_add(&p->timer, &tv);
}

static void
listener_accept(evutil_socket_t fd, short events, void *arg)
{
	struct listener        *l = arg;
	struct sockaddr_storage ss;
	socklen_t               len;
	int                     i, cfd;

	(void)events;
	for (i = 0; i < ACCEPT_BATCH && l->enabled && !l->paused; i++) {
		len = sizeof ss;
		cfd = accept4(fd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd != -1 && l->svc->conf->accept_proxy != PROXY_OFF) {
			listener_pending_new(
			    l, cfd, (struct sockaddr *)&ss, len);
			continue;
		}
		if (cfd != -1) {
			service_accepted(l, cfd, (struct sockaddr *)&ss, len);
			continue;
		}
		switch (errno) {
		case EINTR:
		case ECONNABORTED:
			continue;
		case EAGAIN:
			return;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			service_fd_exhausted(l->svc);
			return;
		default:
			log_warn("service %s: accept on %s", l->svc->conf->name,
			    l->name);
			return;
		}
	}
}
