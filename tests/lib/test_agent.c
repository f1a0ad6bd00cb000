/*
 * libsocketnaut tests (check).  Each test plays the master on the other end
 * of a real socketpair: it reads the frames the library writes and compares
 * them with the test vectors of the protocol, and writes replies, drains
 * and garbage to it.  Peer keys are checked on real loopback TCP and Unix
 * connections.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "socketnaut.h"
#include "socketnaut/proto.h"

#define QUERY_VECTOR                                                           \
	"\x01\x02\x00\x18"                                                     \
	"id=1\nkey=127.0.0.1:54321"

static struct sn_agent *agent;
static int              master = -1;

/* Callback records. */
static int                 drains;
static int                 infos;
static uint32_t            info_id;
static int                 info_found;
static struct sn_peer_info info_last;
static int                 close_in_callback;
static int                 query_in_callback;

static void
on_peer_info(
    struct sn_agent *a, uint32_t id, const struct sn_peer_info *pi, void *arg)
{
	ck_assert_ptr_eq(arg, &infos);
	infos++;
	info_id = id;
	info_found = pi != NULL;
	if (pi != NULL)
		info_last = *pi;
	if (close_in_callback)
		sn_agent_close(a);
	if (query_in_callback)
		ck_assert_int_eq(sn_agent_log(a, 6, "from a callback"), 0);
}

static void
on_drain(struct sn_agent *a, void *arg)
{
	ck_assert_ptr_eq(arg, &infos);
	(void)a;
	drains++;
	if (close_in_callback)
		sn_agent_close(a);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/*
 * Open an agent on one end of a fresh socketpair; the test keeps the other,
 * past the HELLO the agent sends on opening.
 */
static struct sn_agent *
agent_pair(int *mfd)
{
	struct sn_agent *a;
	int              sv[2];
	char             num[16], hello[8];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	snprintf(num, sizeof num, "%d", sv[1]);
	setenv("SOCKETNAUT_CONTROL_FD", num, 1);
	a = sn_agent_open();
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(sn_agent_fd(a), sv[1]);
	ck_assert_int_eq(recv(sv[0], hello, sizeof hello, MSG_DONTWAIT), 4);
	ck_assert_mem_eq(hello, "\x01\x05\x00\x00", 4);
	*mfd = sv[0];
	return (a);
}

static void
setup(void)
{
	drains = infos = 0;
	info_id = 0;
	info_found = -1;
	close_in_callback = query_in_callback = 0;
	memset(&info_last, 0, sizeof info_last);
	agent = agent_pair(&master);
	sn_agent_set_callbacks(agent, on_peer_info, on_drain, &infos);
}

static void
teardown(void)
{
	sn_agent_close(agent);
	agent = NULL;
	if (master != -1)
		close(master);
	master = -1;
	unsetenv("SOCKETNAUT_CONTROL_FD");
}

/* Read exactly len bytes from fd within 2 s. */
static void
read_exact(int fd, void *buf, size_t len)
{
	struct pollfd  pfd = { .fd = fd, .events = POLLIN };
	unsigned char *p = buf;
	ssize_t        n;
	int64_t        deadline = now_ms() + 2000;

	while (len > 0) {
		ck_assert_msg(now_ms() < deadline, "timed out reading");
		ck_assert_int_ge(poll(&pfd, 1, 100), 0);
		n = recv(fd, p, len, MSG_DONTWAIT);
		if (n == -1 && errno == EAGAIN)
			continue;
		ck_assert_int_gt(n, 0);
		p += n;
		len -= (size_t)n;
	}
}

/* One frame from the master's end: header and payload, into buf. */
static size_t
read_frame(int fd, unsigned char *buf)
{
	size_t plen;

	read_exact(fd, buf, SN_PROTO_HDR);
	plen = (size_t)buf[2] << 8 | buf[3];
	ck_assert_uint_le(plen, SN_PROTO_MAX);
	read_exact(fd, buf + SN_PROTO_HDR, plen);
	return (SN_PROTO_HDR + plen);
}

static void
expect_frame(int fd, const void *want, size_t len)
{
	unsigned char buf[SN_PROTO_HDR + SN_PROTO_MAX];
	size_t        n;

	n = read_frame(fd, buf);
	ck_assert_uint_eq(n, len);
	ck_assert_mem_eq(buf, want, len);
}

static void
nothing_to_read(int fd)
{
	char c;

	ck_assert_int_eq(recv(fd, &c, 1, MSG_DONTWAIT), -1);
	ck_assert_int_eq(errno, EAGAIN);
}

static void
send_bytes(int fd, const void *p, size_t len)
{
	ck_assert_int_eq(send(fd, p, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void
send_frame(int fd, uint8_t type, const char *payload)
{
	unsigned char buf[SN_PROTO_HDR + SN_PROTO_MAX];
	ssize_t       n;

	n = sn_proto_frame(
	    buf, sizeof buf, type, payload, payload ? strlen(payload) : 0);
	ck_assert_int_gt(n, 0);
	send_bytes(fd, buf, (size_t)n);
}

/* A connected loopback TCP pair; *acc is the accepted end. */
static int
tcp_pair(int family, int client_port, int *acc)
{
	struct sockaddr_storage ss;
	struct sockaddr_in     *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6    *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t               len;
	int                     l, c, one = 1;

	memset(&ss, 0, sizeof ss);
	ss.ss_family = family;
	if (family == AF_INET) {
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof *sin;
	} else {
		sin6->sin6_addr = in6addr_loopback;
		len = sizeof *sin6;
	}
	if ((l = socket(family, SOCK_STREAM, 0)) == -1)
		return (-1);
	if (bind(l, (struct sockaddr *)&ss, len) == -1 || listen(l, 4) == -1 ||
	    getsockname(l, (struct sockaddr *)&ss, &len) == -1) {
		close(l);
		return (-1);
	}
	c = socket(family, SOCK_STREAM, 0);
	ck_assert_int_ge(c, 0);
	if (client_port != 0) {
		struct sockaddr_storage me = ss;

		setsockopt(c, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (family == AF_INET)
			((struct sockaddr_in *)&me)->sin_port =
			    htons((uint16_t)client_port);
		else
			((struct sockaddr_in6 *)&me)->sin6_port =
			    htons((uint16_t)client_port);
		if (bind(c, (struct sockaddr *)&me, len) == -1) {
			close(c);
			close(l);
			return (-1);
		}
	}
	ck_assert_int_eq(connect(c, (struct sockaddr *)&ss, len), 0);
	*acc = accept(l, NULL, NULL);
	ck_assert_int_ge(*acc, 0);
	close(l);
	return (c);
}

static int
client_port(int c)
{
	struct sockaddr_storage ss;
	socklen_t               len = sizeof ss;

	ck_assert_int_eq(getsockname(c, (struct sockaddr *)&ss, &len), 0);
	if (ss.ss_family == AF_INET)
		return (ntohs(((struct sockaddr_in *)&ss)->sin_port));
	return (ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
}

/* ---- opening ---------------------------------------------------------- */

START_TEST(test_open_without_variable_is_enoent)
{
	unsetenv("SOCKETNAUT_CONTROL_FD");
	errno = 0;
	ck_assert_ptr_null(sn_agent_open());
	ck_assert_int_eq(errno, ENOENT);
	setenv("SOCKETNAUT_CONTROL_FD", "", 1);
	ck_assert_ptr_null(sn_agent_open());
	ck_assert_int_eq(errno, ENOENT);
}
END_TEST

START_TEST(test_open_rejects_what_is_not_a_control_socket)
{
	int  fd, sv[2];
	char num[16];

	setenv("SOCKETNAUT_CONTROL_FD", "x3", 1);
	ck_assert_ptr_null(sn_agent_open());
	ck_assert_int_eq(errno, EINVAL);
	setenv("SOCKETNAUT_CONTROL_FD", "-1", 1);
	ck_assert_ptr_null(sn_agent_open());
	ck_assert_int_eq(errno, EINVAL);
	setenv("SOCKETNAUT_CONTROL_FD", "3 ", 1);
	ck_assert_ptr_null(sn_agent_open());
	ck_assert_int_eq(errno, EINVAL);
	setenv("SOCKETNAUT_CONTROL_FD", "99999", 1);
	ck_assert_ptr_null(sn_agent_open());
	ck_assert_int_eq(errno, EBADF);

	fd = open("/dev/null", O_RDWR);
	snprintf(num, sizeof num, "%d", fd);
	setenv("SOCKETNAUT_CONTROL_FD", num, 1);
	ck_assert_ptr_null(sn_agent_open());
	ck_assert_int_eq(errno, ENOTSOCK);
	close(fd);

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
	snprintf(num, sizeof num, "%d", sv[1]);
	setenv("SOCKETNAUT_CONTROL_FD", num, 1);
	ck_assert_ptr_null(sn_agent_open());
	ck_assert_int_eq(errno, EPROTOTYPE);
	close(sv[0]);
	close(sv[1]);
	unsetenv("SOCKETNAUT_CONTROL_FD");
}
END_TEST

START_TEST(test_open_makes_the_fd_nonblocking_and_cloexec)
{
	int fd = sn_agent_fd(agent);

	ck_assert_int_ne(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_int_eq(sn_agent_want_write(agent), 0);
	ck_assert_int_eq(sn_agent_drain_requested(agent), 0);
	/* Nothing came: processing reads nothing and does not block. */
	ck_assert_int_eq(sn_agent_process(agent), 0);
}
END_TEST

START_TEST(test_null_agent_is_a_no_op)
{
	struct sn_peer_info pi;
	uint32_t            id;

	ck_assert_int_eq(sn_agent_fd(NULL), -1);
	ck_assert_int_eq(sn_agent_ready(NULL, NULL), 0);
	ck_assert_int_eq(sn_agent_ready(NULL, "127.0.0.1:80"), 0);
	ck_assert_int_eq(sn_agent_ready_port(NULL, 80), 0);
	ck_assert_int_eq(sn_agent_log(NULL, 6, "x %d", 1), 0);
	ck_assert_int_eq(sn_agent_drained(NULL), 0);
	ck_assert_int_eq(sn_agent_process(NULL), 0);
	ck_assert_int_eq(sn_agent_flush(NULL, 0), 0);
	ck_assert_int_eq(sn_agent_want_write(NULL), 0);
	ck_assert_int_eq(sn_agent_drain_requested(NULL), 0);
	ck_assert_int_eq(sn_agent_peer_query(NULL, 0, &id), -1);
	ck_assert_int_eq(errno, ENOTCONN);
	ck_assert_int_eq(sn_agent_peer_info(NULL, 0, &pi, 0), -1);
	ck_assert_int_eq(errno, ENOTCONN);
	sn_agent_set_callbacks(NULL, NULL, NULL, NULL);
	sn_agent_close(NULL);
}
END_TEST

/* ---- frames the worker writes: the test vectors ----------------------- */

START_TEST(test_ready_empty_is_the_vector)
{
	ck_assert_int_eq(sn_agent_ready(agent, NULL), 0);
	expect_frame(master, "\x01\x01\x00\x00", 4);
	nothing_to_read(master);
}
END_TEST

START_TEST(test_ready_port_is_the_vector)
{
	ck_assert_int_eq(sn_agent_ready_port(agent, 8080), 0);
	expect_frame(master,
	    "\x01\x01\x00\x09"
	    "port=8080",
	    13);
	ck_assert_int_eq(sn_agent_ready_port(agent, 0), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(sn_agent_ready_port(agent, 65536), -1);
	ck_assert_int_eq(errno, EINVAL);
	nothing_to_read(master);
}
END_TEST

START_TEST(test_ready_address_is_one_field)
{
	ck_assert_int_eq(sn_agent_ready(agent, "127.0.0.1:8080"), 0);
	expect_frame(master,
	    "\x01\x01\x00\x16"
	    "address=127.0.0.1:8080",
	    26);
	ck_assert_int_eq(sn_agent_ready(agent, "unix:/run/x.sock"), 0);
	expect_frame(master,
	    "\x01\x01\x00\x18"
	    "address=unix:/run/x.sock",
	    28);
	ck_assert_int_eq(sn_agent_ready(agent, "1.2.3.4:5\nport=6"), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(sn_agent_ready(agent, ""), -1);
	ck_assert_int_eq(errno, EINVAL);
	nothing_to_read(master);
}
END_TEST

START_TEST(test_log_is_the_vector)
{
	ck_assert_int_eq(sn_agent_log(agent, 6, "%s", "hi"), 0);
	expect_frame(master,
	    "\x01\x03\x00\x0f"
	    "level=6\ntext=hi",
	    19);
	ck_assert_int_eq(sn_agent_log(agent, 8, "no"), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(sn_agent_log(agent, -1, "no"), -1);
	ck_assert_int_eq(errno, EINVAL);
	nothing_to_read(master);
}
END_TEST

START_TEST(test_log_text_may_hold_newlines_and_is_cut_to_one_frame)
{
	unsigned char buf[SN_PROTO_HDR + SN_PROTO_MAX];
	struct sn_msg m;
	const char   *cause;
	char         *big;
	size_t        n;

	ck_assert_int_eq(sn_agent_log(agent, 3, "a\nb=c\x01"), 0);
	expect_frame(master,
	    "\x01\x03\x00\x13"
	    "level=3\ntext=a\nb=c\x01",
	    23);

	big = malloc(10000);
	memset(big, 'x', 9999);
	big[9999] = '\0';
	ck_assert_int_eq(sn_agent_log(agent, 7, "%s", big), 0);
	n = read_frame(master, buf);
	ck_assert_uint_eq(n, SN_PROTO_HDR + SN_PROTO_MAX);
	ck_assert_int_eq(sn_proto_parse(buf, n, &m, &cause), (ssize_t)n);
	ck_assert_mem_eq(m.payload, "level=7\ntext=xxx", 16);
	ck_assert_int_eq(m.payload[m.len - 1], 'x');
	free(big);
}
END_TEST

START_TEST(test_drained_is_the_vector)
{
	ck_assert_int_eq(sn_agent_drained(agent), 0);
	expect_frame(master, "\x01\x04\x00\x00", 4);
}
END_TEST

/* Send one frame from the master's end with fd attached (-1: none). */
static void
send_with_fd(int mfd, uint8_t type, const char *payload, int fd)
{
	unsigned char   frame[SN_PROTO_HDR + SN_PROTO_MAX];
	char            cbuf[CMSG_SPACE(sizeof(int))];
	struct msghdr   msg;
	struct iovec    iov;
	struct cmsghdr *cm;
	ssize_t         n;

	n = sn_proto_frame(frame, sizeof frame, type, payload, strlen(payload));
	ck_assert_int_gt(n, 0);
	memset(&msg, 0, sizeof msg);
	memset(cbuf, 0, sizeof cbuf);
	iov.iov_base = frame;
	iov.iov_len = (size_t)n;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fd != -1) {
		msg.msg_control = cbuf;
		msg.msg_controllen = sizeof cbuf;
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	}
	ck_assert_int_eq(sendmsg(mfd, &msg, 0), n);
}

#define HANDOFF_FIELDS                                                         \
	"remote_address=192.0.2.7\nremote_family=IPv4\nremote_port=51234\n"    \
	"local_address=::1\nlocal_family=IPv6\nlocal_port=8080"

START_TEST(test_handed_fds_are_accepted_in_order_with_their_peers)
{
	struct sn_peer_info pi, asked;
	uint32_t            id;
	int                 sp[2], sq[2], fd1, fd2;
	char                c;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sq), 0);
	ck_assert_int_eq(sn_agent_accept(agent, &pi, &id), -1);
	ck_assert_int_eq(errno, EAGAIN);
	send_with_fd(master, SN_MSG_HANDOFF, "id=7\n" HANDOFF_FIELDS, sp[1]);
	send_with_fd(master, SN_MSG_HANDOFF, "id=8\n" HANDOFF_FIELDS, sq[1]);
	close(sp[1]);
	close(sq[1]);
	fd1 = sn_agent_accept(agent, &pi, &id);
	ck_assert_int_ge(fd1, 0);
	ck_assert_uint_eq(id, 7);
	ck_assert_str_eq(pi.remote.address, "192.0.2.7");
	ck_assert_int_eq(pi.remote.family, AF_INET);
	ck_assert_int_eq(pi.remote.port, 51234);
	ck_assert_str_eq(pi.local.address, "::1");
	ck_assert_int_eq(pi.local.family, AF_INET6);
	ck_assert_int_eq(pi.local.port, 8080);
	ck_assert_int_eq(fcntl(fd1, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	/* The first fd is the first socket sent. */
	ck_assert_int_eq(write(sp[0], "a", 1), 1);
	ck_assert_int_eq(read(fd1, &c, 1), 1);
	/* Peer info for a handed fd: at once, the facts it came with. */
	ck_assert_int_eq(sn_agent_peer_info(agent, fd1, &asked, 0), 0);
	ck_assert_str_eq(asked.remote.address, "192.0.2.7");
	fd2 = sn_agent_accept(agent, NULL, &id);
	ck_assert_uint_eq(id, 8);
	ck_assert_int_eq(write(sq[0], "b", 1), 1);
	ck_assert_int_eq(read(fd2, &c, 1), 1);
	ck_assert_int_eq(c, 'b');
	close(fd1);
	ck_assert_int_eq(sn_agent_handoff_closed(agent, 7), 0);
	expect_frame(master, "\x01\x06\x00\x04id=7", 8);
	ck_assert_int_eq(sn_agent_handoff_closed(agent, 7), -1);
	ck_assert_int_eq(errno, ENOENT);
	close(fd2);
	close(sp[0]);
	close(sq[0]);
}
END_TEST

START_TEST(test_handoff_without_a_descriptor_is_rejected)
{
	struct sn_peer_info pi;

	send_with_fd(master, SN_MSG_HANDOFF, "id=7\n" HANDOFF_FIELDS, -1);
	ck_assert_int_eq(sn_agent_accept(agent, &pi, NULL), -1);
	ck_assert_int_eq(errno, EPROTO);
}
END_TEST

START_TEST(test_handoff_with_bad_fields_is_rejected_and_its_fd_closed)
{
	int sp[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	send_with_fd(master, SN_MSG_HANDOFF, "id=0\n" HANDOFF_FIELDS, sp[1]);
	close(sp[1]);
	ck_assert_int_eq(sn_agent_accept(agent, NULL, NULL), -1);
	ck_assert_int_eq(errno, EPROTO);
	sn_agent_close(agent);
	agent = NULL;
	/* The agent held the only other end: it is closed with the agent. */
	ck_assert_int_eq(read(sp[0], &sp[1], 1), 0);
	close(sp[0]);
}
END_TEST

START_TEST(test_peer_query_on_tcp_is_the_vector)
{
	unsigned char buf[64];
	char          want[64];
	uint32_t      id = 0;
	int           c, s, n;

	/* The vector's key is 127.0.0.1:54321; any port if it is taken. */
	if ((c = tcp_pair(AF_INET, 54321, &s)) != -1) {
		ck_assert_int_eq(sn_agent_peer_query(agent, s, &id), 0);
		ck_assert_uint_eq(id, 1);
		expect_frame(master, QUERY_VECTOR, sizeof QUERY_VECTOR - 1);
	} else {
		c = tcp_pair(AF_INET, 0, &s);
		ck_assert_int_ge(c, 0);
		ck_assert_int_eq(sn_agent_peer_query(agent, s, &id), 0);
		ck_assert_uint_eq(id, 1);
		n = snprintf(want, sizeof want, "id=1\nkey=127.0.0.1:%d",
		    client_port(c));
		ck_assert_int_eq(sn_proto_frame(buf, sizeof buf,
				     SN_MSG_PEER_QUERY, want, (size_t)n),
		    n + 4);
		expect_frame(master, buf, (size_t)n + 4);
	}
	/* Several queries can be in flight: each has its own id. */
	ck_assert_int_eq(sn_agent_peer_query(agent, s, &id), 0);
	ck_assert_uint_eq(id, 2);
	n = read_frame(master, buf);
	ck_assert_mem_eq(buf + 4, "id=2\nkey=", 9);
	close(c);
	close(s);
}
END_TEST

START_TEST(test_peer_query_fails_without_a_usable_key)
{
	uint32_t      id = 99;
	int           sv[2];
	struct stat   st;
	char          want[64];
	unsigned char buf[SN_PROTO_HDR + SN_PROTO_MAX];
	size_t        n;

	ck_assert_int_eq(sn_agent_peer_query(agent, -1, &id), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_uint_eq(id, 99);
	nothing_to_read(master);
	/* An unnamed Unix peer (the master's end before hello): our inode. */
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(fstat(sv[0], &st), 0);
	ck_assert_int_eq(sn_agent_peer_query(agent, sv[0], &id), 0);
	snprintf(want, sizeof want, "id=%u\nkey=ino:%llu", (unsigned)id,
	    (unsigned long long)st.st_ino);
	n = read_frame(master, buf);
	ck_assert_uint_eq(n, SN_PROTO_HDR + strlen(want));
	ck_assert_mem_eq(buf + SN_PROTO_HDR, want, strlen(want));
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* ---- frames the master sends ------------------------------------------ */

START_TEST(test_drain_runs_the_callback)
{
	send_bytes(master, "\x01\x82\x00\x00", 4);
	ck_assert_int_eq(sn_agent_process(agent), 1);
	ck_assert_int_eq(drains, 1);
	ck_assert_int_eq(sn_agent_drain_requested(agent), 1);
	ck_assert_int_eq(sn_agent_process(agent), 0);
	ck_assert_int_eq(drains, 1);
}
END_TEST

START_TEST(test_peer_info_unknown_vector_runs_the_callback)
{
	send_bytes(master,
	    "\x01\x81\x00\x13"
	    "id=7\nstatus=unknown",
	    23);
	ck_assert_int_eq(sn_agent_process(agent), 1);
	ck_assert_int_eq(infos, 1);
	ck_assert_uint_eq(info_id, 7);
	ck_assert_int_eq(info_found, 0);
}
END_TEST

START_TEST(test_peer_info_ok_gives_every_field)
{
	send_frame(master, SN_MSG_PEER_INFO,
	    "id=3\nstatus=ok\n"
	    "remote_address=127.0.0.1\nremote_family=IPv4\nremote_port=51234\n"
	    "local_address=127.0.0.1\nlocal_family=IPv4\nlocal_port=8080");
	send_frame(master, SN_MSG_PEER_INFO,
	    "id=4294967295\nstatus=ok\n"
	    "remote_address=::1\nremote_family=IPv6\nremote_port=1\n"
	    "local_address=2001:db8::1\nlocal_family=IPv6\nlocal_port=65535");
	ck_assert_int_eq(sn_agent_process(agent), 2);
	ck_assert_int_eq(infos, 1); /* ids of blocking calls are skipped */
	ck_assert_uint_eq(info_id, 3);
	ck_assert_int_eq(info_found, 1);
	ck_assert_str_eq(info_last.remote.address, "127.0.0.1");
	ck_assert_int_eq(info_last.remote.family, AF_INET);
	ck_assert_int_eq(info_last.remote.port, 51234);
	ck_assert_str_eq(info_last.local.address, "127.0.0.1");
	ck_assert_int_eq(info_last.local.family, AF_INET);
	ck_assert_int_eq(info_last.local.port, 8080);

	send_frame(master, SN_MSG_PEER_INFO,
	    "id=12\nstatus=ok\n"
	    "remote_address=::1\nremote_family=IPv6\nremote_port=1\n"
	    "local_address=2001:db8::1\nlocal_family=IPv6\nlocal_port=65535\n"
	    "future_field=ignored");
	ck_assert_int_eq(sn_agent_process(agent), 1);
	ck_assert_uint_eq(info_id, 12);
	ck_assert_str_eq(info_last.remote.address, "::1");
	ck_assert_int_eq(info_last.remote.family, AF_INET6);
	ck_assert_int_eq(info_last.remote.port, 1);
	ck_assert_str_eq(info_last.local.address, "2001:db8::1");
	ck_assert_int_eq(info_last.local.family, AF_INET6);
	ck_assert_int_eq(info_last.local.port, 65535);
}
END_TEST

START_TEST(test_frames_arriving_byte_by_byte_are_reassembled)
{
	static const char two[] = "\x01\x81\x00\x13"
				  "id=7\nstatus=unknown"
				  "\x01\x82\x00\x00";
	size_t            i;
	int               total = 0, n;

	for (i = 0; i < sizeof two - 1; i++) {
		send_bytes(master, two + i, 1);
		n = sn_agent_process(agent);
		ck_assert_int_ge(n, 0);
		total += n;
	}
	ck_assert_int_eq(total, 2);
	ck_assert_int_eq(infos, 1);
	ck_assert_int_eq(drains, 1);
}
END_TEST

START_TEST(test_a_callback_may_call_the_library_and_close_it)
{
	query_in_callback = 1;
	send_bytes(master,
	    "\x01\x81\x00\x13"
	    "id=7\nstatus=unknown",
	    23);
	ck_assert_int_eq(sn_agent_process(agent), 1);
	expect_frame(master,
	    "\x01\x03\x00\x1c"
	    "level=6\ntext=from a callback",
	    32);

	/* Closed from its callback: freed when process returns, rest unread. */
	close_in_callback = 1;
	query_in_callback = 0;
	send_bytes(master,
	    "\x01\x82\x00\x00"
	    "\x01\x82\x00\x00",
	    8);
	ck_assert_int_eq(sn_agent_process(agent), 1);
	ck_assert_int_eq(drains, 1);
	agent = NULL;
}
END_TEST

/* ---- garbage from the master ------------------------------------------ */

struct garbage {
	const char *what;
	const char *bytes;
	size_t      len;
};

#define G(w, b)                                                                \
	{                                                                      \
		w, b, sizeof b - 1                                             \
	}
static const struct garbage garbage[] = {
	G("version 2", "\x02\x82\x00\x00"),
	G("length 4097", "\x01\x81\x10\x01"),
	G("unknown type 0x09", "\x01\x09\x00\x00"),
	G("key without =",
	    "\x01\x81\x00\x04"
	    "idx1"),
	G("worker message (ready)", "\x01\x01\x00\x00"),
	G("worker message (peer query)",
	    "\x01\x02\x00\x0e"
	    "id=1\nkey=54321"),
	G("peer info without status",
	    "\x01\x81\x00\x04"
	    "id=7"),
	G("peer info without id",
	    "\x01\x81\x00\x0e"
	    "status=unknown"),
	G("peer info with id x",
	    "\x01\x81\x00\x13"
	    "id=x\nstatus=unknown"),
	G("peer info with id too big",
	    "\x01\x81\x00\x1c"
	    "id=4294967296\nstatus=unknown"),
	G("peer info with bad status",
	    "\x01\x81\x00\x0e"
	    "id=7\nstatus=no"),
	G("peer info ok without fields",
	    "\x01\x81\x00\x0e"
	    "id=7\nstatus=ok"),
};

static void
expect_rejected(const char *bytes, size_t len, const char *what)
{
	errno = 0;
	send_bytes(master, bytes, len);
	ck_assert_msg(sn_agent_process(agent) == -1 && errno == EPROTO,
	    "%s: accepted (errno %d)", what, errno);
	ck_assert_int_eq(infos + drains, 0);
	/* The channel is dead from now on. */
	ck_assert_int_eq(sn_agent_process(agent), -1);
	ck_assert_int_eq(errno, EPROTO);
	ck_assert_int_eq(sn_agent_log(agent, 6, "x"), -1);
	ck_assert_int_eq(errno, EPROTO);
	ck_assert_int_eq(sn_agent_drained(agent), -1);
	ck_assert_int_eq(errno, EPROTO);
}

START_TEST(test_garbage_from_the_master_is_rejected)
{
	expect_rejected(garbage[_i].bytes, garbage[_i].len, garbage[_i].what);
}
END_TEST

static const char *bad_info[] = {
	"remote_address=127.0.0.1\nremote_family=IPv6\nremote_port=1\n"
	"local_address=127.0.0.1\nlocal_family=IPv4\nlocal_port=1",
	"remote_address=127.0.0.1\nremote_family=IPv5\nremote_port=1\n"
	"local_address=127.0.0.1\nlocal_family=IPv4\nlocal_port=1",
	"remote_address=127.0.0.1\nremote_family=IPv4\nremote_port=65536\n"
	"local_address=127.0.0.1\nlocal_family=IPv4\nlocal_port=1",
	"remote_address=127.0.0.1\nremote_family=IPv4\nremote_port=-1\n"
	"local_address=127.0.0.1\nlocal_family=IPv4\nlocal_port=1",
	"remote_address=127.0.0.1\nremote_family=IPv4\nremote_port=1\n"
	"local_address=localhost\nlocal_family=IPv4\nlocal_port=1",
	"remote_address=127.0.0.1\nremote_family=IPv4\nremote_port=1\n"
	"local_family=IPv4\nlocal_port=1",
	"remote_address=127.0.0.1\nremote_family=IPv4\nremote_port=1\n"
	"local_address=0000000000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000\nlocal_family=IPv4\n"
	"local_port=1",
};

START_TEST(test_malformed_peer_info_is_rejected)
{
	char buf[1024];

	snprintf(buf, sizeof buf, "id=1\nstatus=ok\n%s", bad_info[_i]);
	send_frame(master, SN_MSG_PEER_INFO, buf);
	ck_assert_int_eq(sn_agent_process(agent), -1);
	ck_assert_int_eq(errno, EPROTO);
	ck_assert_int_eq(infos, 0);
}
END_TEST

START_TEST(test_random_garbage_never_crashes)
{
	unsigned char buf[64];
	unsigned      seed = 12345;
	int           round, i, n, rc;

	for (round = 0; round < 300; round++) {
		teardown();
		setup();
		n = 1 + (int)(rand_r(&seed) % sizeof buf);
		for (i = 0; i < n; i++)
			buf[i] = (unsigned char)rand_r(&seed);
		/* Mostly plausible headers, so payloads get parsed too. */
		if (round % 2 == 0 && n >= 4) {
			buf[0] = 1;
			buf[1] = round % 4 ? 0x81 : 0x82;
			buf[2] = 0;
			buf[3] = (unsigned char)(n - 4);
		}
		send_bytes(master, buf, (size_t)n);
		rc = sn_agent_process(agent);
		ck_assert(rc >= 0 || errno == EPROTO);
	}
}
END_TEST

START_TEST(test_master_closing_the_channel_is_epipe)
{
	send_bytes(master, "\x01\x82\x00\x00", 4);
	close(master);
	master = -1;
	ck_assert_int_eq(sn_agent_process(agent), -1);
	ck_assert_int_eq(errno, EPIPE);
	ck_assert_int_eq(drains, 1);
	ck_assert_int_eq(sn_agent_log(agent, 6, "x"), -1);
	ck_assert_int_eq(errno, EPIPE);
}
END_TEST

/* ---- output that the master does not read ----------------------------- */

START_TEST(test_unread_output_is_bounded_and_flushed_later)
{
	unsigned char buf[SN_PROTO_HDR + SN_PROTO_MAX];
	struct sn_msg m;
	const char   *cause;
	char          text[SN_PROTO_MAX + 1], want[32];
	int           sent, got, rounds;
	int64_t       start = now_ms();

	for (sent = 0; sent < 1000000; sent++) {
		if (sn_agent_log(agent, 6, "line %d %0400d", sent, 0) == -1)
			break;
	}
	ck_assert_int_lt(sent, 1000000);
	ck_assert_int_eq(errno, ENOBUFS);
	ck_assert_int_lt(now_ms() - start, 2000);
	ck_assert_int_eq(sn_agent_want_write(agent), 1);
	ck_assert_int_eq(sn_agent_flush(agent, 50), -1);
	ck_assert_int_eq(errno, ETIMEDOUT);

	/* The master reads again: every line arrives, whole and in order. */
	for (got = 0, rounds = 0; got < sent && rounds < 100000; rounds++) {
		read_frame(master, buf);
		ck_assert_int_gt(
		    sn_proto_parse(buf, sizeof buf, &m, &cause), 0);
		ck_assert_int_eq(
		    sn_proto_field(&m, "text", text, sizeof text), 0);
		snprintf(want, sizeof want, "line %d ", got);
		ck_assert_mem_eq(text, want, strlen(want));
		got++;
		ck_assert_int_ge(sn_agent_process(agent), 0);
	}
	ck_assert_int_eq(got, sent);
	ck_assert_int_eq(sn_agent_want_write(agent), 0);
	nothing_to_read(master);
}
END_TEST

/* ---- the blocking query ----------------------------------------------- */

/*
 * A master in a child process: read one peer query, check its key, answer
 * with reply (where "%s" is the query's id) after delay_ms, preceded by
 * extra bytes.
 */
static pid_t
fake_master(const char *key, const char *reply, const char *extra, int delay_ms)
{
	unsigned char buf[SN_PROTO_HDR + SN_PROTO_MAX];
	char          id[32], got[64], out[1024];
	struct sn_msg m;
	const char   *cause;
	pid_t         pid;
	ssize_t       n;

	if ((pid = fork()) != 0)
		return (pid);
	n = (ssize_t)read_frame(master, buf);
	if (sn_proto_parse(buf, (size_t)n, &m, &cause) != n ||
	    m.type != SN_MSG_PEER_QUERY ||
	    sn_proto_field(&m, "id", id, sizeof id) == -1 ||
	    sn_proto_field(&m, "key", got, sizeof got) == -1 ||
	    strcmp(got, key) != 0)
		_exit(2);
	if (extra != NULL)
		send_bytes(master, extra, strlen(extra));
	usleep(delay_ms * 1000);
	if (reply != NULL) {
		snprintf(out, sizeof out, reply, id);
		send_frame(master, SN_MSG_PEER_INFO, out);
	}
	_exit(0);
}

static void
reap(pid_t pid)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "the fake master saw a wrong query (status %d)", status);
}

START_TEST(test_blocking_peer_info_returns_the_fields)
{
	struct sn_peer_info pi;
	char                key[32];
	pid_t               pid;
	int                 c, s;

	c = tcp_pair(AF_INET, 0, &s);
	snprintf(key, sizeof key, "127.0.0.1:%d", client_port(c));
	pid = fake_master(key,
	    "id=%s\nstatus=ok\n"
	    "remote_address=192.0.2.1\nremote_family=IPv4\nremote_port=40000\n"
	    "local_address=::1\nlocal_family=IPv6\nlocal_port=8443",
	    NULL, 20);
	memset(&pi, 0, sizeof pi);
	ck_assert_int_eq(sn_agent_peer_info(agent, s, &pi, 2000), 0);
	reap(pid);
	ck_assert_str_eq(pi.remote.address, "192.0.2.1");
	ck_assert_int_eq(pi.remote.family, AF_INET);
	ck_assert_int_eq(pi.remote.port, 40000);
	ck_assert_str_eq(pi.local.address, "::1");
	ck_assert_int_eq(pi.local.family, AF_INET6);
	ck_assert_int_eq(pi.local.port, 8443);
	ck_assert_int_eq(infos, 0);
	close(c);
	close(s);
}
END_TEST

START_TEST(test_blocking_peer_tls_returns_the_tls_fields)
{
	struct sn_peer_info pi;
	struct sn_peer_tls  tls;
	char                key[32];
	pid_t               pid;
	int                 c, s;

	c = tcp_pair(AF_INET, 0, &s);
	snprintf(key, sizeof key, "127.0.0.1:%d", client_port(c));
	pid = fake_master(key,
	    "id=%s\nstatus=ok\n"
	    "remote_address=192.0.2.1\nremote_family=IPv4\nremote_port=40000\n"
	    "local_address=::1\nlocal_family=IPv6\nlocal_port=8443\n"
	    "tls_version=TLSv1.3\ntls_cipher=TLS_AES_128_GCM_SHA256\n"
	    "tls_sni=a.test\ntls_alpn=h2\ntls_client_subject=CN=alice\n"
	    "tls_client_verified=1",
	    NULL, 20);
	memset(&tls, 0x55, sizeof tls);
	ck_assert_int_eq(sn_agent_peer_tls(agent, s, &pi, &tls, 2000), 0);
	reap(pid);
	ck_assert_str_eq(pi.remote.address, "192.0.2.1");
	ck_assert_str_eq(tls.version, "TLSv1.3");
	ck_assert_str_eq(tls.cipher, "TLS_AES_128_GCM_SHA256");
	ck_assert_str_eq(tls.sni, "a.test");
	ck_assert_str_eq(tls.alpn, "h2");
	ck_assert_str_eq(tls.client_subject, "CN=alice");
	ck_assert_int_eq(tls.client_verified, 1);
	close(c);
	close(s);

	/* A plain client: every field empty. */
	c = tcp_pair(AF_INET, 0, &s);
	snprintf(key, sizeof key, "127.0.0.1:%d", client_port(c));
	pid = fake_master(key,
	    "id=%s\nstatus=ok\n"
	    "remote_address=192.0.2.1\nremote_family=IPv4\nremote_port=40000\n"
	    "local_address=::1\nlocal_family=IPv6\nlocal_port=8443",
	    NULL, 20);
	memset(&tls, 0x55, sizeof tls);
	ck_assert_int_eq(sn_agent_peer_tls(agent, s, &pi, &tls, 2000), 0);
	reap(pid);
	ck_assert_str_eq(tls.version, "");
	ck_assert_str_eq(tls.sni, "");
	ck_assert_int_eq(tls.client_verified, 0);
	close(c);
	close(s);
}
END_TEST

START_TEST(test_blocking_peer_info_unknown_is_enoent)
{
	struct sn_peer_info pi;
	char                key[32];
	pid_t               pid;
	int                 c, s;

	c = tcp_pair(AF_INET, 0, &s);
	snprintf(key, sizeof key, "127.0.0.1:%d", client_port(c));
	pid = fake_master(key, "id=%s\nstatus=unknown", NULL, 0);
	ck_assert_int_eq(sn_agent_peer_info(agent, s, &pi, 2000), -1);
	ck_assert_int_eq(errno, ENOENT);
	reap(pid);
	close(c);
	close(s);
}
END_TEST

START_TEST(test_blocking_peer_info_times_out_and_drops_the_late_reply)
{
	struct sn_peer_info pi;
	char                key[32];
	pid_t               pid;
	int64_t             start;
	int                 c, s;

	c = tcp_pair(AF_INET, 0, &s);
	snprintf(key, sizeof key, "127.0.0.1:%d", client_port(c));
	pid = fake_master(key, "id=%s\nstatus=unknown", NULL, 400);
	start = now_ms();
	ck_assert_int_eq(sn_agent_peer_info(agent, s, &pi, 100), -1);
	ck_assert_int_eq(errno, ETIMEDOUT);
	ck_assert_int_ge(now_ms() - start, 100);
	ck_assert_int_lt(now_ms() - start, 1000);
	reap(pid);
	/* The reply came after all: nobody gets it, nothing breaks. */
	ck_assert_int_eq(sn_agent_process(agent), 1);
	ck_assert_int_eq(infos, 0);
	close(c);
	close(s);
}
END_TEST

START_TEST(test_blocking_peer_info_fails_at_once_on_garbage)
{
	struct sn_peer_info pi;
	char                key[32];
	pid_t               pid;
	int64_t             start;
	int                 c, s;

	c = tcp_pair(AF_INET, 0, &s);
	snprintf(key, sizeof key, "127.0.0.1:%d", client_port(c));
	pid = fake_master(key, NULL, "\x02\x81\x01\x02", 0);
	start = now_ms();
	ck_assert_int_eq(sn_agent_peer_info(agent, s, &pi, 5000), -1);
	ck_assert_int_eq(errno, EPROTO);
	ck_assert_int_lt(now_ms() - start, 1000);
	reap(pid);
	close(c);
	close(s);
}
END_TEST

START_TEST(test_blocking_peer_info_runs_callbacks_for_other_messages)
{
	struct sn_peer_info pi;
	char                key[32];
	pid_t               pid;
	int                 c, s;

	c = tcp_pair(AF_INET, 0, &s);
	snprintf(key, sizeof key, "127.0.0.1:%d", client_port(c));
	send_bytes(master,
	    "\x01\x82\x00\x00"
	    "\x01\x81\x00\x13"
	    "id=5\nstatus=unknown",
	    27);
	pid = fake_master(key,
	    "id=%s\nstatus=ok\n"
	    "remote_address=127.0.0.1\nremote_family=IPv4\nremote_port=2\n"
	    "local_address=127.0.0.1\nlocal_family=IPv4\nlocal_port=3",
	    NULL, 0);
	ck_assert_int_eq(sn_agent_peer_info(agent, s, &pi, 2000), 0);
	reap(pid);
	ck_assert_int_eq(pi.remote.port, 2);
	ck_assert_int_eq(drains, 1);
	ck_assert_int_eq(infos, 1);
	ck_assert_uint_eq(info_id, 5);
	close(c);
	close(s);
}
END_TEST

/* ---- peer keys on real connections ------------------------------------ */

START_TEST(test_peer_key_of_tcp_is_the_peer_address_and_port)
{
	char key[64], want[64];
	int  c, s;

	c = tcp_pair(AF_INET, 0, &s);
	ck_assert_int_eq(sn_agent_peer_key(s, key, sizeof key), 0);
	snprintf(want, sizeof want, "127.0.0.1:%d", client_port(c));
	ck_assert_str_eq(key, want);
	ck_assert_int_eq(sn_agent_peer_key(s, key, strlen(want)), -1);
	ck_assert_int_eq(errno, ENOSPC);
	close(c);
	close(s);

	if ((c = tcp_pair(AF_INET6, 0, &s)) == -1)
		return; /* no ::1 here */
	ck_assert_int_eq(sn_agent_peer_key(s, key, sizeof key), 0);
	snprintf(want, sizeof want, "[::1]:%d", client_port(c));
	ck_assert_str_eq(key, want);
	close(c);
	close(s);
}
END_TEST

START_TEST(test_peer_key_of_unix_is_the_autobind_name)
{
	struct sockaddr_un sun, me;
	socklen_t          len = sizeof me;
	sa_family_t        af = AF_UNIX;
	char               key[64], want[128];
	int                l, c, s;

	/* The master autobinds its end before connecting, as the relay does. */
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "/tmp/sn-lib-test.%ld",
	    (long)getpid());
	unlink(sun.sun_path);
	l = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&sun, sizeof sun), 0);
	ck_assert_int_eq(listen(l, 4), 0);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(c, (struct sockaddr *)&af, sizeof af), 0);
	ck_assert_int_eq(connect(c, (struct sockaddr *)&sun, sizeof sun), 0);
	s = accept(l, NULL, NULL);
	ck_assert_int_ge(s, 0);
	unlink(sun.sun_path);

	ck_assert_int_eq(getsockname(c, (struct sockaddr *)&me, &len), 0);
	ck_assert_int_eq(me.sun_path[0], '\0');
	snprintf(want, sizeof want, "@%.*s",
	    (int)(len - offsetof(struct sockaddr_un, sun_path) - 1),
	    me.sun_path + 1);
	ck_assert_int_eq(sn_agent_peer_key(s, key, sizeof key), 0);
	ck_assert_str_eq(key, want);
	ck_assert_uint_eq(strlen(key), 6); /* "@" and 5 hex digits */
	ck_assert_uint_eq(strspn(key + 1, "0123456789abcdef"), 5);

	/* The key goes into the query as is. */
	ck_assert_int_eq(sn_agent_peer_query(agent, s, NULL), 0);
	snprintf(want, sizeof want, "\x01\x02%c%cid=1\nkey=%s", 0,
	    (int)(9 + strlen(key)), key);
	expect_frame(master, want, 4 + 9 + strlen(key));

	/* The worker's own end has a path peer-side: no key. */
	ck_assert_int_eq(sn_agent_peer_key(c, key, sizeof key), -1);
	ck_assert_int_eq(errno, EADDRNOTAVAIL);
	close(c);
	close(s);
	close(l);
}
END_TEST

START_TEST(test_peer_key_of_a_non_socket_fails)
{
	char key[16];
	int  fd = open("/dev/null", O_RDONLY);

	ck_assert_int_eq(sn_agent_peer_key(fd, key, sizeof key), -1);
	ck_assert_int_eq(errno, ENOTSOCK);
	close(fd);
}
END_TEST

static Suite *
agent_suite(void)
{
	Suite *s = suite_create("libsocketnaut");
	TCase *tc;

	tc = tcase_create("open");
	tcase_add_test(tc, test_open_without_variable_is_enoent);
	tcase_add_test(tc, test_open_rejects_what_is_not_a_control_socket);
	tcase_add_test(tc, test_null_agent_is_a_no_op);
	suite_add_tcase(s, tc);

	tc = tcase_create("worker frames");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_open_makes_the_fd_nonblocking_and_cloexec);
	tcase_add_test(tc, test_ready_empty_is_the_vector);
	tcase_add_test(tc, test_ready_port_is_the_vector);
	tcase_add_test(tc, test_ready_address_is_one_field);
	tcase_add_test(tc, test_log_is_the_vector);
	tcase_add_test(
	    tc, test_log_text_may_hold_newlines_and_is_cut_to_one_frame);
	tcase_add_test(tc, test_drained_is_the_vector);
	tcase_add_test(tc, test_peer_query_on_tcp_is_the_vector);
	tcase_add_test(tc, test_peer_query_fails_without_a_usable_key);
	tcase_add_test(tc, test_unread_output_is_bounded_and_flushed_later);
	suite_add_tcase(s, tc);

	tc = tcase_create("master frames");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_drain_runs_the_callback);
	tcase_add_test(tc, test_peer_info_unknown_vector_runs_the_callback);
	tcase_add_test(tc, test_peer_info_ok_gives_every_field);
	tcase_add_test(tc, test_frames_arriving_byte_by_byte_are_reassembled);
	tcase_add_test(tc, test_a_callback_may_call_the_library_and_close_it);
	tcase_add_loop_test(tc, test_garbage_from_the_master_is_rejected, 0,
	    (int)(sizeof garbage / sizeof garbage[0]));
	tcase_add_loop_test(tc, test_malformed_peer_info_is_rejected, 0,
	    (int)(sizeof bad_info / sizeof bad_info[0]));
	tcase_add_test(tc, test_random_garbage_never_crashes);
	tcase_add_test(tc, test_master_closing_the_channel_is_epipe);
	tcase_add_test(
	    tc, test_handed_fds_are_accepted_in_order_with_their_peers);
	tcase_add_test(tc, test_handoff_without_a_descriptor_is_rejected);
	tcase_add_test(
	    tc, test_handoff_with_bad_fields_is_rejected_and_its_fd_closed);
	suite_add_tcase(s, tc);

	tc = tcase_create("blocking");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_blocking_peer_info_returns_the_fields);
	tcase_add_test(tc, test_blocking_peer_tls_returns_the_tls_fields);
	tcase_add_test(tc, test_blocking_peer_info_unknown_is_enoent);
	tcase_add_test(
	    tc, test_blocking_peer_info_times_out_and_drops_the_late_reply);
	tcase_add_test(tc, test_blocking_peer_info_fails_at_once_on_garbage);
	tcase_add_test(
	    tc, test_blocking_peer_info_runs_callbacks_for_other_messages);
	suite_add_tcase(s, tc);

	tc = tcase_create("peer keys");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_peer_key_of_tcp_is_the_peer_address_and_port);
	tcase_add_test(tc, test_peer_key_of_unix_is_the_autobind_name);
	tcase_add_test(tc, test_peer_key_of_a_non_socket_fails);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	SRunner *sr = srunner_create(agent_suite());
	int      failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return (failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}
