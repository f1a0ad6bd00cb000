/*
 * One service: its public listeners, its pool of workers and the policy
 * that ties them together (Socketnaut's): a new connection goes to the
 * least-loaded worker, and when even that one is busy the pool grows, up to
 * max_workers; every workers_checking_interval idle workers above
 * min_workers are stopped; workers that die are replaced, with exponential
 * back-off when they die young.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accesslog.h"
#include "log.h"
#include "service.h"
#include "sockdir.h"
#include "socketnautd.h"
#include "upgrade.h"

#define ACCEPT_PAUSE_MS  100
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS   30000
#define FULL_FIRST_MS    50   /* a full worker takes no client for this, */
#define FULL_MAX_MS      1000 /* doubled while it stays full, up to this */
#define FULL_SLACK_MS    5    /* the loop's clock may lag ours */
#define CONNECT_LOG_RATE 5    /* failed connects logged a second, */
#define CONNECT_LOG_MAX  10   /* and at once */

static void service_check(evutil_socket_t, short, void *);
static void service_drain_cb(evutil_socket_t, short, void *);
static void service_full_cb(evutil_socket_t, short, void *);
static void service_watch(evutil_socket_t, short, void *);
static void service_respawn(evutil_socket_t, short, void *);
static void service_shutdown_timeout(evutil_socket_t, short, void *);
static void service_retire(struct service *);
static void service_maintain(struct service *);
static void service_watch_start(struct service *);
static void service_drain_queue(struct service *);

static void
ms_timer(struct event *ev, long long ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(ev, &tv);
}

/* Delay before the next start after n quick failures in a row. */
long long
service_backoff_ms(int n)
{
	long long ms = BACKOFF_FIRST_MS;

	if (n <= 0)
		return (0);
	while (--n > 0 && ms < BACKOFF_MAX_MS)
		ms *= 2;
	return (ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS);
}

static void
service_idle_tv(struct service *svc)
{
	struct timeval tv;

	svc->idle_tv = NULL;
	if (svc->conf->idle_timeout > 0) {
		tv.tv_sec = svc->conf->idle_timeout / 1000;
		tv.tv_usec = (svc->conf->idle_timeout % 1000) * 1000;
		svc->idle_tv = event_base_init_common_timeout(sn_base, &tv);
	}
}

/* A new generation's slots (the old one's workers no longer count). */
static void
service_slots_reset(struct service *svc)
{
	free(svc->slots);
	free(svc->restarts);
	svc->crashes = 0;
	svc->nslots = SERVICE_SLOTS(svc->conf);
	svc->slots = xcalloc(svc->nslots, 1);
	svc->restarts = xcalloc(svc->nslots, sizeof *svc->restarts);
}

struct service *
service_new(struct sn_config *owner, struct sn_service_conf *sc)
{
	struct service *svc;

	svc = xcalloc(1, sizeof *svc);
	config_ref(owner);
	svc->owner = owner;
	svc->conf = sc;
	TAILQ_INIT(&svc->workers);
	TAILQ_INIT(&svc->queue);
	TAILQ_INIT(&svc->relays);
	TAILQ_INIT(&svc->handed);
	service_slots_reset(svc);
	service_idle_tv(svc);
	evtimer_assign(&svc->check, sn_base, service_check, svc);
	evtimer_assign(&svc->watch, sn_base, service_watch, svc);
	evtimer_assign(&svc->respawn, sn_base, service_respawn, svc);
	event_assign(&svc->drain, sn_base, -1, 0, service_drain_cb, svc);
	evtimer_assign(&svc->full, sn_base, service_full_cb, svc);
	svc->connect_log.rate = CONNECT_LOG_RATE;
	svc->connect_log.burst = CONNECT_LOG_MAX;
	evtimer_assign(&svc->shutdown, sn_base, service_shutdown_timeout, svc);
	return (svc);
}

static void
service_listening(struct service *svc, int on)
{
	size_t i;

	if (svc->accepting == on)
		return;
	svc->accepting = on;
	for (i = 0; i < svc->nlisteners; i++)
		listener_enable(&svc->listeners[i], on);
}

/*
 * The socket directory (sockdir.c), held open for the service's life; on
 * reload the one held is reused when its path did not change.
 */
static int
service_sockdir(struct service *svc, int clean, char **cause)
{
	struct sn_service_conf *sc = svc->conf;
	struct sockdir         *d;
	char                   *why;

	if (svc->sockdir != NULL &&
	    strcmp(sockdir_path(svc->sockdir), sc->sockdir) == 0)
		return (sockdir_give(svc->sockdir,
		    sc->switch_ids ? sc->uid : geteuid(),
		    sc->switch_ids ? sc->gid : getegid(), cause));
	d = sockdir_open(svc->owner->runtime_dir, sc->name, sc->switch_ids,
	    sc->uid, sc->gid, clean, &why);
	if (d == NULL) {
		*cause = xasprintf("service %s: %s", sc->name, why);
		free(why);
		return (-1);
	}
	sockdir_unref(svc->sockdir);
	svc->sockdir = d;
	return (0);
}

/* The access log its access_log names; on failure it keeps the one it has. */
static int
service_accesslog(struct service *svc, char **cause)
{
	struct accesslog *al;
	char             *why;

	if (accesslog_get(svc->conf->access_log, &al, &why) == -1) {
		*cause = xasprintf(
		    "service %s: access_log: %s", svc->conf->name, why);
		free(why);
		return (-1);
	}
	accesslog_put(svc->alog);
	svc->alog = al;
	return (0);
}

int
service_start(struct service *svc, char **cause)
{
	struct sn_service_conf *sc = svc->conf;
	size_t                  i;

	/* An upgrade's new master leaves the old one's sockets alone. */
	if (sc->backend != BACKEND_TCP &&
	    service_sockdir(svc, !daemon_started && !upgrade_child(), cause) ==
		-1)
		return (-1);
	if (service_accesslog(svc, cause) == -1)
		return (-1);
	svc->listeners = xcalloc(sc->nlisten, sizeof *svc->listeners);
	for (i = 0; i < sc->nlisten; i++) {
		svc->listeners[i].fd = -1;
		if (listener_open(
			&svc->listeners[i], svc, &sc->listen[i], cause) == -1)
			return (-1);
		svc->nlisteners++;
		log_info("service %s: listening on %s%s", sc->name,
		    svc->listeners[i].name,
		    svc->listeners[i].inherited ? " (passed to us)" : "");
	}
	service_update_accepting(svc);
	ms_timer(&svc->check, sc->check_interval);
	service_watch_start(svc);
	service_maintain(svc);
	return (0);
}

static void
service_attach(struct relay *r, struct worker *w)
{
	r->worker = w;
	w->nconns++;
	w->accepted++;
}

/* This client already failed to reach that worker. */
static int
relay_tried(const struct relay *r, const struct worker *w)
{
	int i;

	for (i = 0; r != NULL && i < r->attempts && i < RELAY_ATTEMPTS; i++) {
		if (r->tried[i] == w->serial)
			return (1);
	}
	return (0);
}

/* Workers may be started now: no shutdown, no back-off running. */
static int
service_may_start(const struct service *svc)
{
	return (!svc->stopping && now_ms() >= svc->backoff_until);
}

/*
 * Clients a worker counts as serving.  Without worker_concurrency, not
 * those it has ended its side of: a relay goes on delivering what it sent
 * and waits for the client to hang up, but the worker has said all it will
 * (a server that lingers, reading until the client's end, does no work for
 * it).  With worker_concurrency, every connection until it closes: the
 * limit is the operator's promise to a server that may block in that
 * lingering read.
 */
static int
service_load(const struct service *svc, const struct worker *w)
{
	if (svc->conf->worker_concurrency > 0)
		return (w->nconns);
	return (w->nconns - w->finished);
}

/*
 * Whether a ready worker of the current generation may be given one more
 * client.  With worker_concurrency, while it has fewer than that; without,
 * a worker with a client is busy while the pool may still grow
 * (Socketnaut's rule: the client waits for a new worker or a free one),
 * and any worker has room once max_workers are online and ready.  While
 * it grows, a busy worker may take one client behind its current one when
 * the queue is deeper than the starting and the busy workers can take at
 * their next turn (behind, see service_pick).
 */
static int
service_room(
    const struct service *svc, const struct worker *w, int grow, int behind)
{
	int load = service_load(svc, w);

	if (svc->conf->worker_concurrency > 0)
		return (load < svc->conf->worker_concurrency);
	return (load == 0 || !grow || (behind && load == 1));
}

/*
 * Workers to start now: enough for the queue (one per queued client, or
 * per worker_concurrency clients; a client waiting behind another on a
 * busy worker counts as queued) beyond those starting, spare_workers
 * idle ones above demand, min_workers in all; never more than
 * spawn_concurrency starting at once or max_workers online.
 */
static int
service_spawn_count(const struct service *svc, int busy, int queued)
{
	const struct sn_service_conf *sc = svc->conf;
	int starting = svc->online - svc->ready, want, n;

	want = sc->worker_concurrency > 0
	    ? (queued + sc->worker_concurrency - 1) / sc->worker_concurrency
	    : queued;
	want += busy + sc->spare_workers;
	if (want < sc->min_workers)
		want = sc->min_workers;
	if (want > sc->max_workers)
		want = sc->max_workers;
	n = want - svc->online;
	if (n > sc->spawn_concurrency - starting)
		n = sc->spawn_concurrency - starting;
	return (n > 0 ? n : 0);
}

/*
 * Choose a worker for a client (r may be NULL: only the spawn count is
 * wanted): the ready worker with room and the fewest connections, never
 * one out of rotation or one this client failed to reach.  Starting
 * workers are never chosen (late binding): a client with no worker waits
 * in the service's queue for the first one that becomes ready or frees a
 * slot.  Until the current generation has a ready worker, a ready one of
 * the previous generation (before a reload) serves.
 */
struct pick
service_pick(const struct service *svc, const struct relay *r)
{
	struct pick    p = { NULL, 0 };
	struct worker *w, *old = NULL;
	int            start = service_may_start(svc), busy = 0, lone = 0;
	int            grow, behind = 0, queued, extra = 0, load;

	/*
	 * Workers still starting count as growth: binding the queue to the
	 * ready ones as soon as the last start began left the last ones
	 * with less to do than the first (7 to 12 requests each in a burst).
	 */
	grow = start &&
	    (svc->online < svc->conf->max_workers || svc->online > svc->ready);
	queued = svc->nqueued + (r != NULL && !r->waiting);

	/*
	 * More clients wait than the starting workers and the busy ones with
	 * nobody behind them will take at their next turn: those busy ones
	 * would get one of them the moment they free anyway.  Each takes one
	 * now, into its own listen backlog, and goes on to it as soon as it
	 * has answered, without a round trip through the master (a worker
	 * that competes for a CPU also waits to be woken).  A burst of Node
	 * workers that block 100ms a request went from 8.6s to 7.7s.  Only
	 * while the pool grows: at max_workers, this pass is not made.
	 */
	if (grow && svc->conf->worker_concurrency == 0 &&
	    queued > svc->online - svc->ready) {
		TAILQ_FOREACH (w, &svc->workers, entry) {
			if (w->state == WORKER_READY &&
			    w->generation == svc->generation &&
			    service_load(svc, w) == 1)
				lone++;
		}
		behind = queued > (svc->online - svc->ready) + lone;
	}

	TAILQ_FOREACH (w, &svc->workers, entry) {
		if (w->state != WORKER_READY)
			continue;
		if (w->generation != svc->generation) {
			if (!relay_tried(r, w) && w->full_until == 0 &&
			    (old == NULL ||
				service_load(svc, w) < service_load(svc, old)))
				old = w;
			continue;
		}
		load = service_load(svc, w);
		if (load > 0)
			busy++;
		if (load > 1 && svc->conf->worker_concurrency == 0)
			extra += load - 1;
		if (r == NULL || relay_tried(r, w) || w->full_until != 0 ||
		    !service_room(svc, w, grow, behind))
			continue;
		if (p.worker == NULL || load < service_load(svc, p.worker))
			p.worker = w;
	}
	if (p.worker == NULL && old != NULL && svc->ready == 0)
		p.worker = old;
	if (p.worker != NULL && p.worker->generation == svc->generation) {
		if (service_load(svc, p.worker) == 0)
			busy++;
		else if (svc->conf->worker_concurrency == 0)
			extra++;
	}
	if (start)
		p.spawn = service_spawn_count(svc, busy,
		    queued - (p.worker != NULL && r != NULL && !r->waiting) +
			extra);
	return (p);
}

static struct worker *
service_spawn_one(struct service *svc)
{
	struct worker *w;
	char          *cause;
	int            slot;

	for (slot = 0; slot < SERVICE_SLOTS(svc->conf); slot++) {
		if (!svc->slots[slot])
			break;
	}
	if (slot == SERVICE_SLOTS(svc->conf))
		return (NULL);
	if ((w = worker_spawn(svc, slot, &cause)) == NULL) {
		log_warnx("service %s: cannot start a worker: %s",
		    svc->conf->name, cause);
		free(cause);
		svc->failures++;
		svc->backoff_until =
		    now_ms() + service_backoff_ms(svc->failures);
		service_maintain(svc);
		return (NULL);
	}
	TAILQ_INSERT_TAIL(&svc->workers, w, entry);
	svc->restarts[slot] = svc->crashes;
	svc->crashes = 0;
	return (w);
}

/* Start n workers (the pool's policy decided how many). */
static void
service_spawn(struct service *svc, int n)
{
	while (n-- > 0 && service_spawn_one(svc) != NULL)
		;
}

/*
 * Give a client a worker now, or a place in the queue.  A new client does
 * not pass those already waiting: with a queue, it joins its end and the
 * oldest take what room there is.
 */
void
service_dispatch(struct service *svc, struct relay *r)
{
	struct pick p = service_pick(svc, r);

	if (p.worker != NULL && svc->nqueued > 0 && r->attempts == 0) {
		relay_wait(r);
		service_drain_queue(svc);
	} else if (p.worker != NULL) {
		service_attach(r, p.worker);
		relay_connect(r);
	} else if (svc->stopping && svc->online == 0) {
		relay_close(r, RELAY_END_SHUTDOWN, 0);
		return;
	} else
		relay_wait(r);
	service_spawn(svc, p.spawn);
}

/*
 * Accept while max_connections and max_queue leave room (0: no limit);
 * beyond them new clients wait in the kernel's listen backlog.  A new
 * master of an upgrade accepts once it is ready (upgrade.c).
 */
void
service_update_accepting(struct service *svc)
{
	const struct sn_service_conf *sc = svc->conf;

	service_listening(svc,
	    !svc->stopping && !upgrade_holding() &&
		(sc->max_connections == 0 ||
		    svc->nconns < sc->max_connections) &&
		(sc->max_queue == 0 || svc->nqueued < sc->max_queue));
}

/* A listener accepted a client: it is ours until it closes. */
void
service_accepted(
    struct listener *l, int fd, const struct sockaddr *sa, socklen_t len)
{
	service_accepted_as(l, fd, sa, len, NULL);
}

/* The same, for a client a PROXY header named: local is the address it reached.
 */
void
service_accepted_as(struct listener *l, int fd, const struct sockaddr *sa,
    socklen_t len, const struct sockaddr *local)
{
	struct service *svc = l->svc;
	struct relay   *r;

	svc->ctr.accepted++;
	r = relay_new(l, fd, sa, len);
	if (local != NULL)
		relay_set_local(r, local);
	if (!relay_handshake(r))
		service_dispatch(svc, r);
	service_update_accepting(svc);
}

/*
 * A connect found w's listen backlog full: it is busy, not broken.  It
 * takes no new client until it frees a slot or a back-off ends: 50ms,
 * doubled each time it is found full again without having been reached
 * in between, up to 1s.  One timer per service serves every full worker.
 */
static void
service_worker_full(struct service *svc, struct worker *w)
{
	if (w->full_ms == 0 || w->served != w->full_served)
		w->full_ms = FULL_FIRST_MS;
	else if ((w->full_ms *= 2) > FULL_MAX_MS)
		w->full_ms = FULL_MAX_MS;
	w->full_served = w->served;
	w->full_until = now_coarse_ms() + w->full_ms;
	if (svc->full_next == 0 || w->full_until < svc->full_next) {
		svc->full_next = w->full_until;
		ms_timer(&svc->full, w->full_ms);
	}
	worker_log(LOG_DEBUG, w,
	    "listen backlog full: no new client for %lldms", w->full_ms);
}

/* Back-offs ended: those workers may take clients again. */
static void
service_full_cb(evutil_socket_t fd, short events, void *arg)
{
	struct service *svc = arg;
	struct worker  *w;
	long long       now = now_coarse_ms(), next = 0;

	(void)fd;
	(void)events;
	TAILQ_FOREACH (w, &svc->workers, entry) {
		if (w->full_until == 0)
			continue;
		if (w->full_until <= now + FULL_SLACK_MS)
			w->full_until = 0;
		else if (next == 0 || w->full_until < next)
			next = w->full_until;
	}
	svc->full_next = next;
	if (next != 0)
		ms_timer(&svc->full, next - now);
	service_drain_queue(svc);
}

/*
 * A connect to the relay's worker failed.  A full backlog means busy: the
 * client goes back to the head of the queue, where queue_timeout and
 * max_queue apply, and the worker counts as full (no spinning connect, no
 * mark against its health).  Anything else counts against the worker's
 * health, and the client tries a worker it has not tried yet, or waits in
 * the queue for one; it is closed only after RELAY_ATTEMPTS workers
 * failed it.
 */
void
service_connect_failed(struct relay *r, int error)
{
	struct service *svc = r->svc;
	struct worker  *w = r->worker;

	if (error == EAGAIN) {
		relay_rewind(r);
		service_worker_full(svc, w);
		relay_wait_first(r);
		/* Another worker may have room: look once this call is over. */
		event_active(&svc->drain, EV_TIMEOUT, 0);
		return;
	}
	worker_connect_failed(w, error);
	r->tried[r->attempts % RELAY_ATTEMPTS] = w->serial;
	relay_rewind(r);
	if (++r->attempts >= RELAY_ATTEMPTS) {
		relay_close(r,
		    error == ECONNREFUSED || error == ENOENT
			? RELAY_END_REFUSED
			: RELAY_END_CONNECT_FAILED,
		    error);
		return;
	}
	service_dispatch(svc, r);
}

/*
 * Out of file descriptors: stop accepting for a moment (no busy loop on a
 * listener that stays readable) and retry the clients that wait for a
 * worker connection when the pause ends.
 */
void
service_fd_exhausted(struct service *svc)
{
	size_t i;

	for (i = 0; i < svc->nlisteners; i++)
		listener_pause(&svc->listeners[i], ACCEPT_PAUSE_MS);
	if (!evtimer_pending(&svc->respawn, NULL))
		ms_timer(&svc->respawn, ACCEPT_PAUSE_MS);
	if (now_ms() - svc->fd_warned >= 10000) {
		log_warn(
		    "service %s: out of file descriptors, pausing accepts for %dms at a time",
		    svc->conf->name, ACCEPT_PAUSE_MS);
		svc->fd_warned = now_ms();
	}
}

/*
 * A client waited queue_timeout for a worker.  One line a second at most,
 * with the count: an outage must not turn every client into a log line.
 */
void
service_queue_timeout(struct service *svc)
{
	long long now = now_coarse_ms();

	svc->queue_timeouts++;
	if (now - svc->queue_warned < 1000)
		return;
	log_warnx("service %s: %lu client%s waited %lldms for a worker, closed",
	    svc->conf->name, svc->queue_timeouts,
	    svc->queue_timeouts == 1 ? "" : "s", svc->conf->queue_timeout);
	svc->queue_timeouts = 0;
	svc->queue_warned = now;
}

/*
 * Give queued clients, oldest first, to the workers that have room; stop
 * at the first one no worker can take (those behind it wait too), unless
 * it only excluded workers it failed to reach.
 */
static void
service_drain_queue(struct service *svc)
{
	struct relay *r;
	struct pick   p;
	int           n = 2 * svc->nqueued + 1;

	r = TAILQ_FIRST(&svc->queue);
	while (r != NULL && n-- > 0) {
		p = service_pick(svc, r);
		if (p.worker == NULL) {
			if (r->attempts == 0)
				break;
			r = TAILQ_NEXT(r, entry); /* pick changed nothing */
			continue;
		}
		relay_unwait(r);
		service_attach(r, p.worker);
		relay_connect(r);
		/*
		 * Back in the queue: out of descriptors, no worker left, or
		 * the worker's backlog was full (the drain runs again).
		 */
		if (r->state == RELAY_QUEUED)
			break;
		/* The connect may have changed the queue: start again. */
		r = TAILQ_FIRST(&svc->queue);
	}
	service_update_accepting(svc);
}

static void
service_drain_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	service_drain_queue(arg);
}

/*
 * A ready worker let go of a client: the head of the queue may take it,
 * once the current callback is over (the caller may be closing or moving
 * a relay, or draining the queue itself).  Its backlog, if it was full,
 * has room for one more again.
 */
void
service_slot_freed(struct service *svc, struct worker *w)
{
	w->full_until = 0;
	if (svc->nqueued > 0)
		event_active(&svc->drain, EV_TIMEOUT, 0);
}

/* A worker joined the rotation: the queue, then the pool's size. */
void
service_worker_ready(struct service *svc, struct worker *w)
{
	if (w->generation == svc->generation &&
	    svc->ready >= svc->conf->min_workers)
		service_retire(svc);
	service_drain_queue(svc);
	service_maintain(svc);
}

/*
 * A worker left the rotation or stopped starting (unhealthy, stopping or
 * dead): the pool starts a replacement if demand wants one.
 */
void
service_worker_gone(struct service *svc)
{
	service_maintain(svc);
}

/*
 * A stalled worker's clients that it never read from go to other workers
 * (their bytes are sent again); returns how many moved.
 */
int
service_move_clients(struct service *svc, struct worker *w)
{
	struct relay *r, *next;
	int           n = 0;

	for (r = TAILQ_FIRST(&svc->relays); r != NULL; r = next) {
		next = TAILQ_NEXT(r, all);
		if (r->worker != w || relay_replayable(r) == 0)
			continue;
		r->tried[r->attempts++ % RELAY_ATTEMPTS] = w->serial;
		relay_rewind(r);
		service_dispatch(svc, r);
		n++;
	}
	return (n);
}

/* A worker's process was reaped. */
void
service_reap(struct service *svc, struct worker *w, int status)
{
	int quick = worker_failed_start(w);

	/* A crash (not asked to stop): its replacement counts one more. */
	if (w->state != WORKER_STOPPING && w->generation == svc->generation &&
	    w->slot < svc->nslots && svc->restarts[w->slot] + 1 > svc->crashes)
		svc->crashes = svc->restarts[w->slot] + 1;

	/* Back-off first: leaving the pool may start a replacement. */
	if (w->generation == svc->generation && quick) {
		svc->failures++;
		svc->backoff_until =
		    now_ms() + service_backoff_ms(svc->failures);
	} else if (w->generation == svc->generation &&
	    (w->served > 0 || now_ms() - w->started >= 10000))
		svc->failures = 0; /* starting works */
	worker_exited(w, status);
	if (quick && w->generation == svc->generation && !svc->stopping)
		log_notice("service %s: next worker start in %lldms",
		    svc->conf->name, service_backoff_ms(svc->failures));
	if (w->nconns == 0)
		worker_free(w);
	service_drain_queue(svc);
	service_maintain(svc);
	daemon_status_changed();
	daemon_check();
}

/*
 * The current generation is ready: the previous one stops taking clients,
 * and each of its workers stops once idle, or at shutdown_timeout.
 */
static void
service_retire(struct service *svc)
{
	struct worker *w, *next;

	for (w = TAILQ_FIRST(&svc->workers); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->generation != svc->generation)
			worker_retire(w, svc->conf->shutdown_timeout);
	}
}

static int
listen_equal(const struct sn_service_conf *a, const struct sn_service_conf *b)
{
	size_t i;

	if (a->nlisten != b->nlisten || a->backlog != b->backlog)
		return (0);
	for (i = 0; i < a->nlisten; i++) {
		if (a->listen[i].len != b->listen[i].len ||
		    a->listen[i].dualstack != b->listen[i].dualstack ||
		    memcmp(&a->listen[i].ss, &b->listen[i].ss,
			a->listen[i].len) != 0)
			return (0);
	}
	return (1);
}

/*
 * Reload: run on the new settings and start a new generation of workers;
 * the old one keeps serving until the new one is ready, then retires.
 */
int
service_reload(
    struct service *svc, struct sn_config *owner, struct sn_service_conf *sc)
{
	struct sn_config *old = svc->owner;
	char             *cause;

	if (!listen_equal(svc->conf, sc))
		log_warnx(
		    "service %s: listen or backlog changed: restart socketnautd to apply it; keeping the current listeners",
		    sc->name);
	config_ref(owner);
	svc->owner = owner;
	svc->conf = sc;
	service_idle_tv(svc);
	if (sc->backend != BACKEND_TCP &&
	    service_sockdir(svc, 0, &cause) == -1) {
		log_warnx("%s", cause);
		free(cause);
	}
	if (service_accesslog(svc, &cause) == -1) {
		log_warnx("%s; keeping the current one", cause);
		free(cause);
	}
	config_unref(old);

	service_slots_reset(svc);
	svc->generation++;
	svc->online = svc->ready = 0;
	svc->failures = 0;
	svc->backoff_until = 0;
	log_info("service %s: starting worker generation %u", sc->name,
	    svc->generation);
	event_del(&svc->check);
	ms_timer(&svc->check, sc->check_interval);
	service_watch_start(svc);
	if (sc->min_workers == 0)
		service_retire(svc);
	service_maintain(svc);
	service_update_accepting(svc);
	return (0);
}

/*
 * Start the workers demand wants (min_workers, the queue, spare_workers),
 * as soon as the back-off allows.
 */
static void
service_maintain(struct service *svc)
{
	struct pick p;
	long long   wait;

	if (svc->stopping)
		return;
	if ((wait = svc->backoff_until - now_ms()) > 0) {
		if ((svc->online < svc->conf->min_workers ||
			svc->nqueued > 0) &&
		    !evtimer_pending(&svc->respawn, NULL))
			ms_timer(&svc->respawn, wait);
		return;
	}
	p = service_pick(svc, NULL);
	service_spawn(svc, p.spawn);
}

static void
service_respawn(evutil_socket_t fd, short events, void *arg)
{
	struct service *svc = arg;

	(void)fd;
	(void)events;
	service_maintain(svc);
	service_drain_queue(svc);
}

/* How often stalls are looked for: a few times per stall_timeout. */
static void
service_watch_start(struct service *svc)
{
	long long ms = svc->conf->stall_timeout / 4;

	event_del(&svc->watch);
	if (svc->conf->stall_timeout == 0 || svc->stopping)
		return;
	ms_timer(&svc->watch, ms < 50 ? 50 : ms > 1000 ? 1000 : ms);
}

/*
 * Another worker shows the service can still serve: one in rotation that
 * is idle or moved bytes lately.  Without one, a slow backend that holds
 * every worker up is not a reason to kill them all.
 */
static int
service_others_progress(
    struct service *svc, struct worker *stalled, long long now)
{
	struct worker *w;

	TAILQ_FOREACH (w, &svc->workers, entry) {
		if (w == stalled || !worker_in_rotation(w))
			continue;
		if (w->awaiting == 0 ||
		    now - w->progress < svc->conf->stall_timeout)
			return (1);
	}
	return (0);
}

/*
 * A client of w sent it bytes it has not read: it does not even read its
 * requests (a server that holds a long poll reads it, then waits).
 */
static int
service_unread_by(struct service *svc, struct worker *w)
{
	struct relay *r;

	TAILQ_FOREACH (r, &svc->relays, all) {
		if (r->worker == w && r->awaiting && relay_unread(r) > 0)
			return (1);
	}
	return (0);
}

/*
 * Every quarter of stall_timeout: a worker with clients waiting for its
 * reply, that has moved no byte and used no CPU for stall_timeout and
 * leaves requests unread, while others serve, is stalled.
 */
static void
service_watch(evutil_socket_t fd, short events, void *arg)
{
	struct service *svc = arg;
	struct worker  *w, *next;
	long long       now = now_coarse_ms();

	(void)fd;
	(void)events;
	for (w = TAILQ_FIRST(&svc->workers); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (!worker_in_rotation(w) || w->awaiting == 0)
			continue;
		/* A blocking server computing one long request is busy. */
		if (worker_cpu_idle_ms(w, now) < svc->conf->stall_timeout ||
		    now - w->progress < svc->conf->stall_timeout)
			continue;
		if (service_others_progress(svc, w, now) &&
		    service_unread_by(svc, w))
			worker_stalled(w, now - w->progress);
	}
	service_watch_start(svc);
}

/*
 * Every workers_checking_interval: stop idle workers above what the pool
 * keeps (min_workers, and spare_workers idle ones above the busy).
 */
static void
service_check(evutil_socket_t fd, short events, void *arg)
{
	struct service *svc = arg;
	struct worker  *w, *prev;
	int             busy = 0, keep, excess;

	(void)fd;
	(void)events;
	TAILQ_FOREACH (w, &svc->workers, entry) {
		if (worker_in_rotation(w) && w->nconns > 0 &&
		    w->generation == svc->generation)
			busy++;
	}
	keep = busy + svc->conf->spare_workers;
	if (keep < svc->conf->min_workers)
		keep = svc->conf->min_workers;
	excess = svc->ready - keep;
	for (w = TAILQ_LAST(&svc->workers, worker_head);
	     w != NULL && excess > 0; w = prev) {
		prev = TAILQ_PREV(w, worker_head, entry);
		if (worker_in_rotation(w) && w->nconns == 0 &&
		    w->generation == svc->generation) {
			worker_stop(w, "idle");
			excess--;
		}
	}
	ms_timer(&svc->check, svc->conf->check_interval);
}

static void
service_stop_workers(struct service *svc)
{
	struct worker *w;
	struct relay  *r;

	event_del(&svc->shutdown);
	while ((r = TAILQ_FIRST(&svc->relays)) != NULL)
		relay_close(r, RELAY_END_SHUTDOWN, 0);
	TAILQ_FOREACH (w, &svc->workers, entry)
		worker_stop(w, "shutdown");
	daemon_check();
}

static void
service_shutdown_timeout(evutil_socket_t fd, short events, void *arg)
{
	struct service *svc = arg;

	(void)fd;
	(void)events;
	log_notice(
	    "service %s: %d connection%s still open after %lldms, closing",
	    svc->conf->name, svc->nconns, svc->nconns == 1 ? "" : "s",
	    svc->conf->shutdown_timeout);
	service_stop_workers(svc);
}

/*
 * Stop accepting, let open connections finish (up to shutdown_timeout, or
 * not at all when now is set), then stop the workers.
 */
void
service_stop(struct service *svc, int now)
{
	struct worker *w;
	struct relay  *r, *next;
	size_t         i;

	if (!svc->stopping) {
		svc->stopping = 1;
		service_listening(svc, 0);
		for (i = 0; i < svc->nlisteners; i++)
			listener_close(&svc->listeners[i]);
		event_del(&svc->check);
		event_del(&svc->watch);
		event_del(&svc->respawn);
		/* After an upgrade our workers still take the queue. */
		if (!svc->handover)
			event_del(&svc->drain);
		while (!svc->handover && TAILQ_FIRST(&svc->queue) != NULL)
			relay_close(
			    TAILQ_FIRST(&svc->queue), RELAY_END_SHUTDOWN, 0);
		for (r = TAILQ_FIRST(&svc->relays); r != NULL; r = next) {
			next = TAILQ_NEXT(r, all);
			relay_finished(r);
		}
		TAILQ_FOREACH (w, &svc->workers, entry)
			worker_drain_handed(w);
		if (svc->nconns > 0 && !now) {
			log_info("service %s: waiting for %d connection%s",
			    svc->conf->name, svc->nconns,
			    svc->nconns == 1 ? "" : "s");
			ms_timer(&svc->shutdown, svc->conf->shutdown_timeout);
			return;
		}
	}
	service_stop_workers(svc);
}

/*
 * Binary upgrade: the new master accepts on our sockets.  We stop
 * accepting and drain as on SIGTERM, but serve the clients we queued.
 */
void
service_handover(struct service *svc)
{
	svc->handover = 1;
	service_stop(svc, 0);
}

void
service_relay_done(struct service *svc)
{
	svc->nconns--;
	if (svc->stopping) {
		if (svc->nconns == 0 && evtimer_pending(&svc->shutdown, NULL))
			service_stop_workers(svc);
		if (svc->nconns == 0)
			daemon_check();
		return;
	}
	service_update_accepting(svc);
}

/*
 * What a load balancer's health check learns: the service takes clients
 * and has a worker in rotation (of any generation: during a reload the
 * previous one serves until the new one is ready).
 */
const char *
service_unavailable(const struct service *svc)
{
	struct worker *w;

	if (svc->stopping || svc->removed)
		return ("stopping");
	TAILQ_FOREACH (w, &svc->workers, entry) {
		if (w->state == WORKER_READY)
			return (NULL);
	}
	return ("no ready worker");
}

/* Stopped: no worker process and no connection left. */
int
service_stopped(const struct service *svc)
{
	struct worker *w;

	if (!svc->stopping || svc->nconns > 0)
		return (0);
	TAILQ_FOREACH (w, &svc->workers, entry) {
		if (worker_alive(w))
			return (0);
	}
	return (1);
}

void
service_free(struct service *svc)
{
	struct worker *w;
	struct relay  *r;
	size_t         i;

	while ((r = TAILQ_FIRST(&svc->relays)) != NULL)
		relay_close(r, RELAY_END_SHUTDOWN, 0);
	accesslog_put(svc->alog);
	while ((w = TAILQ_FIRST(&svc->workers)) != NULL)
		worker_abandon(w);
	for (i = 0; i < svc->nlisteners; i++)
		listener_close(&svc->listeners[i]);
	/* Shared with the other master of an upgrade: not ours to remove. */
	if (!upgrade_handed_over() && !upgrade_holding())
		sockdir_remove(svc->sockdir);
	sockdir_unref(svc->sockdir);
	event_del(&svc->check);
	event_del(&svc->watch);
	event_del(&svc->respawn);
	event_del(&svc->drain);
	event_del(&svc->full);
	event_del(&svc->shutdown);
	config_unref(svc->owner);
	free(svc->listeners);
	free(svc->slots);
	free(svc->restarts);
	free(svc);
}

/* Room in the slot arrays for a larger pool (kept when it shrinks). */
static void
service_slots_grow(struct service *svc)
{
	int n = SERVICE_SLOTS(svc->conf);

	if (n <= svc->nslots)
		return;
	svc->slots = xreallocarray(svc->slots, n, 1);
	svc->restarts = xreallocarray(svc->restarts, n, sizeof *svc->restarts);
	memset(svc->slots + svc->nslots, 0, n - svc->nslots);
	memset(svc->restarts + svc->nslots, 0,
	    (n - svc->nslots) * sizeof *svc->restarts);
	svc->nslots = n;
}

/*
 * socketnautctl scale: new pool bounds until the next reload.  Workers
 * above the new maximum leave the rotation, idle ones first (busy ones
 * drain); below the minimum, new ones start.
 */
int
service_scale(struct service *svc, int min, int max, char **cause)
{
	struct sn_service_conf *sc = svc->conf;
	struct worker          *w, *prev;
	int                     excess, pass;

	if (svc->stopping) {
		*cause = xasprintf("service %s is stopping", sc->name);
		return (-1);
	}
	if (min < 0 || min > WORKERS_MAX || max < 1 || max > WORKERS_MAX ||
	    min > max || sc->spare_workers > max) {
		*cause = xasprintf(
		    "service %s: min %d, max %d: need 0 <= min <= max, 1 <= max <= %d and max >= spare_workers (%d)",
		    sc->name, min, max, WORKERS_MAX, sc->spare_workers);
		return (-1);
	}
	sc->min_workers = min;
	sc->max_workers = max;
	service_slots_grow(svc);
	log_notice("service %s: scaled to min_workers %d, max_workers %d",
	    sc->name, min, max);
	excess = svc->online - max;
	for (pass = 0; pass < 3 && excess > 0; pass++) {
		for (w = TAILQ_LAST(&svc->workers, worker_head);
		     w != NULL && excess > 0; w = prev) {
			prev = TAILQ_PREV(w, worker_head, entry);
			if (w->generation != svc->generation)
				continue;
			if (pass == 0 && w->state == WORKER_STARTING)
				worker_stop(w, "scaled down");
			else if (pass == 1 && worker_in_rotation(w) &&
			    w->nconns == 0)
				worker_stop(w, "scaled down");
			else if (pass == 2 && worker_in_rotation(w))
				worker_retire(w, sc->shutdown_timeout);
			else
				continue;
			excess--;
		}
	}
	service_maintain(svc);
	service_drain_queue(svc);
	daemon_status_changed();
	return (0);
}

/* socketnautctl restart: a new generation, as a reload starts one. */
void
service_restart(struct service *svc)
{
	service_reload(svc, svc->owner, svc->conf);
}

/*
 * socketnautctl drain: one worker takes no new clients and stops once
 * idle (at shutdown_timeout at the latest); the pool replaces it if it
 * needs to.
 */
int
service_drain_worker(struct service *svc, pid_t pid, char **cause)
{
	struct worker *w;

	TAILQ_FOREACH (w, &svc->workers, entry) {
		if (w->pid == pid && worker_alive(w))
			break;
	}
	if (w == NULL) {
		*cause = xasprintf("service %s has no worker with pid %ld",
		    svc->conf->name, (long)pid);
		return (-1);
	}
	if (w->state == WORKER_STARTING || w->nconns == 0)
		worker_stop(w, "drained by socketnautctl");
	else if (w->state == WORKER_READY || w->state == WORKER_UNHEALTHY)
		worker_retire(w, svc->conf->shutdown_timeout);
	worker_log(LOG_NOTICE, w, "draining (socketnautctl)");
	return (0);
}
