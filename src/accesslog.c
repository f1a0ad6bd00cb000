/*
 * The access log (HAProxy's tcplog, nginx stream's access_log): one line
 * per client connection when it closes, to a file or to syslog.  Lines are
 * formatted into a memory buffer and written in batches, from a short
 * timer or once the buffer holds ACCESSLOG_BATCH bytes, so the relay never
 * waits for a disk; when writes fail (a full disk) lines wait, up to
 * ACCESSLOG_MAX bytes, then are dropped and counted, and the failure is
 * logged once a second at most.  SIGUSR1 reopens the file (logrotate).
 */
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
#include "worker.h"

#define ACCESSLOG_FLUSH_MS 100
#define ACCESSLOG_BATCH    (64 * 1024)
#define ACCESSLOG_MAX      (4 * 1024 * 1024)

enum accesslog_kind { ACCESSLOG_OFF, ACCESSLOG_FILE, ACCESSLOG_SYSLOG };

static struct {
	enum accesslog_kind kind;
	char               *path;
	int                 fd;
	struct evbuffer    *buf;
	struct event        flush;
	int                 flush_set;
	unsigned long       dropped;   /* lines, since last reported */
	long long           warned;    /* ms: last failure logged */
	time_t              stamp_sec; /* the second stamp holds */
	char                stamp[32];
} al = { .kind = ACCESSLOG_OFF, .fd = -1, .stamp_sec = -1 };

static void accesslog_flush(void);
static void accesslog_schedule(void);

static void
accesslog_flush_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	accesslog_flush();
}

/* At most one line a second about a failing access log. */
static void
accesslog_warn(int error)
{
	long long now = now_coarse_ms();

	if (now - al.warned < 1000)
		return;
	al.warned = now;
	if (error != 0)
		log_warnx(
		    "access log %s: %s (%zu bytes waiting, %lu lines dropped)",
		    al.path, strerror(error), evbuffer_get_length(al.buf),
		    al.dropped);
	else
		log_warnx("access log: %lu lines dropped", al.dropped);
	al.dropped = 0;
}

static void
accesslog_syslog(void)
{
	char  *line;
	size_t n;

	while ((line = evbuffer_readln(al.buf, &n, EVBUFFER_EOL_LF)) != NULL) {
		syslog(LOG_INFO, "%s", line);
		free(line);
	}
}

/* Write what is buffered; what the file does not take waits for the next. */
static void
accesslog_flush(void)
{
	int n;

	if (al.buf == NULL || evbuffer_get_length(al.buf) == 0)
		return;
	if (al.kind == ACCESSLOG_SYSLOG)
		accesslog_syslog();
	while (al.kind == ACCESSLOG_FILE && evbuffer_get_length(al.buf) > 0) {
		if ((n = evbuffer_write(al.buf, al.fd)) > 0)
			continue;
		if (n == -1 && errno == EINTR)
			continue;
		accesslog_warn(n == 0 ? ENOSPC : errno);
		break;
	}
	if (al.dropped > 0)
		accesslog_warn(0);
	if (evbuffer_get_length(al.buf) > 0)
		accesslog_schedule();
}

static void
accesslog_schedule(void)
{
	struct timeval tv = { 0, ACCESSLOG_FLUSH_MS * 1000 };

	if (!al.flush_set) {
		evtimer_assign(&al.flush, sn_base, accesslog_flush_cb, NULL);
		al.flush_set = 1;
	}
	if (!evtimer_pending(&al.flush, NULL))
		evtimer_add(&al.flush, &tv);
}

static int
accesslog_open_file(const char *path, int *fdp, char **cause)
{
	int fd;

	fd = open(path,
	    O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
	    0640);
	if (fd == -1) {
		*cause = xasprintf("%s: %s", path, strerror(errno));
		return (-1);
	}
	*fdp = fd;
	return (0);
}

/*
 * Start logging to target: "off", "syslog" or an absolute path.  Lines
 * still buffered for the previous target go there first.
 */
int
accesslog_open(const char *target, char **cause)
{
	int fd = -1;

	if (target == NULL)
		target = "off";
	if (al.path != NULL && strcmp(al.path, target) == 0)
		return (0);
	if (target[0] == '/' && accesslog_open_file(target, &fd, cause) == -1)
		return (-1);
	accesslog_flush();
	if (al.fd != -1)
		close(al.fd);
	free(al.path);
	al.fd = fd;
	al.path = xstrdup(target);
	if (strcmp(target, "off") == 0)
		al.kind = ACCESSLOG_OFF;
	else if (strcmp(target, "syslog") == 0) {
		al.kind = ACCESSLOG_SYSLOG;
		openlog("socketnautd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	} else
		al.kind = ACCESSLOG_FILE;
	if (al.kind != ACCESSLOG_OFF && al.buf == NULL)
		al.buf = evbuffer_new();
	if (al.kind == ACCESSLOG_OFF && al.buf != NULL) {
		evbuffer_free(al.buf);
		al.buf = NULL;
	}
	return (0);
}

/* SIGUSR1: open the file again (it was renamed by logrotate, say). */
void
accesslog_reopen(void)
{
	char *cause;
	int   fd = -1;

	if (al.kind != ACCESSLOG_FILE)
		return;
	accesslog_flush();
	if (accesslog_open_file(al.path, &fd, &cause) == -1) {
		log_warnx("cannot reopen the access log: %s", cause);
		free(cause);
		return;
	}
	close(al.fd);
	al.fd = fd;
	log_info("access log reopened");
}

/* At exit: write what is left, then close. */
void
accesslog_close(void)
{
	accesslog_flush();
	if (al.flush_set)
		event_del(&al.flush);
	al.flush_set = 0;
	if (al.fd != -1)
		close(al.fd);
	if (al.buf != NULL)
		evbuffer_free(al.buf);
	free(al.path);
	memset(&al, 0, sizeof al);
	al.fd = -1;
	al.stamp_sec = -1;
}

int
accesslog_on(void)
{
	return (al.kind != ACCESSLOG_OFF);
}

/* "2026-12-01T04:55:01.123Z": the part up to the second is kept. */
static const char *
accesslog_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm       tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != al.stamp_sec) {
		gmtime_r(&ts.tv_sec, &tm);
		strftime(al.stamp, sizeof al.stamp, "%Y-%m-%dT%H:%M:%S", &tm);
		al.stamp_sec = ts.tv_sec;
	}
	snprintf(buf, len, "%s.%03ldZ", al.stamp, ts.tv_nsec / 1000000);
	return (buf);
}

/*
 * time service client listener worker_pid queue_ms connect_ms duration_ms
 * bytes_in bytes_out end: one line, space-separated, "-" where a field
 * does not apply (no worker, never connected).
 */
void
accesslog_relay(const struct relay *r, enum relay_end end, int error)
{
	char        stamp[48], peer[ADDRSTRLEN], pid[24], conn[24], why[64];
	const char *ename;
	long long   now = now_coarse_ms();

	if (al.kind == ACCESSLOG_OFF)
		return;
	if (evbuffer_get_length(al.buf) >= ACCESSLOG_MAX) {
		al.dropped++;
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
	evbuffer_add_printf(al.buf,
	    "%s %s %s %s %s %lld %s %lld %llu %llu %s\n",
	    accesslog_time(stamp, sizeof stamp), r->svc->conf->name,
	    relay_peer(r, peer, sizeof peer),
	    r->listener != NULL ? r->listener->name : "-", pid, r->waited, conn,
	    now - r->accepted, (unsigned long long)r->up.total,
	    (unsigned long long)r->down.total, why);
	if (evbuffer_get_length(al.buf) >= ACCESSLOG_BATCH)
		accesslog_flush();
	else
		accesslog_schedule();
}
