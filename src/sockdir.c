/*
 * Runtime and socket directories: created, checked, never followed.  The
 * runtime directory must be ours and writable by nobody else, every
 * directory above it must be one nobody else can rename, and a service's
 * socket directory is opened once, without following a symlink, and used
 * through that fd afterwards.  A worker's socket is pinned with an O_PATH
 * fd once it proved to be a socket owned by the worker's user; the master
 * connects through /proc/self/fd/N, a link to exactly that inode, so a
 * worker that replaces its socket by a symlink reaches nothing.  The files
 * the master writes (logs, pid file) are opened through the same walk.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sockdir.h"

#define SOCKDIR_MAXLINKS 40
#define SOCKDIR_OPEN     (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
/* sockdir_walk: make missing directories; check the last like those above. */
#define SOCKDIR_CREATE 0x1
#define SOCKDIR_PARENT 0x2

struct sockdir {
	int   refs;
	int   fd; /* runtime_dir/name */
	char *runtime_dir;
	char *name;
	char *path;
	uid_t owner; /* whom it was handed to */
	int   proc;  /* /proc/self/fd/N reaches our fds */
};

/* "uid 1001 (alice)" for messages. */
char *
sockdir_owner(uid_t uid)
{
	struct passwd *pw = getpwuid(uid);

	if (pw != NULL)
		return (
		    xasprintf("uid %lu (%s)", (unsigned long)uid, pw->pw_name));
	return (xasprintf("uid %lu", (unsigned long)uid));
}

/*
 * Is this directory safe where it stands?  The runtime directory itself
 * (last) must be ours and writable by us alone; one above it must belong to
 * root or us and be writable by nobody but root's group, unless sticky
 * (then others cannot rename what is ours in it).
 */
static int
sockdir_trusted(const struct stat *st, const char *path, int last, char **cause)
{
	uid_t       me = geteuid();
	mode_t      w = st->st_mode & (S_IWGRP | S_IWOTH);
	const char *why = NULL;
	char       *owner;

	/* Above it, root's group may write, as logrotate(8) allows. */
	if (!last && st->st_gid == 0)
		w &= ~S_IWGRP;

	if (last && (st->st_uid != me || w != 0))
		why =
		    "others could replace what socketnautd puts there: it must be owned by socketnautd's user and writable by nobody else";
	else if (!last &&
	    ((st->st_uid != 0 && st->st_uid != me) ||
		(w != 0 && (st->st_mode & S_ISVTX) == 0)))
		why =
		    "others could rename what is below it: it must be owned by root or socketnautd's user and writable by nobody else (or sticky)";
	if (why == NULL)
		return (0);
	owner = sockdir_owner(st->st_uid);
	*cause = xasprintf("%s is owned by %s with mode %04o: %s", path, owner,
	    (unsigned)(st->st_mode & 07777), why);
	free(owner);
	return (-1);
}

/* Next component of *rest (skipping empty ones and "."), or NULL. */
static char *
sockdir_component(char **rest)
{
	char *c;

	for (;;) {
		c = strsep(rest, "/");
		if (c == NULL)
			return (NULL);
		if (*c != '\0' && strcmp(c, ".") != 0)
			return (c);
	}
}

/* Is there another component after rest? */
static int
sockdir_more(const char *rest)
{
	if (rest == NULL)
		return (0);
	while (*rest == '/' ||
	    (rest[0] == '.' && (rest[1] == '/' || rest[1] == '\0')))
		rest++;
	return (*rest != '\0');
}

/* The directory fd holds a symlink named c: where it points, if we trust it. */
static char *
sockdir_link(int fd, const char *c, const char *shown, char **cause)
{
	struct stat st;
	char        buf[PATH_MAX];
	ssize_t     n;

	if (fstatat(fd, c, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		*cause = xasprintf("%s: %s", shown, strerror(errno));
		return (NULL);
	}
	if (!S_ISLNK(st.st_mode)) {
		*cause = xasprintf("%s is not a directory", shown);
		return (NULL);
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		*cause = xasprintf(
		    "%s is a symbolic link owned by uid %lu: refusing to follow it",
		    shown, (unsigned long)st.st_uid);
		return (NULL);
	}
	if ((n = readlinkat(fd, c, buf, sizeof buf - 1)) == -1) {
		*cause = xasprintf("%s: %s", shown, strerror(errno));
		return (NULL);
	}
	buf[n] = '\0';
	return (xstrdup(buf));
}

/*
 * Open path one directory at a time from "/", checking each.  A symlink
 * above the last component is followed (component by component, the same
 * checks on its target) only when root or we own it; the last component is
 * never a symlink.  With SOCKDIR_CREATE, missing directories are made
 * (0755); without, *missing is set and the deepest existing one returned.
 * With SOCKDIR_PARENT the last is a directory that holds a file of ours,
 * checked as those above it are.
 */
static int
sockdir_walk(const char *path, int flags, int *missing, char **cause)
{
	struct stat st;
	char       *todo, *rest, *c, *target, *shown;
	int         fd, nfd, links = 0, last;
	int         create = flags & SOCKDIR_CREATE;

	if (missing != NULL)
		*missing = 0;
	if ((fd = open("/", SOCKDIR_OPEN)) == -1) {
		*cause = xasprintf("/: %s", strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == -1) {
		*cause = xasprintf("/: %s", strerror(errno));
		close(fd);
		return (-1);
	}
	last = !sockdir_more(path) && !(flags & SOCKDIR_PARENT);
	if (sockdir_trusted(&st, "/", last, cause) == -1) {
		close(fd);
		return (-1);
	}
	todo = xstrdup(path);
	rest = todo;
	shown = xstrdup("");
	while ((c = sockdir_component(&rest)) != NULL) {
		last = !sockdir_more(rest);
		target = xasprintf("%s/%s", shown, c);
		free(shown);
		shown = target;
		nfd = openat(fd, c, SOCKDIR_OPEN);
		if (nfd == -1 && errno == ENOENT && create &&
		    (mkdirat(fd, c, 0755) == 0 || errno == EEXIST))
			nfd = openat(fd, c, SOCKDIR_OPEN);
		if (nfd == -1 && errno == ENOENT && !create) {
			*missing = 1;
			goto out;
		}
		if (nfd == -1 && (errno == ELOOP || errno == ENOTDIR) &&
		    !last) {
			if ((target = sockdir_link(fd, c, shown, cause)) ==
			    NULL)
				goto fail;
			if (++links > SOCKDIR_MAXLINKS) {
				free(target);
				*cause =
				    xasprintf("%s: %s", path, strerror(ELOOP));
				goto fail;
			}
			c = xasprintf(
			    "%s/%s", target, rest == NULL ? "" : rest);
			if (*target == '/') {
				close(fd);
				if ((fd = open("/", SOCKDIR_OPEN)) == -1) {
					*cause =
					    xasprintf("/: %s", strerror(errno));
					free(target);
					goto fail;
				}
				free(shown);
				shown = xstrdup("");
			} else
				*strrchr(shown, '/') = '\0';
			free(target);
			free(todo);
			todo = rest = c;
			continue;
		}
		if (nfd == -1 && (errno == ELOOP || errno == ENOTDIR)) {
			*cause = xasprintf(
			    "%s is a symbolic link or not a directory: refusing it",
			    shown);
			goto fail;
		}
		if (nfd == -1) {
			*cause = xasprintf("%s: %s", shown, strerror(errno));
			goto fail;
		}
		close(fd);
		fd = nfd;
		if (fstat(fd, &st) == -1) {
			*cause = xasprintf("%s: %s", shown, strerror(errno));
			goto fail;
		}
		if (sockdir_trusted(&st, shown,
			last && !(flags & SOCKDIR_PARENT), cause) == -1)
			goto fail;
	}
out:
	free(todo);
	free(shown);
	return (fd);
fail:
	free(todo);
	free(shown);
	if (fd != -1)
		close(fd);
	return (-1);
}

/*
 * For configuration checks (-t, reload): the runtime directory exists and
 * is safe, or can be made in a safe, writable parent.
 */
int
sockdir_check(const char *runtime_dir, char **cause)
{
	int fd, missing;

	if ((fd = sockdir_walk(runtime_dir, 0, &missing, cause)) == -1)
		return (-1);
	if (missing && faccessat(fd, ".", W_OK | X_OK, 0) == -1) {
		*cause = xasprintf(
		    "cannot create %s: %s", runtime_dir, strerror(errno));
		close(fd);
		return (-1);
	}
	close(fd);
	return (0);
}

/*
 * A directory of ours for a socket of the master's own (the admin
 * socket): opened with the runtime directory's checks, made if missing.
 */
int
sockdir_open_own(const char *path, char **cause)
{
	return (sockdir_walk(path, SOCKDIR_CREATE, NULL, cause));
}

/*
 * A file the master writes as root where a worker's user may own a
 * directory (log_target, access_log, pid_file): every directory on the way
 * must be one that nobody else can rename in, and the file itself a
 * regular file of ours with one link (with SOCKDIR_FILE_DEV, or a device
 * such as /dev/null), never a symlink or FIFO.
 * oflags are open(2)'s (O_CREAT makes it 0640).  With SOCKDIR_FILE_CHECK,
 * nothing is created or kept open: 0 if the open would succeed.  Else the
 * descriptor, or -1 with *cause.
 */
int
sockdir_open_file(const char *path, int oflags, int how, char **cause)
{
	int check = how & SOCKDIR_FILE_CHECK;

	struct stat st;
	char       *dir, *base, *why;
	int         dfd, fd, missing;

	if (path[0] != '/' || (base = strrchr(path, '/'))[1] == '\0') {
		*cause = xasprintf("%s: not an absolute path to a file", path);
		return (-1);
	}
	dir = base == path ? xstrdup("/")
			   : xasprintf("%.*s", (int)(base - path), path);
	base++;
	dfd = sockdir_walk(dir, SOCKDIR_PARENT, &missing, &why);
	free(dir);
	if (dfd == -1) {
		*cause = xasprintf("%s: %s", path, why);
		free(why);
		return (-1);
	}
	if (missing) {
		*cause =
		    xasprintf("cannot create %s: %s", path, strerror(ENOENT));
		close(dfd);
		return (-1);
	}
	oflags |= O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
	if (check)
		oflags &= ~O_CREAT;
	fd = openat(dfd, base, oflags, 0640);
	if (fd == -1 && check && errno == ENOENT) {
		if ((fd = faccessat(dfd, ".", W_OK | X_OK, AT_EACCESS)) == -1)
			*cause = xasprintf(
			    "cannot create %s: %s", path, strerror(errno));
		close(dfd);
		return (fd);
	}
	close(dfd);
	if (fd == -1) {
		if (errno == ELOOP)
			*cause =
			    xasprintf("%s: a symbolic link: refusing it", path);
		else
			*cause = xasprintf(
			    "cannot write %s: %s", path, strerror(errno));
		return (-1);
	}
	/* A character device (/dev/null) only root can have put there. */
	if (fstat(fd, &st) == -1 ||
	    (!(S_ISCHR(st.st_mode) && (how & SOCKDIR_FILE_DEV)) &&
		(!S_ISREG(st.st_mode) || st.st_nlink != 1 ||
		    st.st_uid != geteuid()))) {
		*cause = xasprintf(
		    "%s: not a regular file of ours with one link: refusing it",
		    path);
		close(fd);
		return (-1);
	}
	if (check) {
		close(fd);
		return (0);
	}
	return (fd);
}

/*
 * A file the master reads and trusts (its configuration): opened in a
 * directory that nobody but root or us can rename in, every one above it
 * checked the same way, so that what a worker's user can write is never
 * read as root's.  A symlink to it (conf.d/x.conf -> ../sites/x.conf) is
 * followed only when root or we own it, and its target checked the same
 * way.  Whose the file is, is the caller's to check.  The descriptor
 * (nonblocking: a FIFO must not wait), or -1 with *cause.
 */
static int
sockdir_open_read_at(const char *path, int links, char **cause)
{
	char *abs, *base, *dir, *why, *target, cwd[PATH_MAX];
	int   dfd, fd, missing;

	if (path[0] == '/')
		abs = xstrdup(path);
	else if (getcwd(cwd, sizeof cwd) != NULL)
		abs = xasprintf("%s/%s", cwd, path);
	else {
		*cause = xasprintf("%s: getcwd: %s", path, strerror(errno));
		return (-1);
	}
	base = strrchr(abs, '/');
	dir = base == abs ? xstrdup("/")
			  : xasprintf("%.*s", (int)(base - abs), abs);
	dfd = sockdir_walk(dir, SOCKDIR_PARENT, &missing, &why);
	if (dfd == -1) {
		*cause = xasprintf("%s: %s", path, why);
		free(why);
		free(dir);
		free(abs);
		return (-1);
	}
	base = base[1] != '\0' ? base + 1 : ".";
	fd = missing
	    ? -1
	    : openat(dfd, base,
		  O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1 && !missing && errno == ELOOP &&
	    ++links > SOCKDIR_MAXLINKS)
		*cause = xasprintf("%s: %s", path, strerror(ELOOP));
	else if (fd == -1 && !missing && errno == ELOOP) {
		target = sockdir_link(dfd, base, path, cause);
		if (target != NULL) {
			free(abs);
			abs = target[0] == '/'
			    ? xstrdup(target)
			    : xasprintf("%s/%s", dir, target);
			free(target);
			fd = sockdir_open_read_at(abs, links, cause);
		}
	} else if (fd == -1)
		*cause = xasprintf("%s", strerror(missing ? ENOENT : errno));
	close(dfd);
	free(dir);
	free(abs);
	return (fd);
}

int
sockdir_open_read(const char *path, char **cause)
{
	return (sockdir_open_read_at(path, 0, cause));
}

/*
 * Remove stale sockets (only sockets: nothing else is ours to remove), or
 * only those whose name starts with prefix.
 */
static void
sockdir_clean(int fd, const char *prefix)
{
	struct stat    st;
	struct dirent *de;
	DIR           *d;
	int            dfd;
	size_t         n;

	if ((dfd = dup(fd)) == -1 || (d = fdopendir(dfd)) == NULL) {
		if (dfd != -1)
			close(dfd);
		return;
	}
	rewinddir(d); /* the offset is shared with fd: read before */
	while ((de = readdir(d)) != NULL) {
		n = strlen(de->d_name);
		if (n <= 5 || strcmp(de->d_name + n - 5, ".sock") != 0 ||
		    (prefix != NULL &&
			strncmp(de->d_name, prefix, strlen(prefix)) != 0))
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISSOCK(st.st_mode))
			unlinkat(fd, de->d_name, 0);
	}
	closedir(d);
}

/* Does /proc/self/fd/N lead to our fd N (is /proc mounted)? */
static int
sockdir_proc_works(int fd)
{
	struct stat a, b;
	char        path[64];

	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	return (fstat(fd, &a) == 0 && stat(path, &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino);
}

/*
 * Open runtime_dir/name, creating both as needed: never through a symlink,
 * mode 0700, owned by the workers' user when give is set.  An existing one
 * must already belong to us or to that user.
 */
struct sockdir *
sockdir_open(const char *runtime_dir, const char *name, int give, uid_t uid,
    gid_t gid, int clean, char **cause)
{
	struct sockdir *d;
	struct stat     st;
	char           *owner;
	int             parent;

	d = xcalloc(1, sizeof *d);
	d->refs = 1;
	d->runtime_dir = xstrdup(runtime_dir);
	d->name = xstrdup(name);
	d->path = xasprintf("%s/%s", runtime_dir, name);
	if ((parent = sockdir_walk(runtime_dir, SOCKDIR_CREATE, NULL, cause)) ==
	    -1) {
		d->fd = -1;
		goto fail;
	}
	if (mkdirat(parent, name, 0700) == -1 && errno != EEXIST) {
		*cause = xasprintf("%s: %s", d->path, strerror(errno));
		close(parent);
		d->fd = -1;
		goto fail;
	}
	d->fd = openat(parent, name, SOCKDIR_OPEN);
	close(parent);
	if (d->fd == -1) {
		if (errno == ELOOP || errno == ENOTDIR)
			*cause = xasprintf(
			    "%s is a symbolic link or not a directory: refusing it (remove it)",
			    d->path);
		else
			*cause = xasprintf("%s: %s", d->path, strerror(errno));
		goto fail;
	}
	if (fstat(d->fd, &st) == -1) {
		*cause = xasprintf("%s: %s", d->path, strerror(errno));
		goto fail;
	}
	if (st.st_uid != geteuid() && (!give || st.st_uid != uid)) {
		owner = sockdir_owner(st.st_uid);
		*cause = xasprintf(
		    "%s is owned by %s with mode %04o, not by socketnautd's user or the workers': refusing it (remove it)",
		    d->path, owner, (unsigned)(st.st_mode & 07777));
		free(owner);
		goto fail;
	}
	if (fchmod(d->fd, 0700) == -1) {
		*cause = xasprintf("%s: %s", d->path, strerror(errno));
		goto fail;
	}
	d->owner = geteuid();
	d->proc = sockdir_proc_works(d->fd);
	if (give && sockdir_give(d, uid, gid, cause) == -1)
		goto fail;
	if (clean)
		sockdir_clean(d->fd, NULL);
	return (d);
fail:
	sockdir_unref(d);
	return (NULL);
}

/* The sockets a master that is gone left (names "PID-", see worker.c). */
void
sockdir_clean_prefix(const struct sockdir *d, const char *prefix)
{
	sockdir_clean(d->fd, prefix);
}

/* Hand the directory we hold to the workers' user (also on reload). */
int
sockdir_give(struct sockdir *d, uid_t uid, gid_t gid, char **cause)
{
	if (!d->proc && uid != geteuid()) {
		*cause = xasprintf(
		    "%s: /proc is not mounted, and socketnautd reaches the sockets of workers of another user only through /proc/self/fd: mount /proc, or use backend tcp",
		    d->path);
		return (-1);
	}
	if (fchown(d->fd, uid, gid) == -1) {
		*cause = xasprintf("%s: %s", d->path, strerror(errno));
		return (-1);
	}
	d->owner = uid;
	return (0);
}

struct sockdir *
sockdir_ref(struct sockdir *d)
{
	if (d != NULL)
		d->refs++;
	return (d);
}

void
sockdir_unref(struct sockdir *d)
{
	if (d == NULL || --d->refs > 0)
		return;
	if (d->fd != -1)
		close(d->fd);
	free(d->runtime_dir);
	free(d->name);
	free(d->path);
	free(d);
}

/*
 * Remove the directory if it is empty (the service is gone), and only if
 * the name still leads to the directory we hold.
 */
void
sockdir_remove(struct sockdir *d)
{
	struct stat a, b;
	char       *cause;
	int         parent, missing;

	if (d == NULL || d->fd == -1 || fstat(d->fd, &a) == -1)
		return;
	if ((parent = sockdir_walk(d->runtime_dir, 0, &missing, &cause)) ==
	    -1) {
		free(cause);
		return;
	}
	if (!missing &&
	    fstatat(parent, d->name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		unlinkat(parent, d->name, AT_REMOVEDIR);
	close(parent);
}

const char *
sockdir_path(const struct sockdir *d)
{
	return (d->path);
}

/* The name of path in the directory, if path is a direct child of it. */
const char *
sockdir_child(const struct sockdir *d, const char *path)
{
	size_t      n = strlen(d->path);
	const char *name = path + n + 1;

	if (strncmp(path, d->path, n) != 0 || path[n] != '/' || *name == '\0' ||
	    strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0)
		return (NULL);
	return (name);
}

/* Remove name (never following it); 0 if it is gone. */
int
sockdir_unlink(const struct sockdir *d, const char *name)
{
	if (unlinkat(d->fd, name, 0) == -1 && errno != ENOENT)
		return (-1);
	return (0);
}

/*
 * Pin name for connecting: a socket (never a symlink), owned by owner, one
 * link.  Returns 1 with an O_PATH fd in *pinfd and in addr the address
 * that reaches exactly that inode; 0 while name does not exist; -1 with
 * cause when it is refused.  Without /proc the path itself is used, only
 * when the directory is ours (workers running as our own user).
 */
int
sockdir_pin(const struct sockdir *d, const char *name, uid_t owner, int *pinfd,
    struct sn_addr *addr, char **cause)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&addr->ss;
	struct stat         st;
	const char         *why = NULL;
	int                 fd, n;

	if ((fd = openat(d->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return (0);
		*cause = xasprintf("%s/%s: %s", d->path, name, strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == -1)
		why = strerror(errno);
	else if (S_ISLNK(st.st_mode))
		why = "a symbolic link, not a socket: refusing it";
	else if (!S_ISSOCK(st.st_mode))
		why = "not a socket: refusing it";
	else if (st.st_uid != owner) {
		*cause = xasprintf(
		    "%s/%s is owned by uid %lu, not the worker's uid %lu: refusing it",
		    d->path, name, (unsigned long)st.st_uid,
		    (unsigned long)owner);
		close(fd);
		return (-1);
	} else if (st.st_nlink != 1)
		why = "a socket with other links: refusing it";
	else if (!d->proc && d->owner != geteuid())
		why =
		    "in a directory of another user, and /proc is not mounted: socketnautd connects to it only through /proc/self/fd";
	if (why != NULL) {
		*cause = xasprintf("%s/%s is %s", d->path, name, why);
		close(fd);
		return (-1);
	}
	memset(addr, 0, sizeof *addr);
	sun->sun_family = AF_UNIX;
	if (d->proc)
		n = snprintf(sun->sun_path, sizeof sun->sun_path,
		    "/proc/self/fd/%d", fd);
	else
		n = snprintf(sun->sun_path, sizeof sun->sun_path, "%s/%s",
		    d->path, name);
	if (n < 0 || (size_t)n >= sizeof sun->sun_path) {
		*cause = xasprintf("%s/%s: path too long", d->path, name);
		close(fd);
		return (-1);
	}
	addr->len = sizeof *sun;
	*pinfd = fd;
	return (1);
}

/* Hand a socket the master bound (activation) to the workers' user. */
int
sockdir_pin_give(int pinfd, uid_t uid, gid_t gid)
{
	return (fchownat(pinfd, "", uid, gid, AT_EMPTY_PATH));
}
