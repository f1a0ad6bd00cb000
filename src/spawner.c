/*
 * The spawner.  vfork() is the cheapest way for a large process to start
 * another (no page tables are copied), but it suspends the thread that
 * calls it until the child execs or exits.  If that exec blocks, because
 * a FUSE or NFS file system on the command's path stopped answering (one
 * the worker's own user mounted there, perhaps), a master that vforked
 * from its event loop would stop relaying every client of every service.
 *
 * So helper threads call vfork, and the event loop waits for the child
 * to report its pid, its first act, which waits on no file system, then
 * for its exec at most SPAWN_SYNC_MS (as vfork did: a burst of starts is
 * paced, and takes the CPUs from those serving a few at a time).  The
 * thread stays suspended with its child until the exec is done or the
 * child dies, and what the child reads is released only then; a start
 * meanwhile takes another thread.  A child that has not exec'd in
 * SPAWN_LATE_MS is late: it is logged, and no other worker of its service
 * (key) starts until it is done; nor does one while the service has its
 * cap (twice its spawn_concurrency) of children short of their exec.  SIGKILL
 * ends most such waits (the worker's ready_timeout sends it); those that
 * even SIGKILL does not end (a FUSE daemon that read the request and never
 * answers) hold that many threads and their own service's starts, nothing
 * else.
 *
 * A job the thread has not taken within SPAWN_LATE_MS (the machine is
 * starved) is cancelled: the thread takes it only by moving it from
 * QUEUED to FORKING, the loop cancels it only from QUEUED, so either no
 * child ever uses the caller's fds or the loop waits for its pid.
 *
 * The child runs on its thread's stack and thread-local storage, not the
 * loop's, so what libc writes there (errno) is not the loop's.  It shares
 * the master's memory while the loop runs, so it reads only what it was
 * given.  And since the master has more than one thread, glibc's set*id()
 * calls would signal every thread of the process to change ids too, the
 * master's from the child: the child makes those calls with syscall(2).
 */
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
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

#define SPAWNER_STACK (512 * 1024)

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

enum { JOB_QUEUED, JOB_FORKING, JOB_CANCELLED };

/* One thread; arg is set from the job's hand-over until its vfork returns. */
struct spawner {
	int          req[2]; /* the loop's jobs to it */
	atomic_int   state;  /* of its job, shared with the thread */
	struct event late_ev;
	void        *arg;
	void (*release)(void *);
	const void *key;
	char       *name; /* key's, for the log */
	pid_t       pid;  /* its child, once reported */
	long long   since;
	unsigned    late : 1; /* past SPAWN_LATE_MS, logged */
};

static struct spawner *spawners[SPAWNERS_MAX];
static int             nspawners, nbusy;
static int             res_fd[2] = { -1, -1 }; /* threads, children -> loop */
static struct event    res_ev;

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

	/* Never returns: its children's PR_SET_PDEATHSIG is its life. */
	for (;;) {
		int queued = JOB_QUEUED;

		n = read(s->req[0], &job, sizeof job);
		if (n != sizeof job)
			continue; /* EINTR: every signal is blocked here */
		memset(&m, 0, sizeof m);
		m.arg = job.arg;
		m.done = 1;
		if (!atomic_compare_exchange_strong(
			&s->state, &queued, JOB_FORKING)) {
			m.pid = -1;
			m.error = ECANCELED;
		} else if ((pid = vfork()) == 0) {
			spawner_child(&job);
		} else {
			m.pid = pid;
			m.error = pid == -1 ? errno : 0;
		}
		(void)!write(res_fd[1], &m, sizeof m);
	}
}

static struct spawner *
spawner_of(const void *arg)
{
	int i;

	for (i = 0; i < nspawners; i++)
		if (spawners[i]->arg != NULL && spawners[i]->arg == arg)
			return (spawners[i]);
	return (NULL);
}

static void
spawner_late(evutil_socket_t fd, short events, void *self)
{
	struct spawner *s = self;

	(void)fd;
	(void)events;
	s->late = 1;
	log_warnx("service %s: worker %ld: its exec has not returned after "
		  "%d ms (does a file system on its path hang?); no other "
		  "worker of the service starts until it does",
	    s->name, (long)s->pid, SPAWN_LATE_MS);
}

/* A message from a child or a thread. */
static void
spawner_handle(const struct spawn_msg *m)
{
	struct spawner *s;

	if ((s = spawner_of(m->arg)) == NULL)
		return;
	if (!m->done) {
		s->pid = m->pid;
		s->since = now_ms();
		return;
	}
	/* vfork returned (the child has exec'd or died), or never ran. */
	if (s->late)
		log_notice("service %s: worker %ld: its exec returned after "
			   "%lld ms",
		    s->name, (long)s->pid, now_ms() - s->since);
	evtimer_del(&s->late_ev);
	s->release(s->arg);
	free(s->name);
	s->arg = NULL;
	s->release = NULL;
	s->key = NULL;
	s->name = NULL;
	s->pid = 0;
	s->late = 0;
	nbusy--;
}

static void
spawner_collect(evutil_socket_t fd, short events, void *unused)
{
	struct spawn_msg m;

	(void)fd;
	(void)events;
	(void)unused;
	while (read(res_fd[0], &m, sizeof m) == sizeof m)
		spawner_handle(&m);
}

/* An idle thread, or a new one (threads start with the first worker). */
static struct spawner *
spawner_get(void)
{
	struct spawner *s;
	pthread_attr_t  attr;
	pthread_t       thread;
	sigset_t        all, old;
	int             i, error;

	for (i = 0; i < nspawners; i++)
		if (spawners[i]->arg == NULL)
			return (spawners[i]);
	if (nspawners == SPAWNERS_MAX) {
		errno = EAGAIN;
		return (NULL);
	}
	if (res_fd[0] == -1) {
		if (pipe2(res_fd, O_CLOEXEC) == -1)
			return (NULL);
		fd_nonblock(res_fd[0]);
		event_assign(&res_ev, sn_base, res_fd[0], EV_READ | EV_PERSIST,
		    spawner_collect, NULL);
		event_add(&res_ev, NULL);
	}
	s = xcalloc(1, sizeof *s);
	if (pipe2(s->req, O_CLOEXEC) == -1) {
		free(s);
		return (NULL);
	}
	evtimer_assign(&s->late_ev, sn_base, spawner_late, s);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, SPAWNER_STACK);
	/* Signals are the loop's: the thread and its children block them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	error = pthread_create(&thread, &attr, spawner_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (error != 0) {
		close(s->req[0]);
		close(s->req[1]);
		free(s);
		errno = error;
		return (NULL);
	}
	pthread_detach(thread);
	spawners[nspawners++] = s;
	return (s);
}

/* One message, waiting until the deadline (ms); 0 once it has passed. */
static int
spawner_wait(struct spawn_msg *m, long long until)
{
	struct pollfd pfd = { res_fd[0], POLLIN, 0 };
	long long     left;
	ssize_t       n;

	for (;;) {
		n = read(res_fd[0], m, sizeof *m);
		if (n == sizeof *m)
			return (1);
		if (n == -1 && errno != EAGAIN && errno != EINTR)
			return (-1);
		if ((left = until - now_ms()) <= 0)
			return (0);
		if (poll(&pfd, 1, left > INT_MAX ? -1 : (int)left) == -1 &&
		    errno != EINTR)
			return (-1);
	}
}

/*
 * Start fn(arg) in a vforked child; release(arg) once it has exec'd or
 * died (it reads arg until then).  key (the service, called name) groups
 * the starts that would hang together, at most cap of them short of their
 * exec.  0: started, *pid is the child's (the caller's exec pipe tells how
 * its exec went).  -1 with errno: not started, and no child will use what
 * arg names (EBUSY: a start of key's is late, or cap of them are short of
 * their exec; EAGAIN: no thread to be had; ETIMEDOUT: the thread did not
 * take the job in SPAWN_LATE_MS).
 */
int
spawner_run(const void *key, const char *name, int cap, spawn_child_fn fn,
    void *arg, void (*release)(void *), pid_t *pid)
{
	static const struct timeval late = { SPAWN_LATE_MS / 1000,
		SPAWN_LATE_MS % 1000 * 1000 };
	struct spawn_job            job = { fn, arg };
	struct spawn_msg            m;
	struct spawner             *s;
	long long                   until;
	int                         i, rc, error, n = 0, queued;

	*pid = -1;
	if (nbusy > 0)
		spawner_collect(-1, 0, NULL); /* done ones, not yet read */
	for (i = 0; i < nspawners; i++) {
		if (spawners[i]->arg == NULL || spawners[i]->key != key)
			continue;
		if (spawners[i]->late || ++n >= cap) {
			error = EBUSY;
			goto refused;
		}
	}
	if ((s = spawner_get()) == NULL) {
		error = errno;
		goto refused;
	}
	atomic_store(&s->state, JOB_QUEUED);
	if (write(s->req[1], &job, sizeof job) != sizeof job) {
		error = errno;
		goto refused;
	}
	s->arg = arg;
	s->release = release;
	s->key = key;
	s->name = xstrdup(name);
	s->since = now_ms();
	nbusy++;
	/*
	 * Its pid comes at once once the thread runs: creating the child
	 * and its first write wait on no file system.  Other messages may
	 * come first.
	 */
	until = s->since + SPAWN_LATE_MS;
	for (;;) {
		if ((rc = spawner_wait(&m, until)) == -1)
			fatal("spawner: waiting for a worker to start");
		if (rc == 0) {
			queued = JOB_QUEUED;
			if (atomic_compare_exchange_strong(
				&s->state, &queued, JOB_CANCELLED)) {
				/* released once the thread has said so */
				errno = ETIMEDOUT;
				return (-1);
			}
			until = LLONG_MAX; /* it is forking: the pid comes */
			continue;
		}
		if (m.arg != arg) {
			spawner_handle(&m);
			continue;
		}
		if (m.done) {
			/* vfork failed; done before the pid cannot be */
			error = m.pid == -1 ? m.error : EPROTO;
			spawner_handle(&m);
			errno = error;
			return (-1);
		}
		spawner_handle(&m);
		*pid = m.pid;
		break;
	}
	/*
	 * As vfork did, let the child exec before going on, for a little:
	 * a burst of starts then takes the CPUs a few at a time rather than
	 * all at once, and the thread is free again for the next one.
	 */
	until = now_ms() + SPAWN_SYNC_MS;
	while ((rc = spawner_wait(&m, until)) == 1) {
		spawner_handle(&m);
		if (m.arg == arg && m.done)
			return (0);
	}
	if (rc == -1)
		fatal("spawner: waiting for a worker to start");
	evtimer_add(&s->late_ev, &late);
	return (0);

refused:
	release(arg);
	errno = error;
	return (-1);
}

/*
 * A late child, of key (NULL: any) and with pid (0: any): its pid, and
 * since when (ms); 0 if there is none.
 */
pid_t
spawner_late_child(const void *key, pid_t pid, long long *since)
{
	const struct spawner *s;
	int                   i;

	for (i = 0; i < nspawners; i++) {
		s = spawners[i];
		if (s->late && (key == NULL || s->key == key) &&
		    (pid == 0 || s->pid == pid)) {
			*since = s->since;
			return (s->pid);
		}
	}
	return (0);
}
