/*
 * Worker cgroups.  When the daemon may write to the cgroup v2 it was
 * started in (systemd's Delegate=yes, or a container's own cgroup), it
 * moves itself into the leaf "master" (a cgroup with children holds no
 * processes of its own) and starts each worker in "workers-PID/worker-N",
 * PID being the master's and N the worker's serial.  Writing cgroup.kill
 * then ends everything a worker started, daemons that called setsid() to
 * leave its process group included; the keeper (keeper.c) does it for
 * "workers-PID" when the master itself is killed.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "cgroup.h"
#include "log.h"
#include "socketnautd.h"
#include "upgrade.h"
#include "util.h"

#define RMDIR_RETRY_MS 50
#define RMDIR_TRIES    100 /* 5 s */
#define TREE_DEPTH_MAX 8

static char *cg_root;    /* the cgroup we were started in */
static char *cg_workers; /* cg_root/workers-PID */

/* Worker cgroups killed but not yet empty, retried on a timer. */
static struct cg_pending {
	unsigned serial;
	int      tries;
} * pending;
static size_t       npending;
static struct event pending_ev;

static int
cgroup_write(const char *dir, const char *file, const char *s)
{
	char   *path = xasprintf("%s/%s", dir, file);
	size_t  n = strlen(s);
	ssize_t w;
	int     fd, saved;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	free(path);
	if (fd == -1)
		return (-1);
	w = write(fd, s, n);
	saved = errno;
	close(fd);
	errno = saved;
	return (w == (ssize_t)n ? 0 : -1);
}

/* True while a process is in the cgroup or one of its children. */
static int
cgroup_populated(const char *dir)
{
	char *path = xasprintf("%s/cgroup.events", dir), buf[256];
	int   fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd == -1)
		return (0);
	memset(buf, 0, sizeof buf);
	if (read(fd, buf, sizeof buf - 1) == -1)
		buf[0] = '\0';
	close(fd);
	return (strstr(buf, "populated 1") != NULL);
}

/* Mount points in mountinfo escape blanks and backslashes as \ooo. */
static void
cgroup_unescape(char *s)
{
	char *d = s;

	for (; *s != '\0'; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
		    s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
			    (s[3] - '0'));
			s += 3;
		} else
			*d++ = *s;
	}
	*d = '\0';
}

/* Our cgroup v2 ("0::" of /proc/self/cgroup), relative to the hierarchy. */
static char *
cgroup_self(void)
{
	FILE  *f;
	char  *line = NULL, *cg = NULL;
	size_t cap = 0;

	if ((f = fopen("/proc/self/cgroup", "re")) == NULL)
		return (NULL);
	while (cg == NULL && getline(&line, &cap, f) != -1) {
		if (strncmp(line, "0::/", 4) == 0) {
			line[strcspn(line, "\n")] = '\0';
			cg = xstrdup(line + 3);
		}
	}
	free(line);
	fclose(f);
	return (cg);
}

/* Where cgroup2 is mounted, and which part of the hierarchy it shows. */
static int
cgroup_mount(char **mnt, char **mroot)
{
	FILE  *f;
	char  *line = NULL, *sep, root[4096], point[4096];
	size_t cap = 0;

	*mnt = *mroot = NULL;
	if ((f = fopen("/proc/self/mountinfo", "re")) == NULL)
		return (-1);
	while (*mnt == NULL && getline(&line, &cap, f) != -1) {
		if ((sep = strstr(line, " - ")) == NULL ||
		    strncmp(sep + 3, "cgroup2 ", 8) != 0)
			continue;
		if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) != 2)
			continue;
		cgroup_unescape(root);
		cgroup_unescape(point);
		*mnt = xstrdup(point);
		*mroot = xstrdup(root);
	}
	free(line);
	fclose(f);
	return (*mnt != NULL ? 0 : -1);
}

/* The directory of the cgroup we run in. */
static char *
cgroup_find(char **cause)
{
	char  *cg, *mnt, *mroot, *dir = NULL;
	size_t n;

	if ((cg = cgroup_self()) == NULL) {
		*cause = xstrdup("no cgroup v2 in /proc/self/cgroup");
		return (NULL);
	}
	if (cgroup_mount(&mnt, &mroot) == -1) {
		*cause = xstrdup("cgroup2 is not mounted");
		free(cg);
		return (NULL);
	}
	n = strcmp(mroot, "/") == 0 ? 0 : strlen(mroot);
	if (strncmp(cg, mroot, n) != 0 || (cg[n] != '/' && cg[n] != '\0'))
		*cause = xasprintf(
		    "our cgroup %s is not under the cgroup2 mount at %s", cg,
		    mnt);
	else if (cg[n] == '\0' || strcmp(cg + n, "/") == 0)
		dir = xstrdup(mnt);
	else
		dir = xasprintf("%s%s", mnt, cg + n);
	free(cg);
	free(mnt);
	free(mroot);
	return (dir);
}

/* Remove a cgroup and its children, deepest first. */
static void
cgroup_rmdir_tree(const char *dir, int depth)
{
	DIR           *d;
	struct dirent *de;
	char          *sub;

	if (depth < TREE_DEPTH_MAX && (d = opendir(dir)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (de->d_type != DT_DIR || de->d_name[0] == '.')
				continue;
			sub = xasprintf("%s/%s", dir, de->d_name);
			cgroup_rmdir_tree(sub, depth + 1);
			free(sub);
		}
		closedir(d);
	}
	rmdir(dir);
}

/*
 * Kill every process in a cgroup and its children, wait (at most wait_ms)
 * until none is left, and remove them.  Returns 1 if there were processes,
 * 0 if there were none, -1 if the cgroup could not be removed.
 */
static int
cgroup_kill_tree(const char *dir, int wait_ms)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	int             had, i;

	had = cgroup_populated(dir);
	if (had && cgroup_write(dir, "cgroup.kill", "1") == -1 &&
	    errno != ENOENT)
		log_warn("cgroup %s: cannot write cgroup.kill", dir);
	for (i = 0; had && i < wait_ms / 10 && cgroup_populated(dir); i++)
		nanosleep(&ts, NULL);
	cgroup_rmdir_tree(dir, 0);
	if (access(dir, F_OK) == 0)
		return (-1);
	return (had);
}

/* workers-PID of a master that is gone: what it left behind goes too. */
static void
cgroup_clean_stale(const char *root)
{
	DIR           *d;
	struct dirent *de;
	char          *end, *path;
	long           pid;

	if ((d = opendir(root)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "workers-", 8) != 0 ||
		    !isdigit((unsigned char)de->d_name[8]))
			continue;
		pid = strtol(de->d_name + 8, &end, 10);
		if (*end != '\0' || pid <= 0 ||
		    (pid != (long)getpid() &&
			(kill((pid_t)pid, 0) == 0 || errno != ESRCH)))
			continue;
		path = xasprintf("%s/%s", root, de->d_name);
		if (cgroup_kill_tree(path, 500) == 1)
			log_notice(
			    "cgroup %s: killed what a previous master left behind",
			    path);
		free(path);
	}
	closedir(d);
}

/*
 * Set up master/ and workers-PID/ in our cgroup and move into master/.
 * Returns -1, with the reason, when cgroups cannot be used here.
 */
int
cgroup_init(char **cause)
{
	char *dir, *master = NULL, *workers = NULL, *procs, pid[32], *end;

	if ((dir = cgroup_find(cause)) == NULL)
		return (-1);
	/* A binary upgrade's new master starts in the old one's master/. */
	if (upgrade_child() && (end = strrchr(dir, '/')) != NULL &&
	    strcmp(end, "/master") == 0)
		*end = '\0';
	procs = xasprintf("%s/cgroup.procs", dir);
	if (access(procs, W_OK) == -1) {
		*cause = xasprintf("%s: %s", procs, strerror(errno));
		free(procs);
		goto fail;
	}
	free(procs);
	cgroup_clean_stale(dir);
	master = xasprintf("%s/master", dir);
	workers = xasprintf("%s/workers-%ld", dir, (long)getpid());
	if ((mkdir(master, 0755) == -1 && errno != EEXIST) ||
	    (mkdir(workers, 0755) == -1 && errno != EEXIST)) {
		*cause = xasprintf("mkdir in %s: %s", dir, strerror(errno));
		goto fail;
	}
	procs = xasprintf("%s/cgroup.kill", workers);
	if (access(procs, F_OK) == -1) {
		*cause = xasprintf("%s: %s (cgroup.kill needs Linux 5.14)",
		    procs, strerror(errno));
		free(procs);
		goto fail;
	}
	free(procs);
	snprintf(pid, sizeof pid, "%ld", (long)getpid());
	if (cgroup_write(master, "cgroup.procs", pid) == -1) {
		*cause = xasprintf(
		    "cannot move into %s: %s", master, strerror(errno));
		goto fail;
	}
	free(master);
	cg_root = dir;
	cg_workers = workers;
	return (0);
fail:
	if (workers != NULL)
		rmdir(workers);
	if (master != NULL)
		rmdir(master); /* unless another master is in it */
	free(workers);
	free(master);
	free(dir);
	return (-1);
}

const char *
cgroup_path(void)
{
	return (cg_root);
}

const char *
cgroup_workers_path(void)
{
	return (cg_workers);
}

/* A worker's own cgroup, and its cgroup.procs open for the child to join. */
int
cgroup_worker_create(unsigned serial, int *procsfd, char **cause)
{
	char *dir, *path;

	dir = xasprintf("%s/worker-%u", cg_workers, serial);
	path = xasprintf("%s/cgroup.procs", dir);
	*procsfd = -1;
	if (mkdir(dir, 0755) == -1 && errno != EEXIST)
		*cause = xasprintf("mkdir %s: %s", dir, strerror(errno));
	else if ((*procsfd = open(path, O_WRONLY | O_CLOEXEC)) == -1) {
		*cause = xasprintf("%s: %s", path, strerror(errno));
		rmdir(dir);
	}
	free(path);
	free(dir);
	return (*procsfd == -1 ? -1 : 0);
}

/* SIGKILL to every process in the worker's cgroup, wherever it went. */
void
cgroup_worker_kill(unsigned serial)
{
	char *dir = xasprintf("%s/worker-%u", cg_workers, serial);

	if (cgroup_populated(dir) &&
	    cgroup_write(dir, "cgroup.kill", "1") == -1 && errno != ENOENT)
		log_warn("cgroup %s: cannot write cgroup.kill", dir);
	free(dir);
}

/* The worker's cgroup.procs, open for reading: every process it started. */
int
cgroup_worker_procs(unsigned serial)
{
	char *path;
	int   fd;

	path = xasprintf("%s/worker-%u/cgroup.procs", cg_workers, serial);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	return (fd);
}

static int
cgroup_worker_rmdir(unsigned serial)
{
	char *dir = xasprintf("%s/worker-%u", cg_workers, serial);
	int   rv;

	rv = rmdir(dir) == 0 || errno == ENOENT ? 0 : -1;
	free(dir);
	return (rv);
}

static void
cgroup_pending_timer(void)
{
	struct timeval tv = { 0, RMDIR_RETRY_MS * 1000 };

	evtimer_add(&pending_ev, &tv);
}

/* Killed processes take a moment to leave: retry the rmdir, bounded. */
static void
cgroup_pending_cb(evutil_socket_t fd, short events, void *arg)
{
	size_t i = 0;

	(void)fd;
	(void)events;
	(void)arg;
	while (i < npending) {
		if (cgroup_worker_rmdir(pending[i].serial) == -1 &&
		    ++pending[i].tries < RMDIR_TRIES) {
			i++;
			continue;
		}
		if (pending[i].tries >= RMDIR_TRIES)
			log_warnx(
			    "cgroup %s/worker-%u: still populated after %dms, left in place",
			    cg_workers, pending[i].serial,
			    RMDIR_TRIES * RMDIR_RETRY_MS);
		pending[i] = pending[--npending];
	}
	if (npending > 0)
		cgroup_pending_timer();
}

/* The worker is gone: its cgroup goes once the last process has left. */
void
cgroup_worker_remove(unsigned serial)
{
	if (cgroup_worker_rmdir(serial) == 0)
		return;
	pending = xreallocarray(pending, npending + 1, sizeof *pending);
	pending[npending].serial = serial;
	pending[npending].tries = 0;
	npending++;
	if (!event_initialized(&pending_ev))
		evtimer_assign(&pending_ev, sn_base, cgroup_pending_cb, NULL);
	if (!evtimer_pending(&pending_ev, NULL))
		cgroup_pending_timer();
}

/*
 * The master exits or is gone: kill and remove workers-PID, leave master/
 * for the cgroup we started in, and remove master/ unless another process
 * (the keeper, another master) is still in it.  Returns what
 * cgroup_kill_tree returned.
 */
int
cgroup_shutdown(void)
{
	char pid[32];
	int  rv;

	if (cg_root == NULL)
		return (0);
	if (event_initialized(&pending_ev))
		event_del(&pending_ev);
	free(pending);
	pending = NULL;
	npending = 0;
	rv = cgroup_kill_tree(cg_workers, 2000);
	snprintf(pid, sizeof pid, "%ld", (long)getpid());
	if (cgroup_write(cg_root, "cgroup.procs", pid) == 0) {
		char *master = xasprintf("%s/master", cg_root);

		rmdir(master);
		free(master);
	}
	return (rv);
}
