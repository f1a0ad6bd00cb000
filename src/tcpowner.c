/*
 * Who takes the master's connections to a loopback TCP address: the
 * listener the kernel would pick, from inet sock_diag, and whether one of
 * a worker's processes holds it.  Any local user may bind a free loopback
 * port, so a port a worker was told or chose proves nothing by itself.
 * Asked when a worker would join the pool, never per connection.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tcpowner.h"
#include "util.h"

#define TREE_MAX  256   /* processes of one worker looked at */
#define FDS_MAX   16384 /* descriptors read, all of them together */
#define PROCS_MAX 16384 /* bytes of cgroup.procs or of a children list */

/* The loopback interface, as the kernel matches a connection to it. */
static unsigned
tcpowner_lo(void)
{
	static unsigned lo;

	if (lo == 0)
		lo = if_nametoindex("lo");
	return (lo);
}

/* The exact-lookup request for the listener that takes connections to a. */
static int
tcpowner_request(const struct sn_addr *a, struct inet_diag_req_v2 *req)
{
	const struct sockaddr_in  *sin = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;

	memset(req, 0, sizeof *req);
	req->sdiag_family = a->ss.ss_family;
	req->sdiag_protocol = IPPROTO_TCP;
	req->idiag_states = 1U << TCP_LISTEN;
	req->id.idiag_if = tcpowner_lo();
	req->id.idiag_cookie[0] = req->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (a->ss.ss_family == AF_INET) {
		req->id.idiag_sport = sin->sin_port;
		memcpy(req->id.idiag_src, &sin->sin_addr, sizeof sin->sin_addr);
	} else if (a->ss.ss_family == AF_INET6) {
		req->id.idiag_sport = sin6->sin6_port;
		memcpy(req->id.idiag_src, &sin6->sin6_addr,
		    sizeof sin6->sin6_addr);
	} else
		return (-1);
	return (0);
}

/* One request, one reply: the kernel answers an exact lookup in send(). */
static ssize_t
tcpowner_ask(const void *q, size_t qlen, void *reply, size_t len)
{
	ssize_t n = -1;
	int     nl, error;

	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl == -1)
		return (-1);
	if (send(nl, q, qlen, 0) == (ssize_t)qlen)
		n = recv(nl, reply, len, MSG_DONTWAIT);
	error = errno;
	close(nl);
	errno = error;
	return (n);
}

/* The reply to an exact lookup: 1 with *o, 0 for no listener, -1. */
static int
tcpowner_reply(
    const struct nlmsghdr *nlh, ssize_t n, struct tcpowner *o, char **cause)
{
	const struct inet_diag_msg *dm = NLMSG_DATA(nlh);
	const struct nlmsgerr      *err = NLMSG_DATA(nlh);
	int                         whole = NLMSG_OK(nlh, (size_t)n);

	if (whole && nlh->nlmsg_type == NLMSG_ERROR &&
	    nlh->nlmsg_len >= NLMSG_LENGTH(sizeof *err)) {
		if (err->error == -ENOENT)
			return (0);
		*cause = xasprintf("sock_diag: %s", strerror(-err->error));
		return (-1);
	} else if (whole && nlh->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
	    nlh->nlmsg_len >= NLMSG_LENGTH(sizeof *dm)) {
		if (dm->idiag_state != TCP_LISTEN)
			return (0);
		o->uid = dm->idiag_uid;
		o->inode = dm->idiag_inode;
		return (1);
	}
	*cause = xstrdup("sock_diag: unexpected reply");
	return (-1);
}

/*
 * The listener a connection to a reaches, as the kernel would choose it
 * (an exact lookup: the most specific bound address, a wildcard or a
 * dual-stack socket included).  Returns 1 with *o, 0 when nothing listens
 * there, -1 with cause when sock_diag cannot answer.
 */
int
tcpowner_lookup(const struct sn_addr *a, struct tcpowner *o, char **cause)
{
	struct {
		struct nlmsghdr         nlh;
		struct inet_diag_req_v2 req;
	} q;
	union {
		struct nlmsghdr nlh;
		char            buf[1024];
	} reply;
	ssize_t n;

	memset(&q, 0, sizeof q);
	if (tcpowner_request(a, &q.req) == -1) {
		*cause = xstrdup("not a TCP address");
		return (-1);
	}
	q.nlh.nlmsg_len = sizeof q;
	q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	q.nlh.nlmsg_flags = NLM_F_REQUEST;
	if ((n = tcpowner_ask(&q, sizeof q, &reply, sizeof reply)) == -1) {
		*cause = xasprintf("sock_diag: %s", strerror(errno));
		return (-1);
	}
	return (tcpowner_reply(&reply.nlh, n, o, cause));
}

/*
 * Whether process pid has socket inode open; *budget counts fds read.
 * -1 when its fds may not be read (not dumpable, and we are not root).
 */
static int
tcpowner_pid_holds(pid_t pid, uint32_t inode, int *budget)
{
	char           path[64], want[32], link[32];
	struct dirent *de;
	DIR           *dir;
	ssize_t        n;
	int            found = 0;

	snprintf(path, sizeof path, "/proc/%ld/fd", (long)pid);
	if ((dir = opendir(path)) == NULL)
		return (errno == EACCES ? -1 : 0);
	snprintf(want, sizeof want, "socket:[%u]", inode);
	while (!found && *budget > 0 && (de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		(*budget)--;
		n = readlinkat(dirfd(dir), de->d_name, link, sizeof link - 1);
		if (n > 0) {
			link[n] = '\0';
			found = strcmp(link, want) == 0;
		}
	}
	closedir(dir);
	return (found);
}

/* Read up to PROCS_MAX bytes of pids separated by white space into pids. */
static size_t
tcpowner_read_pids(int fd, pid_t *pids, size_t max)
{
	char   *buf, *p, *end;
	ssize_t n;
	size_t  got = 0, len = 0;
	long    v;

	buf = xcalloc(1, PROCS_MAX + 1);
	while (
	    len < PROCS_MAX && (n = read(fd, buf + len, PROCS_MAX - len)) > 0)
		len += n;
	for (p = buf; got < max && p < buf + len; p = end) {
		v = strtol(p, &end, 10);
		if (end == p)
			break;
		if (v > 0)
			pids[got++] = v;
	}
	free(buf);
	return (got);
}

/*
 * Append pid's children (from every thread's children list) to tree.
 * Returns -1 when the kernel keeps no such lists (no CONFIG_PROC_CHILDREN).
 */
static int
tcpowner_children(pid_t pid, pid_t *tree, size_t *n)
{
	char           path[96];
	struct dirent *de;
	DIR           *dir;
	int            fd, rv = 0;

	snprintf(path, sizeof path, "/proc/%ld/task", (long)pid);
	if ((dir = opendir(path)) == NULL)
		return (0); /* gone meanwhile */
	while (*n < TREE_MAX && (de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/%ld/task/%.16s/children",
		    (long)pid, de->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
			if (errno == ENOENT && (long)pid == atol(de->d_name))
				rv = -1;
			continue;
		}
		*n += tcpowner_read_pids(fd, tree + *n, TREE_MAX - *n);
		close(fd);
	}
	closedir(dir);
	return (rv);
}

/*
 * Whether socket inode is held by the worker: process pid, or one in its
 * cgroup (procsfd, its cgroup.procs, or -1), else one of its descendants.
 * A cgroup holds every process the worker started, daemonized or not; the
 * tree loses those reparented away.  Returns 1, 0, or -1 when it cannot
 * tell: the tree cannot be walked (no children lists), or a process's
 * fds may not be read, and no process read holds it.
 */
int
tcpowner_held(pid_t pid, int procsfd, uint32_t inode)
{
	pid_t *tree;
	size_t n = 0, i;
	int    budget = FDS_MAX, found, unread;

	if ((found = tcpowner_pid_holds(pid, inode, &budget)) == 1)
		return (1);
	unread = found == -1;
	found = 0;
	tree = xcalloc(TREE_MAX, sizeof *tree);
	if (procsfd != -1)
		n = tcpowner_read_pids(procsfd, tree, TREE_MAX);
	else if (tcpowner_children(pid, tree, &n) == -1)
		unread = 1;
	for (i = 0; found != 1 && i < n && budget > 0; i++) {
		if (tree[i] == pid)
			continue;
		if ((found = tcpowner_pid_holds(tree[i], inode, &budget)) == -1)
			unread = 1;
		if (procsfd == -1)
			(void)tcpowner_children(tree[i], tree, &n);
	}
	free(tree);
	return (found == 1 ? 1 : unread ? -1 : 0);
}
