/* Whose listener takes connections to an address: real sockets, sock_diag. */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "tcpowner.h"
#include "unit.h"

/* A socket on 127.0.0.1 port 0 (listening if asked); a gets its address. */
static int
loopback(struct sn_addr *a, int listening)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
	int                 fd;

	memset(a, 0, sizeof *a);
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->len = sizeof *sin;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)sin, a->len), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)sin, &a->len), 0);
	if (listening)
		ck_assert_int_eq(listen(fd, 1), 0);
	return (fd);
}

START_TEST(lookup_finds_our_listener_with_its_uid_and_inode)
{
	struct tcpowner o;
	struct sn_addr  a;
	struct stat     st;
	char           *cause = NULL;
	int             fd = loopback(&a, 1);

	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(tcpowner_lookup(&a, &o, &cause), 1);
	ck_assert_uint_eq(o.uid, geteuid());
	ck_assert_uint_eq(o.inode, (uint32_t)st.st_ino);
	ck_assert_int_eq(tcpowner_held(getpid(), -1, o.inode), 1);
	close(fd);
}
END_TEST

START_TEST(lookup_of_a_port_nobody_listens_on_finds_nothing)
{
	struct tcpowner o;
	struct sn_addr  a;
	char           *cause = NULL;
	int             fd = loopback(&a, 0);

	/* Bound, not listening: no connection would reach it. */
	ck_assert_int_eq(tcpowner_lookup(&a, &o, &cause), 0);
	ck_assert_ptr_null(cause);
	close(fd);
}
END_TEST

/* A child that listens and tells where, or one that only waits. */
static pid_t
child(int listening, struct sn_addr *a)
{
	int   p[2];
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	if ((pid = fork()) == 0) {
		if (listening)
			(void)loopback(a, 1);
		(void)!write(p[1], a, sizeof *a);
		pause();
		_exit(0);
	}
	ck_assert_int_eq(read(p[0], a, sizeof *a), (ssize_t)sizeof *a);
	close(p[0]);
	close(p[1]);
	return (pid);
}

START_TEST(a_socket_is_held_by_its_process_and_ancestors_not_siblings)
{
	struct tcpowner o;
	struct sn_addr  a, none;
	char           *cause = NULL;
	pid_t           holder, sibling;
	int             status;

	holder = child(1, &a);
	sibling = child(0, &none);
	ck_assert_int_eq(tcpowner_lookup(&a, &o, &cause), 1);
	ck_assert_int_eq(tcpowner_held(holder, -1, o.inode), 1);
	ck_assert_int_eq(tcpowner_held(getpid(), -1, o.inode), 1);
	ck_assert_int_eq(tcpowner_held(sibling, -1, o.inode), 0);
	kill(holder, SIGKILL);
	kill(sibling, SIGKILL);
	waitpid(holder, &status, 0);
	waitpid(sibling, &status, 0);
}
END_TEST

Suite *
tcpowner_suite(void)
{
	Suite *s = suite_create("tcpowner");
	TCase *tc = tcase_create("tcpowner");

	tcase_add_test(tc, lookup_finds_our_listener_with_its_uid_and_inode);
	tcase_add_test(tc, lookup_of_a_port_nobody_listens_on_finds_nothing);
	tcase_add_test(
	    tc, a_socket_is_held_by_its_process_and_ancestors_not_siblings);
	suite_add_tcase(s, tc);
	return (s);
}
