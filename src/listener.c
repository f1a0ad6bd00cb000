/*
 * A service's public sockets.  Accepts come in bounded batches so one busy
 * port cannot starve the loop; when the process runs out of descriptors a
 * listener pauses for a moment instead of spinning on a socket that stays
 * readable.  What to do with an accepted client is the service's call.
 */
#include <sys/socket.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "service.h"
#include "socketnautd.h"

#define ACCEPT_BATCH 64

static void listener_accept(evutil_socket_t, short, void *);
static void listener_resume(evutil_socket_t, short, void *);

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
			service_accepted(
			    l->svc, cfd, (struct sockaddr *)&ss, len, NULL);
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
