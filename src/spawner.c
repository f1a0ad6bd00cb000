/*
 * The spawner.  vfork() is the cheapest way for a large process to start
 * another (no page tables are copied), but it suspends the thread that
 * calls it until the child execs or exits.  If that exec blocks, because
 * a FUSE or NFS file system on the command's path stopped answering (one
 * the worker's own user mounted there, perhaps), a master that vforked
 * from its event loop would stop relaying every client of every service.
 *
 * So helper threads call vfork, and the event loop waits for one at most
 * SPAWN_WAIT_MS.  A child that has not exec'd by then goes on without the
 * loop: the loop has its pid (the child's first act is to report it), and
 * the thread stays with it until its vfork returns, which SIGKILL brings
 * about (a wait on a FUSE or NFS answer is killable; the worker's
 * ready_timeout sends it).  What the child reads is released only then.
 * Meanwhile the next start takes another thread, unless it is for the
 * same key (the service: its next exec would hang the same way), or
 * SPAWNERS_MAX threads are taken.
 *
 * The child runs on its thread's stack and thread-local storage, not the
 * loop's, so what libc writes there (errno) is not the loop's.  It shares
 * the master's memory while the loop may run again, so it must read only
 * what it was given.  And since the master has more than one thread,
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
#include <stdlib.h>
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

/* One thread; arg is set while a child of its is between vfork and exec. */
struct spawner {
	int   req[2]; /* the loop's jobs to it */
	void *arg;
	void (*release)(void *);
	const void *key;
	char       *name; /* key's, for the log */
	pid_t       pid;
	long long   since; /* when the loop stopped waiting (stuck) */
	int         stuck;
};

static struct spawner spawners[SPAWNERS_MAX];
static int            nspawners, nstuck;
static int            res_fd[2] = { -1, -1 }; /* threads, children -> loop */
static struct event   late_ev;

static void __attribute__((noreturn, noinline))
spawner_child(const struct spawn_job *job)
{
	struct spawn_msg m = { job->arg, getpid(), 0, 0 };

	(void)!write(res_fd[1], &m, sizeof m);
	job->fn(job->arg);
}

static void *
spawner_main(void *self)
{
	struct spawner  *s = self;
	struct spawn_job job;
	struct spawn_msg m;
	ssize_t          n;
	pid_t            pid;

	for (;;) {
		n = read(s->req[0], &job, sizeof job);
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

static struct spawner *
spawner_of(const void *arg)
{
	int i;

	for (i = 0; i < nspawners; i++)
		if (spawners[i].arg != NULL && spawners[i].arg == arg)
			return (&spawners[i]);
	return (NULL);
}

/* Its child has exec'd or died: what it read can go. */
static void
spawner_free_job(struct spawner *s)
{
	if (s->stuck) {
		log_notice("service %s: worker %ld: its exec returned after "
			   "%lld ms",
		    s->name, (long)s->pid, now_ms() - s->since);
		if (--nstuck == 0)
			event_del(&late_ev);
	}
	s->release(s->arg);
	s->arg = NULL;
	s->release = NULL;
	s->key = NULL;
	free(s->name);
	s->name = NULL;
	s->pid = 0;
	s->stuck = 0;
}

/* The end of children the loop stopped waiting for. */
static void
spawner_collect(void)
{
	struct spawner  *s;
	struct spawn_msg m;

	while (read(res_fd[0], &m, sizeof m) == sizeof m) {
		if (m.done && (s = spawner_of(m.arg)) != NULL && s->stuck)
			spawner_free_job(s);
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

/* The result pipe, made with the first worker. */
static int
spawner_init(void)
{
	if (res_fd[0] != -1)
		return (0);
	if (pipe2(res_fd, O_CLOEXEC) == -1)
		return (-1);
	fd_nonblock(res_fd[0]);
	event_assign(&late_ev, sn_base, res_fd[0], EV_READ | EV_PERSIST,
	    spawner_late, NULL);
	return (0);
}

/* One more thread (after any fork of ours: they start with the first worker).
 */
static struct spawner *
spawner_new(void)
{
	struct spawner *s = &spawners[nspawners];
	pthread_t       thread;
	sigset_t        all, old;
	int             error;

	if (pipe2(s->req, O_CLOEXEC) == -1)
		return (NULL);
	/* Signals are the loop's: the thread and its children block them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	error = pthread_create(&thread, NULL, spawner_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (error != 0) {
		close(s->req[0]);
		close(s->req[1]);
		errno = error;
		return (NULL);
	}
	pthread_detach(thread);
	nspawners++;
	return (s);
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
 * or died (it reads arg until then).  key (the service, called name) names
 * starts that would hang together.  0: started, and its exec is done or failed
 * (the caller's exec pipe tells which).  1: started, but its exec has not
 * returned in SPAWN_WAIT_MS; arg is released when it does.  -1 with errno:
 * not started (EBUSY: an exec of key's, or SPAWNERS_MAX of them, hang).
 */
int
spawner_run(const void *key, const char *name, spawn_child_fn fn, void *arg,
    void (*release)(void *), pid_t *pid)
{
	struct spawn_job job = { fn, arg };
	struct spawn_msg m;
	struct spawner  *s = NULL, *other;
	int              i, rc, error = EBUSY;

	*pid = -1;
	if (spawner_init() == -1) {
		error = errno;
		goto refused;
	}
	if (nstuck > 0)
		spawner_collect();
	for (i = 0; i < nspawners; i++) {
		if (spawners[i].stuck && spawners[i].key == key)
			goto refused;
		if (s == NULL && spawners[i].arg == NULL)
			s = &spawners[i];
	}
	if (s == NULL && nspawners == SPAWNERS_MAX)
		goto refused;
	if (s == NULL && (s = spawner_new()) == NULL) {
		error = errno;
		goto refused;
	}
	if (write(s->req[1], &job, sizeof job) != sizeof job) {
		error = errno;
		goto refused;
	}
	s->arg = arg;
	s->release = release;
	s->key = key;
	s->name = xstrdup(name);
	for (;;) {
		/*
		 * No bound until the child reports its pid: creating it and
		 * its first write wait on no file system.
		 */
		rc = spawner_wait(&m, s->pid == 0 ? -1 : SPAWN_WAIT_MS);
		if (rc == -1)
			fatal("spawner: waiting for a worker to start");
		if (rc == 0) {
			s->stuck = 1;
			s->since = now_ms();
			if (nstuck++ == 0)
				event_add(&late_ev, NULL);
			*pid = s->pid;
			return (1);
		}
		if (m.arg != arg) {
			/* An earlier child that the loop stopped waiting for.
			 */
			if (m.done && (other = spawner_of(m.arg)) != NULL &&
			    other->stuck)
				spawner_free_job(other);
		} else if (!m.done) {
			s->pid = m.pid;
		} else {
			spawner_free_job(s);
			if (m.pid == -1) {
				errno = m.error;
				return (-1);
			}
			*pid = m.pid;
			return (0);
		}
	}

refused:
	release(arg);
	errno = error;
	return (-1);
}

/* key's child whose exec hangs (0: none), and since when (ms). */
pid_t
spawner_stuck(const void *key, long long *since)
{
	int i;

	for (i = 0; i < nspawners; i++) {
		if (spawners[i].stuck && spawners[i].key == key) {
			*since = spawners[i].since;
			return (spawners[i].pid);
		}
	}
	return (0);
}
