/*
 * Binary upgrade on SIGUSR2, as nginx and HAProxy's master-worker mode do
 * it: the master forks and executes the binary it was started from (a
 * package upgrade may have replaced it) with the same arguments.  Its
 * listening sockets go along the way systemd's socket activation passes
 * them (LISTEN_FDS from fd 3, LISTEN_PID, LISTEN_FDNAMES), with one end of
 * a socketpair named by SOCKETNAUT_UPGRADE_FD.  The new master binds
 * nothing it was given and accepts nothing until every service has its
 * minimum pool ready; then it sends "R" and starts accepting, so that both
 * masters accept on the same kernel sockets and no client is refused.  The
 * old master tells systemd the new main pid, answers "A" (from then on the
 * new one talks to systemd), stops accepting and drains as on SIGTERM.
 * Anything else (the exec fails, the new master exits, closes the channel
 * or is not ready within upgrade_timeout) leaves the old one serving; a
 * child still there is stopped, and what it left in the socket directories
 * is removed.
 */
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pidfile.h"
#include "sdnotify.h"
#include "service.h"
#include "sockdir.h"
#include "socketnautd.h"
#include "tlskeys.h"
#include "upgrade.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define UPGRADE_ENV      "SOCKETNAUT_UPGRADE_FD"
#define UPGRADE_FIRST_FD 3     /* SD_LISTEN_FDS_START */
#define UPGRADE_ACK_MS   10000 /* new master: wait this long for "A" */

/* The old master's side; the new one only ever is IDLE. */
enum upgrade_state {
	UPGRADE_IDLE,
	UPGRADE_STARTING, /* the new master runs, not ready yet */
	UPGRADE_ABORTING, /* failed: stopping it, waiting to reap it */
	UPGRADE_DONE,     /* handed over: this master drains and exits */
};

extern char **environ;

static char                *self_path; /* recorded at start */
static char               **self_argv;
static enum upgrade_state   state;
static pid_t                child = -1; /* the new master, until reaped */
static int                  chan = -1;  /* the socketpair end */
static struct event         chan_ev, timer_ev;
static struct service_head *upgrade_services;
static upgrade_handover_cb  upgrade_cb;
static long long            upgrade_kill_ms;
static long long            upgrade_timeout_ms;
static int                  from_upgrade; /* we are the new master */
static int                  reported;     /* ... and said "R" */
static char                 listen_pid[32];

static void
upgrade_exec(int *, int, int, int, int, char **) __attribute__((noreturn));
static void upgrade_child_fail(int) __attribute__((noreturn));

/*
 * The binary to execute later.  argv[0] when it holds a slash, made
 * absolute now (the cwd may change) but with its symlinks kept: an install
 * that points a link at a new version is followed, as a package that
 * replaces the file is.  A bare name was found through PATH: what
 * /proc/self/exe names (a resolved path) is surer than a PATH search later.
 */
static char *
upgrade_self_path(const char *argv0)
{
	char    buf[PATH_MAX], *cwd, *p;
	ssize_t n;

	if (argv0[0] == '/')
		return (xstrdup(argv0));
	if (strchr(argv0, '/') != NULL && (cwd = getcwd(NULL, 0)) != NULL) {
		p = xasprintf("%s/%s", cwd, argv0);
		free(cwd);
		return (p);
	}
	if ((n = readlink("/proc/self/exe", buf, sizeof buf - 1)) > 0) {
		buf[n] = '\0';
		return (xstrdup(buf));
	}
	return (xstrdup(argv0));
}

/* At start, before getopt reorders argv: what to execute, and are we new. */
void
upgrade_init(int argc, char **argv)
{
	const char *v = getenv(UPGRADE_ENV);
	char       *end;
	long        fd;
	int         i, type, acc = 1;
	socklen_t   len = sizeof type, alen = sizeof acc;

	self_argv = xcalloc(argc + 1, sizeof *self_argv);
	for (i = 0; i < argc; i++)
		self_argv[i] = xstrdup(argv[i]);
	self_path = upgrade_self_path(argc > 0 ? argv[0] : "socketnautd");
	if (v == NULL)
		return;
	errno = 0;
	fd = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || fd < UPGRADE_FIRST_FD ||
	    fd > INT_MAX ||
	    getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
	    type != SOCK_STREAM ||
	    getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) == -1 ||
	    acc)
		log_warnx("%s=%s is not a socket we were given: ignored",
		    UPGRADE_ENV, v);
	else {
		chan = (int)fd;
		fcntl(chan, F_SETFD, FD_CLOEXEC);
		fd_nonblock(chan);
		from_upgrade = 1;
		sdnotify_hold(1); /* not systemd's main pid yet */
		tlskeys_import(getenv(TLSKEYS_ENV));
	}
	unsetenv(UPGRADE_ENV);
	unsetenv(TLSKEYS_ENV);
}

/* Started by an upgrade: keep the old master's files, say when ready. */
int
upgrade_child(void)
{
	return (from_upgrade);
}

/* A new master accepts nothing before it can serve (the old one does). */
int
upgrade_holding(void)
{
	return (from_upgrade && !reported);
}

/* The new master took over: what we share with it is not ours to remove. */
int
upgrade_handed_over(void)
{
	return (state == UPGRADE_DONE);
}

static void
upgrade_child_fail(int fd)
{
	unsigned char msg[1 + sizeof(int32_t)];
	int32_t       err = errno;

	msg[0] = 'E';
	memcpy(msg + 1, &err, sizeof err);
	(void)!write(fd, msg, sizeof msg);
	_exit(127);
}

/*
 * In the child: the fds in place (listeners from 3, then the channel, the
 * pid file and the ticket keys).
 */
static void
upgrade_exec(int *fds, int n, int fd, int pfd, int kfd, char **env)
{
	struct sigaction sa;
	sigset_t         set;
	int              sig, i, base = UPGRADE_FIRST_FD + n + 3;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	for (sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL);
	sigemptyset(&set);
	sigprocmask(SIG_SETMASK, &set, NULL);
	if ((fd = fcntl(fd, F_DUPFD_CLOEXEC, base)) == -1)
		_exit(127);
	/* Out of the way of the listeners' places before they are filled. */
	if (pfd != -1 && (pfd = fcntl(pfd, F_DUPFD_CLOEXEC, base)) == -1)
		upgrade_child_fail(fd);
	if (kfd != -1 && (kfd = fcntl(kfd, F_DUPFD_CLOEXEC, base)) == -1)
		upgrade_child_fail(fd);
	for (i = 0; i < n; i++) {
		if ((fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, base)) == -1)
			upgrade_child_fail(fd);
	}
	for (i = 0; i < n; i++) {
		if (dup2(fds[i], UPGRADE_FIRST_FD + i) == -1)
			upgrade_child_fail(fd);
	}
	if (dup2(fd, UPGRADE_FIRST_FD + n) == -1)
		upgrade_child_fail(fd);
	/* The pid file (and its lock) after the channel, if there is one. */
	if (pfd != -1 && dup2(pfd, UPGRADE_FIRST_FD + n + 1) == -1)
		upgrade_child_fail(fd);
	if (kfd != -1 && dup2(kfd, UPGRADE_FIRST_FD + n + 2) == -1)
		upgrade_child_fail(fd);
	syscall(SYS_close_range, base, ~0U, CLOSE_RANGE_CLOEXEC);
	snprintf(
	    listen_pid, sizeof listen_pid, "LISTEN_PID=%ld", (long)getpid());
	/* The new master raises it again, and records the original. */
	if (worker_nofile.rlim_max != 0)
		setrlimit(RLIMIT_NOFILE, &worker_nofile);
	execve(self_path, self_argv, env);
	upgrade_child_fail(fd);
}

static int
upgrade_env_ours(const char *e)
{
	return (strncmp(e, "LISTEN_", 7) == 0 ||
	    strncmp(e, UPGRADE_ENV "=", sizeof UPGRADE_ENV) == 0 ||
	    strncmp(e, PIDFILE_ENV "=", sizeof PIDFILE_ENV) == 0 ||
	    strncmp(e, TLSKEYS_ENV "=", sizeof TLSKEYS_ENV) == 0);
}

/* The listeners to pass, and their services' names for LISTEN_FDNAMES. */
static int *
upgrade_fds(int *np, char **names)
{
	struct service *svc;
	int            *fds = NULL, n = 0;
	size_t          i;
	char           *s;

	*names = xstrdup("");
	TAILQ_FOREACH (svc, upgrade_services, entry) {
		if (svc->stopping)
			continue;
		for (i = 0; i < svc->nlisteners; i++) {
			if (svc->listeners[i].fd == -1)
				continue;
			fds = xreallocarray(fds, n + 1, sizeof *fds);
			fds[n++] = svc->listeners[i].fd;
			s = xasprintf("%s%s%s", *names, n > 1 ? ":" : "",
			    svc->conf->name);
			free(*names);
			*names = s;
		}
	}
	*np = n;
	return (fds);
}

static void
upgrade_timer(long long ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(&timer_ev, &tv);
}

static void
upgrade_close_chan(void)
{
	if (chan == -1)
		return;
	if (event_initialized(&chan_ev))
		event_del(&chan_ev);
	close(chan);
	chan = -1;
}

/* The failed child is gone: what its workers left in our directories goes. */
static void
upgrade_cleanup(pid_t pid)
{
	struct service *svc;
	char            prefix[32];

	snprintf(prefix, sizeof prefix, "%ld-", (long)pid);
	TAILQ_FOREACH (svc, upgrade_services, entry) {
		if (svc->sockdir != NULL)
			sockdir_clean_prefix(svc->sockdir, prefix);
	}
	state = UPGRADE_IDLE;
}

/* The upgrade failed: the old master serves on; stop the child, if any. */
static void
upgrade_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
upgrade_fail(const char *fmt, ...)
{
	va_list ap;
	char   *why;

	va_start(ap, fmt);
	if (vasprintf(&why, fmt, ap) == -1)
		why = NULL;
	va_end(ap);
	log_errorx(
	    "binary upgrade failed: %s; this master (%ld) goes on serving",
	    why != NULL ? why : fmt, (long)getpid());
	free(why);
	upgrade_close_chan();
	event_del(&timer_ev);
	sdnotify("STATUS=binary upgrade failed, see the log");
	if (child == -1) {
		state = UPGRADE_IDLE; /* reaped: the caller cleans up */
		return;
	}
	state = UPGRADE_ABORTING;
	kill(child, SIGTERM);
	upgrade_timer(upgrade_kill_ms);
}

/* The new master is ready: it is systemd's main pid now; we drain. */
static void
upgrade_done(void)
{
	pid_t pid = child;

	state = UPGRADE_DONE;
	event_del(&timer_ev);
	log_notice(
	    "binary upgrade: new master %ld is serving; this master (%ld) stops accepting and drains",
	    (long)pid, (long)getpid());
	sdnotify("MAINPID=%ld\nSTATUS=binary upgrade: new master %ld serving",
	    (long)pid, (long)pid);
	sdnotify_hold(1);
	if (write(chan, "A", 1) != 1)
		log_warn("binary upgrade: cannot answer the new master");
	upgrade_close_chan();
	upgrade_cb(pid);
}

/* The old master reads what the new one says. */
static void
upgrade_read(evutil_socket_t fd, short events, void *arg)
{
	unsigned char msg[1 + sizeof(int32_t)];
	int32_t       err;
	ssize_t       n;

	(void)events;
	(void)arg;
	n = read(fd, msg, sizeof msg);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == 1 && msg[0] == 'R')
		upgrade_done();
	else if (n == (ssize_t)sizeof msg && msg[0] == 'E') {
		memcpy(&err, msg + 1, sizeof err);
		upgrade_fail("cannot execute %s: %s", self_path, strerror(err));
	} else if (n == 0) {
		/* It exits, most likely: its status says more, when reaped. */
		upgrade_close_chan();
		event_del(&timer_ev);
		upgrade_timer(upgrade_kill_ms);
	} else if (n == -1)
		upgrade_fail(
		    "reading from the new master: %s", strerror(errno));
	else
		upgrade_fail(
		    "unexpected message from the new master %ld", (long)child);
}

static void
upgrade_timeout(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	if (from_upgrade) {
		/* No answer from the old master: talk to systemd anyway. */
		upgrade_close_chan();
		sdnotify_hold(0);
		sdnotify("READY=1");
	} else if (state == UPGRADE_STARTING && chan == -1)
		upgrade_fail("the new master %ld closed its channel, not ready",
		    (long)child);
	else if (state == UPGRADE_STARTING)
		upgrade_fail("the new master %ld was not ready after %lldms",
		    (long)child, upgrade_timeout_ms);
	else if (state == UPGRADE_ABORTING && child != -1) {
		log_warnx(
		    "binary upgrade: new master %ld still running %lldms after SIGTERM, sending SIGKILL",
		    (long)child, upgrade_kill_ms);
		kill(child, SIGKILL);
	}
}

/* SIGUSR2: start a new master from our binary, unless one is under way. */
void
upgrade_start(struct service_head *services, long long timeout_ms,
    long long kill_ms, upgrade_handover_cb cb)
{
	sigset_t all, old;
	char   **env, *names;
	int     *fds, n, sp[2], kfd;
	size_t   i, k = 0, own;

	if (state == UPGRADE_STARTING || state == UPGRADE_ABORTING) {
		log_warnx(
		    "SIGUSR2: a binary upgrade is under way (new master %ld): ignored",
		    (long)child);
		return;
	}
	if (state == UPGRADE_DONE) {
		log_warnx(
		    "SIGUSR2: this master handed over to %ld and drains: ignored",
		    (long)child);
		return;
	}
	if (upgrade_holding()) {
		log_warnx(
		    "SIGUSR2: this master is itself starting from an upgrade: ignored");
		return;
	}
	upgrade_services = services;
	upgrade_cb = cb;
	upgrade_kill_ms = kill_ms;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1) {
		log_warn("binary upgrade failed: socketpair");
		return;
	}
	fds = upgrade_fds(&n, &names);
	env = xcalloc(argv_count(environ) + 7, sizeof *env);
	for (i = 0; environ[i] != NULL; i++) {
		if (!upgrade_env_ours(environ[i]))
			env[k++] = environ[i];
	}
	env[k++] = listen_pid; /* filled in by the child */
	own = k;
	env[k++] = xasprintf("LISTEN_FDS=%d", n);
	env[k++] = xasprintf("LISTEN_FDNAMES=%s", names);
	env[k++] = xasprintf("%s=%d", UPGRADE_ENV, UPGRADE_FIRST_FD + n);
	if (pidfile_handle() != -1)
		env[k++] =
		    xasprintf("%s=%d", PIDFILE_ENV, UPGRADE_FIRST_FD + n + 1);
	/* Clients resume their sessions on the new master. */
	if ((kfd = tlskeys_export()) != -1)
		env[k++] =
		    xasprintf("%s=%d", TLSKEYS_ENV, UPGRADE_FIRST_FD + n + 2);
	log_notice("binary upgrade: starting %s with %d listening socket%s",
	    self_path, n, n == 1 ? "" : "s");

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	child = fork();
	if (child == 0)
		upgrade_exec(fds, n, sp[1], pidfile_handle(), kfd, env);
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(sp[1]);
	if (kfd != -1)
		close(kfd);
	for (i = own; i < k; i++)
		free(env[i]);
	free(env);
	free(fds);
	free(names);
	if (child == -1) {
		log_warn("binary upgrade failed: fork");
		close(sp[0]);
		return;
	}
	chan = sp[0];
	fd_nonblock(chan);
	event_assign(
	    &chan_ev, sn_base, chan, EV_READ | EV_PERSIST, upgrade_read, NULL);
	event_add(&chan_ev, NULL);
	evtimer_assign(&timer_ev, sn_base, upgrade_timeout, NULL);
	upgrade_timeout_ms = timeout_ms;
	upgrade_timer(timeout_ms);
	state = UPGRADE_STARTING;
	log_info(
	    "binary upgrade: new master %ld started, waiting up to %lldms for it to be ready",
	    (long)child, timeout_ms);
}

static void
upgrade_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(
		    buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "was killed by signal %d (%s)",
		    WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "ended (status %#x)", (unsigned)status);
}

/* Was pid the new master?  Then the upgrade's outcome follows. */
int
upgrade_reaped(pid_t pid, int status)
{
	char how[128];

	if (child == -1 || pid != child)
		return (0);
	child = -1;
	upgrade_status(status, how, sizeof how);
	switch (state) {
	case UPGRADE_STARTING:
		upgrade_fail(
		    "the new master %ld %s before it was ready (see its lines above)",
		    (long)pid, how);
		upgrade_cleanup(pid);
		break;
	case UPGRADE_ABORTING:
		log_info(
		    "binary upgrade: the new master %ld %s", (long)pid, how);
		event_del(&timer_ev);
		upgrade_cleanup(pid);
		break;
	case UPGRADE_DONE:
		log_errorx(
		    "the new master %ld, which took over from this one, %s",
		    (long)pid, how);
		break;
	case UPGRADE_IDLE:
		break;
	}
	return (1);
}

/* Shutting down during an upgrade: the new master does not outlive us. */
void
upgrade_abort(void)
{
	if (state == UPGRADE_STARTING)
		upgrade_fail("shutting down");
}

/* New master answered by the old one (or the old one gone): systemd's. */
static void
upgrade_ack(evutil_socket_t fd, short events, void *arg)
{
	unsigned char c;
	ssize_t       n;

	(void)events;
	(void)arg;
	n = read(fd, &c, 1);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n != 1 || c != 'A')
		log_warnx(
		    "binary upgrade: the old master did not answer; notifying systemd anyway");
	upgrade_close_chan();
	event_del(&timer_ev);
	sdnotify_hold(0);
	sdnotify("READY=1");
}

/*
 * In the new master, every service is ready: tell the old master, which
 * stops accepting; we accept from now on (upgrade_holding()).
 */
void
upgrade_ready(void)
{
	if (!from_upgrade || reported)
		return;
	reported = 1;
	tlskeys_import_end();
	if (chan == -1 || write(chan, "R", 1) != 1) {
		log_warn(
		    "binary upgrade: cannot tell the old master we are ready");
		upgrade_close_chan();
		sdnotify_hold(0);
		sdnotify("READY=1");
		return;
	}
	log_notice("binary upgrade: ready, taking over from master %ld",
	    (long)getppid());
	event_assign(
	    &chan_ev, sn_base, chan, EV_READ | EV_PERSIST, upgrade_ack, NULL);
	event_add(&chan_ev, NULL);
	evtimer_assign(&timer_ev, sn_base, upgrade_timeout, NULL);
	upgrade_timer(UPGRADE_ACK_MS);
}

void
upgrade_free(void)
{
	size_t i;

	upgrade_close_chan();
	if (event_initialized(&timer_ev))
		event_del(&timer_ev);
	for (i = 0; self_argv != NULL && self_argv[i] != NULL; i++)
		free(self_argv[i]);
	free(self_argv);
	free(self_path);
}
