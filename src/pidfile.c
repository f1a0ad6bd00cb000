/*
 * The pid file (pid_file): locked with flock(2) from before the listeners
 * are bound, so a second daemon on the same file refuses to start, and
 * holding our pid once they are; at exit removed only if the file at that
 * path is still the one we locked (a successor may have replaced it).
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pidfile.h"
#include "sockdir.h"
#include "util.h"

static int   pidfile_fd = -1;
static char *pidfile_path;

/* Take the file, or say which process holds it. */
/*
 * A binary upgrade passed us the old master's open pid file: its lock is
 * ours too (flock belongs to the open file), so no third daemon starts on
 * the file while the two masters overlap.
 */
static int
pidfile_inherit(const char *path)
{
	const char *v = getenv(PIDFILE_ENV);
	struct stat st, there;
	char       *end;
	long        fd;

	if (v == NULL)
		return (-1);
	unsetenv(PIDFILE_ENV);
	errno = 0;
	fd = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || fd < 3 || fd > 65535 ||
	    fstat((int)fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_nlink != 1 || st.st_uid != geteuid() ||
	    lstat(path, &there) == -1 || there.st_dev != st.st_dev ||
	    there.st_ino != st.st_ino)
		return (-1);
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	return ((int)fd);
}

int
pidfile_lock(const char *path, char **cause)
{
	char    buf[32], *why;
	ssize_t n;
	int     fd;

	if ((fd = pidfile_inherit(path)) != -1) {
		pidfile_fd = fd;
		pidfile_path = xstrdup(path);
		return (0);
	}
	/* Not through a link or a directory that others could swap. */
	if ((fd = sockdir_open_file(path, O_RDWR | O_CREAT, 0, &why)) == -1) {
		*cause = xasprintf("pid_file %s", why);
		free(why);
		return (-1);
	}
	/* Readable by all, as pid files are. */
	fchmod(fd, 0644);
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK) {
			n = pread(fd, buf, sizeof buf - 1, 0);
			buf[n > 0 ? n : 0] = '\0';
			buf[strcspn(buf, "\n")] = '\0';
			*cause = xasprintf(
			    "pid_file %s is held by a running socketnautd (pid %s)",
			    path, buf[0] != '\0' ? buf : "unknown");
		} else
			*cause = xasprintf(
			    "pid_file %s: flock: %s", path, strerror(errno));
		close(fd);
		return (-1);
	}
	pidfile_fd = fd;
	pidfile_path = xstrdup(path);
	return (0);
}

/* Our pid, once the listeners are bound. */
int
pidfile_write(char **cause)
{
	char buf[32];
	int  len;

	if (pidfile_fd == -1)
		return (0);
	len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
	if (ftruncate(pidfile_fd, 0) == -1 ||
	    pwrite(pidfile_fd, buf, len, 0) != len) {
		*cause =
		    xasprintf("pid_file %s: %s", pidfile_path, strerror(errno));
		return (-1);
	}
	return (0);
}

/* The open pid file, for a binary upgrade to pass on; -1 without one. */
int
pidfile_handle(void)
{
	return (pidfile_fd);
}

/* At exit: remove it if it is still ours and no new master took it over. */
void
pidfile_remove(int handed_over)
{
	struct stat ours, there;

	if (pidfile_fd == -1)
		return;
	if (!handed_over && fstat(pidfile_fd, &ours) == 0 &&
	    S_ISREG(ours.st_mode) && lstat(pidfile_path, &there) == 0 &&
	    ours.st_dev == there.st_dev && ours.st_ino == there.st_ino)
		unlink(pidfile_path);
	close(pidfile_fd);
	pidfile_fd = -1;
	free(pidfile_path);
	pidfile_path = NULL;
}
