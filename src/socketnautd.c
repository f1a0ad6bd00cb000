/*
 * socketnautd: the master.  Reads the configuration, starts every service,
 * turns signals into events, reaps workers and tells systemd how it goes.
 */
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <netinet/in.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accesslog.h"
#include "admin.h"
#include "cgroup.h"
#include "config.h"
#include "keeper.h"
#include "log.h"
#include "pidfile.h"
#include "sdnotify.h"
#include "service.h"
#include "socketnautd.h"
#include "stats.h"
#include "status.h"
#include "upgrade.h"

#ifndef SN_CONFIG_PATH
#define SN_CONFIG_PATH "/etc/socketnaut.conf"
#endif

struct event_base *sn_base;
struct rlimit      worker_nofile;
int                daemon_started;

static struct sn_config   *conf;
static struct service_head services = TAILQ_HEAD_INITIALIZER(services);
static int                 stopping;
static int                 draining; /* drain_delay runs: health says 503 */
static struct event        drain_ev;
static int                 ready_sent;
static int                 debug_flag;
static struct event        check_ev; /* daemon_check(), deferred */
static struct event        collect_ev;
static void              **garbage; /* freed once the callback is over */
static size_t              ngarbage, garbage_cap;

static const struct option long_opts[] = { { "config", 1, NULL, 'c' },
	{ "debug", 0, NULL, 'd' }, { "help", 0, NULL, 'h' },
	{ "test", 0, NULL, 't' }, { "version", 0, NULL, 'V' },
	{ NULL, 0, NULL, 0 } };

/* -h: every flag; a wrong command line: the same on stderr, exit 2. */
static void __attribute__((noreturn)) usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f, "usage: socketnautd [-dhtV] [-c file]\n");
	fprintf(f, "  -c, --config FILE  configuration file (default %s)\n",
	    SN_CONFIG_PATH);
	fprintf(f,
	    "  -d, --debug        log at debug level to stderr, whatever the file says\n");
	fprintf(f,
	    "  -t, --test         check the configuration and what start needs, then exit\n");
	fprintf(f, "  -V, --version      print the version and exit\n");
	fprintf(f, "  -h, --help         print this help and exit\n");
	exit(status);
}

/*
 * The new master of a binary upgrade serves: the admin socket and the
 * stats listener are its own from now on (the old one still has them
 * until it hands over: the admin socket is renamed over, the stats port
 * shared with SO_REUSEPORT until the old one closes its own).
 */
static void
daemon_take_over(void)
{
	char *cause;

	if (admin_open(conf, 1, &cause) == -1) {
		log_warnx("admin_socket: %s", cause);
		free(cause);
	}
	if (stats_start(conf, &services, &cause) == -1) {
		log_warnx("%s", cause);
		free(cause);
	}
}

static void
daemon_pidfile(void)
{
	char *cause;

	if (pidfile_write(&cause) == -1) {
		log_warnx("%s", cause);
		free(cause);
	}
}

/* The pool changed: refresh systemd's status line, send READY=1 once. */
void
daemon_status_changed(void)
{
	struct service *svc;
	char            line[512];
	size_t          len = 0;
	int             ready = 1;

	line[0] = '\0';
	TAILQ_FOREACH (svc, &services, entry) {
		if (svc->ready < svc->conf->min_workers)
			ready = 0;
		if (len < sizeof line)
			len += snprintf(line + len, sizeof line - len,
			    "%s%s: %d/%d ready, %d conns", len ? "; " : "",
			    svc->conf->name, svc->ready, svc->online,
			    svc->nconns);
	}
	admin_changed();
	if (stopping || draining)
		return;
	sdnotify("STATUS=%s", line);
	if (ready && !ready_sent) {
		ready_sent = 1;
		log_info("every service has its minimum pool ready");
		if (upgrade_child()) {
			upgrade_ready();
			daemon_pidfile();
			daemon_take_over();
			TAILQ_FOREACH (svc, &services, entry)
				service_update_accepting(svc);
		} else
			sdnotify("READY=1");
	}
}

static void
daemon_maybe_exit(void)
{
	struct service *svc, *next;

	if (!stopping) {
		/* Services a reload removed go once they have stopped. */
		for (svc = TAILQ_FIRST(&services); svc != NULL; svc = next) {
			next = TAILQ_NEXT(svc, entry);
			if (svc->removed && service_stopped(svc)) {
				log_info(
				    "service %s: removed", svc->conf->name);
				TAILQ_REMOVE(&services, svc, entry);
				service_free(svc);
			}
		}
		return;
	}
	TAILQ_FOREACH (svc, &services, entry) {
		if (!service_stopped(svc))
			return;
	}
	event_base_loopexit(sn_base, NULL);
}

static void
daemon_stop(int now)
{
	struct service *svc;

	if (!stopping) {
		log_notice("shutting down");
		sdnotify("STOPPING=1");
	} else
		log_notice("shutting down now");
	stopping = 1;
	TAILQ_FOREACH (svc, &services, entry)
		service_stop(svc, now);
	daemon_maybe_exit();
}

/*
 * The new master of a binary upgrade serves: stop accepting, drain as on
 * SIGTERM, exit.  Hook for other files' state shared with the new master
 * (admin socket, pid file): it is the new master's from now on.
 */
static void
daemon_handover(pid_t new_master)
{
	struct service *svc;

	(void)new_master;
	stopping = 1;
	TAILQ_FOREACH (svc, &services, entry)
		service_handover(svc);
	stats_stop();
	daemon_maybe_exit();
}

/* Load balancers see 503 from now on; the daemon serves as before. */
int
daemon_draining(void)
{
	return (draining || stopping);
}

static void
daemon_drain_over(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	daemon_stop(0);
}

/*
 * SIGTERM with drain_delay: keep serving while the health endpoint tells
 * load balancers to go away, then stop as without it.
 */
static void
daemon_drain(void)
{
	struct timeval tv;

	draining = 1;
	log_notice(
	    "draining: health checks fail from now on, shutting down in %lld ms",
	    conf->drain_delay);
	sdnotify("STATUS=draining for load balancers, then shutting down");
	evtimer_assign(&drain_ev, sn_base, daemon_drain_over, NULL);
	tv.tv_sec = conf->drain_delay / 1000;
	tv.tv_usec = (conf->drain_delay % 1000) * 1000;
	evtimer_add(&drain_ev, &tv);
}

/*
 * SIGTERM, SIGINT or socketnautctl stop: with drain_delay, drain for load
 * balancers first; a second one cuts the drain short, a third the
 * shutdown's wait for connections.
 */
static void
daemon_terminate(void)
{
	if (!stopping && !draining && conf->drain_delay > 0)
		daemon_drain();
	else {
		if (draining)
			evtimer_del(&drain_ev);
		daemon_stop(stopping);
	}
}

/* socketnautctl stop: as SIGTERM. */
void
daemon_shutdown(void)
{
	daemon_terminate();
}

static void
daemon_check_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	daemon_maybe_exit();
}

/*
 * A service lost its last connection or worker: see, once the current
 * callback is over, whether a stopped service can go or the daemon exit.
 */
void
daemon_check(void)
{
	if (event_initialized(&check_ev))
		event_active(&check_ev, EV_TIMEOUT, 0);
}

static void
daemon_collect(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	while (ngarbage > 0)
		free(garbage[--ngarbage]);
}

/*
 * Free p once the current callback is over: a relay or worker that closes
 * deep in a call chain stays readable to every caller up the stack.
 */
void
daemon_defer_free(void *p)
{
	if (ngarbage == garbage_cap) {
		garbage_cap = garbage_cap ? garbage_cap * 2 : 64;
		garbage = xreallocarray(garbage, garbage_cap, sizeof *garbage);
	}
	garbage[ngarbage++] = p;
	if (event_initialized(&collect_ev))
		event_active(&collect_ev, EV_TIMEOUT, 0);
}

static in_port_t
addr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (((const struct sockaddr_in *)ss)->sin_port);
	return (((const struct sockaddr_in6 *)ss)->sin6_port);
}

static int
addr_is_any(const struct sn_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return (((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
		    htonl(INADDR_ANY));
	return (IN6_IS_ADDR_UNSPECIFIED(
	    &((const struct sockaddr_in6 *)&a->ss)->sin6_addr));
}

/*
 * True when a connection to addr would reach one of our own listeners (a
 * worker must not send us back to ourselves): the same address, or a
 * wildcard listener on that port.
 */
int
daemon_listens_on(const struct sn_addr *addr)
{
	struct service       *svc;
	const struct sn_addr *l;
	size_t                i;

	TAILQ_FOREACH (svc, &services, entry) {
		for (i = 0; i < svc->conf->nlisten; i++) {
			l = &svc->conf->listen[i];
			if (l->len == addr->len &&
			    memcmp(&l->ss, &addr->ss, l->len) == 0)
				return (1);
			if (addr_is_any(l) &&
			    addr_port(&l->ss) == addr_port(&addr->ss) &&
			    (l->ss.ss_family == addr->ss.ss_family ||
				l->dualstack))
				return (1);
		}
	}
	return (0);
}

/* The reload's outcome, counted for /metrics. */
static void
daemon_reloaded(int ok)
{
	if (ok)
		daemon_counters.reloads_ok++;
	else
		daemon_counters.reloads_failed++;
	daemon_counters.last_reload_ok = ok;
	daemon_counters.last_reload = now_ms();
}

/* The stats listener follows the file; a failure is logged. */
static void
daemon_reload_operations(struct sn_config *nconf)
{
	char *cause;

	if (stats_reload(nconf, &cause) == -1) {
		log_warnx("stats_listen: %s", cause);
		free(cause);
	}
}

static int
daemon_name_cmp(const void *va, const void *vb)
{
	const struct service *const *a = va, *const *b = vb;

	return (strcmp((*a)->conf->name, (*b)->conf->name));
}

static int
daemon_key_cmp(const void *key, const void *vb)
{
	const struct service *const *b = vb;

	return (strcmp(key, (*b)->conf->name));
}

/* The running services sorted by name: a reload of n services is n log n. */
static struct service **
daemon_index(size_t *np)
{
	struct service *svc, **v;
	size_t          n = 0;

	TAILQ_FOREACH (svc, &services, entry)
		n++;
	v = xcalloc(n + 1, sizeof *v);
	n = 0;
	TAILQ_FOREACH (svc, &services, entry) {
		if (!svc->removed)
			v[n++] = svc;
	}
	qsort(v, n, sizeof *v, daemon_name_cmp);
	*np = n;
	return (v);
}

static struct service *
daemon_find(struct service **index, size_t n, const char *name)
{
	struct service **found;

	found = bsearch(name, index, n, sizeof *index, daemon_key_cmp);
	return (found != NULL ? *found : NULL);
}

/* A running service by name (socketnautctl); NULL if none. */
struct service *
daemon_service(const char *name)
{
	struct service *svc;

	TAILQ_FOREACH (svc, &services, entry) {
		if (!svc->removed && strcmp(svc->conf->name, name) == 0)
			return (svc);
	}
	return (NULL);
}

/* The running services in order, for walks from another file. */
struct service *
daemon_service_next(struct service *svc)
{
	svc = svc == NULL ? TAILQ_FIRST(&services) : TAILQ_NEXT(svc, entry);
	while (svc != NULL && svc->removed)
		svc = TAILQ_NEXT(svc, entry);
	return (svc);
}

/*
 * SIGHUP or socketnautctl reload: read the file again.  A bad file changes
 * nothing (-1); a good one starts a new worker generation in every
 * service, starts new services and stops removed ones.  Every error, of
 * the file or of a new service, also goes to err when it is set.
 */
int
daemon_reload(config_error_fn *err, void *arg)
{
	struct sn_config *nconf;
	struct service   *svc, **index;
	char             *cause;
	size_t            i, n;

	if (stopping) {
		if (err != NULL)
			err("socketnautd is shutting down", arg);
		return (-1);
	}
	log_notice("reloading %s", conf->path);
	sdnotify("RELOADING=1");
	config_error_sink(err, arg);
	nconf = config_load(conf->path);
	config_error_sink(NULL, NULL);
	status_reloaded(nconf != NULL);
	if (nconf == NULL) {
		log_errorx("reload failed: the running configuration stays");
		daemon_reloaded(0);
		sdnotify("READY=1");
		return (-1);
	}
	/* Removed services first: their addresses may go to new ones. */
	TAILQ_FOREACH (svc, &services, entry)
		svc->seen = 0;
	index = daemon_index(&n);
	for (i = 0; i < nconf->nservices; i++) {
		if ((svc = daemon_find(index, n, nconf->services[i].name)) !=
		    NULL)
			svc->seen = 1;
	}
	TAILQ_FOREACH (svc, &services, entry) {
		if (!svc->seen && !svc->removed) {
			log_info("service %s: no longer configured, stopping",
			    svc->conf->name);
			svc->removed = 1;
			service_stop(svc, 0);
		}
	}
	/* Still right: nconf's names are unique; one stopped above matched
	 * none. */
	for (i = 0; i < nconf->nservices; i++) {
		if ((svc = daemon_find(index, n, nconf->services[i].name)) !=
		    NULL) {
			service_reload(svc, nconf, &nconf->services[i]);
			continue;
		}
		svc = service_new(nconf, &nconf->services[i]);
		TAILQ_INSERT_TAIL(&services, svc, entry);
		if (service_start(svc, &cause) == -1) {
			log_errorx("%s", cause);
			if (err != NULL)
				err(cause, arg);
			free(cause);
			svc->removed = 1;
			service_stop(svc, 1);
		}
	}
	free(index);
	if (!debug_flag && strcmp(conf->log_target, nconf->log_target) != 0 &&
	    log_open(nconf->log_target, &cause) == -1) {
		log_warnx("log_target: %s", cause);
		free(cause);
	} else
		log_reopen();
	admin_reconfigured(nconf);
	daemon_reload_operations(nconf);
	config_unref(conf);
	conf = nconf;
	log_setlevel(debug_flag ? LOG_DEBUG : conf->log_level);
	daemon_reloaded(1);
	daemon_status_changed();
	sdnotify("READY=1");
	daemon_maybe_exit();
	return (0);
}

static void
daemon_reap(void)
{
	struct service *svc;
	struct worker  *w;
	pid_t           pid;
	int             status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (keeper_reaped(pid, status) || upgrade_reaped(pid, status))
			continue;
		TAILQ_FOREACH (svc, &services, entry) {
			TAILQ_FOREACH (w, &svc->workers, entry) {
				if (w->pid == pid && worker_alive(w))
					break;
			}
			if (w != NULL) {
				service_reap(svc, w, status);
				break;
			}
		}
		if (svc == NULL)
			log_debug("reaped unknown child %ld", (long)pid);
	}
	daemon_maybe_exit();
}

static void
daemon_signal(evutil_socket_t sig, short events, void *arg)
{
	(void)events;
	(void)arg;
	switch (sig) {
	case SIGTERM:
	case SIGINT:
		upgrade_abort();
		daemon_terminate();
		break;
	case SIGCHLD:
		daemon_reap();
		break;
	case SIGHUP:
		if (!stopping)
			daemon_reload(NULL, NULL);
		break;
	case SIGUSR1:
		log_reopen();
		accesslog_reopen();
		break;
	case SIGUSR2:
		if (stopping && !upgrade_handed_over())
			log_warnx("SIGUSR2: shutting down, no binary upgrade");
		else
			upgrade_start(&services, conf->upgrade_timeout,
			    conf->kill_timeout, daemon_handover);
		break;
	}
}

/*
 * Let the master hold as many connections as the system allows: root may
 * raise the hard limit up to fs.nr_open, others go up to their hard limit.
 * Workers get the original limit back (select()-based servers need it).
 */
static void
raise_nofile(void)
{
	struct rlimit rl, want;
	FILE         *f;
	unsigned long nr_open = 0;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	worker_nofile = rl;
	if ((f = fopen("/proc/sys/fs/nr_open", "re")) != NULL) {
		if (fscanf(f, "%lu", &nr_open) != 1)
			nr_open = 0;
		fclose(f);
	}
	if (nr_open > 1048576)
		nr_open = 1048576;
	if (nr_open > rl.rlim_max) {
		want.rlim_cur = want.rlim_max = nr_open;
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			return;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit RLIMIT_NOFILE");
	}
}

/*
 * Before any worker exists: a cgroup per worker if we may (worker_cgroup,
 * read at startup only), then the keeper, which must be forked after the
 * move into master/ and before any listener is opened.
 */
static void
daemon_contain(void)
{
	char *cause;

	if (!conf->worker_cgroup)
		log_info("worker cgroups: off (worker_cgroup = off)");
	else if (cgroup_init(&cause) == -1) {
		log_notice(
		    "worker cgroups: off (%s); descendants that leave a worker's process group can outlive it",
		    cause);
		free(cause);
	} else
		log_notice(
		    "worker cgroups: on, workers in %s", cgroup_workers_path());
	if (keeper_start(&cause) == -1) {
		log_warnx(
		    "keeper: %s; worker descendants may outlive a killed master",
		    cause);
		free(cause);
	}
}

int
main(int argc, char **argv)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2,
		SIGCHLD };
	struct event     sigev[sizeof sigs / sizeof sigs[0]];
	const char      *path = SN_CONFIG_PATH;
	struct service  *svc;
	char            *cause;
	int              ch, test = 0;
	size_t           i;

	upgrade_init(argc, argv); /* before getopt reorders argv */
	while (
	    (ch = getopt_long(argc, argv, "c:dhtV", long_opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'd':
			debug_flag = 1;
			break;
		case 't':
			test = 1;
			break;
		case 'V':
			printf("socketnautd %s\n", SOCKETNAUTD_VERSION);
			return (0);
		case 'h':
			usage(0);
		default:
			usage(2);
		}
	}
	if (optind != argc)
		usage(2);

	log_open("stderr", NULL);
	if ((conf = config_load(path)) == NULL)
		return (1);
	if (test) {
		printf("configuration OK\n");
		config_unref(conf);
		return (0);
	}
	log_setlevel(debug_flag ? LOG_DEBUG : conf->log_level);
	if (!debug_flag && log_open(conf->log_target, &cause) == -1) {
		log_errorx("log_target: %s", cause);
		return (1);
	}

	signal(SIGPIPE, SIG_IGN);
	daemon_contain();
	/* Before binding: a second daemon on this pid file stops here. */
	if (conf->pid_file != NULL &&
	    pidfile_lock(conf->pid_file, &cause) == -1) {
		log_errorx("%s", cause);
		free(cause);
		cgroup_shutdown();
		config_unref(conf);
		return (1);
	}
	raise_nofile();
	sdnotify_init();
	if ((sn_base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	event_assign(&check_ev, sn_base, -1, 0, daemon_check_cb, NULL);
	event_assign(&collect_ev, sn_base, -1, 0, daemon_collect, NULL);
	for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		evsignal_assign(
		    &sigev[i], sn_base, sigs[i], daemon_signal, NULL);
		evsignal_add(&sigev[i], NULL);
	}
	if (!upgrade_child() && stats_start(conf, &services, &cause) == -1) {
		log_errorx("%s", cause);
		return (1);
	}

	log_notice("socketnautd %s starting with %s (%zu service%s)%s",
	    SOCKETNAUTD_VERSION, path, conf->nservices,
	    conf->nservices == 1 ? "" : "s",
	    upgrade_child() ? ", a binary upgrade" : "");
	status_init(&services);
	/* A new master of an upgrade takes the admin socket when it serves. */
	if (!upgrade_child() && admin_open(conf, 0, &cause) == -1) {
		log_errorx("admin_socket: %s", cause);
		free(cause);
		stopping = 1;
	}
	listener_inherit();
	for (i = 0; i < conf->nservices && !stopping; i++) {
		svc = service_new(conf, &conf->services[i]);
		TAILQ_INSERT_TAIL(&services, svc, entry);
		if (service_start(svc, &cause) == -1) {
			log_errorx("%s", cause);
			free(cause);
			stopping = 1;
			break;
		}
	}
	listener_inherit_done();
	if (stopping) {
		/* Startup failed: stop what did start, then exit 1. */
		stopping = 0;
		daemon_stop(1);
		if (!TAILQ_EMPTY(&services))
			event_base_dispatch(sn_base);
		ch = 1;
	} else {
		daemon_started = 1;
		/* A new master of an upgrade writes it when it takes over. */
		if (!upgrade_child() && pidfile_write(&cause) == -1) {
			log_warnx("%s", cause);
			free(cause);
		}
		daemon_status_changed();
		event_base_dispatch(sn_base);
		log_notice(upgrade_handed_over()
			? "stopped, the new master serves"
			: "stopped");
		ch = 0;
	}

	admin_close();
	while ((svc = TAILQ_FIRST(&services)) != NULL) {
		TAILQ_REMOVE(&services, svc, entry);
		service_free(svc);
	}
	accesslog_flush_all();
	stats_stop();
	daemon_collect(-1, 0, NULL);
	free(garbage);
	for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		event_del(&sigev[i]);
	cgroup_shutdown();
	/* A new master that never took over leaves the old one its file. */
	pidfile_remove(upgrade_handed_over() || upgrade_holding());
	upgrade_free();
	event_base_free(sn_base);
	config_unref(conf);
	return (ch);
}
