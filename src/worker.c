/*
 * Worker processes.  Spawning follows tmux's job.c: signals blocked around
 * fork, reset in the child, file descriptors put in place and the rest
 * closed on exec.  A close-on-exec pipe tells the master why an exec
 * failed, so a typo in a command is one clear error and not a crash loop.
 * The fork is a vfork: the child borrows the master's memory until exec,
 * so it allocates nothing (environment and groups are made before), and a
 * start costs no page-table copy nor copy-on-write faults on either side.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health.h"
#include "cgroup.h"
#include "keeper.h"
#include "log.h"
#include "output.h"
#include "service.h"
#include "sockdir.h"
#include "socketnautd.h"
#include "spawner.h"
#include "tcpowner.h"
#include "worker.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define PROBE_FIRST_MS  2    /* then half the worker's age */
#define PROBE_MAX_MS    50   /* a Node start takes 0.2-2s under load */
#define FIRST_PASSED_FD 3    /* activation socket, then control */
#define CONNECT_FALL    3    /* timed-out connects in a row: unhealthy */
#define CRASH_LOOP_MS   1000 /* ready, never served, died this young */
#define PIDVAR_SIZE     32   /* "LISTEN_PID=" and a pid */
#define RECHECK_MS      1000 /* a ready worker's TCP port asked again */

extern char **environ;

static unsigned worker_serial;

/* What the child reports through the exec pipe when it cannot exec. */
struct exec_report {
	int stage;
	int error;
};

enum exec_stage {
	STAGE_CHDIR,
	STAGE_IDS,
	STAGE_EXEC,
	STAGE_FDS,
	STAGE_CGROUP,
	STAGE_PRIVS,
};

static const char *stage_names[] = {
	"cannot change directory to",
	"cannot switch user for",
	"cannot execute",
	"cannot set up descriptors for",
	"cannot join its cgroup to run",
	"cannot set no_new_privs for",
};

static void worker_child_fail(int, enum exec_stage) __attribute__((noreturn));
static void worker_child(void *) __attribute__((noreturn));

/* The child's id changes, as raw system calls on 32-bit ids. */
#ifdef SYS_setresuid32
#define SN_SYS_SETGROUPS SYS_setgroups32
#define SN_SYS_SETRESGID SYS_setresgid32
#define SN_SYS_SETRESUID SYS_setresuid32
#else
#define SN_SYS_SETGROUPS SYS_setgroups
#define SN_SYS_SETRESGID SYS_setresgid
#define SN_SYS_SETRESUID SYS_setresuid
#endif
static void worker_probe(evutil_socket_t, short, void *);
static void worker_set_ready(struct worker *, const char *);
static void worker_exec_report(evutil_socket_t, short, void *);
static void worker_kill_timer(evutil_socket_t, short, void *);
static void worker_recheck(evutil_socket_t, short, void *);
static void worker_timer(struct worker *, event_callback_fn, long long ms);
static int  worker_port_unbound(const struct worker *);

/* Every line about a worker starts "service NAME: worker PID: ". */
void
worker_log(int pri, const struct worker *w, const char *fmt, ...)
{
	va_list ap;
	char   *msg;

	if (pri > log_getlevel())
		return;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		msg = NULL;
	va_end(ap);
	log_at(pri, "service %s: worker %ld: %s", w->svc->conf->name,
	    (long)w->pid, msg != NULL ? msg : fmt);
	free(msg);
}

/* Counted in the pool's size: it has, or is about to have, a slot. */
static int
state_online(enum worker_state s)
{
	return (s == WORKER_STARTING || s == WORKER_READY);
}

int
worker_in_rotation(const struct worker *w)
{
	return (w->state == WORKER_READY);
}

int
worker_alive(const struct worker *w)
{
	return (w->state != WORKER_NEW && w->state != WORKER_EXITED);
}

/*
 * The only place a worker changes state: the service's counters of its
 * current generation (online, ready, slots) follow here, and the pool is
 * told when the worker joins or leaves the rotation.
 */
static void
worker_set_state(struct worker *w, enum worker_state to)
{
	struct service   *svc = w->svc;
	enum worker_state from = w->state;

	if (from == to)
		return;
	w->state = to;
	if (w->generation == svc->generation) {
		svc->online += state_online(to) - state_online(from);
		svc->ready += (to == WORKER_READY) - (from == WORKER_READY);
		if (from == WORKER_NEW || to == WORKER_EXITED)
			svc->slots[w->slot] = to != WORKER_EXITED;
	}
	if (to == WORKER_UNHEALTHY && from == WORKER_READY)
		svc->ctr.health_down++;
	else if (to == WORKER_READY && from == WORKER_UNHEALTHY)
		svc->ctr.health_up++;
	if (to == WORKER_UNHEALTHY)
		health_reset(w);
	else if (to != WORKER_READY)
		health_stop(w);
	if (to == WORKER_READY) {
		w->was_ready = 1;
		w->fails = 0;
		w->progress = now_coarse_ms();
		health_start(w);
		if (worker_port_unbound(w))
			worker_timer(w, worker_recheck, RECHECK_MS);
		service_worker_ready(svc, w);
	} else if (from == WORKER_READY || from == WORKER_STARTING)
		service_worker_gone(svc);
	daemon_status_changed();
}

static void
worker_timer(struct worker *w, event_callback_fn cb, long long ms)
{
	struct timeval tv;

	event_del(&w->timer);
	evtimer_assign(&w->timer, sn_base, cb, w);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(&w->timer, &tv);
}

static int
env_is_ours(const char *e)
{
	static const char *ours[] = {
		"SOCKETNAUT_",
		"LISTEN_PID=",
		"LISTEN_FDS=",
		"LISTEN_FDNAMES=",
		"NOTIFY_SOCKET=",
		"PORT=",
		"NODE_CHANNEL_FD=",
		"NODE_CHANNEL_SERIALIZATION_MODE=",
		"NODE_UNIQUE_ID=",
	};
	size_t i;

	for (i = 0; i < sizeof ours / sizeof ours[0]; i++) {
		if (strncmp(e, ours[i], strlen(ours[i])) == 0)
			return (1);
	}
	return (0);
}

/*
 * The worker's environment: ours, minus stale protocol variables, plus its
 * own; every string a copy (argv_free frees it).  Made before the vfork:
 * the child only writes its own pid into *pidvar (LISTEN_PID), if set.
 */
static char **
worker_env(struct worker *w, char **pidvar)
{
	struct sn_service_conf *sc = w->svc->conf;
	char                  **env;
	size_t                  n = 0, i, j, k, len;

	*pidvar = NULL;
	env = xcalloc(
	    argv_count(environ) + argv_count(sc->env) + 12, sizeof *env);
	for (i = 0; environ[i] != NULL; i++) {
		if (!env_is_ours(environ[i]))
			env[n++] = xstrdup(environ[i]);
	}
	env[n++] = xasprintf("SOCKETNAUT_SERVICE=%s", sc->name);
	env[n++] = xasprintf("SOCKETNAUT_WORKER=%d", w->slot);
	if (w->sockpath != NULL)
		env[n++] = xasprintf("SOCKETNAUT_SOCKET=%s", w->sockpath);
	if (w->port > 0)
		env[n++] = xasprintf("PORT=%d", w->port);
	if (sc->control)
		env[n++] = xasprintf("SOCKETNAUT_CONTROL_FD=%d",
		    FIRST_PASSED_FD + (sc->activation ? 1 : 0));
	if (sc->handoff_node) {
		/* Node's IPC channel: handoffs arrive as node:cluster's do. */
		env[n++] = xasprintf("NODE_CHANNEL_FD=%d", FIRST_PASSED_FD + 1);
		env[n++] = xstrdup("NODE_CHANNEL_SERIALIZATION_MODE=json");
	}
	if (sc->activation) {
		*pidvar = env[n++] = xcalloc(1, PIDVAR_SIZE);
		env[n++] = xstrdup("LISTEN_FDS=1");
		env[n++] = xasprintf("LISTEN_FDNAMES=%s", sc->name);
	}
	/* The service's env additions replace a variable of the same name. */
	for (j = 0; sc->env[j] != NULL; j++) {
		len = strcspn(sc->env[j], "=") + 1;
		for (k = 0; k < n; k++) {
			if (strncmp(env[k], sc->env[j], len) == 0)
				break;
		}
		if (k < n && env[k] == *pidvar)
			*pidvar = NULL;
		if (k < n)
			free(env[k]);
		env[k] = xstrdup(sc->env[j]);
		if (k == n)
			n++;
	}
	env[n] = NULL;
	return (env);
}

/*
 * What the vforked child needs, all made before it runs and its own: it
 * may still read them once the loop has gone on (spawner.c), when the
 * worker or even its service's configuration is gone.
 */
struct spawn_args {
	char   **argv;
	char   **env;
	char    *pidvar; /* LISTEN_PID's string, the child's to fill */
	gid_t   *groups; /* supplementary groups, when switching ids */
	size_t   ngroups;
	char    *exec_path;
	char    *directory;
	uid_t    uid;
	gid_t    gid;
	unsigned switch_ids : 1;
	unsigned no_new_privs : 1;
	int      pass[3];
	int      npass;
	int      pipefd;
	int      outfd;
	int      cgfd;
	pid_t    master;
};

static void
spawn_args_free(void *arg)
{
	struct spawn_args *a = arg;

	argv_free(a->argv);
	argv_free(a->env);
	free(a->groups);
	free(a->exec_path);
	free(a->directory);
	free(a);
}

/*
 * The groups a worker that switches ids gets: its user's (what initgroups
 * would set, looked up here as the child may not allocate), or its group.
 */
static gid_t *
worker_groups(const struct sn_service_conf *sc, size_t *n)
{
	gid_t *groups;
	int    ng = 16, prev;

	*n = 0;
	if (!sc->switch_ids)
		return (NULL);
	if (sc->user == NULL) {
		groups = xcalloc(1, sizeof *groups);
		groups[0] = sc->gid;
		*n = 1;
		return (groups);
	}
	for (;;) {
		prev = ng;
		groups = xreallocarray(NULL, ng, sizeof *groups);
		if (getgrouplist(sc->user, sc->gid, groups, &ng) != -1)
			break;
		free(groups);
		if (ng <= prev)
			ng = prev * 2; /* no size given back: grow anyway */
		if (ng > 65536)
			return (NULL);
	}
	*n = ng;
	return (groups);
}

static void
worker_child_fail(int pipefd, enum exec_stage stage)
{
	struct exec_report rep = { stage, errno };

	(void)!write(pipefd, &rep, sizeof rep);
	_exit(127);
}

/* "LISTEN_PID=<pid>" into buf (PIDVAR_SIZE bytes) without libc's stdio. */
static void
worker_pidvar(char *buf, pid_t pid)
{
	static const char name[] = "LISTEN_PID=";
	char              digits[24];
	size_t            n = 0, i = sizeof name - 1;

	memcpy(buf, name, i);
	do
		digits[n++] = '0' + pid % 10;
	while ((pid /= 10) > 0 && n < sizeof digits);
	while (n > 0 && i < PIDVAR_SIZE - 1)
		buf[i++] = digits[--n];
	buf[i] = '\0';
}

/*
 * In the child: everything between vfork and exec.  It shares the
 * master's memory until exec: no allocation, nothing read but a, nothing
 * written but its own stack and the LISTEN_PID string made for it.  Ids
 * change with syscall(2), not glibc's wrappers (spawner.c says why).
 */
static void
worker_child(void *arg)
{
	const struct spawn_args *a = arg;
	struct sigaction         sa;
	sigset_t                 set;
	int                      sig, fd, i, pass[3];
	int                      npass = a->npass, pipefd = a->pipefd;
	int                      outfd = a->outfd;

	setsid();
	/* Its parent is the spawner thread, which lives as long as we do. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != a->master)
		_exit(127);
	/* Into its own cgroup before anything can fork: "0" is ourselves. */
	if (a->cgfd != -1 &&
	    (write(a->cgfd, "0", 1) != 1 || close(a->cgfd) == -1))
		worker_child_fail(pipefd, STAGE_CGROUP);

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	for (sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL);
	sigemptyset(&set);
	sigprocmask(SIG_SETMASK, &set, NULL);

	/* Lift the fds we keep out of the way, then put them in place. */
	if ((pipefd = fcntl(pipefd, F_DUPFD_CLOEXEC, 10)) == -1)
		_exit(127);
	for (i = 0; i < npass; i++) {
		if ((pass[i] = fcntl(a->pass[i], F_DUPFD_CLOEXEC, 10)) == -1)
			worker_child_fail(pipefd, STAGE_FDS);
	}
	if ((outfd = fcntl(outfd, F_DUPFD_CLOEXEC, 10)) == -1)
		worker_child_fail(pipefd, STAGE_FDS);
	for (i = 0; i < npass; i++) {
		if (dup2(pass[i], FIRST_PASSED_FD + i) == -1)
			worker_child_fail(pipefd, STAGE_FDS);
	}
	if ((fd = open("/dev/null", O_RDONLY)) == -1 ||
	    dup2(fd, STDIN_FILENO) == -1)
		worker_child_fail(pipefd, STAGE_FDS);
	/* stdout and stderr: the pipe the master logs from (output.c). */
	if (dup2(outfd, STDOUT_FILENO) == -1 ||
	    dup2(outfd, STDERR_FILENO) == -1)
		worker_child_fail(pipefd, STAGE_FDS);
	/*
	 * The exec report next to them, and every other fd of the master's
	 * closed now, not at exec: an exec that hangs must not hold a client
	 * socket (no FIN would reach it), a listener or the keeper's pipe.
	 */
	if (dup2(pipefd, FIRST_PASSED_FD + npass) == -1)
		worker_child_fail(pipefd, STAGE_FDS);
	pipefd = FIRST_PASSED_FD + npass;
	if (fcntl(pipefd, F_SETFD, FD_CLOEXEC) == -1)
		_exit(127);
	if (syscall(SYS_close_range, pipefd + 1, ~0U, 0) == -1)
		worker_child_fail(pipefd, STAGE_FDS);

	if (a->directory != NULL && chdir(a->directory) == -1)
		worker_child_fail(pipefd, STAGE_CHDIR);
	if (a->switch_ids) {
		if (syscall(SN_SYS_SETGROUPS, a->ngroups, a->groups) == -1)
			worker_child_fail(pipefd, STAGE_IDS);
		if (syscall(SN_SYS_SETRESGID, a->gid, a->gid, a->gid) == -1 ||
		    syscall(SN_SYS_SETRESUID, a->uid, a->uid, a->uid) == -1)
			worker_child_fail(pipefd, STAGE_IDS);
	} else if (geteuid() == 0 && syscall(SN_SYS_SETGROUPS, 0, NULL) == -1)
		worker_child_fail(pipefd, STAGE_IDS); /* not the master's */
	if (a->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		worker_child_fail(pipefd, STAGE_PRIVS);
	if (a->pidvar != NULL)
		worker_pidvar(a->pidvar, getpid());
	/* Last, once every fd is in place: the original fd limit. */
	if (worker_nofile.rlim_max != 0 &&
	    setrlimit(RLIMIT_NOFILE, &worker_nofile) == -1)
		worker_child_fail(pipefd, STAGE_FDS);
	execve(a->exec_path, a->argv, a->env);
	worker_child_fail(pipefd, STAGE_EXEC);
}

/* The name of the worker's socket in its directory. */
static const char *
worker_sockname(const struct worker *w)
{
	return (strrchr(w->sockpath, '/') + 1);
}

/*
 * Pin the worker's socket (sockdir_pin): from then on relays and probes
 * reach that inode only.  Returns 1, 0 while it does not exist, -1 with
 * cause when it is refused.
 */
static int
worker_pin(struct worker *w, const char *name, uid_t owner, char **cause)
{
	struct sn_addr a;
	int            fd, rc;

	if ((rc = sockdir_pin(w->dir, name, owner, &fd, &a, cause)) != 1)
		return (rc);
	if (w->pinfd != -1)
		close(w->pinfd);
	w->pinfd = fd;
	w->addr = a;
	return (1);
}

/* Socket activation: pin the socket we just bound, then hand it over. */
static int
worker_pin_bound(struct worker *w)
{
	struct sn_service_conf *sc = w->svc->conf;
	char                   *cause = NULL;

	if (worker_pin(w, worker_sockname(w), geteuid(), &cause) != 1) {
		log_warnx("service %s: %s/%s: %s", sc->name,
		    sockdir_path(w->dir), worker_sockname(w),
		    cause != NULL ? cause : "gone right after bind");
		free(cause);
		errno = EPERM;
		return (-1);
	}
	if (sc->switch_ids &&
	    sockdir_pin_give(w->pinfd, sc->uid, sc->gid) == -1)
		return (-1);
	return (0);
}

/* Bind and listen on the worker's address ourselves (socket activation). */
static int
worker_listen(struct worker *w)
{
	int fd;

	fd = socket(w->addr.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return (-1);
	if (bind(fd, (struct sockaddr *)&w->addr.ss, w->addr.len) == -1 ||
	    listen(fd, w->svc->conf->backlog) == -1) {
		close(fd);
		return (-1);
	}
	if (w->sockpath != NULL && worker_pin_bound(w) == -1) {
		close(fd);
		return (-1);
	}
	return (fd);
}

/* A loopback port that is free now, or with activation, held by fd. */
static int
worker_tcp_addr(struct worker *w, int hold)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&w->addr.ss;
	socklen_t           len = sizeof *sin;
	int                 fd;

	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	w->addr.len = sizeof *sin;
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return (-1);
	if (bind(fd, (struct sockaddr *)sin, len) == -1 ||
	    getsockname(fd, (struct sockaddr *)sin, &len) == -1 ||
	    (hold && listen(fd, w->svc->conf->backlog) == -1)) {
		close(fd);
		return (-1);
	}
	w->port = ntohs(sin->sin_port);
	if (hold)
		return (fd);
	close(fd);
	return (0);
}

static int
worker_address(struct worker *w, int *actfd)
{
	struct sn_service_conf *sc = w->svc->conf;
	struct sockaddr_un     *sun = (struct sockaddr_un *)&w->addr.ss;

	*actfd = -1;
	if (sc->backend == BACKEND_AGENT)
		return (0); /* the worker reports where it listens */
	if (sc->backend == BACKEND_TCP) {
		if ((*actfd = worker_tcp_addr(w, sc->activation)) == -1)
			return (-1);
		if (!sc->activation)
			*actfd = -1;
		return (0);
	}
	if (w->dir == NULL) {
		errno = ENOENT; /* no socket directory: see the log */
		return (-1);
	}
	/* "MASTERPID-SERIAL": two masters share the directory in an upgrade. */
	w->sockpath = xasprintf(
	    "%s/%ld-%u.sock", sockdir_path(w->dir), (long)getpid(), w->serial);
	sun->sun_family = AF_UNIX;
	snprintf(sun->sun_path, sizeof sun->sun_path, "%s", w->sockpath);
	w->addr.len = sizeof *sun;
	if (sockdir_unlink(w->dir, worker_sockname(w)) == -1)
		return (-1);
	if (sc->activation && (*actfd = worker_listen(w)) == -1)
		return (-1);
	return (0);
}

/* A cgroup of its own when the daemon has them and the service wants it. */
static void
worker_cgroup(struct worker *w, int *cgfd)
{
	char *cause;

	if (!w->svc->conf->cgroup || cgroup_workers_path() == NULL)
		return;
	if (cgroup_worker_create(w->serial, cgfd, &cause) == -1) {
		log_warnx(
		    "service %s: worker serial %u: runs without a cgroup: %s",
		    w->svc->conf->name, w->serial, cause);
		free(cause);
		return;
	}
	w->cgroup = 1;
}

/*
 * Every signal to a worker goes through here: to its process group (it is
 * a session leader, see worker_child), so that its children get it too,
 * and SIGKILL to its cgroup as well, which children that left the group
 * cannot leave.  Before the child's setsid() there is no group yet: the
 * process alone then; once it is reaped, never the bare pid again.
 */
static void
worker_signal(struct worker *w, int sig)
{
	if (kill(-w->pid, sig) == -1 && errno == ESRCH && !w->reaped)
		kill(w->pid, sig);
	if (sig == SIGKILL && w->cgroup)
		cgroup_worker_kill(w->serial);
}

struct worker *
worker_spawn(struct service *svc, int slot, char **cause)
{
	struct sn_service_conf *sc = svc->conf;
	struct template_vars    tv;
	struct worker          *w;
	char                  **argv;
	int                     actfd, pipefd[2], ctl[2] = { -1, -1 };
	int                     outfd[2] = { -1, -1 }, node[2] = { -1, -1 };
	int                     cgfd = -1;
	size_t                  i, n;
	long long               since;
	pid_t                   pid;
	struct spawn_args      *a;
	int                     error;

	w = xcalloc(1, sizeof *w);
	w->svc = svc;
	w->slot = slot;
	w->serial = worker_serial++; /* daemon-wide: names never reused */
	w->generation = svc->generation;
	w->state = WORKER_NEW;
	w->probefd = w->execfd = w->pinfd = -1;
	w->uid = sc->switch_ids ? sc->uid : geteuid();
	w->logs.rate = sc->log_rate;
	w->logs.burst = sc->log_burst;
	w->logs.tokens = w->logs.burst * 1000LL;
	w->logs.at = now_coarse_ms();
	if (sc->backend != BACKEND_TCP)
		w->dir = sockdir_ref(svc->sockdir);
	for (i = 0; i < CONTROL_PEER_BUCKETS; i++)
		TAILQ_INIT(&w->peers[i]);
	handoff_init(w);
	evtimer_assign(&w->timer, sn_base, worker_probe, w);

	if (worker_address(w, &actfd) == -1) {
		*cause = xasprintf(
		    "cannot set up the worker's address: %s", strerror(errno));
		worker_free(w);
		return (NULL);
	}
	memset(&tv, 0, sizeof tv);
	tv.socket = w->sockpath;
	tv.port = w->port;
	tv.index = slot;
	tv.service = sc->name;
	n = argv_count(sc->argv);
	argv = xcalloc(n + 1, sizeof *argv);
	for (i = 0; i < n; i++) {
		if ((argv[i] = template_expand(sc->argv[i], &tv, cause)) ==
		    NULL) {
			argv_free(argv);
			if (actfd != -1)
				close(actfd);
			worker_free(w);
			return (NULL);
		}
	}
	if (pipe2(pipefd, O_CLOEXEC) == -1) {
		*cause = xasprintf("pipe: %s", strerror(errno));
		goto fail;
	}
	if (pipe2(outfd, O_CLOEXEC) == -1) {
		*cause = xasprintf("pipe: %s", strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		goto fail;
	}
	if (sc->control &&
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) == -1) {
		*cause = xasprintf("socketpair: %s", strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		close(outfd[0]);
		close(outfd[1]);
		goto fail;
	}
	if (sc->handoff_node && handoff_node_pair(node, cause) == -1) {
		close(pipefd[0]);
		close(pipefd[1]);
		close(outfd[0]);
		close(outfd[1]);
		close(ctl[0]);
		close(ctl[1]);
		goto fail;
	}
	worker_cgroup(w, &cgfd);

	a = xcalloc(1, sizeof *a);
	if (actfd != -1)
		a->pass[a->npass++] = actfd;
	if (ctl[1] != -1)
		a->pass[a->npass++] = ctl[1];
	if (node[1] != -1)
		a->pass[a->npass++] = node[1];
	a->argv = argv;
	argv = NULL; /* the child's until its exec */
	a->env = worker_env(w, &a->pidvar);
	a->groups = worker_groups(sc, &a->ngroups);
	a->exec_path = xstrdup(sc->exec_path);
	a->directory = sc->directory != NULL ? xstrdup(sc->directory) : NULL;
	a->uid = sc->uid;
	a->gid = sc->gid;
	a->switch_ids = sc->switch_ids;
	a->no_new_privs = sc->no_new_privs;
	a->pipefd = pipefd[1];
	a->outfd = outfd[1];
	a->cgfd = cgfd;
	a->master = getpid();

	if (sc->switch_ids && a->groups == NULL) {
		spawn_args_free(a);
		pid = -2; /* its user's groups could not be looked up */
	} else
		(void)spawner_run(svc, sc->name, 2 * sc->spawn_concurrency,
		    worker_child, a, spawn_args_free, &pid);
	error = errno;
	w->pid = pid < 0 ? -1 : pid;
	if (cgfd != -1)
		close(cgfd);
	if (w->pid > 0)
		keeper_track(w->pid);
	else if (w->cgroup)
		cgroup_worker_remove(w->serial);
	close(pipefd[1]);
	close(outfd[1]);
	if (ctl[1] != -1)
		close(ctl[1]);
	if (node[1] != -1)
		close(node[1]);
	if (w->pid == -1) {
		if (pid == -2)
			*cause = xasprintf(
			    "cannot look up the groups of user %s", sc->user);
		else if (error == EBUSY &&
		    (pid = spawner_late_child(svc, 0, &since)) > 0)
			*cause = xasprintf("the exec of worker %ld has not "
					   "returned for %lld ms (does a file "
					   "system on its path hang?)",
			    (long)pid, now_ms() - since);
		else if (error == EBUSY)
			*cause =
			    xasprintf("%d starts (twice spawn_concurrency) "
				      "are still short of their exec",
				2 * sc->spawn_concurrency);
		else if (error == EAGAIN)
			*cause = xasprintf("no thread to start it (%d at most, "
					   "each held until its child's exec)",
			    SPAWNERS_MAX);
		else if (error == ETIMEDOUT)
			*cause = xasprintf("its thread did not start it in "
					   "%d ms",
			    SPAWN_LATE_MS);
		else
			*cause = xasprintf("fork: %s", strerror(error));
		close(pipefd[0]);
		close(outfd[0]);
		if (ctl[0] != -1)
			close(ctl[0]);
		if (node[0] != -1)
			close(node[0]);
		goto fail;
	}
	if (ctl[0] != -1)
		w->control = control_open(w, ctl[0]);
	if (node[0] != -1)
		handoff_node_open(w, node[0]);
	w->output = output_open(w, outfd[0]);
	argv_free(argv);
	if (actfd != -1)
		close(actfd);

	w->started = now_ms();
	svc->ctr.worker_starts++;
	if (svc->ctr.crashes_unreplaced > 0) {
		svc->ctr.crashes_unreplaced--;
		svc->ctr.worker_restarts++;
	}
	worker_set_state(w, WORKER_STARTING);
	w->execfd = pipefd[0];
	fd_nonblock(w->execfd);
	event_assign(
	    &w->execev, sn_base, w->execfd, EV_READ, worker_exec_report, w);
	event_add(&w->execev, NULL);
	if (sc->backend == BACKEND_AGENT)
		worker_timer(w, worker_probe, sc->ready_timeout);
	else if (sc->activation)
		worker_timer(w, worker_probe, 0);
	else
		worker_timer(w, worker_probe, PROBE_FIRST_MS);
	worker_log(LOG_INFO, w, "started (slot %d%s%s)", slot,
	    w->sockpath ? ", socket " : "", w->sockpath ? w->sockpath : "");
	return (w);

fail:
	argv_free(argv);
	if (actfd != -1)
		close(actfd);
	worker_free(w);
	return (NULL);
}

/* The exec pipe closed (exec worked) or carries the reason it failed. */
static void
worker_exec_report(evutil_socket_t fd, short events, void *arg)
{
	struct worker     *w = arg;
	struct exec_report rep;
	ssize_t            n;

	(void)events;
	n = read(fd, &rep, sizeof rep);
	if (n == -1 && errno == EAGAIN) {
		event_add(&w->execev, NULL);
		return;
	}
	close(fd);
	w->execfd = -1;
	if (n == sizeof rep && rep.stage >= 0 && rep.stage <= STAGE_PRIVS) {
		w->exec_failed = 1;
		worker_log(LOG_ERR, w, "%s %s: %s", stage_names[rep.stage],
		    rep.stage == STAGE_CHDIR ? w->svc->conf->directory
					     : w->svc->conf->exec_path,
		    strerror(rep.error));
	} else if (n == 0 && w->state == WORKER_STARTING &&
	    w->svc->conf->activation && w->svc->conf->backend != BACKEND_AGENT)
		worker_set_ready(w, "socket activation");
}

/* Try to connect to the worker: accepting means ready. */
static int
worker_accepts(struct worker *w)
{
	socklen_t len = sizeof(int);
	int       error = 0, fd = w->probefd;

	if (fd != -1) {
		/* A TCP connect was in progress: did it finish? */
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == -1)
			error = errno;
		if (error == 0) {
			struct sockaddr_storage ss;
			socklen_t               sl = sizeof ss;

			if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
				goto ready;
			return (0);
		}
		close(fd);
		w->probefd = -1;
		return (0);
	}
	fd = socket(w->addr.ss.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return (0);
	if (connect(fd, (struct sockaddr *)&w->addr.ss, w->addr.len) == 0 ||
	    errno == EAGAIN)
		goto ready;
	if (errno == EINPROGRESS) {
		w->probefd = fd;
		return (0);
	}
	close(fd);
	return (0);
ready:
	close(fd);
	w->probefd = -1;
	return (1);
}

/*
 * Whether the master connects to the worker at a TCP address that nobody
 * bound for it: a port it chose and let go before the worker bound it, or
 * one an agent reported.  With socket activation the master bound it.
 */
static int
worker_port_unbound(const struct worker *w)
{
	const struct sn_service_conf *sc = w->svc->conf;

	if (w->addr.ss.ss_family != AF_INET && w->addr.ss.ss_family != AF_INET6)
		return (0);
	return (sc->backend == BACKEND_AGENT || !sc->activation);
}

/* Why its address is refused (NULL: it is not), logged when it changes. */
static void
worker_refuse(struct worker *w, char *why)
{
	if (why != NULL && (w->refused == NULL || strcmp(why, w->refused) != 0))
		worker_log(LOG_WARNING, w, "%s; not ready while it is", why);
	free(w->refused);
	w->refused = why;
}

/*
 * Whether the listener that takes connections to the worker's TCP address
 * is its own: its socket made by the worker's user and held by one of its
 * processes.  Another user may bind a free port first (it shows in argv
 * and in the status) and would get the service's clients; once the
 * worker's listener holds it, the kernel lets no other uid bind there.
 */
static int
worker_owns_port(struct worker *w)
{
	struct tcpowner o;
	char            host[ADDRSTRLEN], *why = NULL, *cause = NULL;
	int             rc, procs = -1, held;

	if (!worker_port_unbound(w))
		return (1);
	addr_str((struct sockaddr *)&w->addr.ss, host, sizeof host);
	if ((rc = tcpowner_lookup(&w->addr, &o, &cause)) == 0)
		return (0); /* nothing listens (any more): not ready yet */
	if (rc == -1 && w->state == WORKER_READY) {
		/*
		 * Out of descriptors, say: no evidence against a worker that
		 * proved its port already, so it stays until the next check.
		 */
		worker_log(LOG_DEBUG, w, "cannot tell who listens on %s: %s",
		    host, cause);
		free(cause);
		return (1);
	}
	if (rc == -1) {
		why =
		    xasprintf("cannot tell who listens on %s: %s", host, cause);
		free(cause);
	} else if (o.uid != w->uid)
		why = xasprintf(
		    "%s: the port is held by uid %u, not the worker's user (uid %u)",
		    host, (unsigned)o.uid, (unsigned)w->uid);
	else if (o.inode != w->owned_ino) {
		if (w->cgroup)
			procs = cgroup_worker_procs(w->serial);
		held = tcpowner_held(w->pid, procs, o.inode);
		if (procs != -1)
			close(procs);
		if (held != 0)
			w->owned_ino = o.inode; /* not scanned again */
		else
			why = xasprintf(
			    "%s: the port is held by uid %u, but by no process of the worker (socket inode %u)",
			    host, (unsigned)o.uid, o.inode);
	}
	worker_refuse(w, why);
	return (why == NULL);
}

/* The worker accepts connections: it joins the pool. */
static void
worker_set_ready(struct worker *w, const char *how)
{
	char buf[ADDRSTRLEN];

	event_del(&w->timer);
	if (w->probefd != -1) {
		close(w->probefd);
		w->probefd = -1;
	}
	if (w->svc->conf->mode == MODE_HANDOFF)
		snprintf(buf, sizeof buf, "its control channel");
	else if (w->sockpath != NULL)
		snprintf(buf, sizeof buf, "unix:%s", w->sockpath);
	else
		addr_str((struct sockaddr *)&w->addr.ss, buf, sizeof buf);
	worker_log(LOG_INFO, w, "ready at %s after %lldms (%s)", buf,
	    now_ms() - w->started, how);
	worker_set_state(w, WORKER_READY);
}

/* Pin the socket the worker made; one it may not use is the end of it. */
static int
worker_probe_pin(struct worker *w)
{
	char *cause;
	int   rc;

	if ((rc = worker_pin(w, worker_sockname(w), w->uid, &cause)) != -1)
		return (rc);
	worker_give_up(w, "%s", cause);
	free(cause);
	return (-1);
}

static void
worker_probe(evutil_socket_t fd, short events, void *arg)
{
	struct worker *w = arg;
	long long      age = now_ms() - w->started, next;
	int            pinned = 1;

	(void)fd;
	(void)events;
	if (w->state != WORKER_STARTING)
		return;
	if (w->svc->conf->backend == BACKEND_UNIX && w->pinfd == -1 &&
	    (pinned = worker_probe_pin(w)) == -1)
		return;
	/*
	 * With socket activation, ready once exec'd: the socket was bound
	 * and listening before, and a child whose exec hangs would hold
	 * every client given to it (worker_exec_report sees the exec).
	 * A TCP port is asked whose it is before the test connection, so
	 * that not even that reaches another user's socket.
	 */
	if (w->svc->conf->backend != BACKEND_AGENT &&
	    (w->svc->conf->activation
		    ? w->execfd == -1 && !w->exec_failed
		    : pinned && worker_owns_port(w) && worker_accepts(w))) {
		worker_set_ready(w,
		    w->svc->conf->activation ? "socket activation"
					     : "accepts connections");
		return;
	}
	/* An agent's address, refused when it reported it: asked again. */
	if (w->svc->conf->backend == BACKEND_AGENT && w->refused != NULL &&
	    worker_owns_port(w)) {
		worker_set_ready(w, "reported ready");
		return;
	}
	if (pinned && w->pinfd != -1 && !w->svc->conf->activation) {
		/* Not accepting yet: pin again, it may bind anew. */
		close(w->pinfd);
		w->pinfd = -1;
	}
	if (age >= w->svc->conf->ready_timeout) {
		worker_give_up(w, "not ready after %lldms%s%s", age,
		    w->refused != NULL ? ": " : "",
		    w->refused != NULL ? w->refused : "");
		return;
	}
	/*
	 * Often while a worker is young, as most start fast; then 20 a second:
	 * a probe is a connect(2), and each poll interval adds half of itself
	 * on average to every slow start.
	 */
	next = age / 2;
	if (next < PROBE_FIRST_MS)
		next = PROBE_FIRST_MS;
	if (next > PROBE_MAX_MS)
		next = PROBE_MAX_MS;
	if (w->svc->conf->backend == BACKEND_AGENT && w->refused == NULL)
		next = w->svc->conf->ready_timeout - age;
	worker_timer(w, worker_probe, next);
}

/*
 * The worker said "ready" on its control channel, with the address it
 * chose when its service's backend is "agent": a loopback TCP address
 * ("127.0.0.1:PORT", "[::1]:PORT", or a bare port) or "unix:/path".
 */
int
worker_reported_ready(struct worker *w, const char *addr, char **cause)
{
	struct sn_service_conf *sc = w->svc->conf;
	struct sn_addr          a;
	const char             *name;
	char                   *why;
	int                     rc;

	if (w->state != WORKER_STARTING)
		return (0);
	if (sc->backend == BACKEND_UNIX && w->pinfd == -1 &&
	    worker_probe_pin(w) != 1)
		return (0); /* not there yet (the probe goes on), or killed */
	if (sc->backend != BACKEND_AGENT) {
		/* Not yet its own port: the probe goes on asking. */
		if (worker_owns_port(w))
			worker_set_ready(w, "reported ready");
		return (0);
	}
	if (sc->mode == MODE_HANDOFF) {
		/* It takes connections on its channel: no address needed. */
		worker_set_ready(w, "takes handed connections");
		return (0);
	}
	if (strncmp(addr, "unix:", 5) == 0) {
		/* Only in its own socket directory: never someone else's. */
		addr += 5;
		if (w->dir == NULL ||
		    (name = sockdir_child(w->dir, addr)) == NULL) {
			*cause =
			    xasprintf("ready: unix:%s is not a name in %s/",
				addr, sc->sockdir);
			return (-1);
		}
		if ((rc = worker_pin(w, name, w->uid, &why)) != 1) {
			*cause = rc == 0
			    ? xasprintf("ready: unix:%s does not exist", addr)
			    : xasprintf("ready: %s", why);
			if (rc == -1)
				free(why);
			return (-1);
		}
		free(w->sockpath);
		w->sockpath = xstrdup(addr);
	} else {
		if (addr_parse_numeric(addr, &a, cause) == -1)
			return (-1);
		if (!addr_is_loopback(&a)) {
			*cause = xasprintf(
			    "ready: %s is not a loopback address", addr);
			return (-1);
		}
		if (daemon_listens_on(&a)) {
			*cause = xasprintf(
			    "ready: %s is one of our own listeners", addr);
			return (-1);
		}
		w->addr = a;
		if (!worker_owns_port(w)) {
			/* Asked again until ready_timeout (worker_probe). */
			if (w->refused == NULL)
				w->refused = xstrdup("nothing listens there");
			worker_timer(w, worker_probe, PROBE_FIRST_MS);
			return (0);
		}
	}
	worker_set_ready(w, "reported ready");
	return (0);
}

/*
 * Ask the worker to exit: a drain message when it uses its control channel
 * and was serving (SIGTERM follows after kill_timeout if it is still
 * there), else SIGTERM; SIGKILL after kill_timeout more.
 */
void
worker_stop(struct worker *w, const char *why)
{
	enum worker_state was = w->state;

	if (was == WORKER_STOPPING || !worker_alive(w))
		return;
	worker_log(LOG_INFO, w, "stopping (%s)", why);
	worker_set_state(w, WORKER_STOPPING);
	if (w->control != NULL && w->control->spoke &&
	    (was == WORKER_READY || was == WORKER_DRAINING))
		control_drain(w->control);
	else {
		worker_signal(w, SIGTERM);
		w->termed = 1;
	}
	worker_timer(w, worker_kill_timer, w->svc->conf->kill_timeout);
}

static void
worker_retire_timer(evutil_socket_t fd, short events, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)events;
	worker_stop(w,
	    w->state == WORKER_DRAINING
		? "reload, shutdown_timeout reached"
		: "unhealthy, shutdown_timeout reached");
}

/*
 * An old generation's worker after a reload: it takes no new clients and
 * stops when the last one leaves (worker_release), or after ms at the
 * latest.
 */
void
worker_retire(struct worker *w, long long ms)
{
	if (w->state == WORKER_STARTING) {
		worker_stop(w, "reload");
		return;
	}
	if (w->state != WORKER_READY && w->state != WORKER_UNHEALTHY)
		return;
	worker_set_state(w, WORKER_DRAINING);
	if (w->nconns == 0)
		worker_stop(w, "reload");
	else {
		worker_timer(w, worker_retire_timer, ms);
		worker_drain_handed(w);
	}
}

/*
 * mode handoff: the worker holds its clients itself, so it is asked to
 * finish them now (close idle keep-alive connections, end with the
 * current requests) rather than when the last one leaves.
 */
void
worker_drain_handed(struct worker *w)
{
	struct control *c = w->control;

	if (w->svc->conf->mode == MODE_HANDOFF && c != NULL && c->spoke &&
	    !c->drain_sent && w->nhanded > 0 && worker_alive(w) &&
	    w->state != WORKER_STOPPING)
		control_drain(c);
}

/*
 * Out of rotation on evidence: a replacement starts at once (it no longer
 * counts in the pool), its clients finish, then it stops (at
 * shutdown_timeout at the latest).
 */
static void
worker_unhealthy(struct worker *w, const char *why)
{
	if (w->state != WORKER_READY)
		return;
	worker_log(LOG_WARNING, w, "unhealthy: %s; out of rotation", why);
	worker_set_state(w, WORKER_UNHEALTHY);
	if (w->nconns == 0 && w->health == NULL)
		worker_stop(w, "unhealthy");
	else
		worker_timer(
		    w, worker_retire_timer, w->svc->conf->shutdown_timeout);
}

/*
 * A ready worker's TCP port, asked again now and then: one that closed its
 * listener while it runs left the port to whoever binds it next.  Nothing
 * listening there is for failed connects to judge.
 */
static void
worker_recheck(evutil_socket_t fd, short events, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)events;
	if (w->state != WORKER_READY)
		return;
	if (!worker_owns_port(w) && w->refused != NULL) {
		worker_unhealthy(w, w->refused);
		return;
	}
	worker_timer(w, worker_recheck, RECHECK_MS);
}

/*
 * A connect to the worker failed.  Nothing listening (refused, no socket)
 * is proof; a timeout is judged after CONNECT_FALL in a row.
 */
void
worker_connect_failed(struct worker *w, int error)
{
	char why[128];

	w->fails++;
	if (error != ETIMEDOUT || w->fails >= CONNECT_FALL) {
		snprintf(why, sizeof why, "%d connect%s failed (%s)", w->fails,
		    w->fails == 1 ? "" : "s", strerror(error));
		worker_unhealthy(w, why);
	}
}

void
worker_connected(struct worker *w)
{
	w->fails = 0;
	w->served++;
	w->progress = now_coarse_ms();
}

/*
 * Clients wait for its reply and it has moved no byte for idle_ms while
 * other workers do: it no longer serves (stopped, deadlocked, lost in a
 * loop).  Clients it has not read from go elsewhere; it is killed.
 */
void
worker_stalled(struct worker *w, long long idle_ms)
{
	int moved;

	if (w->state != WORKER_READY)
		return;
	worker_log(LOG_WARNING, w,
	    "stalled: %d client%s waiting, no progress for %lldms; killing it",
	    w->awaiting, w->awaiting == 1 ? "" : "s", idle_ms);
	worker_set_state(w, WORKER_UNHEALTHY);
	if ((moved = service_move_clients(w->svc, w)) > 0)
		worker_log(LOG_NOTICE, w,
		    "%d client%s it had not read from moved to other workers",
		    moved, moved == 1 ? "" : "s");
	worker_kill(w);
}

/*
 * mode handoff: the worker could not be given a connection (its control
 * channel full, as a stalled worker leaves it, or gone).  That is
 * evidence as a refused connect is: out of rotation at once, a
 * replacement starts; the connections it holds are its own to finish,
 * so it is not killed (they would die with it).
 */
void
worker_handoff_refused(struct worker *w, const char *why)
{
	worker_unhealthy(w, why);
}

/*
 * How long the worker process has used no CPU, as far as the samples taken
 * at each call (from /proc/PID/stat) tell.  The stall watch calls it only
 * for workers that owe replies.
 */
long long
worker_cpu_idle_ms(struct worker *w, long long now)
{
	unsigned long long utime, stime;
	char               path[64], buf[512], *p;
	ssize_t            n;
	int                fd;

	snprintf(path, sizeof path, "/proc/%ld/stat", (long)w->pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (now - w->cpu_since);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return (now - w->cpu_since);
	buf[n] = '\0';
	/* Fields after the command, which may hold spaces and parentheses. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2,
		"%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
		&stime) != 2)
		return (now - w->cpu_since);
	if (w->cpu_since == 0 || utime + stime != w->cpu) {
		w->cpu = utime + stime;
		w->cpu_since = now;
	}
	return (now - w->cpu_since);
}

/* An active check's verdict (rise or fall reached). */
void
worker_check_result(struct worker *w, int ok, const char *why)
{
	struct service *svc = w->svc;

	if (ok && w->state == WORKER_UNHEALTHY) {
		/* Its replacement may have filled the pool meanwhile. */
		if (w->generation != svc->generation ||
		    svc->online >= svc->conf->max_workers) {
			worker_stop(w, "healthy again, but replaced");
			return;
		}
		/* Its listener may have gone, and someone else's taken it. */
		if (!worker_owns_port(w))
			return;
		worker_log(LOG_NOTICE, w, "healthy again (%s)", why);
		event_del(&w->timer);
		worker_set_state(w, WORKER_READY);
	} else if (!ok)
		worker_unhealthy(w, why);
}

/*
 * A worker that failed to start (not ready in time, an address or socket
 * it may not use, its channel lost): killed, and its exit backed off.
 */
void
worker_give_up(struct worker *w, const char *fmt, ...)
{
	va_list ap;
	char   *why;

	va_start(ap, fmt);
	if (vasprintf(&why, fmt, ap) == -1)
		why = NULL;
	va_end(ap);
	worker_log(LOG_WARNING, w, "%s; killing it", why != NULL ? why : fmt);
	free(why);
	w->failed = 1;
	worker_kill(w);
}

/* Kill at once; the exit is handled when it is reaped. */
void
worker_kill(struct worker *w)
{
	if (!worker_alive(w))
		return;
	worker_set_state(w, WORKER_STOPPING);
	event_del(&w->timer);
	worker_signal(w, SIGKILL);
}

static void
worker_kill_timer(evutil_socket_t fd, short events, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)events;
	if (!w->termed) {
		worker_log(LOG_INFO, w,
		    "still running %lldms after the drain request, sending SIGTERM",
		    w->svc->conf->kill_timeout);
		worker_signal(w, SIGTERM);
		w->termed = 1;
		worker_timer(w, worker_kill_timer, w->svc->conf->kill_timeout);
		return;
	}
	worker_log(LOG_WARNING, w,
	    "still running %lldms after SIGTERM, sending SIGKILL",
	    w->svc->conf->kill_timeout);
	worker_kill(w);
}

/*
 * Whether the process that just ended failed to start (back-off is for
 * those): it never became ready, or died as soon as it was, before
 * serving anyone.  A worker that served is replaced at once, however
 * young.
 */
int
worker_failed_start(const struct worker *w)
{
	if (w->failed || w->exec_failed)
		return (1);
	if (w->state == WORKER_STOPPING)
		return (0);
	return (!w->was_ready ||
	    (w->served == 0 && now_ms() - w->started < CRASH_LOOP_MS));
}

/*
 * Asked to stop, it ends cleanly unless we had to SIGKILL it; unasked,
 * only status 0 is clean.
 */
static enum worker_exit
worker_exit_kind(const struct worker *w, int status)
{
	if (w->state == WORKER_STOPPING)
		return (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL
			? WORKER_EXIT_KILLED
			: WORKER_EXIT_CLEAN);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return (WORKER_EXIT_CLEAN);
	return (WORKER_EXIT_CRASH);
}

/* The process is gone: log how, count it, drop its socket, leave the pool. */
void
worker_exited(struct worker *w, int status)
{
	struct service *svc = w->svc;
	long long       age = now_ms() - w->started;
	int             expected = w->state == WORKER_STOPPING;

	w->exit = worker_exit_kind(w, status);
	svc->ctr.worker_exits[w->exit]++;
	/* The pool replaces it: the next start counts as a restart. */
	if (w->exit != WORKER_EXIT_CLEAN && w->generation == svc->generation &&
	    !svc->stopping)
		svc->ctr.crashes_unreplaced++;
	w->reaped = 1;
	output_exited(w->output);  /* its last words before its end */
	worker_signal(w, SIGKILL); /* what it left behind */
	if (w->cgroup)
		cgroup_worker_remove(w->serial);
	keeper_untrack(w->pid);
	if (w->exec_failed)
		; /* the exec report said why */
	else if (WIFEXITED(status))
		worker_log(expected ? LOG_INFO : LOG_WARNING, w,
		    "exited with status %d after %lldms", WEXITSTATUS(status),
		    age);
	else if (WIFSIGNALED(status))
		worker_log(expected ? LOG_INFO : LOG_WARNING, w,
		    "killed by signal %d (%s) after %lldms", WTERMSIG(status),
		    strsignal(WTERMSIG(status)), age);
	event_del(&w->timer);
	if (w->probefd != -1) {
		close(w->probefd);
		w->probefd = -1;
	}
	/* Out of the pool first, so the pool can replace it. */
	worker_set_state(w, WORKER_STOPPING);
	if (w->control != NULL)
		control_close(w->control, NULL);
	handoff_node_close(w, NULL);
	handoff_worker_exited(w);
	if (w->sockpath != NULL && w->dir != NULL)
		sockdir_unlink(w->dir, worker_sockname(w));
	/* Freed by the caller, or by the last relay to let go of it. */
	worker_set_state(w, WORKER_EXITED);
}

/* A relay is done with this worker. */
void
worker_release(struct worker *w)
{
	--w->nconns;
	if (w->state == WORKER_READY)
		service_slot_freed(w->svc, w);
	if (w->nconns > 0)
		return;
	if (w->state == WORKER_EXITED)
		worker_free(w);
	else if (w->state == WORKER_DRAINING)
		worker_stop(w, "reload, idle");
	else if (w->state == WORKER_UNHEALTHY && w->health == NULL)
		worker_stop(w, "unhealthy, idle");
}

/* The service is being freed with its workers: forget this one. */
void
worker_abandon(struct worker *w)
{
	w->state = WORKER_EXITED;
	worker_free(w);
}

void
worker_free(struct worker *w)
{
	if (worker_alive(w))
		fatalx("worker_free: worker %ld still running", (long)w->pid);
	if (w->pid > 0)
		TAILQ_REMOVE(&w->svc->workers, w, entry);
	event_del(&w->timer);
	if (w->execfd != -1) {
		event_del(&w->execev);
		close(w->execfd);
	}
	if (w->probefd != -1)
		close(w->probefd);
	if (w->pinfd != -1)
		close(w->pinfd);
	sockdir_unref(w->dir);
	if (w->control != NULL)
		control_close(w->control, NULL);
	output_close(w->output);
	w->output = NULL;
	handoff_node_close(w, NULL);
	handoff_worker_free(w);
	health_stop(w);
	free(w->sockpath);
	w->sockpath = NULL;
	free(w->refused);
	w->refused = NULL;
	daemon_defer_free(w);
}
