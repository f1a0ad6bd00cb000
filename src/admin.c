/*
 * The admin socket (socketnautctl): a Unix stream socket, mode 0600 (0660
 * with admin_group), made in a directory checked as the runtime directory
 * is and never through a symlink.  Each peer's credentials are checked as
 * it connects.  Clients are untrusted and many: requests are framed and
 * bounded (admin.h), answers are written through a bufferevent that
 * never holds more than about ADMIN_OUT_CAP bytes for one client (long
 * answers are produced as the client reads them), and a client that sends
 * nothing or reads nothing is closed after ADMIN_IDLE_SEC.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "admin.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "service.h"
#include "sockdir.h"
#include "socketnautd.h"
#include "status.h"

#define ADMIN_CLIENTS_MAX 64
#define ADMIN_IDLE_SEC    30    /* no request, or no byte read, this long */
#define ADMIN_OUT_CAP     65536 /* produce more once below this */
#define ADMIN_GROUPS_MAX  1024  /* supplementary groups looked at */

enum admin_state {
	ADMIN_IDLE,    /* waiting for a request */
	ADMIN_STREAM,  /* writing a long answer as it is read */
	ADMIN_RELOAD,  /* waiting for the new generations */
	ADMIN_RESTART, /* waiting for one service's new generation */
};

struct admin_conn {
	TAILQ_ENTRY(admin_conn) entry;
	struct bufferevent  *bev;
	uid_t                uid;
	pid_t                pid;
	enum admin_state     state;
	uint16_t             flags;
	struct status_cursor cursor;
	struct evbuffer     *errors; /* reload: what the file got wrong */
	char                 service[64];
};
TAILQ_HEAD(admin_head, admin_conn);

static struct evconnlistener *admin_listener;
static struct listener_guard  admin_guard;
static struct admin_head      admin_conns = TAILQ_HEAD_INITIALIZER(admin_conns);
static int                    admin_nconns;
static int                    admin_dirfd = -1;
static char                  *admin_name; /* in admin_dirfd */
static ino_t                  admin_ino;
static char                  *admin_path;  /* as configured */
static char                  *admin_group; /* as configured, or NULL */
static int                    admin_has_group;
static gid_t                  admin_gid;
static struct event           admin_poll_ev;
static long long              admin_refused_at; /* ms: last logged */
static unsigned long          admin_refused;    /* since, not logged */

static void admin_read(struct bufferevent *, void *);
static void admin_write(struct bufferevent *, void *);
static void admin_event(struct bufferevent *, short, void *);

/*
 * "/proc/self/fd/N/name": in the directory we checked, whatever its path
 * became.  Without /proc, the path (its directories are ones only root
 * or we can rename, as checked).
 */
static void
admin_proc_path(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof *sun);
	sun->sun_family = AF_UNIX;
	if (access("/proc/self/fd", X_OK) == 0 &&
	    (size_t)snprintf(sun->sun_path, sizeof sun->sun_path,
		"/proc/self/fd/%d/%s", admin_dirfd,
		admin_name) < sizeof sun->sun_path)
		return;
	snprintf(sun->sun_path, sizeof sun->sun_path, "%s", path);
}

/*
 * A socket already at our name: a daemon that still answers keeps it;
 * a stale one (a previous run) goes; anything else is not ours to remove.
 */
static int
admin_clear(const char *path, char **cause)
{
	struct sockaddr_un sun;
	struct stat        st;
	int                fd, live;

	if (fstatat(admin_dirfd, admin_name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno == ENOENT)
			return (0);
		*cause = xasprintf("%s: %s", path, strerror(errno));
		return (-1);
	}
	if (!S_ISSOCK(st.st_mode)) {
		*cause = xasprintf(
		    "%s exists and is not a socket: refusing to replace it",
		    path);
		return (-1);
	}
	admin_proc_path(&sun, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	live = fd != -1 &&
	    (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0 ||
		errno == EAGAIN);
	if (fd != -1)
		close(fd);
	if (live) {
		*cause = xasprintf(
		    "%s is in use: is another socketnautd running with this runtime_dir?",
		    path);
		return (-1);
	}
	if (unlinkat(admin_dirfd, admin_name, 0) == -1 && errno != ENOENT) {
		*cause = xasprintf("%s: %s", path, strerror(errno));
		return (-1);
	}
	return (0);
}

/* Bind at the name in the directory we hold: 0600 from the start. */
static int
admin_bind(const char *path, char **cause)
{
	struct sockaddr_un sun;
	struct stat        st;
	mode_t             old;
	int                fd, rc;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		*cause = xasprintf("socket: %s", strerror(errno));
		return (-1);
	}
	admin_proc_path(&sun, path);
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof sun);
	umask(old);
	if (rc == -1) {
		*cause = xasprintf("bind %s: %s", path, strerror(errno));
		close(fd);
		return (-1);
	}
	if (fstatat(admin_dirfd, admin_name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
	    !S_ISSOCK(st.st_mode)) {
		*cause = xasprintf("%s: gone right after bind", path);
		close(fd);
		return (-1);
	}
	admin_ino = st.st_ino;
	if (admin_has_group &&
	    (fchownat(admin_dirfd, admin_name, (uid_t)-1, admin_gid,
		 AT_SYMLINK_NOFOLLOW) == -1 ||
		fchmodat(admin_dirfd, admin_name, 0660, 0) == -1)) {
		*cause = xasprintf("%s: cannot give it to group %lu: %s", path,
		    (unsigned long)admin_gid, strerror(errno));
		close(fd);
		return (-1);
	}
	return (fd);
}

/* Root, our own user, or a member of admin_group may steer us. */
static int
admin_peer_allowed(int fd, struct ucred *uc)
{
	socklen_t len = sizeof *uc;
	gid_t     groups[ADMIN_GROUPS_MAX];
	size_t    i, n;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, uc, &len) == -1)
		return (0);
	if (uc->uid == 0 || uc->uid == geteuid())
		return (1);
	if (!admin_has_group)
		return (0);
	if (uc->gid == admin_gid)
		return (1);
	len = sizeof groups;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == -1)
		return (0);
	n = len / sizeof groups[0];
	for (i = 0; i < n; i++) {
		if (groups[i] == admin_gid)
			return (1);
	}
	return (0);
}

/* One line per refusal, at most one a second (with the count since). */
static void
admin_refuse(const struct ucred *uc, const char *why)
{
	long long now = now_coarse_ms();

	admin_refused++;
	if (now - admin_refused_at < 1000)
		return;
	log_warnx(
	    "admin socket: refused uid %lu (pid %ld): %s (%lu refusal%s since the last line)",
	    (unsigned long)uc->uid, (long)uc->pid, why, admin_refused,
	    admin_refused == 1 ? "" : "s");
	admin_refused = 0;
	admin_refused_at = now;
}

static void
admin_free(struct admin_conn *c)
{
	TAILQ_REMOVE(&admin_conns, c, entry);
	admin_nconns--;
	bufferevent_free(c->bev);
	if (c->errors != NULL)
		evbuffer_free(c->errors);
	free(c);
}

static void
admin_timeouts(struct admin_conn *c, int reading)
{
	struct timeval tv = { ADMIN_IDLE_SEC, 0 };

	bufferevent_set_timeouts(c->bev, reading ? &tv : NULL, &tv);
}

/* Text as OUT or ERR frames of at most ADMIN_FRAME_MAX bytes. */
static void
admin_frames(struct admin_conn *c, uint8_t type, struct evbuffer *text)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	unsigned char    hdr[ADMIN_HDR];
	size_t           n;

	while ((n = evbuffer_get_length(text)) > 0) {
		if (n > ADMIN_FRAME_MAX)
			n = ADMIN_FRAME_MAX;
		admin_header_put(hdr, type, 0, (uint32_t)n);
		evbuffer_add(out, hdr, sizeof hdr);
		evbuffer_remove_buffer(text, out, n);
	}
}

static void admin_printf(struct admin_conn *, uint8_t, const char *, ...)
    __attribute__((format(printf, 3, 4)));

static void
admin_printf(struct admin_conn *c, uint8_t type, const char *fmt, ...)
{
	struct evbuffer *b = evbuffer_new();
	va_list          ap;

	if (b == NULL)
		return;
	va_start(ap, fmt);
	evbuffer_add_vprintf(b, fmt, ap);
	va_end(ap);
	admin_frames(c, type, b);
	evbuffer_free(b);
}

/* The answer is complete: its exit status; then the next request. */
static void
admin_done(struct admin_conn *c, int status)
{
	unsigned char b[ADMIN_HDR + 1];

	admin_header_put(b, ADMIN_DONE, 0, 1);
	b[ADMIN_HDR] = (unsigned char)status;
	bufferevent_write(c->bev, b, sizeof b);
	c->state = ADMIN_IDLE;
	admin_timeouts(c, 1);
}

/* A refused command: one line for stderr, a non-zero status. */
static void admin_fail(struct admin_conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
admin_fail(struct admin_conn *c, int status, const char *fmt, ...)
{
	struct evbuffer *b = evbuffer_new();
	va_list          ap;

	if (b != NULL) {
		va_start(ap, fmt);
		evbuffer_add_vprintf(b, fmt, ap);
		va_end(ap);
		evbuffer_add(b, "\n", 1);
		admin_frames(c, ADMIN_ERR, b);
		evbuffer_free(b);
	}
	admin_done(c, status);
}

/* More of a long answer, while the client takes it. */
static void
admin_stream(struct admin_conn *c)
{
	struct evbuffer *b;
	int              done;

	if ((b = evbuffer_new()) == NULL)
		return;
	done = status_stream(&c->cursor, b, ADMIN_OUT_CAP);
	admin_frames(c, ADMIN_OUT, b);
	evbuffer_free(b);
	if (done)
		admin_done(c, ADMIN_EXIT_OK);
}

static int
admin_number(const char *s, long lo, long hi, long *v)
{
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return (-1);
	errno = 0;
	*v = strtol(s, &end, 10);
	if (*end != '\0' || errno != 0 || *v < lo || *v > hi)
		return (-1);
	return (0);
}

static struct service *
admin_service(struct admin_conn *c, const char *name)
{
	struct service *svc;

	if ((svc = daemon_service(name)) == NULL)
		admin_fail(
		    c, ADMIN_EXIT_FAILED, "unknown service \"%.64s\"", name);
	return (svc);
}

/* scale SERVICE N | scale SERVICE min N | scale SERVICE max N */
static void
admin_scale(struct admin_conn *c, char **w, int n)
{
	struct service *svc;
	const char     *num = n == 3 ? w[2] : w[3];
	char           *cause;
	long            v;
	int             min, max;

	if ((n != 3 && n != 4) ||
	    (n == 4 && strcmp(w[2], "min") != 0 && strcmp(w[2], "max") != 0)) {
		admin_fail(c, ADMIN_EXIT_USAGE,
		    "usage: scale SERVICE N | scale SERVICE min N | scale SERVICE max N");
		return;
	}
	if ((svc = admin_service(c, w[1])) == NULL)
		return;
	if (admin_number(num, 0, WORKERS_MAX, &v) == -1) {
		admin_fail(c, ADMIN_EXIT_FAILED,
		    "scale: \"%.32s\" is not a number from 0 to %d", num,
		    WORKERS_MAX);
		return;
	}
	min = svc->conf->min_workers;
	max = svc->conf->max_workers;
	if (n == 3)
		min = max = (int)v;
	else if (strcmp(w[2], "min") == 0)
		min = (int)v;
	else
		max = (int)v;
	if (service_scale(svc, min, max, &cause) == -1) {
		admin_fail(c, ADMIN_EXIT_FAILED, "%s", cause);
		free(cause);
		return;
	}
	admin_printf(c, ADMIN_OUT,
	    "service %s: min_workers %d, max_workers %d\n", svc->conf->name,
	    min, max);
	admin_done(c, ADMIN_EXIT_OK);
}

static void
admin_drain(struct admin_conn *c, char **w, int n)
{
	struct service *svc;
	char           *cause;
	long            pid;

	if (n != 3) {
		admin_fail(c, ADMIN_EXIT_USAGE, "usage: drain SERVICE PID");
		return;
	}
	if ((svc = admin_service(c, w[1])) == NULL)
		return;
	if (admin_number(w[2], 1, INT_MAX, &pid) == -1) {
		admin_fail(c, ADMIN_EXIT_FAILED,
		    "drain: \"%.32s\" is not a pid", w[2]);
		return;
	}
	if (service_drain_worker(svc, (pid_t)pid, &cause) == -1) {
		admin_fail(c, ADMIN_EXIT_FAILED, "%s", cause);
		free(cause);
		return;
	}
	admin_printf(c, ADMIN_OUT, "service %s: worker %ld draining\n",
	    svc->conf->name, pid);
	admin_done(c, ADMIN_EXIT_OK);
}

/*
 * Where a service's current generation stands: 1 ready (its minimum pool
 * is), -1 failing (workers die before they serve), 0 not yet.
 */
static int
admin_generation(const struct service *svc)
{
	if (svc->stopping || svc->ready >= svc->conf->min_workers)
		return (1);
	if (svc->failures > 0)
		return (-1);
	return (0);
}

/* A reload or restart waits: answer once every generation is decided. */
static void
admin_check_wait(struct admin_conn *c)
{
	struct service *svc;
	int             st, failed = 0;

	if (c->state == ADMIN_RESTART) {
		if ((svc = daemon_service(c->service)) == NULL) {
			admin_fail(c, ADMIN_EXIT_FAILED, "service %s is gone",
			    c->service);
			return;
		}
		if ((st = admin_generation(svc)) == 0)
			return;
		if (st < 0) {
			admin_fail(c, ADMIN_EXIT_WORKERS,
			    "service %s: the new workers fail to start (see the log); the previous ones keep serving",
			    svc->conf->name);
			return;
		}
		admin_printf(c, ADMIN_OUT,
		    "service %s: generation %u ready (%d worker%s)\n",
		    svc->conf->name, svc->generation, svc->ready,
		    svc->ready == 1 ? "" : "s");
		admin_done(c, ADMIN_EXIT_OK);
		return;
	}
	for (svc = NULL; (svc = daemon_service_next(svc)) != NULL;) {
		if ((st = admin_generation(svc)) == 0)
			return;
		if (st < 0) {
			evbuffer_add_printf(c->errors,
			    "service %s: the new workers fail to start (see the log); the previous ones keep serving\n",
			    svc->conf->name);
			failed = 1;
		}
	}
	if (failed || evbuffer_get_length(c->errors) > 0) {
		admin_frames(c, ADMIN_ERR, c->errors);
		admin_done(c, ADMIN_EXIT_WORKERS);
		return;
	}
	admin_printf(c, ADMIN_OUT, "reloaded: every service is ready\n");
	admin_done(c, ADMIN_EXIT_OK);
}

static void
admin_collect_error(const char *msg, void *arg)
{
	struct admin_conn *c = arg;

	evbuffer_add_printf(c->errors, "%s\n", msg);
}

static void
admin_reload(struct admin_conn *c)
{
	if (c->errors == NULL && (c->errors = evbuffer_new()) == NULL) {
		admin_fail(c, ADMIN_EXIT_FAILED, "out of memory");
		return;
	}
	evbuffer_drain(c->errors, evbuffer_get_length(c->errors));
	if (daemon_reload(admin_collect_error, c) == -1) {
		evbuffer_add_printf(c->errors,
		    "reload refused: the running configuration stays\n");
		admin_frames(c, ADMIN_ERR, c->errors);
		admin_done(c, ADMIN_EXIT_CONFIG);
		return;
	}
	c->state = ADMIN_RELOAD;
	admin_timeouts(c, 0);
	admin_check_wait(c);
}

static void
admin_restart(struct admin_conn *c, char **w, int n)
{
	struct service *svc;

	if (n != 2) {
		admin_fail(c, ADMIN_EXIT_USAGE, "usage: restart SERVICE");
		return;
	}
	if ((svc = admin_service(c, w[1])) == NULL)
		return;
	if (svc->stopping) {
		admin_fail(c, ADMIN_EXIT_FAILED, "service %s is stopping",
		    svc->conf->name);
		return;
	}
	log_notice("service %s: restart asked by socketnautctl (uid %lu)",
	    svc->conf->name, (unsigned long)c->uid);
	service_restart(svc);
	snprintf(c->service, sizeof c->service, "%s", svc->conf->name);
	c->state = ADMIN_RESTART;
	admin_timeouts(c, 0);
	admin_check_wait(c);
}

/* stop: answered before the shutdown starts (it may end the loop). */
static void
admin_stop(struct admin_conn *c)
{
	log_notice(
	    "stop asked by socketnautctl (uid %lu)", (unsigned long)c->uid);
	admin_printf(c, ADMIN_OUT, "shutting down\n");
	admin_done(c, ADMIN_EXIT_OK);
	evbuffer_write(
	    bufferevent_get_output(c->bev), bufferevent_getfd(c->bev));
	daemon_shutdown();
}

static void
admin_stream_start(
    struct admin_conn *c, enum status_kind kind, const char *filter)
{
	status_cursor_init(&c->cursor, kind, filter);
	c->state = ADMIN_STREAM;
	admin_timeouts(c, 0); /* it reads; the write timeout watches that */
	admin_stream(c);
}

/* Words are printable ASCII, at most ADMIN_WORDS_MAX of them. */
static int
admin_split(char *p, size_t len, char **w)
{
	int    n = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i] == '\n')
			p[i] = '\0';
		else if ((unsigned char)p[i] < 0x20 ||
		    (unsigned char)p[i] >= 0x7f)
			return (-1);
	}
	p[len] = '\0';
	for (i = 0; i < len && n < ADMIN_WORDS_MAX; i += strlen(p + i) + 1) {
		if (p[i] != '\0')
			w[n++] = p + i;
	}
	return (i < len ? -1 : n);
}

static void
admin_command(struct admin_conn *c, char *p, size_t len)
{
	char *w[ADMIN_WORDS_MAX];
	int   n, json = c->flags & ADMIN_F_JSON;

	if ((n = admin_split(p, len, w)) <= 0) {
		admin_fail(c, ADMIN_EXIT_USAGE, "empty or malformed command");
		return;
	}
	log_debug("admin socket: uid %lu: %s", (unsigned long)c->uid, w[0]);
	if (strcmp(w[0], "status") == 0 && n == 1)
		admin_stream_start(c, json ? STATUS_JSON : STATUS_TABLE, NULL);
	else if (strcmp(w[0], "conns") == 0 && n <= 2) {
		if (n == 2 && admin_service(c, w[1]) == NULL)
			return;
		admin_stream_start(
		    c, json ? CONNS_JSON : CONNS_TABLE, n == 2 ? w[1] : NULL);
	} else if (strcmp(w[0], "reload") == 0 && n == 1)
		admin_reload(c);
	else if (strcmp(w[0], "scale") == 0)
		admin_scale(c, w, n);
	else if (strcmp(w[0], "restart") == 0)
		admin_restart(c, w, n);
	else if (strcmp(w[0], "drain") == 0)
		admin_drain(c, w, n);
	else if (strcmp(w[0], "stop") == 0 && n == 1)
		admin_stop(c);
	else
		admin_fail(c, ADMIN_EXIT_USAGE,
		    "unknown command \"%.32s\" or wrong arguments (see socketnautctl -h)",
		    w[0]);
}

/*
 * The next request, when the previous answer is complete.  A frame that
 * is not a request of a sane size closes this connection, nothing else.
 */
static void
admin_read(struct bufferevent *bev, void *arg)
{
	struct admin_conn *c = arg;
	struct evbuffer   *in = bufferevent_get_input(bev);
	unsigned char      hdr[ADMIN_HDR];
	char               req[ADMIN_REQUEST_MAX + 1];
	uint32_t           len;
	uint16_t           flags;
	uint8_t            type;

	/* The next answer waits while this client leaves answers unread. */
	while (c->state == ADMIN_IDLE &&
	    evbuffer_get_length(bufferevent_get_output(bev)) < ADMIN_OUT_CAP &&
	    evbuffer_get_length(in) >= ADMIN_HDR) {
		evbuffer_copyout(in, hdr, sizeof hdr);
		if (admin_header_get(
			hdr, &type, &flags, &len, ADMIN_REQUEST_MAX) == -1 ||
		    type != ADMIN_REQUEST) {
			log_info(
			    "admin socket: uid %lu (pid %ld): unexpected frame, closing",
			    (unsigned long)c->uid, (long)c->pid);
			admin_free(c);
			return;
		}
		if (evbuffer_get_length(in) < ADMIN_HDR + len)
			return;
		evbuffer_drain(in, ADMIN_HDR);
		evbuffer_remove(in, req, len);
		c->flags = flags;
		admin_command(c, req, len);
	}
}

/* Output went out: more of a long answer, or the end of a closing one. */
static void
admin_write(struct bufferevent *bev, void *arg)
{
	struct admin_conn *c = arg;

	(void)bev;
	if (c->state == ADMIN_STREAM)
		admin_stream(c);
	else if (c->state == ADMIN_IDLE)
		admin_read(c->bev, c);
}

static void
admin_event(struct bufferevent *bev, short what, void *arg)
{
	struct admin_conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_TIMEOUT)
		log_info(
		    "admin socket: uid %lu (pid %ld): idle for %ds, closing",
		    (unsigned long)c->uid, (long)c->pid, ADMIN_IDLE_SEC);
	admin_free(c);
}

/* How many clients uid has. */
static int
admin_count(uid_t uid)
{
	struct admin_conn *c;
	int                n = 0;

	TAILQ_FOREACH (c, &admin_conns, entry)
		n += c->uid == uid;
	return (n);
}

/*
 * Full: the oldest client that asked nothing makes room, so that silent
 * connections cannot lock operators out.  Failing that, the oldest of the
 * user with the most clients, if it has two more than the newcomer's: one
 * admin_group member keeping answers unread cannot keep root out.
 */
static int
admin_evict(uid_t uid)
{
	struct admin_conn *c, *victim = NULL;
	int                n, most = 0;

	TAILQ_FOREACH (c, &admin_conns, entry) {
		if (c->state == ADMIN_IDLE &&
		    evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
			victim = c;
			break;
		}
	}
	if (victim == NULL) {
		TAILQ_FOREACH (c, &admin_conns, entry) {
			if ((n = admin_count(c->uid)) > most) {
				most = n;
				victim = c;
			}
		}
		if (most < admin_count(uid) + 2)
			return (-1);
	}
	log_info(
	    "admin socket: uid %lu (pid %ld): closed to make room for a new client",
	    (unsigned long)victim->uid, (long)victim->pid);
	admin_free(victim);
	return (0);
}

static void
admin_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct admin_conn *c;
	struct ucred       uc = { 0, (uid_t)-1, (gid_t)-1 };

	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	if (!admin_peer_allowed(fd, &uc)) {
		admin_refuse(
		    &uc, "not root, socketnautd's user or in admin_group");
		close(fd);
		return;
	}
	if (admin_nconns >= ADMIN_CLIENTS_MAX && admin_evict(uc.uid) == -1) {
		admin_refuse(&uc, "too many admin clients at once");
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof *c);
	c->uid = uc.uid;
	c->pid = uc.pid;
	c->bev = bufferevent_socket_new(sn_base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	TAILQ_INSERT_TAIL(&admin_conns, c, entry);
	admin_nconns++;
	bufferevent_setcb(c->bev, admin_read, admin_write, admin_event, c);
	/* Stop reading beyond one request; produce more below the cap. */
	bufferevent_setwatermark(
	    c->bev, EV_READ, 0, ADMIN_HDR + ADMIN_REQUEST_MAX);
	bufferevent_setwatermark(c->bev, EV_WRITE, ADMIN_OUT_CAP / 4, 0);
	admin_timeouts(c, 1);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* Some state changed: waiting reloads and restarts look, once. */
static void
admin_poll(evutil_socket_t fd, short events, void *arg)
{
	struct admin_conn *c, *next;

	(void)fd;
	(void)events;
	(void)arg;
	for (c = TAILQ_FIRST(&admin_conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (c->state == ADMIN_RELOAD || c->state == ADMIN_RESTART) {
			admin_check_wait(c);
			if (c->state == ADMIN_IDLE)
				admin_read(c->bev, c);
		}
	}
}

void
admin_changed(void)
{
	if (event_initialized(&admin_poll_ev))
		event_active(&admin_poll_ev, EV_TIMEOUT, 0);
}

/*
 * The new master of a binary upgrade takes the name over from the old one,
 * which still answers: bind beside it, then rename over it (atomic; the
 * old master removes only the inode it bound).
 */
static int
admin_bind_over(const char *path, char **cause)
{
	char *final = admin_name;
	int   fd;

	admin_name = xasprintf("%s.%ld.new", final, (long)getpid());
	if (admin_clear(path, cause) == -1 ||
	    (fd = admin_bind(path, cause)) == -1) {
		free(admin_name);
		admin_name = final;
		return (-1);
	}
	if (renameat(admin_dirfd, admin_name, admin_dirfd, final) == -1) {
		*cause = xasprintf("%s: rename: %s", path, strerror(errno));
		unlinkat(admin_dirfd, admin_name, 0);
		close(fd);
		fd = -1;
	}
	free(admin_name);
	admin_name = final;
	return (fd);
}

int
admin_open(struct sn_config *conf, int take_over, char **cause)
{
	const char *path = conf->admin_socket;
	char       *dir, *why;
	int         fd;

	if (path == NULL) {
		log_info("admin socket: off");
		return (0);
	}
	admin_path = xstrdup(path);
	admin_group =
	    conf->admin_group != NULL ? xstrdup(conf->admin_group) : NULL;
	admin_has_group = conf->admin_group != NULL;
	admin_gid = conf->admin_gid;
	dir = xstrdup(path);
	*strrchr(dir, '/') = '\0';
	admin_name = xstrdup(strrchr(path, '/') + 1);
	admin_dirfd = sockdir_open_own(dir[0] != '\0' ? dir : "/", &why);
	free(dir);
	if (admin_dirfd == -1) {
		*cause = xasprintf("%s: %s", path, why);
		free(why);
		return (-1);
	}
	if (take_over)
		fd = admin_bind_over(path, cause);
	else if (admin_clear(path, cause) == -1)
		fd = -1;
	else
		fd = admin_bind(path, cause);
	if (fd == -1)
		return (-1);
	admin_listener = evconnlistener_new(sn_base, admin_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 64, fd);
	if (admin_listener == NULL) {
		*cause = xasprintf("%s: cannot listen", path);
		close(fd);
		return (-1);
	}
	listener_guard_init(&admin_guard, admin_listener, "admin socket", NULL);
	event_assign(&admin_poll_ev, sn_base, -1, 0, admin_poll, NULL);
	log_info("admin socket: %s%s%s", path,
	    admin_has_group ? ", group " : "",
	    admin_has_group ? conf->admin_group : "");
	return (0);
}

/* At exit: every client goes, and our socket (only if still ours). */
void
admin_close(void)
{
	struct admin_conn *c;
	struct stat        st;

	while ((c = TAILQ_FIRST(&admin_conns)) != NULL)
		admin_free(c);
	listener_guard_free(&admin_guard);
	if (admin_listener != NULL)
		evconnlistener_free(admin_listener);
	admin_listener = NULL;
	if (event_initialized(&admin_poll_ev))
		event_del(&admin_poll_ev);
	if (admin_dirfd != -1 &&
	    fstatat(admin_dirfd, admin_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISSOCK(st.st_mode) && st.st_ino == admin_ino)
		unlinkat(admin_dirfd, admin_name, 0);
	if (admin_dirfd != -1)
		close(admin_dirfd);
	admin_dirfd = -1;
	free(admin_name);
	admin_name = NULL;
	free(admin_path);
	admin_path = NULL;
	free(admin_group);
	admin_group = NULL;
}

static int
admin_same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return (a == b);
	return (strcmp(a, b) == 0);
}

/* A reload does not move the socket: say so when the file would. */
void
admin_reconfigured(const struct sn_config *conf)
{
	if (!admin_same(admin_path, conf->admin_socket) ||
	    !admin_same(admin_group, conf->admin_group))
		log_warnx(
		    "admin_socket or admin_group changed: restart socketnautd to apply it; keeping %s",
		    admin_path != NULL ? admin_path : "the admin socket off");
}
