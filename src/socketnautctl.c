/*
 * socketnautctl: steer a running socketnautd through its admin socket
 * (src/admin.h has the wire format).  It finds the socket from the
 * configuration file, reading only admin_socket and runtime_dir from it,
 * so that it still works when the rest of the file is broken (the very
 * case of a reload that must fail).  Every wait is bounded by -t.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"

#ifndef SN_CONFIG_PATH
#define SN_CONFIG_PATH "/etc/socketnaut.conf"
#endif

#define CTL_TIMEOUT_SEC 120
#define CTL_CONFIG_MAX  (16 * 1024 * 1024)
#define CTL_VALUE_MAX   4096

static const char *progname = "socketnautctl";

static void __attribute__((noreturn)) usage(int status)
{
	fprintf(status ? stderr : stdout,
	    "usage: socketnautctl [-hj] [-c config | -s socket] [-t seconds] command [argument ...]\n"
	    "  -c config   find the admin socket from this file (default %s)\n"
	    "  -s socket   the admin socket's path\n"
	    "  -j          JSON output (status, conns)\n"
	    "  -t seconds  give up waiting after this long (default %d)\n"
	    "  -h          this help\n"
	    "commands:\n"
	    "  status                 services and workers\n"
	    "  conns [SERVICE]        live connections\n"
	    "  reload                 reload the configuration and wait for the outcome\n"
	    "  scale SERVICE N        run N workers (min = max = N) until the next reload\n"
	    "  scale SERVICE min N    set min_workers until the next reload\n"
	    "  scale SERVICE max N    set max_workers until the next reload\n"
	    "  restart SERVICE        replace every worker, wait until the new ones are ready\n"
	    "  drain SERVICE PID      take one worker out of rotation; it stops when idle\n"
	    "  stop                   shut the daemon down gracefully (as SIGTERM)\n"
	    "exit status: 0 done, 1 refused or failed, 2 reload refused (configuration\n"
	    "errors), 3 timed out, 4 new workers fail to start, 5 daemon unreachable,\n"
	    "64 usage\n",
	    SN_CONFIG_PATH, CTL_TIMEOUT_SEC);
	exit(status ? ADMIN_EXIT_USAGE : 0);
}

static void __attribute__((noreturn, format(printf, 2, 3)))
die(int status, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* The whole file, NUL-terminated; NULL (errno set) if it cannot be read. */
static char *
ctl_read_file(const char *path)
{
	struct stat st;
	char       *buf;
	ssize_t     n;
	size_t      len = 0;
	int         fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1)
		return (NULL);
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_size > CTL_CONFIG_MAX) {
		close(fd);
		errno = EINVAL;
		return (NULL);
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return (NULL);
	}
	while (len < (size_t)st.st_size &&
	    (n = read(fd, buf + len, (size_t)st.st_size - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = '\0';
	return (buf);
}

/* Past a comment or blank at p, if there is one there. */
static const char *
ctl_skip_blank(const char *p)
{
	for (;;) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		else if (*p == '#' || (p[0] == '/' && p[1] == '/'))
			p += strcspn(p, "\n");
		else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");

			p = e != NULL ? e + 2 : p + strlen(p);
		} else
			return (p);
	}
}

/* A quoted or bare value at p, copied into out; returns what follows. */
static const char *
ctl_value(const char *p, char *out, size_t outlen)
{
	size_t n = 0;
	char   q;

	if (*p == '"' || *p == '\'') {
		q = *p++;
		while (*p != '\0' && *p != q && *p != '\n') {
			if (*p == '\\' && p[1] != '\0')
				p++;
			if (n + 1 < outlen)
				out[n++] = *p;
			p++;
		}
		if (*p == q)
			p++;
	} else {
		while (*p != '\0' && strchr(" \t\r\n#{}=,", *p) == NULL) {
			if (n + 1 < outlen)
				out[n++] = *p;
			p++;
		}
	}
	out[n] = '\0';
	return (p);
}

/*
 * admin_socket and runtime_dir at the top level of a socketnaut.conf:
 * braces, strings and comments are stepped over as libconfuse reads them;
 * nothing else in the file is looked at.
 */
static void
ctl_scan(const char *p, char *sock, char *rundir, size_t len)
{
	char   word[64], val[CTL_VALUE_MAX];
	int    depth = 0;
	size_t n;

	while (*(p = ctl_skip_blank(p)) != '\0') {
		if (*p == '{' || *p == '}') {
			depth += *p == '{' ? 1 : (depth > 0 ? -1 : 0);
			p++;
			continue;
		}
		if (*p == '"' || *p == '\'') {
			p = ctl_value(p, val, sizeof val);
			continue;
		}
		n = strcspn(p, " \t\r\n#{}=,\"'/");
		if (n == 0) {
			p++;
			continue;
		}
		snprintf(word, sizeof word, "%.*s", (int)n, p);
		p += n;
		if (depth != 0 ||
		    (strcmp(word, "admin_socket") != 0 &&
			strcmp(word, "runtime_dir") != 0))
			continue;
		p = ctl_skip_blank(p);
		if (*p != '=')
			continue;
		p = ctl_value(ctl_skip_blank(p + 1), val, sizeof val);
		snprintf(strcmp(word, "admin_socket") == 0 ? sock : rundir, len,
		    "%s", val);
	}
}

/* socketnautd's default runtime directory, as seen from here. */
static void
ctl_default_rundir(char *out, size_t len)
{
	const char *v;
	struct stat st;

	if ((v = getenv("RUNTIME_DIRECTORY")) != NULL && *v == '/') {
		snprintf(out, len, "%.*s", (int)strcspn(v, ":"), v);
		return;
	}
	/* A root daemon's, which admin_group may open to us. */
	if (geteuid() == 0 || lstat("/run/socketnautd/admin.sock", &st) == 0) {
		snprintf(out, len, "/run/socketnautd");
		return;
	}
	if ((v = getenv("XDG_RUNTIME_DIR")) != NULL && *v == '/')
		snprintf(out, len, "%s/socketnautd", v);
	else
		snprintf(
		    out, len, "/tmp/socketnautd-%lu", (unsigned long)geteuid());
}

static void
ctl_socket_path(const char *config, int given, char *out, size_t len)
{
	char  sock[CTL_VALUE_MAX] = "", rundir[CTL_VALUE_MAX] = "";
	char *text;

	if ((text = ctl_read_file(config)) == NULL) {
		if (given)
			die(ADMIN_EXIT_USAGE, "%s: %s", config,
			    strerror(errno));
	} else {
		ctl_scan(text, sock, rundir, sizeof sock);
		free(text);
	}
	if (strcmp(sock, "off") == 0)
		die(ADMIN_EXIT_CONNECT, "%s: admin_socket is off", config);
	if (sock[0] != '\0') {
		snprintf(out, len, "%s", sock);
		return;
	}
	if (rundir[0] == '\0')
		ctl_default_rundir(rundir, sizeof rundir);
	if ((size_t)snprintf(out, len, "%s/admin.sock", rundir) >= len)
		die(ADMIN_EXIT_USAGE, "%s/admin.sock: path too long", rundir);
}

static int
ctl_remaining(long long deadline)
{
	long long left = deadline - now_ms();

	return (left > 0 ? (int)(left < 1000000 ? left : 1000000) : 0);
}

/* Connect, waiting (until the deadline) while the backlog is full. */
static int
ctl_connect(const char *path, long long deadline)
{
	struct sockaddr_un sun;
	int                fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path)
		die(ADMIN_EXIT_USAGE, "%s: path too long", path);
	strcpy(sun.sun_path, path);
	for (;;) {
		fd = socket(
		    AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd == -1)
			die(ADMIN_EXIT_CONNECT, "socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0)
			return (fd);
		if (errno != EAGAIN)
			die(ADMIN_EXIT_CONNECT,
			    "cannot reach socketnautd at %s: %s", path,
			    strerror(errno));
		close(fd);
		if (ctl_remaining(deadline) == 0)
			die(ADMIN_EXIT_TIMEOUT,
			    "%s: the daemon accepted no connection in time",
			    path);
		poll(NULL, 0, 50);
	}
}

static void
ctl_send(int fd, const unsigned char *buf, size_t len, long long deadline)
{
	struct pollfd pfd = { fd, POLLOUT, 0 };
	ssize_t       n;

	while (len > 0) {
		if (poll(&pfd, 1, ctl_remaining(deadline)) == 0)
			die(ADMIN_EXIT_TIMEOUT,
			    "timed out sending the request");
		/* A refused peer is closed by the daemon: EPIPE, not SIGPIPE.
		 */
		if ((n = send(fd, buf, len, MSG_NOSIGNAL)) == -1) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			die(ADMIN_EXIT_CONNECT,
			    "socketnautd closed the connection (not allowed to use it?): %s",
			    strerror(errno));
		}
		buf += n;
		len -= (size_t)n;
	}
}

static void
ctl_write_all(int fd, const unsigned char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			exit(ADMIN_EXIT_FAILED);
		}
		p += n;
		len -= (size_t)n;
	}
}

/* Frames until DONE: OUT to stdout, ERR to stderr; the exit status. */
static int
ctl_receive(int fd, long long deadline, int tsec)
{
	static unsigned char buf[ADMIN_HDR + ADMIN_FRAME_MAX];
	struct pollfd        pfd = { fd, POLLIN, 0 };
	size_t               have = 0, need;
	uint32_t             len;
	uint16_t             flags;
	uint8_t              type;
	ssize_t              n;

	for (;;) {
		need = ADMIN_HDR;
		if (have >= ADMIN_HDR) {
			if (admin_header_get(buf, &type, &flags, &len,
				ADMIN_FRAME_MAX) == -1 ||
			    type == ADMIN_REQUEST ||
			    (type == ADMIN_DONE && len != 1))
				die(ADMIN_EXIT_CONNECT,
				    "unexpected frame from socketnautd (version or type)");
			need = ADMIN_HDR + len;
			if (have >= need) {
				if (type == ADMIN_DONE)
					return (buf[ADMIN_HDR]);
				fflush(stdout);
				ctl_write_all(type == ADMIN_OUT ? 1 : 2,
				    buf + ADMIN_HDR, len);
				memmove(buf, buf + need, have - need);
				have -= need;
				continue;
			}
		}
		if (poll(&pfd, 1, ctl_remaining(deadline)) == 0)
			die(ADMIN_EXIT_TIMEOUT,
			    "no outcome within %d seconds (it may still come: see the log or socketnautctl status)",
			    tsec);
		n = read(fd, buf + have, need - have);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n == -1 && errno != ECONNRESET)
			die(ADMIN_EXIT_CONNECT, "read: %s", strerror(errno));
		if (n <= 0)
			die(ADMIN_EXIT_CONNECT,
			    "socketnautd closed the connection before answering (not allowed to use it?)");
		have += (size_t)n;
	}
}

int
main(int argc, char **argv)
{
	static unsigned char req[ADMIN_HDR + ADMIN_REQUEST_MAX];
	const char          *config = SN_CONFIG_PATH, *sock = NULL;
	char                 path[CTL_VALUE_MAX + 16], *end;
	size_t               len = 0, n;
	long                 t = CTL_TIMEOUT_SEC;
	long long            deadline;
	int                  ch, json = 0, given = 0, fd, i;

	while ((ch = getopt(argc, argv, "+c:hjs:t:")) != -1) {
		switch (ch) {
		case 'c':
			config = optarg;
			given = 1;
			break;
		case 'h':
			usage(0);
		case 'j':
			json = 1;
			break;
		case 's':
			sock = optarg;
			break;
		case 't':
			t = strtol(optarg, &end, 10);
			if (*end != '\0' || t < 1 || t > 86400)
				die(ADMIN_EXIT_USAGE,
				    "-t: seconds from 1 to 86400, not \"%s\"",
				    optarg);
			break;
		default:
			usage(1);
		}
	}
	/* -j may also follow the command: socketnautctl status -j */
	if (argc - optind >= 2 && strcmp(argv[argc - 1], "-j") == 0) {
		json = 1;
		argc--;
	}
	if (optind == argc)
		usage(1);
	if (given && sock != NULL)
		die(ADMIN_EXIT_USAGE, "-c and -s exclude each other");
	if (sock == NULL) {
		ctl_socket_path(config, given, path, sizeof path);
		sock = path;
	}
	for (i = optind; i < argc; i++) {
		n = strlen(argv[i]);
		if (len + n + 1 > ADMIN_REQUEST_MAX ||
		    strchr(argv[i], '\n') != NULL)
			die(ADMIN_EXIT_USAGE, "command too long or malformed");
		memcpy(req + ADMIN_HDR + len, argv[i], n);
		len += n;
		req[ADMIN_HDR + len++] = '\n';
	}
	admin_header_put(
	    req, ADMIN_REQUEST, json ? ADMIN_F_JSON : 0, (uint32_t)len);
	deadline = now_ms() + t * 1000;
	fd = ctl_connect(sock, deadline);
	ctl_send(fd, req, ADMIN_HDR + len, deadline);
	ch = ctl_receive(fd, deadline, (int)t);
	close(fd);
	return (ch);
}
