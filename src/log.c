/*
 * Logging in the OpenSMTPD manner: log_warn appends strerror(errno),
 * log_warnx does not, fatal and fatalx exit.  Lines go to stderr (with a
 * sd-daemon "<N>" priority prefix when stderr is the journal, with a
 * timestamp otherwise), to syslog, or to a file that SIGUSR1 reopens.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sockdir.h"

enum log_kind { LOG_TO_STDERR, LOG_TO_SYSLOG, LOG_TO_FILE };

static enum log_kind log_kind = LOG_TO_STDERR;
static int           log_level = LOG_INFO;
static int           log_journal; /* stderr is a journald stream */
static char         *log_path;
static FILE         *log_file;

static const char *log_names[] = { "emerg", "alert", "crit", "error", "warning",
	"notice", "info", "debug" };

int
log_level_parse(const char *name)
{
	int i;

	for (i = 0; i <= LOG_DEBUG; i++) {
		if (strcasecmp(name, log_names[i]) == 0)
			return (i);
	}
	if (strcasecmp(name, "err") == 0)
		return (LOG_ERR);
	if (strcasecmp(name, "warn") == 0)
		return (LOG_WARNING);
	return (-1);
}

const char *
log_level_name(int level)
{
	if (level < 0 || level > LOG_DEBUG)
		return ("unknown");
	return (log_names[level]);
}

/* True when JOURNAL_STREAM names the file our stderr is connected to. */
static int
log_stderr_is_journal(void)
{
	const char        *v = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat        st;

	if (v == NULL || sscanf(v, "%llu:%llu", &dev, &ino) != 2)
		return (0);
	if (fstat(STDERR_FILENO, &st) == -1)
		return (0);
	return ((unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino);
}

/*
 * The log file, appended to and line-buffered: opened by sockdir's rules,
 * since worker output lands in it word for word and a worker's user may
 * own its directory.
 */
static FILE *
log_open_file(const char *path, char **cause)
{
	FILE *f;
	char *why;
	int   fd;

	if ((fd = sockdir_open_file(path, O_WRONLY | O_APPEND | O_CREAT,
		 SOCKDIR_FILE_DEV, &why)) == -1) {
		if (cause != NULL)
			*cause = why;
		else
			free(why);
		return (NULL);
	}
	/* Blocking, as stdio was: a line is written whole or not at all. */
	fcntl(fd, F_SETFL, O_WRONLY | O_APPEND);
	if ((f = fdopen(fd, "a")) == NULL) {
		if (cause != NULL &&
		    asprintf(cause, "%s: %s", path, strerror(errno)) == -1)
			*cause = NULL;
		close(fd);
		return (NULL);
	}
	setvbuf(f, NULL, _IOLBF, 0);
	return (f);
}

int
log_open(const char *target, char **cause)
{
	FILE *f = NULL;

	if (target == NULL || strcmp(target, "stderr") == 0) {
		log_kind = LOG_TO_STDERR;
		log_journal = log_stderr_is_journal();
	} else if (strcmp(target, "syslog") == 0) {
		openlog("socketnautd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		log_kind = LOG_TO_SYSLOG;
	} else {
		if ((f = log_open_file(target, cause)) == NULL)
			return (-1);
	}
	if (log_file != NULL)
		fclose(log_file);
	free(log_path);
	log_file = NULL;
	log_path = NULL;
	if (f != NULL) {
		log_file = f;
		log_path = strdup(target);
		log_kind = LOG_TO_FILE;
	}
	return (0);
}

void
log_reopen(void)
{
	FILE *f;
	char *cause;

	if (log_kind != LOG_TO_FILE || log_path == NULL)
		return;
	if ((f = log_open_file(log_path, &cause)) == NULL) {
		log_warnx("cannot reopen the log file: %s", cause);
		free(cause);
		return;
	}
	fclose(log_file);
	log_file = f;
	log_info("log file reopened");
}

/* The log file's descriptor, for a child that closes all others; or -1. */
int
log_fd(void)
{
	return (log_kind == LOG_TO_FILE && log_file != NULL ? fileno(log_file)
							    : -1);
}

void
log_setlevel(int level)
{
	log_level = level;
}

int
log_getlevel(void)
{
	return (log_level);
}

/* Local time, ISO 8601 to the millisecond: 2026-12-01T04:52:51.123. */
static void
log_stamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm       tm;
	size_t          n;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03ld", ts.tv_nsec / 1000000);
}

static void
log_vwrite(int pri, int with_errno, const char *fmt, va_list ap)
{
	char   msg[2048], stamp[64];
	int    saved = errno;
	size_t len;

	if (pri > log_level)
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	if (with_errno) {
		len = strlen(msg);
		snprintf(msg + len, sizeof msg - len, ": %s", strerror(saved));
	}

	switch (log_kind) {
	case LOG_TO_SYSLOG:
		syslog(pri, "%s", msg);
		break;
	case LOG_TO_FILE:
		log_stamp(stamp, sizeof stamp);
		fprintf(log_file, "%s socketnautd[%ld]: %s: %s\n", stamp,
		    (long)getpid(), log_names[pri], msg);
		break;
	case LOG_TO_STDERR:
		if (log_journal)
			fprintf(stderr, "<%d>%s\n", pri, msg);
		else {
			/* journald stamps its lines; a terminal or file does
			 * not. */
			log_stamp(stamp, sizeof stamp);
			fprintf(
			    stderr, "%s %s: %s\n", stamp, log_names[pri], msg);
		}
		break;
	}
	errno = saved;
}

#define LOG_FN(name, pri, with_errno)                                          \
	void name(const char *fmt, ...)                                        \
	{                                                                      \
		va_list ap;                                                    \
                                                                               \
		va_start(ap, fmt);                                             \
		log_vwrite(pri, with_errno, fmt, ap);                          \
		va_end(ap);                                                    \
	}

LOG_FN(log_warn, LOG_WARNING, 1)
LOG_FN(log_warnx, LOG_WARNING, 0)
LOG_FN(log_errorx, LOG_ERR, 0)
LOG_FN(log_notice, LOG_NOTICE, 0)
LOG_FN(log_info, LOG_INFO, 0)
LOG_FN(log_debug, LOG_DEBUG, 0)

/* At a level chosen at run time (a worker's log line). */
void
log_at(int pri, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(pri, 0, fmt, ap);
	va_end(ap);
}

#define FATAL_FN(name, with_errno)                                             \
	void name(const char *fmt, ...)                                        \
	{                                                                      \
		va_list ap;                                                    \
                                                                               \
		va_start(ap, fmt);                                             \
		log_vwrite(LOG_CRIT, with_errno, fmt, ap);                     \
		va_end(ap);                                                    \
		exit(1);                                                       \
	}

FATAL_FN(fatal, 1)
FATAL_FN(fatalx, 0)
