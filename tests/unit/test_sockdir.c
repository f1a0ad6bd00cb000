/* Runtime and socket directories: real directories, sockets and symlinks. */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sockdir.h"
#include "unit.h"

#define NOBODY 65534

static char tmp[64];

static void
setup(void)
{
	snprintf(tmp, sizeof tmp, "/tmp/sn-sockdir-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static void
teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
	(void)!system(cmd);
}

static char *
at(const char *rel)
{
	return (xasprintf("%s/%s", tmp, rel));
}

/* A listening Unix socket at path. */
static int
listener(const char *path)
{
	struct sockaddr_un sun;
	int                fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	return (fd);
}

/* Did a connect to addr land on the listener lfd? */
static int
lands_on(const struct sn_addr *a, int lfd)
{
	int fd, cfd, ok;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == -1) {
		close(fd);
		return (0);
	}
	cfd = accept(lfd, NULL, NULL);
	ok = cfd != -1;
	if (cfd != -1)
		close(cfd);
	close(fd);
	return (ok);
}

static void
assert_cause(char *cause, const char *want)
{
	ck_assert_ptr_nonnull(cause);
	ck_assert_msg(
	    strstr(cause, want) != NULL, "no \"%s\" in \"%s\"", want, cause);
	free(cause);
}

START_TEST(runtime_and_service_dirs_are_created_private)
{
	struct sockdir *d;
	struct stat     st;
	char           *run = at("a/b/run"), *svc = at("a/b/run/web"), *cause;

	ck_assert_int_eq(sockdir_check(run, &cause), 0);
	d = sockdir_open(run, "web", 0, 0, 0, 1, &cause);
	ck_assert_ptr_nonnull(d);
	ck_assert_str_eq(sockdir_path(d), svc);
	ck_assert_int_eq(stat(svc, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0700);
	ck_assert_int_eq(st.st_uid, geteuid());
	ck_assert_int_eq(sockdir_check(run, &cause), 0);
	sockdir_remove(d);
	sockdir_unref(d);
	ck_assert_int_eq(stat(svc, &st), -1);
	free(run);
	free(svc);
}
END_TEST

START_TEST(writable_runtime_dir_is_refused_with_owner_and_mode)
{
	char *run = at("run"), *cause = NULL;

	ck_assert_int_eq(mkdir(run, 0700), 0);
	ck_assert_int_eq(chmod(run, 0777), 0);
	ck_assert_int_eq(sockdir_check(run, &cause), -1);
	assert_cause(cause, "with mode 0777");
	cause = NULL;
	ck_assert_ptr_null(sockdir_open(run, "web", 0, 0, 0, 1, &cause));
	assert_cause(cause, "writable by nobody else");
	ck_assert_int_eq(chmod(run, 01777), 0); /* sticky is not enough */
	ck_assert_int_eq(sockdir_check(run, &cause), -1);
	assert_cause(cause, "mode 1777");
	free(run);
}
END_TEST

START_TEST(foreign_runtime_dir_is_refused)
{
	char *run = at("run"), *cause = NULL;

	if (geteuid() != 0)
		return;
	ck_assert_int_eq(mkdir(run, 0755), 0);
	ck_assert_int_eq(chown(run, NOBODY, NOBODY), 0);
	ck_assert_int_eq(sockdir_check(run, &cause), -1);
	assert_cause(cause, "is owned by uid 65534");
	free(run);
}
END_TEST

START_TEST(writable_ancestor_is_refused_unless_sticky)
{
	char *top = at("open"), *run = at("open/run"), *cause = NULL;

	ck_assert_int_eq(mkdir(top, 0700), 0);
	ck_assert_int_eq(chmod(top, 0777), 0);
	ck_assert_int_eq(sockdir_check(run, &cause), -1);
	assert_cause(cause, "others could rename");
	ck_assert_int_eq(chmod(top, 01777), 0);
	ck_assert_int_eq(sockdir_check(run, &cause), 0);
	free(top);
	free(run);
}
END_TEST

START_TEST(symlinked_runtime_dir_is_refused_trusted_ancestor_link_followed)
{
	struct sockdir *d;
	char *real = at("real"), *link = at("link"), *run = at("link/run");
	char *cause = NULL;

	ck_assert_int_eq(mkdir(real, 0700), 0);
	ck_assert_int_eq(symlink(real, link), 0);
	/* The last component a symlink: refused. */
	ck_assert_int_eq(sockdir_check(link, &cause), -1);
	assert_cause(cause, "symbolic link");
	/* Above it, a link we own is followed, and checked where it leads. */
	d = sockdir_open(run, "web", 0, 0, 0, 0, &cause);
	ck_assert_ptr_nonnull(d);
	sockdir_unref(d);
	ck_assert_int_eq(chmod(real, 0777), 0);
	ck_assert_int_eq(sockdir_check(run, &cause), -1);
	assert_cause(cause, "real is owned by");
	free(real);
	free(link);
	free(run);
}
END_TEST

START_TEST(symlinked_service_dir_is_refused_and_target_untouched)
{
	struct stat st;
	char       *run = at("run"), *other = at("other"), *svc = at("run/web");
	char       *sock = at("other/x.sock"), *file = at("other/f.sock");
	char       *cause = NULL;
	int         lfd, fd;

	ck_assert_int_eq(mkdir(run, 0755), 0);
	ck_assert_int_eq(mkdir(other, 0750), 0);
	lfd = listener(sock);
	ck_assert_int_ne(fd = open(file, O_CREAT | O_WRONLY, 0644), -1);
	close(fd);
	ck_assert_int_eq(symlink(other, svc), 0);
	ck_assert_ptr_null(
	    sockdir_open(run, "web", 1, NOBODY, NOBODY, 1, &cause));
	assert_cause(cause, "symbolic link");
	ck_assert_int_eq(stat(other, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0750);
	ck_assert_int_eq(st.st_uid, geteuid());
	ck_assert_int_eq(lstat(sock, &st), 0);
	ck_assert_int_eq(lstat(file, &st), 0);
	close(lfd);
	free(run);
	free(other);
	free(svc);
	free(sock);
	free(file);
}
END_TEST

START_TEST(foreign_service_dir_is_refused_unless_the_workers)
{
	struct sockdir *d;
	struct stat     st;
	char           *run = at("run"), *svc = at("run/web"), *cause = NULL;

	if (geteuid() != 0)
		return;
	ck_assert_int_eq(mkdir(run, 0755), 0);
	ck_assert_int_eq(mkdir(svc, 0777), 0);
	ck_assert_int_eq(chown(svc, NOBODY, NOBODY), 0);
	ck_assert_ptr_null(sockdir_open(run, "web", 0, 0, 0, 0, &cause));
	assert_cause(cause, "is owned by uid 65534");
	d = sockdir_open(run, "web", 1, NOBODY, NOBODY, 0, &cause);
	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(stat(svc, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0700);
	ck_assert_int_eq(st.st_uid, NOBODY);
	sockdir_unref(d);
	free(run);
	free(svc);
}
END_TEST

START_TEST(clean_removes_stale_sockets_only)
{
	struct sockdir *d;
	struct stat     st;
	char           *run = at("run"), *svc = at("run/web");
	char           *s = at("run/web/1.sock"), *f = at("run/web/2.sock");
	char           *l = at("run/web/3.sock"), *cause;
	int             fd;

	ck_assert_int_eq(mkdir(run, 0755), 0);
	ck_assert_int_eq(mkdir(svc, 0700), 0);
	close(listener(s));
	ck_assert_int_ne(fd = open(f, O_CREAT | O_WRONLY, 0644), -1);
	close(fd);
	ck_assert_int_eq(symlink("/etc/hostname", l), 0);
	d = sockdir_open(run, "web", 0, 0, 0, 1, &cause);
	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(lstat(s, &st), -1);
	ck_assert_int_eq(lstat(f, &st), 0);
	ck_assert_int_eq(lstat(l, &st), 0);
	ck_assert_int_eq(sockdir_unlink(d, "2.sock"), 0);
	ck_assert_int_eq(sockdir_unlink(d, "2.sock"), 0); /* gone is fine */
	ck_assert_int_eq(lstat(f, &st), -1);
	sockdir_unref(d);
	free(run);
	free(svc);
	free(s);
	free(f);
	free(l);
}
END_TEST

START_TEST(pin_reaches_the_socket_it_checked_never_a_symlink)
{
	struct sockdir *d;
	struct sn_addr  a;
	char           *run = at("run"), *p = at("run/web/1.sock");
	char           *evil = at("evil.sock"), *f = at("run/web/f.sock");
	char           *cause = NULL;
	int             pin = -1, lfd, efd, fd;

	d = sockdir_open(run, "web", 0, 0, 0, 0, &cause);
	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(
	    sockdir_pin(d, "1.sock", geteuid(), &pin, &a, &cause), 0);
	efd = listener(evil);
	/* A symlink where the socket should be, even to a real socket. */
	ck_assert_int_eq(symlink(evil, p), 0);
	ck_assert_int_eq(
	    sockdir_pin(d, "1.sock", geteuid(), &pin, &a, &cause), -1);
	assert_cause(cause, "symbolic link, not a socket");
	ck_assert_int_eq(unlink(p), 0);
	ck_assert_int_ne(fd = open(f, O_CREAT | O_WRONLY, 0644), -1);
	close(fd);
	ck_assert_int_eq(
	    sockdir_pin(d, "f.sock", geteuid(), &pin, &a, &cause), -1);
	assert_cause(cause, "not a socket");
	/* A real socket: pinned; replacing it afterwards changes nothing. */
	lfd = listener(p);
	ck_assert_int_eq(
	    sockdir_pin(d, "1.sock", geteuid(), &pin, &a, &cause), 1);
	ck_assert_int_ne(pin, -1);
	ck_assert(lands_on(&a, lfd));
	ck_assert_int_eq(unlink(p), 0);
	ck_assert_int_eq(symlink(evil, p), 0);
	ck_assert(lands_on(&a, lfd));
	ck_assert(!lands_on(&a, efd));
	close(pin);
	/* Someone else's socket, even a real one. */
	if (geteuid() == 0) {
		ck_assert_int_eq(unlink(p), 0);
		close(lfd);
		lfd = listener(p);
		ck_assert_int_eq(chown(p, NOBODY, NOBODY), 0);
		ck_assert_int_eq(
		    sockdir_pin(d, "1.sock", geteuid(), &pin, &a, &cause), -1);
		assert_cause(cause, "owned by uid 65534");
		ck_assert_int_eq(
		    sockdir_pin(d, "1.sock", NOBODY, &pin, &a, &cause), 1);
		close(pin);
	}
	close(lfd);
	close(efd);
	sockdir_unref(d);
	free(run);
	free(p);
	free(evil);
	free(f);
}
END_TEST

START_TEST(pin_of_a_bound_socket_can_be_handed_over)
{
	struct sockdir *d;
	struct sn_addr  a;
	struct stat     st;
	char           *run = at("run"), *p = at("run/web/1.sock"), *cause;
	int             pin, lfd;

	if (geteuid() != 0)
		return;
	d = sockdir_open(run, "web", 1, NOBODY, NOBODY, 0, &cause);
	ck_assert_ptr_nonnull(d);
	lfd = listener(p);
	ck_assert_int_eq(sockdir_pin(d, "1.sock", 0, &pin, &a, &cause), 1);
	ck_assert_int_eq(sockdir_pin_give(pin, NOBODY, NOBODY), 0);
	ck_assert_int_eq(lstat(p, &st), 0);
	ck_assert_int_eq(st.st_uid, NOBODY);
	ck_assert(lands_on(&a, lfd));
	close(pin);
	close(lfd);
	sockdir_unref(d);
	free(run);
	free(p);
}
END_TEST

START_TEST(child_names_are_direct_children_only)
{
	struct sockdir *d;
	char           *run = at("run"), *cause, *path;

	d = sockdir_open(run, "web", 0, 0, 0, 0, &cause);
	ck_assert_ptr_nonnull(d);
	path = xasprintf("%s/x.sock", sockdir_path(d));
	ck_assert_str_eq(sockdir_child(d, path), "x.sock");
	free(path);
	path = xasprintf("%s/../x.sock", sockdir_path(d));
	ck_assert_ptr_null(sockdir_child(d, path));
	free(path);
	path = xasprintf("%s/a/x.sock", sockdir_path(d));
	ck_assert_ptr_null(sockdir_child(d, path));
	free(path);
	path = xasprintf("%s/..", sockdir_path(d));
	ck_assert_ptr_null(sockdir_child(d, path));
	free(path);
	path = xasprintf("%s/", sockdir_path(d));
	ck_assert_ptr_null(sockdir_child(d, path));
	free(path);
	path = xasprintf("%sx/y.sock", sockdir_path(d));
	ck_assert_ptr_null(sockdir_child(d, path));
	free(path);
	ck_assert_ptr_null(sockdir_child(d, "/tmp/x.sock"));
	sockdir_unref(d);
	free(run);
}
END_TEST

Suite *
sockdir_suite(void)
{
	Suite *s = suite_create("sockdir");
	TCase *tc = tcase_create("sockdir");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, runtime_and_service_dirs_are_created_private);
	tcase_add_test(tc, writable_runtime_dir_is_refused_with_owner_and_mode);
	tcase_add_test(tc, foreign_runtime_dir_is_refused);
	tcase_add_test(tc, writable_ancestor_is_refused_unless_sticky);
	tcase_add_test(tc,
	    symlinked_runtime_dir_is_refused_trusted_ancestor_link_followed);
	tcase_add_test(
	    tc, symlinked_service_dir_is_refused_and_target_untouched);
	tcase_add_test(tc, foreign_service_dir_is_refused_unless_the_workers);
	tcase_add_test(tc, clean_removes_stale_sockets_only);
	tcase_add_test(tc, pin_reaches_the_socket_it_checked_never_a_symlink);
	tcase_add_test(tc, pin_of_a_bound_socket_can_be_handed_over);
	tcase_add_test(tc, child_names_are_direct_children_only);
	suite_add_tcase(s, tc);
	return (s);
}
