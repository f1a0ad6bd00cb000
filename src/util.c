/* Parsing and formatting helpers: durations, commands, templates, addresses. */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

void *
xcalloc(size_t n, size_t size)
{
	void *p;

	if ((p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size)) == NULL)
		fatal("calloc");
	return (p);
}

void *
xreallocarray(void *p, size_t n, size_t size)
{
	if (size != 0 && n > SIZE_MAX / size)
		fatalx("xreallocarray: overflow");
	if ((p = realloc(p, n * size == 0 ? 1 : n * size)) == NULL)
		fatal("realloc");
	return (p);
}

char *
xstrdup(const char *s)
{
	char *p;

	if ((p = strdup(s)) == NULL)
		fatal("strdup");
	return (p);
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char   *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	return (s);
}

/* "500ms", "10s", "2m", "1h" or a bare number of seconds, into milliseconds. */
int
duration_parse(const char *s, long long *ms, char **cause)
{
	static const struct {
		const char *unit;
		long long   mult;
	} units[] = {
		{ "ms", 1 },
		{ "s", 1000 },
		{ "", 1000 },
		{ "m", 60000 },
		{ "h", 3600000 },
	};
	const char *p = s;
	long long   n = 0;
	size_t      i;

	while (isspace((unsigned char)*p))
		p++;
	if (!isdigit((unsigned char)*p))
		goto bad;
	for (; isdigit((unsigned char)*p); p++) {
		if (n > (LLONG_MAX - 9) / 10)
			goto range;
		n = n * 10 + (*p - '0');
	}
	for (i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(p, units[i].unit) != 0)
			continue;
		if (n > 24 * 3600000LL / units[i].mult)
			goto range;
		*ms = n * units[i].mult;
		return (0);
	}
bad:
	*cause = xasprintf(
	    "invalid duration \"%s\" (expected a number with unit ms, s, m or h, e.g. 500ms or 10s)",
	    s);
	return (-1);
range:
	*cause = xasprintf("duration \"%s\" is longer than 24h", s);
	return (-1);
}

size_t
argv_count(char *const *argv)
{
	size_t n = 0;

	while (argv != NULL && argv[n] != NULL)
		n++;
	return (n);
}

void
argv_free(char **argv)
{
	size_t i;

	for (i = 0; argv != NULL && argv[i] != NULL; i++)
		free(argv[i]);
	free(argv);
}

/*
 * Split a command line into words as a POSIX shell splits plain words:
 * blanks separate, single quotes are literal, double quotes allow \" \\ \$
 * and \`, a backslash outside quotes escapes the next character.
 */
int
command_split(const char *s, char ***argvp, char **cause)
{
	char **argv = NULL, *word;
	size_t argc = 0, len;
	int    inword;
	char   quote;

	word = xcalloc(1, strlen(s) + 1);
	for (;;) {
		while (*s == ' ' || *s == '\t' || *s == '\n')
			s++;
		if (*s == '\0')
			break;
		len = 0;
		inword = 1;
		quote = 0;
		while (inword && *s != '\0') {
			if (quote == '\'') {
				if (*s == '\'')
					quote = 0;
				else
					word[len++] = *s;
				s++;
			} else if (quote == '"') {
				if (*s == '"')
					quote = 0;
				else if (*s == '\\' && s[1] != '\0' &&
				    strchr("\"\\$`", s[1]) != NULL)
					word[len++] = *++s;
				else
					word[len++] = *s;
				s++;
			} else if (*s == '\'' || *s == '"') {
				quote = *s++;
			} else if (*s == '\\') {
				if (s[1] == '\0') {
					*cause = xstrdup(
					    "command ends with a lone backslash");
					goto fail;
				}
				word[len++] = s[1];
				s += 2;
			} else if (*s == ' ' || *s == '\t' || *s == '\n') {
				inword = 0;
			} else
				word[len++] = *s++;
		}
		if (quote != 0) {
			*cause = xasprintf(
			    "command has an unterminated %c quote", quote);
			goto fail;
		}
		word[len] = '\0';
		argv = xreallocarray(argv, argc + 2, sizeof *argv);
		argv[argc++] = xstrdup(word);
		argv[argc] = NULL;
	}
	free(word);
	if (argc == 0) {
		*cause = xstrdup("command is empty");
		return (-1);
	}
	*argvp = argv;
	return (0);
fail:
	free(word);
	argv_free(argv);
	return (-1);
}

/* Replace {socket}, {port}, {index}, {service}; {{ and }} are literal braces.
 */
char *
template_expand(const char *s, const struct template_vars *v, char **cause)
{
	char       *out = NULL, *val, *end;
	size_t      outlen = 0, n;
	FILE       *f;
	const char *close;

	if ((f = open_memstream(&out, &outlen)) == NULL)
		fatal("open_memstream");
	while (*s != '\0') {
		if (s[0] == '{' && s[1] == '{') {
			fputc('{', f);
			s += 2;
			continue;
		}
		if (s[0] == '}' && s[1] == '}') {
			fputc('}', f);
			s += 2;
			continue;
		}
		if (*s != '{') {
			fputc(*s++, f);
			continue;
		}
		close = strchr(s, '}');
		n = close == NULL ? 0 : (size_t)(close - s - 1);
		val = NULL;
		if (n == 6 && strncmp(s + 1, "socket", 6) == 0 &&
		    v->socket != NULL)
			val = xstrdup(v->socket);
		else if (n == 4 && strncmp(s + 1, "port", 4) == 0 &&
		    v->port > 0)
			val = xasprintf("%d", v->port);
		else if (n == 5 && strncmp(s + 1, "index", 5) == 0)
			val = xasprintf("%d", v->index);
		else if (n == 7 && strncmp(s + 1, "service", 7) == 0)
			val = xstrdup(v->service);
		if (val == NULL) {
			fclose(f);
			free(out);
			end = close == NULL
			    ? xstrdup(s)
			    : xasprintf("%.*s", (int)(n + 2), s);
			if (close != NULL &&
			    ((n == 6 && strncmp(s + 1, "socket", 6) == 0) ||
				(n == 4 && strncmp(s + 1, "port", 4) == 0)))
				*cause = xasprintf(
				    "placeholder %s does not apply to this backend",
				    end);
			else
				*cause = xasprintf(
				    "unknown placeholder %s (known: {socket}, {port}, {index}, {service}; {{ for a brace)",
				    end);
			free(end);
			return (NULL);
		}
		fputs(val, f);
		free(val);
		s = close + 1;
	}
	fclose(f);
	return (out);
}

/*
 * Parse "ADDR:PORT": IPv4, [IPv6], "*" (every address, dual stack) or a
 * host name (every address it resolves to).
 */
int
addr_parse(const char *text, struct sn_addr **out, size_t *nout, char **cause)
{
	struct addrinfo hints, *res, *ai;
	struct sn_addr *list = NULL;
	const char     *colon, *port;
	char           *host, *end;
	size_t          n = 0;
	long            pnum;
	int             error;

	if (text[0] == '[') {
		if ((end = strchr(text, ']')) == NULL || end[1] != ':') {
			*cause = xasprintf(
			    "invalid address \"%s\" (expected [IPv6]:PORT)",
			    text);
			return (-1);
		}
		host = xasprintf("%.*s", (int)(end - text - 1), text + 1);
		port = end + 2;
	} else {
		if ((colon = strrchr(text, ':')) == NULL ||
		    strchr(text, ':') != colon) {
			*cause = xasprintf(
			    "invalid address \"%s\" (expected HOST:PORT, [IPv6]:PORT or *:PORT)",
			    text);
			return (-1);
		}
		host = xasprintf("%.*s", (int)(colon - text), text);
		port = colon + 1;
	}
	errno = 0;
	pnum = strtol(port, &end, 10);
	if (*port == '\0' || *end != '\0' || pnum < 1 || pnum > 65535) {
		*cause = xasprintf(
		    "invalid port in \"%s\" (expected 1..65535)", text);
		free(host);
		return (-1);
	}

	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	hints.ai_family = AF_UNSPEC;
	if (strcmp(host, "*") == 0 || host[0] == '\0') {
		/* One dual-stack IPv6 socket serves both families. */
		list = xcalloc(1, sizeof *list);
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&list->ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_any;
		sin6->sin6_port = htons((uint16_t)pnum);
		list->len = sizeof *sin6;
		list->dualstack = 1;
		free(host);
		*out = list;
		*nout = 1;
		return (0);
	}
	if ((error = getaddrinfo(host, port, &hints, &res)) != 0) {
		*cause = xasprintf(
		    "cannot resolve \"%s\": %s", host, gai_strerror(error));
		free(host);
		return (-1);
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		list = xreallocarray(list, n + 1, sizeof *list);
		memset(&list[n], 0, sizeof list[n]);
		memcpy(&list[n].ss, ai->ai_addr, ai->ai_addrlen);
		list[n].len = ai->ai_addrlen;
		n++;
	}
	freeaddrinfo(res);
	free(host);
	if (n == 0) {
		*cause = xasprintf("\"%s\" has no IPv4 or IPv6 address", text);
		return (-1);
	}
	*out = list;
	*nout = n;
	return (0);
}

/*
 * A numeric address, "IPv4:PORT", "[IPv6]:PORT" or a bare port (on
 * 127.0.0.1), as a worker reports it: never a name to resolve.
 */
int
addr_parse_numeric(const char *text, struct sn_addr *a, char **cause)
{
	struct sockaddr_in  *sin = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
	char                 host[INET6_ADDRSTRLEN + 1], *end;
	const char          *port, *close;
	long                 p;
	size_t               n;

	memset(a, 0, sizeof *a);
	if (text[0] == '[') {
		close = strchr(text, ']');
		n = close == NULL ? 0 : (size_t)(close - text - 1);
		if (close == NULL || close[1] != ':' || n >= sizeof host)
			goto bad;
		memcpy(host, text + 1, n);
		host[n] = '\0';
		port = close + 2;
	} else if ((port = strrchr(text, ':')) != NULL) {
		n = (size_t)(port - text);
		if (n >= sizeof host)
			goto bad;
		memcpy(host, text, n);
		host[n] = '\0';
		port++;
	} else {
		snprintf(host, sizeof host, "127.0.0.1");
		port = text;
	}
	p = strtol(port, &end, 10);
	if (*port == '\0' || *end != '\0' || p < 1 || p > 65535)
		goto bad;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)p);
		a->len = sizeof *sin;
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)p);
		a->len = sizeof *sin6;
	} else
		goto bad;
	return (0);
bad:
	*cause = xasprintf("\"%s\" is not a numeric address and port", text);
	return (-1);
}

int
addr_is_loopback(const struct sn_addr *a)
{
	const struct sockaddr_in  *sin = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;

	if (a->ss.ss_family == AF_INET)
		return ((ntohl(sin->sin_addr.s_addr) >> 24) == 127);
	if (a->ss.ss_family == AF_INET6)
		return (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	return (0);
}

const char *
addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	switch (sa->sa_family) {
	case AF_INET:
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
		    host, sizeof host);
		snprintf(buf, len, "%s:%u", host,
		    ntohs(((const struct sockaddr_in *)sa)->sin_port));
		break;
	case AF_INET6:
		inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *)sa)->sin6_addr, host,
		    sizeof host);
		snprintf(buf, len, "[%s]:%u", host,
		    ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
		break;
	case AF_UNIX:
		snprintf(buf, len, "unix:%s",
		    ((const struct sockaddr_un *)sa)->sun_path);
		break;
	default:
		snprintf(buf, len, "family %d", sa->sa_family);
		break;
	}
	return (buf);
}

/* True for an executable regular file. */
static int
path_executable(const char *path)
{
	struct stat st;

	if (stat(path, &st) == -1)
		return (0);
	if (!S_ISREG(st.st_mode)) {
		errno = EACCES;
		return (0);
	}
	return (access(path, X_OK) == 0);
}

/*
 * Resolve a command's argv[0] as execvp would: a name with a slash is taken
 * relative to dir (when given), a bare name is searched in PATH.
 */
char *
path_lookup(const char *name, const char *dir)
{
	const char *path, *p, *colon;
	char       *cand;
	size_t      n;

	if (strchr(name, '/') != NULL) {
		if (name[0] != '/' && dir != NULL)
			cand = xasprintf("%s/%s", dir, name);
		else
			cand = xstrdup(name);
		if (path_executable(cand))
			return (cand);
		free(cand);
		return (NULL);
	}
	if ((path = getenv("PATH")) == NULL)
		path = "/usr/local/bin:/usr/bin:/bin";
	errno = ENOENT;
	for (p = path;; p = colon + 1) {
		colon = strchr(p, ':');
		n = colon == NULL ? strlen(p) : (size_t)(colon - p);
		cand = xasprintf(
		    "%.*s/%s", (int)(n == 0 ? 1 : n), n == 0 ? "." : p, name);
		if (path_executable(cand))
			return (cand);
		free(cand);
		if (colon == NULL)
			break;
	}
	return (NULL);
}

int
fd_nonblock(int fd)
{
	int flags;

	if ((flags = fcntl(fd, F_GETFL)) == -1)
		return (-1);
	return (fcntl(fd, F_SETFL, flags | O_NONBLOCK));
}

/*
 * Send buf on a Unix socket with fd attached (SCM_RIGHTS rides with the
 * first byte), without blocking: bytes sent, or -1 and errno as sendmsg.
 */
ssize_t
fd_send(int sock, const void *buf, size_t len, int fd)
{
	char            cbuf[CMSG_SPACE(sizeof(int))];
	struct msghdr   msg;
	struct iovec    iov;
	struct cmsghdr *cm;
	ssize_t         n;

	memset(&msg, 0, sizeof msg);
	memset(cbuf, 0, sizeof cbuf);
	iov.iov_base = (void *)buf;
	iov.iov_len = len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof cbuf;
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n == -1 && errno == EINTR);
	return (n);
}

/* Monotonic to a few ms, at a fraction of now_ms()'s cost: the relay's clock.
 */
long long
now_coarse_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/*
 * A lookup on a file system that a worker's user may control (a FUSE
 * mount on its command's path, a dead NFS server), done by a thread of
 * its own and waited for at most ms: one that does not answer must not
 * freeze the master on a reload.  A query still unanswered stays in
 * flight: the next reload checking the same path waits on it instead of
 * leaving one more thread stuck, and no more than FS_INFLIGHT_MAX are
 * ever stuck at once.  The thread and its waiters share the query;
 * whoever lets go last frees it.  One mutex guards them all: a query
 * takes microseconds when its file system answers.
 */
#define FS_INFLIGHT_MAX 32
#define FS_STACK        (128 * 1024) /* a lookup needs little */

struct fs_query {
	int         refs, done, lookup;
	char       *name, *dir;
	char       *path; /* path_lookup's answer */
	struct stat st;   /* stat's */
	int         rc, error;
};

static pthread_mutex_t  fs_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t   fs_cv;
static pthread_once_t   fs_once = PTHREAD_ONCE_INIT;
static struct fs_query *fs_inflight[FS_INFLIGHT_MAX];

static void
fs_init(void)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs_cv, &ca);
	pthread_condattr_destroy(&ca);
}

/* With fs_mu held. */
static void
fs_query_unref(struct fs_query *q)
{
	if (--q->refs > 0)
		return;
	free(q->name);
	free(q->dir);
	free(q->path);
	free(q);
}

static void
fs_query_do(struct fs_query *q)
{
	if (q->lookup) {
		q->path = path_lookup(q->name, q->dir);
		q->rc = q->path != NULL ? 0 : -1;
	} else
		q->rc = stat(q->name, &q->st);
	q->error = errno;
}

static void *
fs_query_main(void *arg)
{
	struct fs_query *q = arg;
	size_t           i;

	fs_query_do(q);
	pthread_mutex_lock(&fs_mu);
	q->done = 1;
	for (i = 0; i < FS_INFLIGHT_MAX; i++)
		if (fs_inflight[i] == q)
			fs_inflight[i] = NULL;
	pthread_cond_broadcast(&fs_cv);
	fs_query_unref(q);
	pthread_mutex_unlock(&fs_mu);
	return (NULL);
}

static int
fs_query_same(
    const struct fs_query *q, int lookup, const char *name, const char *dir)
{
	return (q->lookup == lookup && strcmp(q->name, name) == 0 &&
	    (q->dir == NULL ? dir == NULL
			    : dir != NULL && strcmp(q->dir, dir) == 0));
}

/*
 * The query of name (and dir) in flight, or a new one with a thread of
 * its own (answered here if no thread could be had); one reference is
 * the caller's.  NULL with errno EAGAIN if FS_INFLIGHT_MAX queries are
 * stuck.  With fs_mu held.
 */
static struct fs_query *
fs_query_get(int lookup, const char *name, const char *dir)
{
	struct fs_query *q;
	pthread_attr_t   attr;
	pthread_t        thread;
	sigset_t         all, old;
	size_t           i, slot = FS_INFLIGHT_MAX;

	for (i = 0; i < FS_INFLIGHT_MAX; i++) {
		if ((q = fs_inflight[i]) == NULL)
			slot = i;
		else if (fs_query_same(q, lookup, name, dir)) {
			q->refs++;
			return (q);
		}
	}
	if (slot == FS_INFLIGHT_MAX) {
		errno = EAGAIN;
		return (NULL);
	}
	q = xcalloc(1, sizeof *q);
	q->lookup = lookup;
	q->name = xstrdup(name);
	q->dir = dir != NULL ? xstrdup(dir) : NULL;
	q->refs = 2;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, FS_STACK);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pthread_create(&thread, &attr, fs_query_main, q) == 0)
		fs_inflight[slot] = q;
	else {
		q->refs = 1;
		fs_query_do(q);
		q->done = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return (q);
}

/*
 * Runs the query and waits for it at most ms: 0 with *rc, *st or *path
 * (the caller's) and errno set as the query left them, or -1 with errno
 * ETIMEDOUT or EAGAIN.
 */
static int
fs_query_run(int lookup, const char *name, const char *dir, long ms, int *rc,
    struct stat *st, char **path)
{
	struct fs_query *q;
	struct timespec  until;
	int              error = 0, done;

	pthread_once(&fs_once, fs_init);
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += ms % 1000 * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&fs_mu);
	if ((q = fs_query_get(lookup, name, dir)) == NULL) {
		pthread_mutex_unlock(&fs_mu);
		return (-1);
	}
	while (!q->done && error != ETIMEDOUT)
		error = pthread_cond_timedwait(&fs_cv, &fs_mu, &until);
	if ((done = q->done)) {
		*rc = q->rc;
		if (st != NULL)
			*st = q->st;
		if (path != NULL && q->path != NULL)
			*path = xstrdup(q->path);
		error = q->error;
	} else
		error = ETIMEDOUT;
	fs_query_unref(q);
	pthread_mutex_unlock(&fs_mu);
	errno = error;
	return (done ? 0 : -1);
}

/*
 * path_lookup, or NULL with errno ETIMEDOUT after ms (EAGAIN while too
 * many earlier queries are stuck).
 */
char *
path_lookup_within(const char *name, const char *dir, long ms)
{
	char *path = NULL;
	int   rc;

	if (fs_query_run(1, name, dir, ms, &rc, NULL, &path) == -1)
		return (NULL);
	return (path);
}

/* stat(2), or -1 with errno ETIMEDOUT or EAGAIN as path_lookup_within. */
int
stat_within(const char *file, struct stat *st, long ms)
{
	int rc;

	if (fs_query_run(0, file, NULL, ms, &rc, st, NULL) == -1)
		return (-1);
	return (rc);
}
