/*
 * The spawner.  vfork() is the cheapest way for a large process to start
 * another (no page tables are copied), but it suspends the thread that
 * calls it until the child execs or exits.  If that exec blocks, because
 * a FUSE or NFS file system on the command's path stopped answering (one
 * the worker's own user mounted there, perhaps), a master that vforked
 * from its event loop would stop relaying every client of every service.
 *
 * So one helper thread calls vfork, and the event loop waits for it at
 * most SPAWN_WAIT_MS.  A child that has not exec'd by then goes on without
 * the loop: the loop has its pid (the child's first act is to report it),
 * and no other worker starts until that vfork returns, which SIGKILL
 * brings about (a wait on a FUSE or NFS answer is killable; the worker's
 * ready_timeout sends it).  What the child reads is released only then.
 *
 * The child runs on the spawner thread's stack and thread-local storage,
 * not the loop's, so what libc writes there (errno) is not the loop's.
 * It shares the master's memory while the loop may run again, so it must
 * read only what it was given.  And since the master now has two threads,
 * glibc's set*id() calls would signal every thread of the process to
 * change ids too, the master's from the child: the child makes those
 * calls with syscall(2).
 */
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "log.h"
#include "socketnautd.h"
#include "spawner.h"
#include "util.h"

struct spawn_job {
	spawn_child_fn fn;
	void          *arg;
};

/* From the child (done = 0: its pid) or the thread (done = 1: vfork's). */
struct spawn_msg {
	void *arg;
	pid_t pid;
	int   error;
	int   done;
};

static int          req_fd[2] = { -1, -1 }; /* loop -> thread: jobs */
static int          res_fd[2] = { -1, -1 }; /* thread, child -> loop */
static int          running;
static struct event late_ev;

/* A child whose exec had not returned when the loop stopped waiting. */
static struct {
	void *arg;
	void (*release)(void *);
	pid_t     pid;
	long long since;
} stuck;

static void __attribute__((noreturn, noinline))
spawner_child(const struct spawn_job *job)
{
	struct spawn_msg m = { job->arg, getpid(), 0, 0 };

	(void)!write(res_fd[1], &m, sizeof m);
	job->fn(job->arg);
}

static void *
spawner_main(void *unused)
{
	struct spawn_job job;
	struct spawn_msg m;
	ssize_t          n;
	pid_t            pid;

	(void)unused;
	for (;;) {
		n = read(req_fd[0], &job, sizeof job);
		if (n == -1 && errno == EINTR)
			continue;
		if (n != sizeof job)
			return (NULL);
		if ((pid = vfork()) == 0)
			spawner_child(&job);
		memset(&m, 0, sizeof m);
		m.arg = job.arg;
		m.pid = pid;
		m.error = pid == -1 ? errno : 0;
		m.done = 1;
		(void)!write(res_fd[1], &m, sizeof m);
	}
}

/* Messages that came while nobody waited: the stuck child's end. */
static void
spawner_collect(void)
{
	struct spawn_msg m;

	while (read(res_fd[0], &m, sizeof m) == sizeof m) {
		if (!m.done || stuck.arg == NULL || m.arg != stuck.arg)
			continue;
		log_notice("worker %ld: its exec returned after %lld ms; "
			   "workers start again",
		    (long)stuck.pid, now_ms() - stuck.since);
		stuck.release(stuck.arg);
		memset(&stuck, 0, sizeof stuck);
		event_del(&late_ev);
	}
}

static void
spawner_late(evutil_socket_t fd, short events, void *unused)
{
	(void)fd;
	(void)events;
	(void)unused;
	spawner_collect();
}

/* The thread, started with the first worker (after any fork of ours). */
static int
spawner_start(void)
{
	sigset_t  all, old;
	pthread_t thread;
	int       error;

	if (running)
		return (0);
	if (pipe2(req_fd, O_CLOEXEC) == -1)
		return (-1);
	if (pipe2(res_fd, O_CLOEXEC) == -1) {
		error = errno;
		close(req_fd[0]);
		close(req_fd[1]);
		errno = error;
		return (-1);
	}
	fd_nonblock(res_fd[0]);
	/* Signals are the loop's: the thread and its children block them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	error = pthread_create(&thread, NULL, spawner_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (error != 0) {
		close(req_fd[0]);
		close(req_fd[1]);
		close(res_fd[0]);
		close(res_fd[1]);
		errno = error;
		return (-1);
	}
	pthread_detach(thread);
	event_assign(&late_ev, sn_base, res_fd[0], EV_READ | EV_PERSIST,
	    spawner_late, NULL);
	running = 1;
	return (0);
}

/* One message, waiting at most ms (-1: without a bound); 0 on timeout. */
static int
spawner_wait(struct spawn_msg *m, long long ms)
{
	struct pollfd pfd = { res_fd[0], POLLIN, 0 };
	long long     until = now_ms() + ms;
	ssize_t       n;

	for (;;) {
		n = read(res_fd[0], m, sizeof *m);
		if (n == sizeof *m)
			return (1);
		if (n == -1 && errno != EAGAIN && errno != EINTR)
			return (-1);
		if (ms >= 0 && now_ms() >= until)
			return (0);
		if (poll(&pfd, 1, ms < 0 ? -1 : (int)(until - now_ms())) ==
			-1 &&
		    errno != EINTR)
			return (-1);
	}
}

/*
 * Start fn(arg) in a vforked child; release(arg) once the child has exec'd
 * or died (it reads arg until then).  0: started, and its exec is done or
 * failed (the caller's exec pipe tells which).  1: started, but its exec
 * has not returned in SPAWN_WAIT_MS; arg is released when it does.  -1
 * with errno: not started (EBUSY: an earlier exec still hangs).
 */
int
spawner_run(spawn_child_fn fn, void *arg, void (*release)(void *), pid_t *pid)
{
	struct spawn_job job = { fn, arg };
	struct spawn_msg m;
	pid_t            child = -1;
	int              rc, error;

	*pid = -1;
	if (stuck.arg != NULL)
		spawner_collect();
	if (stuck.arg != NULL) {
		release(arg);
		errno = EBUSY;
		return (-1);
	}
	if (spawner_start() == -1 ||
	    write(req_fd[1], &job, sizeof job) != sizeof job) {
		error = errno;
		release(arg);
		errno = error;
		return (-1);
	}
	for (;;) {
		/*
		 * No bound until the child reports its pid: creating it and
		 * its first write wait on no file system.
		 */
		rc = spawner_wait(&m, child == -1 ? -1 : SPAWN_WAIT_MS);
		if (rc == -1) {
			fatal("spawner: waiting for a worker to start");
		} else if (rc == 0) {
			stuck.arg = arg;
			stuck.release = release;
			stuck.pid = child;
			stuck.since = now_ms();
			event_add(&late_ev, NULL);
			*pid = child;
			return (1);
		} else if (m.arg != arg) {
			continue; /* cannot be: one job at a time */
		} else if (!m.done) {
			child = m.pid;
		} else {
			release(arg);
			if (m.pid == -1) {
				errno = m.error;
				return (-1);
			}
			*pid = m.pid;
			return (0);
		}
	}
}

/* The child whose exec hangs (0: none), and since when (ms). */
pid_t
spawner_stuck(long long *since)
{
	if (stuck.arg == NULL)
		return (0);
	*since = stuck.since;
	return (stuck.pid);
}
