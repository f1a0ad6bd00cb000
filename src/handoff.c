/*
 * mode = handoff: the master accepts and picks the worker as for a relayed
 * client (service.c), then gives the client's socket to the worker over
 * its control channel (SCM_RIGHTS) and leaves the data path.  What stays
 * is a small record per handed connection, so the pool still counts it
 * against its worker until the worker reports its close (or dies: its
 * records go with it).  The master never sees the bytes: idle_timeout,
 * byte counts and stall evidence from bytes do not apply.
 *
 * Node cannot receive a descriptor on an arbitrary socket, only on the
 * IPC channel it sets up at start from NODE_CHANNEL_FD.  With
 * handoff_channel = node each worker gets a second socketpair as that
 * channel, and the handoff goes on it the way node:cluster's primary
 * passes a connection: one JSON line, {"cmd":"NODE_HANDLE",
 * "type":"net.Socket","msg":{...}}, with the fd attached.  Node answers
 * each with a NODE_HANDLE_ACK line, which we read and drop.  The close is
 * still reported on the control channel.
 */
#include <sys/socket.h>

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
#include "relay.h"
#include "service.h"
#include "socketnautd.h"
#include "worker.h"

struct handoff_node {
	int          fd;
	struct event ev;
};

struct handoff {
	TAILQ_ENTRY(handoff) entry; /* its worker's bucket */
	TAILQ_ENTRY(handoff) all;   /* its service's */
	struct worker         *worker;
	uint32_t               id;
	long long              accepted; /* ms */
	long long              handed;   /* ms */
	long long              waited;   /* ms in the queue */
	const struct listener *listener; /* that accepted it */
	union {
		struct sockaddr     sa;
		struct sockaddr_in  sin;
		struct sockaddr_in6 sin6;
	} peer;
};

static uint32_t handoff_serial;

void
handoff_init(struct worker *w)
{
	int i;

	for (i = 0; i < HANDOFF_BUCKETS; i++)
		TAILQ_INIT(&w->handed[i]);
}

/* The frame's payload: the id, then the client and the listener it reached. */
static char *
handoff_payload(struct relay *r, uint32_t id, size_t *len)
{
	struct sockaddr_storage local;
	socklen_t               llen = sizeof local;
	char                   *buf = NULL;
	size_t                  n = 0;
	FILE                   *f;

	/* The address a trusted PROXY header named, else the listener's. */
	if (r->local.sa.sa_family != AF_UNSPEC)
		memcpy(&local, &r->local, sizeof r->local);
	else if (getsockname(r->cfd, (struct sockaddr *)&local, &llen) == -1)
		return (NULL);
	if ((f = open_memstream(&buf, &n)) == NULL)
		fatal("open_memstream");
	fprintf(f, "id=%u\n", id);
	control_addr_fields(f, "remote", &r->peer.sa);
	control_addr_fields(f, "local", (struct sockaddr *)&local);
	fclose(f);
	*len = n - 1; /* the last newline */
	return (buf);
}

/*
 * The handoff to r's worker failed before the worker got the fd (still
 * ours): that worker is judged, the client goes to another worker or
 * waits in the queue, as after a failed connect.
 */
static void
handoff_failed(struct relay *r, const char *why)
{
	struct service *svc = r->svc;
	struct worker  *w = r->worker;

	worker_handoff_refused(w, why);
	r->tried[r->attempts % RELAY_ATTEMPTS] = w->serial;
	relay_rewind(r);
	if (++r->attempts >= RELAY_ATTEMPTS) {
		relay_close(r, RELAY_END_CONNECT_FAILED, 0);
		return;
	}
	service_dispatch(svc, r);
}

int
handoff_node_pair(int *sp, char **cause)
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1) {
		*cause = xasprintf("socketpair: %s", strerror(errno));
		return (-1);
	}
	return (0);
}

/*
 * What Node sends on its channel (NODE_HANDLE_ACK lines, and whatever the
 * program sends with process.send) is read and dropped, a bounded read a
 * turn; descriptors it might send are not taken (no control buffer).
 */
static void
handoff_node_read(evutil_socket_t fd, short events, void *arg)
{
	struct worker *w = arg;
	char           buf[4096];
	ssize_t        n;

	(void)events;
	n = recv(fd, buf, sizeof buf, 0);
	if (n == 0)
		handoff_node_close(w, "its Node IPC channel is closed");
	else if (n == -1 && errno != EAGAIN && errno != EINTR)
		handoff_node_close(w, "its Node IPC channel failed");
}

void
handoff_node_open(struct worker *w, int fd)
{
	struct handoff_node *n;

	n = xcalloc(1, sizeof *n);
	n->fd = fd;
	fd_nonblock(fd);
	event_assign(
	    &n->ev, sn_base, fd, EV_READ | EV_PERSIST, handoff_node_read, w);
	event_add(&n->ev, NULL);
	w->node = n;
}

/* Closed: the worker can take no more connections (why is not NULL). */
void
handoff_node_close(struct worker *w, const char *why)
{
	struct handoff_node *n = w->node;

	if (n == NULL)
		return;
	event_del(&n->ev);
	close(n->fd);
	free(n);
	w->node = NULL;
	if (why != NULL)
		worker_handoff_refused(w, why);
}

/*
 * The handoff as a node:cluster JSON line; its msg holds the fields of our
 * HANDOFF frame (numbers for the id and the ports, the rest strings: only
 * numeric addresses and family names, nothing to escape).
 */
static char *
handoff_node_json(const char *payload, size_t plen, size_t *len)
{
	const char *p = payload, *end = payload + plen, *nl, *eq;
	char       *buf = NULL;
	size_t      n = 0;
	FILE       *f;
	int         num;

	if ((f = open_memstream(&buf, &n)) == NULL)
		fatal("open_memstream");
	fputs("{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\","
	      "\"msg\":{\"socketnaut\":\"handoff\"",
	    f);
	while (p < end) {
		if ((nl = memchr(p, '\n', end - p)) == NULL)
			nl = end;
		if ((eq = memchr(p, '=', nl - p)) != NULL) {
			num = (eq - p == 2 && memcmp(p, "id", 2) == 0) ||
			    (eq - p > 5 && memcmp(eq - 5, "_port", 5) == 0);
			fprintf(f, ",\"%.*s\":%s%.*s%s", (int)(eq - p), p,
			    num ? "" : "\"", (int)(nl - eq - 1), eq + 1,
			    num ? "" : "\"");
		}
		p = nl + 1;
	}
	fputs("},\"key\":null}\n", f);
	fclose(f);
	*len = n;
	return (buf);
}

/* Send buf with fd attached on the Node channel; -1 and errno as sendmsg. */
static int
handoff_node_send(struct worker *w, const char *buf, size_t len, int fd)
{
	ssize_t n;

	if (w->node == NULL) {
		errno = EPIPE;
		return (-1);
	}
	if ((n = fd_send(w->node->fd, buf, len, fd)) == -1)
		return (-1);
	/*
	 * A line this short goes whole into a Unix stream socket or not at
	 * all; if ever not, the fd went but Node cannot parse the rest: the
	 * channel is of no more use.
	 */
	if ((size_t)n < len)
		handoff_node_close(
		    w, "a handoff was cut short on its Node IPC channel");
	return (0);
}

/* Give r's client to the worker the pool assigned it. */
void
handoff_give(struct relay *r)
{
	struct worker  *w = r->worker;
	struct handoff *h;
	char           *buf, *json;
	size_t          len, jlen;
	uint32_t        id;
	int             rc;

	if (w->control == NULL) {
		handoff_failed(r, "its control channel is closed");
		return;
	}
	if (++handoff_serial == 0)
		handoff_serial = 1;
	id = handoff_serial;
	if ((buf = handoff_payload(r, id, &len)) == NULL) {
		relay_close(r, RELAY_END_ERROR, errno);
		return;
	}
	if (w->svc->conf->handoff_node) {
		json = handoff_node_json(buf, len, &jlen);
		rc = handoff_node_send(w, json, jlen, r->cfd);
		free(json);
	} else
		rc = control_send_fd(
		    w->control, SN_MSG_HANDOFF, buf, len, r->cfd);
	free(buf);
	if (rc == -1) {
		handoff_failed(r,
		    errno == EAGAIN
			? "its control channel is full: it takes no more connections"
			: "its control channel failed");
		return;
	}
	/* The worker holds the connection now; ours is only a record. */
	h = xcalloc(1, sizeof *h);
	h->id = id;
	h->accepted = r->accepted;
	h->handed = now_coarse_ms();
	h->waited = r->waited;
	h->listener = r->listener;
	memcpy(&h->peer, &r->peer, sizeof h->peer);
	h->worker = w;
	TAILQ_INSERT_TAIL(&w->svc->handed, h, all);
	TAILQ_INSERT_TAIL(&w->handed[id % HANDOFF_BUCKETS], h, entry);
	w->nhanded++;
	worker_connected(w);
	relay_handed(r);
}

/* A handed connection ended: counted and logged as a relayed one is. */
static void
handoff_ended(struct worker *w, struct handoff *h, enum relay_end end)
{
	struct service *svc = w->svc;

	svc->ctr.closed[end]++;
	if (svc->alog != NULL)
		accesslog_handed(svc->alog, svc, &h->peer.sa,
		    h->listener != NULL ? h->listener->name : NULL,
		    (long)w->pid, h->waited, h->accepted, end);
}

/* Drop a record: the connection no longer counts against its worker. */
static void
handoff_free(struct worker *w, struct handoff *h)
{
	TAILQ_REMOVE(&w->handed[h->id % HANDOFF_BUCKETS], h, entry);
	TAILQ_REMOVE(&w->svc->handed, h, all);
	w->nhanded--;
	free(h);
}

/*
 * CLOSED id=N from a worker.  Returns -1 (and why) for a malformed
 * message or an id it does not hold: that is the channel's end.
 */
int
handoff_closed(struct worker *w, const struct sn_msg *m, const char **why)
{
	struct service *svc = w->svc;
	struct handoff *h;
	char            v[16], *end;
	unsigned long   id;

	if (sn_proto_field(m, "id", v, sizeof v) == -1 || v[0] == '\0' ||
	    strspn(v, "0123456789") != strlen(v) || strlen(v) > 10) {
		*why = "closed without a numeric id";
		return (-1);
	}
	id = strtoul(v, &end, 10);
	if (id == 0 || id > UINT32_MAX) {
		*why = "closed with an id out of range";
		return (-1);
	}
	TAILQ_FOREACH (h, &w->handed[id % HANDOFF_BUCKETS], entry) {
		if (h->id == id)
			break;
	}
	if (h == NULL) {
		*why = "closed for a connection it was not given";
		return (-1);
	}
	handoff_ended(w, h, RELAY_END_HANDED);
	handoff_free(w, h);
	worker_release(w);
	service_relay_done(svc);
	return (0);
}

/*
 * The worker's process is gone, and the connections it held with it: free
 * their records and count them lost (no other worker's are touched).
 */
void
handoff_worker_exited(struct worker *w)
{
	struct service *svc = w->svc;
	struct handoff *h;
	int             i, lost = 0;

	for (i = 0; i < HANDOFF_BUCKETS; i++) {
		while ((h = TAILQ_FIRST(&w->handed[i])) != NULL) {
			handoff_ended(w, h, RELAY_END_WORKER_DIED);
			handoff_free(w, h);
			w->nconns--;
			lost++;
			service_relay_done(svc);
		}
	}
	if (lost > 0)
		worker_log(LOG_NOTICE, w,
		    "%d handed connection%s closed with it", lost,
		    lost == 1 ? "" : "s");
}

/* The worker's memory goes: its records with it, uncounted. */
void
handoff_worker_free(struct worker *w)
{
	struct handoff *h;
	int             i;

	for (i = 0; i < HANDOFF_BUCKETS; i++) {
		while ((h = TAILQ_FIRST(&w->handed[i])) != NULL)
			handoff_free(w, h);
	}
}

const struct handoff *
handoff_first(const struct service *svc)
{
	return (TAILQ_FIRST(&svc->handed));
}

const struct handoff *
handoff_next(const struct handoff *h)
{
	return (TAILQ_NEXT(h, all));
}

void
handoff_view(const struct handoff *h, struct handoff_view *v)
{
	v->peer = &h->peer.sa;
	v->listener = h->listener != NULL ? h->listener->name : NULL;
	v->pid = (long)h->worker->pid;
	v->accepted = h->accepted;
	v->waited = h->waited;
}
