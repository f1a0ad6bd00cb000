/*
 * A service's public sockets.  Accepts come in bounded batches so one busy
 * port cannot starve the loop; when the process runs out of descriptors a
 * listener pauses for a moment instead of spinning on a socket that stays
 * readable.  What to do with an accepted client is the service's call.
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
#include "service.h"
#include "socketnautd.h"

#define ACCEPT_BATCH    64
#define INHERIT_FIRST   3    /* SD_LISTEN_FDS_START */
#define INHERIT_MAX_FDS 4096 /* more than any configuration binds */

/* A listening socket passed to us, not yet claimed by a listener. */
struct inherited {
	int                     fd;
	int                     v6only;
	struct sockaddr_storage ss;
};

static struct inherited *inherited;
static size_t            ninherited;

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

	addr_str((struct sockaddr *)&a->ss, l->name, sizeof l->name);
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

void
listener_close(struct listener *l)
{
	if (l->fd == -1)
		return;
	event_del(&l->ev);
	event_del(&l->resume);
	close(l->fd);
	l->fd = -1;
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
