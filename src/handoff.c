/*
 * mode = handoff: the master accepts and picks the worker as for a relayed
 * client (service.c), then gives the client's socket to the worker over
 * its control channel (SCM_RIGHTS) and leaves the data path.  What stays
 * is a small record per handed connection, so the pool still counts it
 * against its worker until the worker reports its close (or dies: its
 * records go with it).  The master never sees the bytes: idle_timeout,
 * byte counts and stall evidence from bytes do not apply.
 */
#include <sys/socket.h>

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
#include "worker.h"

struct handoff {
	TAILQ_ENTRY(handoff) entry; /* its worker's bucket */
	uint32_t  id;
	long long accepted; /* ms */
	long long handed;   /* ms */
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

	if (getsockname(r->cfd, (struct sockaddr *)&local, &llen) == -1)
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
		relay_close(r, "no worker could take the connection");
		return;
	}
	service_dispatch(svc, r);
}

/* Give r's client to the worker the pool assigned it. */
void
handoff_give(struct relay *r)
{
	struct worker  *w = r->worker;
	struct handoff *h;
	char           *buf;
	size_t          len;
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
		relay_close(r, "getsockname failed");
		return;
	}
	rc = control_send_fd(w->control, SN_MSG_HANDOFF, buf, len, r->cfd);
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
	TAILQ_INSERT_TAIL(&w->handed[id % HANDOFF_BUCKETS], h, entry);
	w->nhanded++;
	worker_connected(w);
	relay_handed(r);
}

/* Drop a record: the connection no longer counts against its worker. */
static void
handoff_free(struct worker *w, struct handoff *h)
{
	TAILQ_REMOVE(&w->handed[h->id % HANDOFF_BUCKETS], h, entry);
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
