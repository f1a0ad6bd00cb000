/* A service's public sockets: bind, accept in bounded batches, pause. */
#ifndef SN_LISTENER_H
#define SN_LISTENER_H

#include <sys/queue.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>

#include "proxy.h"
#include "util.h"

struct service;
struct listener_pending;
TAILQ_HEAD(listener_pending_head, listener_pending);

struct listener {
	struct service *svc;
	int             fd;
	int             enabled;   /* the service wants connections */
	int             paused;    /* EMFILE back-off running */
	int             inherited; /* passed to us, not bound here */
	struct event    ev;
	struct event    resume;
	char            name[ADDRSTRLEN];
	/* The address clients reach, when it is one (not a wildcard). */
	union proxy_sockaddr local;
	/* accept_proxy: clients whose PROXY header is not read yet */
	struct listener_pending_head pending;
	int                          npending;
};

/*
 * A listener of the master's own (admin socket, stats) that, out of
 * descriptors, pauses as a service's does instead of spinning.
 */
struct listener_guard {
	struct evconnlistener *l;
	const char            *what;
	void (*resume)(void); /* turns it back on as its owner wants */
	struct event ev;
	long long    warned;
};

int listener_open(
    struct listener *, struct service *, struct sn_addr *, char **cause);
void listener_enable(struct listener *, int on);
void listener_pause(struct listener *, long long ms);
void listener_close(struct listener *);
void listener_inherit(void);
void listener_inherit_done(void);
void listener_guard_init(struct listener_guard *, struct evconnlistener *,
    const char *what, void (*resume)(void));
int  listener_guard_paused(const struct listener_guard *);
void listener_guard_free(struct listener_guard *);

#endif
