/*
 * The keeper: a small process forked at startup that outlives a killed
 * master just long enough to kill what its workers left behind.  The
 * kernel kills each worker with the master (PR_SET_PDEATHSIG), but not the
 * worker's own children.  The master writes the process group of each
 * worker it starts and of each it has finished with on a pipe; when the
 * pipe reads end of file the master is gone, and the keeper sends SIGKILL
 * to every group still listed, kills the workers' cgroups (cgroup.c) if
 * there are any, and exits.  It blocks in read(2), holds no other
 * descriptor than the pipe and the log, and ignores the signals an
 * operator sends to the whole process group.
 */
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgroup.h"
#include "keeper.h"
#include "log.h"
#include "util.h"

/* One message on the pipe: small enough to be written atomically. */
struct keeper_msg {
	int32_t op; /* KEEPER_TRACK or KEEPER_UNTRACK */
	int32_t pgid;
};

enum { KEEPER_TRACK = 1, KEEPER_UNTRACK = 2 };

static int   keeper_fd = -1; /* the master's end */
static pid_t keeper_pid = -1;

static void keeper_main(int) __attribute__((noreturn));

/* Close every descriptor but stdio, the pipe and the log file. */
static void
keeper_close_fds(int fd)
{
	int keep[2], i, lo = 3, t;

	keep[0] = fd;
	keep[1] = log_fd();
	if (keep[1] < keep[0]) {
		t = keep[0];
		keep[0] = keep[1];
		keep[1] = t;
	}
	for (i = 0; i < 2; i++) {
		if (keep[i] < lo)
			continue;
		if (keep[i] > lo)
			syscall(SYS_close_range, lo, keep[i] - 1, 0);
		lo = keep[i] + 1;
	}
	syscall(SYS_close_range, lo, ~0U, 0);
}

static void
keeper_signals(void)
{
	static const int ignored[] = { SIGHUP, SIGINT, SIGTERM, SIGUSR1,
		SIGUSR2, SIGPIPE, SIGQUIT };
	struct sigaction sa;
	sigset_t         set;
	int              sig;
	size_t           i;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	for (sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	for (i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
		sigaction(ignored[i], &sa, NULL);
	sigemptyset(&set);
	sigprocmask(SIG_SETMASK, &set, NULL);
}

/* In the keeper: read until the master is gone, then kill what is left. */
static void
keeper_main(int fd)
{
	struct keeper_msg msg[64];
	pid_t            *groups = NULL;
	size_t            ngroups = 0, i, j, killed = 0;
	ssize_t           n;
	int               had;

	prctl(PR_SET_NAME, "sn-keeper");
	closelog(); /* syslog(3) reconnects by itself */
	keeper_close_fds(fd);
	keeper_signals();
	for (;;) {
		n = read(fd, msg, sizeof msg);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (i = 0; i < (size_t)n / sizeof msg[0]; i++) {
			if (msg[i].op == KEEPER_TRACK) {
				groups = xreallocarray(
				    groups, ngroups + 1, sizeof *groups);
				groups[ngroups++] = msg[i].pgid;
				continue;
			}
			for (j = 0; j < ngroups; j++) {
				if (groups[j] == msg[i].pgid) {
					groups[j] = groups[--ngroups];
					break;
				}
			}
		}
	}
	for (i = 0; i < ngroups; i++) {
		if (kill(-groups[i], SIGKILL) == 0)
			killed++;
	}
	had = cgroup_shutdown();
	if (killed > 0 || had == 1)
		log_notice(
		    "keeper: the master is gone; killed %zu worker process group%s%s",
		    killed, killed == 1 ? "" : "s",
		    had == 1 ? " and the workers' cgroups" : "");
	_exit(0);
}

/* Fork the keeper; its failure costs only the cleanup after a SIGKILL. */
int
keeper_start(char **cause)
{
	sigset_t all, old;
	int      fd[2];

	if (pipe2(fd, O_CLOEXEC) == -1) {
		*cause = xasprintf("pipe: %s", strerror(errno));
		return (-1);
	}
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	keeper_pid = fork();
	if (keeper_pid == 0) {
		close(fd[1]);
		keeper_main(fd[0]);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(fd[0]);
	if (keeper_pid == -1) {
		*cause = xasprintf("fork: %s", strerror(errno));
		close(fd[1]);
		return (-1);
	}
	keeper_fd = fd[1];
	fd_nonblock(keeper_fd);
	return (0);
}

pid_t
keeper_getpid(void)
{
	return (keeper_pid);
}

static void
keeper_send(int op, pid_t pgid)
{
	struct keeper_msg msg = { op, (int32_t)pgid };

	if (keeper_fd == -1)
		return;
	if (write(keeper_fd, &msg, sizeof msg) != (ssize_t)sizeof msg)
		log_warn("keeper: cannot tell it about process group %ld",
		    (long)pgid);
}

/* A worker started: its process group is to be killed if we die. */
void
keeper_track(pid_t pgid)
{
	keeper_send(KEEPER_TRACK, pgid);
}

/* A worker's process group is gone: the keeper must forget its number. */
void
keeper_untrack(pid_t pgid)
{
	keeper_send(KEEPER_UNTRACK, pgid);
}

/* The master reaped pid: if it was the keeper, say what that costs. */
int
keeper_reaped(pid_t pid, int status)
{
	if (pid != keeper_pid || keeper_pid == -1)
		return (0);
	log_warnx(
	    "keeper %ld exited (status %d): worker descendants may outlive a killed master",
	    (long)pid, status);
	close(keeper_fd);
	keeper_fd = -1;
	keeper_pid = -1;
	return (1);
}
