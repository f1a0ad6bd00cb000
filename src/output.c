/*
 * A worker's stdout and stderr: one pipe for both (their lines stay in the
 * order the worker wrote them, and a worker costs one descriptor), read
 * without blocking, cut into lines and logged "service S: worker N: ...",
 * within the same per-worker budget as its LOG frames.  A flood is read a
 * bounded amount at a time and paused, so it neither blocks the master nor
 * grows its memory: the worker blocks on its own full pipe instead.  So is
 * any output that outpaces the reads of a turn, lines or not.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "output.h"
#include "service.h"
#include "socketnautd.h"
#include "worker.h"

#define OUTPUT_READ  4096 /* bytes a read */
#define OUTPUT_READS 16   /* reads a turn, then let the loop run */
#define OUTPUT_DROPS 64   /* lines dropped in a turn that pause reading */
#define OUTPUT_PAUSE 10   /* ms without reading a flooding worker */
#define OUTPUT_TELL  1000 /* ms: at most one "suppressed" line per */
#define OUTPUT_CLOSE 16   /* reads when the worker is freed, at most */

struct output {
	struct worker     *w;
	int                fd;
	struct event       rev;
	struct event       more;    /* paused: read again after OUTPUT_PAUSE */
	struct event       summary; /* suppressed lines are due to be told */
	char               line[OUTPUT_LINE_MAX + 1];
	size_t             len;        /* bytes in line */
	int                cut;        /* the line was cut: skip to newline */
	int                dropping;   /* lines dropped this turn */
	unsigned long long suppressed; /* dropped, not yet told */
};

static void output_read(evutil_socket_t, short, void *);
static void output_tell(evutil_socket_t, short, void *);

struct output *
output_open(struct worker *w, int fd)
{
	struct output *o;

	o = xcalloc(1, sizeof *o);
	o->w = w;
	o->fd = fd;
	fd_nonblock(fd);
	event_assign(
	    &o->rev, sn_base, fd, EV_READ | EV_PERSIST, output_read, o);
	evtimer_assign(&o->more, sn_base, output_read, o);
	evtimer_assign(&o->summary, sn_base, output_tell, o);
	event_add(&o->rev, NULL);
	return (o);
}

/* One line for the output lines dropped since the last such line. */
static void
output_tell(evutil_socket_t fd, short events, void *arg)
{
	struct output *o = arg;

	(void)fd;
	(void)events;
	if (o->suppressed == 0)
		return;
	worker_log(LOG_WARNING, o->w, "%llu output line%s suppressed",
	    o->suppressed, o->suppressed == 1 ? "" : "s");
	o->suppressed = 0;
}

/* The line gathered so far goes to the log, if the budget allows. */
static void
output_emit(struct output *o)
{
	struct timeval tv = { OUTPUT_TELL / 1000, 0 };
	char          *p;

	if (o->len > 0 && o->line[o->len - 1] == '\r') /* a \r\n line end */
		o->len--;
	o->line[o->len] = '\0';
	for (p = o->line; p < o->line + o->len; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	}
	if (OUTPUT_PRI > log_getlevel())
		return; /* filtered out: costs nothing */
	if (!control_log_take(&o->w->logs, now_coarse_ms(), o->len)) {
		o->dropping++;
		if (o->suppressed++ == 0)
			evtimer_add(&o->summary, &tv);
		return;
	}
	if (o->cut)
		worker_log(OUTPUT_PRI, o->w, "output: %s [cut at %d bytes]",
		    o->line, OUTPUT_LINE_MAX);
	else
		worker_log(OUTPUT_PRI, o->w, "output: %s", o->line);
}

/* Split what was read into lines; bytes past a cut are skipped. */
static void
output_feed(struct output *o, const char *buf, size_t n)
{
	const char *nl;
	size_t      take;

	while (n > 0) {
		nl = memchr(buf, '\n', n);
		take = nl != NULL ? (size_t)(nl - buf) : n;
		if (!o->cut) {
			if (take > OUTPUT_LINE_MAX - o->len) {
				memcpy(o->line + o->len, buf,
				    OUTPUT_LINE_MAX - o->len);
				o->len = OUTPUT_LINE_MAX;
				o->cut = 1;
				output_emit(o);
			} else {
				memcpy(o->line + o->len, buf, take);
				o->len += take;
			}
		}
		if (nl == NULL)
			return;
		if (!o->cut)
			output_emit(o);
		o->len = 0;
		o->cut = 0;
		buf = nl + 1;
		n -= take + 1;
	}
}

/*
 * Read at most reads times.  Returns 1 at end of file or on an error (the
 * pipe is done), 0 when it would block, 2 when the reads ran out.
 */
static int
output_drain(struct output *o, int reads)
{
	char    buf[OUTPUT_READ];
	ssize_t n;

	while (reads-- > 0) {
		n = read(o->fd, buf, sizeof buf);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return (0);
		if (n <= 0)
			return (1);
		output_feed(o, buf, (size_t)n);
	}
	return (2);
}

/* A line the worker did not end: it is all we will get. */
static void
output_flush_partial(struct output *o)
{
	if (o->len > 0 && !o->cut)
		output_emit(o);
	o->len = 0;
	o->cut = 0;
}

static void
output_read(evutil_socket_t fd, short events, void *arg)
{
	struct output *o = arg;
	struct timeval tv = { 0, OUTPUT_PAUSE * 1000 };
	int            more;

	(void)events;
	if (fd == -1) /* the pause is over */
		event_add(&o->rev, NULL);
	o->dropping = 0;
	if ((more = output_drain(o, OUTPUT_READS)) == 1) {
		/* Every writer closed it: the worker and what it left. */
		output_flush_partial(o);
		event_del(&o->rev);
		return;
	}
	/*
	 * A flood, of lines over budget or of bytes that cost none (past a
	 * cut, below log_level): reading it flat out would only burn our CPU.
	 */
	if (o->dropping >= OUTPUT_DROPS || more == 2) {
		event_del(&o->rev);
		evtimer_add(&o->more, &tv);
	}
}

/* The worker exited: log what it wrote last, before the line saying so. */
void
output_exited(struct output *o)
{
	if (o == NULL)
		return;
	output_drain(o, OUTPUT_CLOSE);
	output_flush_partial(o);
}

/*
 * The worker is freed: what is readable now is logged, and the pipe is
 * closed even if a descendant of the worker still holds it open.
 */
void
output_close(struct output *o)
{
	if (o == NULL)
		return;
	output_drain(o, OUTPUT_CLOSE);
	output_flush_partial(o);
	output_tell(-1, 0, o);
	event_del(&o->rev);
	event_del(&o->more);
	event_del(&o->summary);
	close(o->fd);
	free(o);
}
