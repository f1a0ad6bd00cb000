/*
 * Access logs (HAProxy's tcplog, nginx stream's access_log): one line per
 * client connection when it closes, to a file or to syslog; services that
 * name the same target share one log.  Lines are
 * formatted into a memory buffer and written in batches, from a short
 * timer or once the buffer holds ACCESSLOG_BATCH bytes, so the relay never
 * waits for a disk; when writes fail (a full disk) lines wait, up to
 * ACCESSLOG_MAX bytes, then are dropped and counted, and the failure is
 * logged once a second at most.  SIGUSR1 reopens the files (logrotate).
 */
#include <sys/queue.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "accesslog.h"
#include "listener.h"
#include "log.h"
#include "relay.h"
#include "service.h"
#include "socketnautd.h"
#include "sockdir.h"
#include "worker.h"

#define ACCESSLOG_FLUSH_MS 100
#define ACCESSLOG_BATCH    (64 * 1024)
#define ACCESSLOG_MAX      (4 * 1024 * 1024)

enum accesslog_kind { ACCESSLOG_FILE, ACCESSLOG_SYSLOG };

/* One target (a file, or syslog), shared by the services that name it. */
struct accesslog {
	TAILQ_ENTRY(accesslog) entry;
	int                 refs;
	enum accesslog_kind kind;
	char               *path; /* or "syslog" */
	int                 fd;
	struct evbuffer    *buf;
	unsigned long       dropped; /* lines, since last reported */
	long long           warned;  /* ms: last failure logged */
};
TAILQ_HEAD(accesslog_head, accesslog);

static struct accesslog_head logs = TAILQ_HEAD_INITIALIZER(logs);
static struct event          flush_ev;
static int                   flush_set;
static time_t                stamp_sec = -1; /* the second stamp holds */
static char                  stamp[32];

static void accesslog_flush(struct accesslog *);
static void accesslog_schedule(void);

static void
accesslog_flush_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	accesslog_flush_all();
}

/* At most one line a second about a failing access log. */
static void
accesslog_warn(struct accesslog *al, int error)
{
	long long now = now_coarse_ms();

	if (now - al->warned < 1000)
		return;
	al->warned = now;
	if (error != 0)
		log_warnx(
		    "access log %s: %s (%zu bytes waiting, %lu lines dropped)",
		    al->path, strerror(error), evbuffer_get_length(al->buf),
		    al->dropped);
	else
		log_warnx(
		    "access log %s: %lu lines dropped", al->path, al->dropped);
	al->dropped = 0;
}

static void
accesslog_syslog(struct accesslog *al)
{
	char  *line;
	size_t n;

	while ((line = evbuffer_readln(al->buf, &n, EVBUFFER_EOL_LF)) != NULL) {
		syslog(LOG_INFO, "%s", line);
		free(line);
	}
}

/* Write what is buffered; what the file does not take waits for the next. */
static void
accesslog_flush(struct accesslog *al)
{
	int n;

	if (evbuffer_get_length(al->buf) == 0)
		return;
	if (al->kind == ACCESSLOG_SYSLOG)
		accesslog_syslog(al);
	while (al->kind == ACCESSLOG_FILE && evbuffer_get_length(al->buf) > 0) {
		if ((n = evbuffer_write(al->buf, al->fd)) > 0)
			continue;
		if (n == -1 && errno == EINTR)
			continue;
		accesslog_warn(al, n == 0 ? ENOSPC : errno);
		break;
	}
	if (al->dropped > 0)
		accesslog_warn(al, 0);
	if (evbuffer_get_length(al->buf) > 0)
		accesslog_schedule();
}

/* Every log's lines, now: from the timer, and before the daemon exits. */
void
accesslog_flush_all(void)
{
	struct accesslog *al;

	TAILQ_FOREACH (al, &logs, entry)
		accesslog_flush(al);
}

static void
accesslog_schedule(void)
{
	struct timeval tv = { 0, ACCESSLOG_FLUSH_MS * 1000 };

	if (!flush_set) {
		evtimer_assign(&flush_ev, sn_base, accesslog_flush_cb, NULL);
		flush_set = 1;
	}
	if (!evtimer_pending(&flush_ev, NULL))
		evtimer_add(&flush_ev, &tv);
}

static int
accesslog_open_file(const char *path, int *fdp, char **cause)
{
	int fd;

	if ((fd = sockdir_open_file(path, O_WRONLY | O_APPEND | O_CREAT,
		 SOCKDIR_FILE_DEV, cause)) == -1)
		return (-1);
	*fdp = fd;
	return (0);
}

/*
 * The log for target ("off", "syslog" or an absolute path), opened on
 * first use and shared after; *alp is NULL for "off".  Each one got is
 * given back with accesslog_put().
 */
int
accesslog_get(const char *target, struct accesslog **alp, char **cause)
{
	struct accesslog *al;
	int               fd = -1;

	*alp = NULL;
	if (target == NULL || strcmp(target, "off") == 0)
		return (0);
	TAILQ_FOREACH (al, &logs, entry) {
		if (strcmp(al->path, target) == 0) {
			al->refs++;
			*alp = al;
			return (0);
		}
	}
	if (strcmp(target, "syslog") != 0 &&
	    accesslog_open_file(target, &fd, cause) == -1)
		return (-1);
	al = xcalloc(1, sizeof *al);
	al->refs = 1;
	al->path = xstrdup(target);
	al->fd = fd;
	al->kind = fd == -1 ? ACCESSLOG_SYSLOG : ACCESSLOG_FILE;
	if ((al->buf = evbuffer_new()) == NULL)
		fatalx("evbuffer_new failed");
	if (al->kind == ACCESSLOG_SYSLOG)
		openlog("socketnautd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	TAILQ_INSERT_TAIL(&logs, al, entry);
	*alp = al;
	return (0);
}

/* The last user gone: write what is left and close. */
void
accesslog_put(struct accesslog *al)
{
	if (al == NULL || --al->refs > 0)
		return;
	accesslog_flush(al);
	TAILQ_REMOVE(&logs, al, entry);
	if (al->fd != -1)
		close(al->fd);
	evbuffer_free(al->buf);
	free(al->path);
	free(al);
	if (TAILQ_EMPTY(&logs) && flush_set) {
		event_del(&flush_ev);
		flush_set = 0;
	}
}

/* SIGUSR1: open every file again (logrotate renamed it, say). */
void
accesslog_reopen(void)
{
	struct accesslog *al;
	char             *cause;
	int               fd = -1;

	TAILQ_FOREACH (al, &logs, entry) {
		if (al->kind != ACCESSLOG_FILE)
			continue;
		accesslog_flush(al);
		if (accesslog_open_file(al->path, &fd, &cause) == -1) {
			log_warnx("cannot reopen the access log: %s", cause);
			free(cause);
			continue;
		}
		close(al->fd);
		al->fd = fd;
		log_info("access log %s reopened", al->path);
	}
}

/* "2026-12-01T04:55:01.123Z": the part up to the second is kept. */
static const char *
accesslog_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm       tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != stamp_sec) {
		gmtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
		stamp_sec = ts.tv_sec;
	}
	snprintf(buf, len, "%s.%03ldZ", stamp, ts.tv_nsec / 1000000);
	return (buf);
}

/*
 * A connection handed to a worker (mode handoff), at its close: the same
 * fields, with "-" for the connect time and the bytes (the master never
 * saw them).
 */
void
accesslog_handed(struct accesslog *al, const struct service *svc,
    const struct sockaddr *client, const char *listener, long pid,
    long long queue_ms, long long accepted, enum relay_end end)
{
	char when[48], peer[ADDRSTRLEN];

	if (evbuffer_get_length(al->buf) >= ACCESSLOG_MAX) {
		al->dropped++;
		accesslog_schedule();
		return;
	}
	evbuffer_add_printf(al->buf, "%s %s %s %s %ld %lld - %lld - - %s\n",
	    accesslog_time(when, sizeof when), svc->conf->name,
	    addr_str(client, peer, sizeof peer),
	    listener != NULL ? listener : "-", pid, queue_ms,
	    now_coarse_ms() - accepted, relay_end_name(end));
	if (evbuffer_get_length(al->buf) >= ACCESSLOG_BATCH)
		accesslog_flush(al);
	else
		accesslog_schedule();
}

/*
 * time service client listener worker_pid queue_ms connect_ms duration_ms
 * bytes_in bytes_out end: one line, space-separated, "-" where a field
 * does not apply (no worker, never connected).
 */
void
accesslog_relay(
    struct accesslog *al, const struct relay *r, enum relay_end end, int error)
{
	char        when[48], peer[ADDRSTRLEN], pid[24], conn[24], why[64];
	const char *ename;
	long long   now = now_coarse_ms();

	if (evbuffer_get_length(al->buf) >= ACCESSLOG_MAX) {
		al->dropped++;
		accesslog_schedule();
		return;
	}
	if (r->worker != NULL)
		snprintf(pid, sizeof pid, "%ld", (long)r->worker->pid);
	else
		strcpy(pid, "-");
	if (r->opened != 0 && r->opened >= r->since)
		snprintf(conn, sizeof conn, "%lld", r->opened - r->since);
	else
		strcpy(conn, "-");
	ename = relay_end_name(end);
	if (error != 0 && strerrorname_np(error) != NULL)
		snprintf(
		    why, sizeof why, "%s:%s", ename, strerrorname_np(error));
	else
		snprintf(why, sizeof why, "%s", ename);
	evbuffer_add_printf(al->buf,
	    "%s %s %s %s %s %lld %s %lld %llu %llu %s\n",
	    accesslog_time(when, sizeof when), r->svc->conf->name,
	    relay_peer(r, peer, sizeof peer),
	    r->listener != NULL ? r->listener->name : "-", pid, r->waited, conn,
	    now - r->accepted, (unsigned long long)r->up.total,
	    (unsigned long long)r->down.total, why);
	if (evbuffer_get_length(al->buf) >= ACCESSLOG_BATCH)
		accesslog_flush(al);
	else
		accesslog_schedule();
}
