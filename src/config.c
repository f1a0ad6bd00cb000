/*
 * socketnaut.conf: the libconfuse schema, per-value checks while parsing
 * (each names file:line) and a whole-configuration pass for everything that
 * involves several options or the system (users, binaries, directories).
 * Nothing outside this file sees a cfg_t.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>

#include <confuse.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "sockdir.h"

#define SERVICE_NAME_MAX 32
#define WORKERS_MAX      4096

/* Where each option was set: libconfuse keeps no line per option. */
struct line_rec {
	const cfg_t *sec;
	const char  *name;
	int          line;
};

/* State of one config_load() call; the callbacks have no user pointer. */
static struct {
	const char      *path;
	int              errors;
	struct line_rec *lines;
	size_t           nlines;
} load;

static void
config_error(int, const char *, ...) __attribute__((format(printf, 2, 3)));

static void
config_error(int line, const char *fmt, ...)
{
	va_list ap;
	char   *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	if (line > 0)
		log_errorx("%s:%d: %s", load.path, line, msg);
	else
		log_errorx("%s: %s", load.path, msg);
	free(msg);
	load.errors++;
}

static void
cb_error(cfg_t *cfg, const char *fmt, va_list ap)
{
	char *msg;

	if (vasprintf(&msg, fmt, ap) == -1)
		fatal("vasprintf");
	config_error(cfg != NULL ? cfg->line : 0, "%s", msg);
	free(msg);
}

/*
 * The line a service section opens on: libconfuse only knows where it
 * closed, so look for `service "name"` in the file itself.
 */
static int
title_line(cfg_t *sec)
{
	FILE  *f;
	char  *buf = NULL, *p, *want;
	size_t cap = 0;
	int    n = 0, found = 0;

	if ((f = fopen(load.path, "re")) == NULL)
		return (sec->line);
	want = xasprintf("\"%s\"", cfg_title(sec));
	while (getline(&buf, &cap, f) != -1) {
		n++;
		p = buf + strspn(buf, " \t");
		if (strncmp(p, "service", 7) == 0 &&
		    strstr(p + 7, want) == p + 7 + strspn(p + 7, " \t")) {
			found = n;
			break;
		}
	}
	free(buf);
	free(want);
	fclose(f);
	return (found ? found : sec->line);
}

static int
line_of(cfg_t *sec, const char *name)
{
	size_t i;

	for (i = load.nlines; i > 0; i--) {
		if (load.lines[i - 1].sec == sec &&
		    strcmp(load.lines[i - 1].name, name) == 0)
			return (load.lines[i - 1].line);
	}
	return (sec->title != NULL ? title_line(sec) : 0);
}

/* Validator run for every option as it is set: remember its line. */
static int
cb_record(cfg_t *cfg, cfg_opt_t *opt)
{
	load.lines =
	    xreallocarray(load.lines, load.nlines + 1, sizeof *load.lines);
	load.lines[load.nlines].sec = cfg;
	load.lines[load.nlines].name = opt->name;
	load.lines[load.nlines].line = cfg->line;
	load.nlines++;
	return (0);
}

static int
cb_duration(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	long long ms;
	char     *cause;

	if (duration_parse(value, &ms, &cause) == -1) {
		config_error(cfg->line, "%s: %s", opt->name, cause);
		free(cause);
		ms = opt->def.number;
	}
	*(long *)result = (long)ms;
	return (0);
}

static int
cb_level(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	int level;

	if ((level = log_level_parse(value)) == -1) {
		config_error(cfg->line,
		    "%s: unknown level \"%s\" (expected emerg, alert, crit, error, warning, notice, info or debug)",
		    opt->name, value);
		level = LOG_INFO;
	}
	*(long *)result = level;
	return (0);
}

static int
cb_backend(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (strcmp(value, "unix") == 0)
		*(long *)result = BACKEND_UNIX;
	else if (strcmp(value, "tcp") == 0)
		*(long *)result = BACKEND_TCP;
	else if (strcmp(value, "agent") == 0)
		*(long *)result = BACKEND_AGENT;
	else {
		config_error(cfg->line,
		    "%s: unknown backend \"%s\" (expected unix, tcp or agent)",
		    opt->name, value);
		*(long *)result = BACKEND_UNIX;
	}
	return (0);
}

static cfg_opt_t service_opts[] = { CFG_STR_LIST(
					"listen", NULL, CFGF_NODEFAULT),
	CFG_INT("backlog", 511, CFGF_NONE),
	CFG_STR_LIST("command", NULL, CFGF_NODEFAULT),
	CFG_INT_CB("backend", BACKEND_UNIX, CFGF_NONE, cb_backend),
	CFG_BOOL("socket_activation", cfg_false, CFGF_NONE),
	CFG_BOOL("control", cfg_true, CFGF_NONE),
	CFG_INT("worker_count", 0, CFGF_NODEFAULT),
	CFG_INT("min_workers", 1, CFGF_NONE),
	CFG_INT("max_workers", 0, CFGF_NODEFAULT),
	CFG_INT_CB("workers_checking_interval", 60000, CFGF_NONE, cb_duration),
	CFG_STR_LIST("env", NULL, CFGF_NONE),
	CFG_STR("directory", NULL, CFGF_NODEFAULT),
	CFG_STR("user", NULL, CFGF_NODEFAULT),
	CFG_STR("group", NULL, CFGF_NODEFAULT),
	CFG_INT_CB("connect_timeout", 5000, CFGF_NONE, cb_duration),
	CFG_INT_CB("ready_timeout", 30000, CFGF_NONE, cb_duration),
	CFG_INT_CB("queue_timeout", 30000, CFGF_NONE, cb_duration),
	CFG_INT_CB("idle_timeout", 300000, CFGF_NONE, cb_duration),
	CFG_INT_CB("shutdown_timeout", 0, CFGF_NODEFAULT, cb_duration),
	CFG_INT_CB("kill_timeout", 0, CFGF_NODEFAULT, cb_duration),
	CFG_INT("max_connections", 0, CFGF_NONE), CFG_END() };

static cfg_opt_t root_opts[] = { CFG_INT_CB("log_level", LOG_INFO, CFGF_NONE,
				     cb_level),
	CFG_STR("log_target", "stderr", CFGF_NONE),
	CFG_STR("runtime_dir", NULL, CFGF_NODEFAULT),
	CFG_STR("user", NULL, CFGF_NODEFAULT),
	CFG_STR("group", NULL, CFGF_NODEFAULT),
	CFG_INT_CB("shutdown_timeout", 30000, CFGF_NONE, cb_duration),
	CFG_INT_CB("kill_timeout", 5000, CFGF_NONE, cb_duration),
	CFG_SEC("service", service_opts,
	    CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_END() };

const char *
config_default_runtime_dir(void)
{
	static char buf[256];
	const char *v;

	if ((v = getenv("RUNTIME_DIRECTORY")) != NULL && *v == '/') {
		/* systemd may pass several, colon-separated: take the first. */
		snprintf(buf, sizeof buf, "%.*s", (int)strcspn(v, ":"), v);
		return (buf);
	}
	if (geteuid() == 0)
		return ("/run/socketnautd");
	if ((v = getenv("XDG_RUNTIME_DIR")) != NULL && *v == '/') {
		snprintf(buf, sizeof buf, "%s/socketnautd", v);
		return (buf);
	}
	snprintf(
	    buf, sizeof buf, "/tmp/socketnautd-%lu", (unsigned long)geteuid());
	return (buf);
}

static int
service_name_valid(const char *name)
{
	size_t i, n = strlen(name);

	if (n == 0 || n > SERVICE_NAME_MAX)
		return (0);
	for (i = 0; i < n; i++) {
		if (!isalnum((unsigned char)name[i]) &&
		    strchr("_.-", name[i]) == NULL)
			return (0);
	}
	return (name[0] != '.');
}

static int
addr_equal(const struct sn_addr *a, const struct sn_addr *b)
{
	return (a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0);
}

static char **
list_copy(cfg_t *sec, const char *name)
{
	char       **v;
	unsigned int i, n = cfg_size(sec, name);

	v = xcalloc(n + 1, sizeof *v);
	for (i = 0; i < n; i++)
		v[i] = xstrdup(cfg_getnstr(sec, name, i));
	return (v);
}

static void
int_range(cfg_t *sec, const char *name, long lo, long hi)
{
	long v = cfg_getint(sec, name);

	if (v < lo || v > hi)
		config_error(line_of(sec, name),
		    "%s (%ld) must be between %ld and %ld", name, v, lo, hi);
}

static void
duration_min(cfg_t *sec, const char *name, long long lo)
{
	if (cfg_size(sec, name) > 0 && cfg_getint(sec, name) < lo)
		config_error(
		    line_of(sec, name), "%s must be at least %lldms", name, lo);
}

/* Resolve user and group names into the ids workers will run with. */
static void
service_ids(struct sn_service_conf *sc, cfg_t *sec, cfg_t *root)
{
	cfg_t         *usec = cfg_size(sec, "user") ? sec : root;
	cfg_t         *gsec = cfg_size(sec, "group") ? sec : root;
	struct passwd *pw;
	struct group  *gr;

	if (cfg_size(usec, "user") == 0 && cfg_size(gsec, "group") == 0)
		return;
	sc->uid = geteuid();
	sc->gid = getegid();
	if (cfg_size(usec, "user") > 0) {
		sc->user = xstrdup(cfg_getstr(usec, "user"));
		if ((pw = getpwnam(sc->user)) == NULL) {
			config_error(line_of(usec, "user"),
			    "unknown user \"%s\"", sc->user);
			return;
		}
		sc->uid = pw->pw_uid;
		sc->gid = pw->pw_gid;
	}
	if (cfg_size(gsec, "group") > 0) {
		sc->group = xstrdup(cfg_getstr(gsec, "group"));
		if ((gr = getgrnam(sc->group)) == NULL) {
			config_error(line_of(gsec, "group"),
			    "unknown group \"%s\"", sc->group);
			return;
		}
		sc->gid = gr->gr_gid;
	}
	if ((sc->uid != geteuid() || sc->gid != getegid()) && geteuid() != 0)
		config_error(line_of(usec, sc->user ? "user" : "group"),
		    "running workers as another user or group needs root");
	sc->switch_ids = 1;
}

/* Check every placeholder of the command against the service's backend. */
static void
service_command(struct sn_service_conf *sc, cfg_t *sec)
{
	struct template_vars tv;
	char                *cause, *word;
	int                  line = line_of(sec, "command");
	size_t               i;

	if (cfg_size(sec, "command") == 0) {
		config_error(
		    sc->line, "service \"%s\": command is required", sc->name);
		return;
	}
	if (cfg_size(sec, "command") == 1) {
		if (command_split(cfg_getnstr(sec, "command", 0), &sc->argv,
			&cause) == -1) {
			config_error(line, "%s", cause);
			free(cause);
			return;
		}
	} else
		sc->argv = list_copy(sec, "command");

	memset(&tv, 0, sizeof tv);
	tv.service = sc->name;
	if (sc->backend == BACKEND_UNIX)
		tv.socket = "/";
	else if (sc->backend == BACKEND_TCP)
		tv.port = 1;
	for (i = 0; sc->argv[i] != NULL; i++) {
		if ((word = template_expand(sc->argv[i], &tv, &cause)) ==
		    NULL) {
			config_error(line, "command: %s", cause);
			free(cause);
			return;
		}
		if (i == 0) {
			sc->exec_path = path_lookup(word, sc->directory);
			if (sc->exec_path == NULL)
				config_error(line,
				    "command: cannot execute \"%s\": %s", word,
				    strerror(errno));
		}
		free(word);
	}
}

static void
service_workers(struct sn_service_conf *sc, cfg_t *sec)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	if (cfg_size(sec, "worker_count") > 0) {
		int_range(sec, "worker_count", 1, WORKERS_MAX);
		sc->min_workers = sc->max_workers =
		    (int)cfg_getint(sec, "worker_count");
		return;
	}
	int_range(sec, "min_workers", 0, WORKERS_MAX);
	sc->min_workers = (int)cfg_getint(sec, "min_workers");
	if (cfg_size(sec, "max_workers") > 0) {
		int_range(sec, "max_workers", 1, WORKERS_MAX);
		sc->max_workers = (int)cfg_getint(sec, "max_workers");
		if (sc->min_workers > sc->max_workers)
			config_error(line_of(sec, "max_workers"),
			    "min_workers (%d) is greater than max_workers (%d)",
			    sc->min_workers, sc->max_workers);
	} else {
		sc->max_workers = ncpu > 0 ? (int)ncpu : 1;
		if (sc->max_workers < sc->min_workers)
			sc->max_workers = sc->min_workers;
	}
}

static void
service_env(struct sn_service_conf *sc, cfg_t *sec)
{
	size_t i, n;

	sc->env = list_copy(sec, "env");
	for (i = 0; sc->env[i] != NULL; i++) {
		n = strcspn(sc->env[i], "=");
		if (n == 0 || sc->env[i][n] != '=' ||
		    isdigit((unsigned char)sc->env[i][0]) ||
		    strspn(sc->env[i],
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
			n)
			config_error(line_of(sec, "env"),
			    "env: \"%s\" is not NAME=value", sc->env[i]);
	}
}

static void
service_listen(struct sn_config *conf, struct sn_service_conf *sc, cfg_t *sec)
{
	struct sn_addr *addrs;
	size_t          i, j, k, n;
	char           *cause;
	int             line = line_of(sec, "listen");

	if (cfg_size(sec, "listen") == 0) {
		config_error(
		    sc->line, "service \"%s\": listen is required", sc->name);
		return;
	}
	sc->listen_text = list_copy(sec, "listen");
	for (i = 0; sc->listen_text[i] != NULL; i++) {
		if (addr_parse(sc->listen_text[i], &addrs, &n, &cause) == -1) {
			config_error(line, "listen: %s", cause);
			free(cause);
			continue;
		}
		sc->listen = xreallocarray(
		    sc->listen, sc->nlisten + n, sizeof *sc->listen);
		memcpy(sc->listen + sc->nlisten, addrs, n * sizeof *addrs);
		free(addrs);
		sc->nlisten += n;
	}
	/* The same address twice, in this service or an earlier one. */
	for (i = 0; i < sc->nlisten; i++) {
		for (k = 0; k <= conf->nservices; k++) {
			struct sn_service_conf *o = &conf->services[k];
			size_t                  lim = o == sc ? i : o->nlisten;

			for (j = 0; j < lim; j++) {
				char buf[ADDRSTRLEN];

				if (!addr_equal(&sc->listen[i], &o->listen[j]))
					continue;
				config_error(line,
				    "listen: %s is already used by service \"%s\"",
				    addr_str(
					(struct sockaddr *)&sc->listen[i].ss,
					buf, sizeof buf),
				    o->name);
			}
		}
	}
}

static void
service_build(struct sn_config *conf, cfg_t *root, cfg_t *sec)
{
	struct sn_service_conf *sc = &conf->services[conf->nservices];
	struct stat             st;
	struct sockaddr_un      sun;

	sc->name = xstrdup(cfg_title(sec));
	sc->line = title_line(sec);
	if (!service_name_valid(sc->name))
		config_error(sc->line,
		    "service name \"%s\" must be 1 to %d letters, digits, '_', '.' or '-'",
		    sc->name, SERVICE_NAME_MAX);

	sc->backend = (enum sn_backend)cfg_getint(sec, "backend");
	sc->activation = cfg_getbool(sec, "socket_activation");
	sc->control = cfg_getbool(sec, "control");
	if (sc->backend == BACKEND_AGENT && !sc->control)
		config_error(line_of(sec, "control"),
		    "backend agent needs the control channel (control = true)");
	if (sc->backend == BACKEND_AGENT && sc->activation)
		config_error(line_of(sec, "socket_activation"),
		    "backend agent and socket_activation exclude each other: the worker chooses its address");
	int_range(sec, "backlog", 1, 65535);
	sc->backlog = (int)cfg_getint(sec, "backlog");
	int_range(sec, "max_connections", 0, 1000000);
	sc->max_connections = (int)cfg_getint(sec, "max_connections");

	if (cfg_size(sec, "directory") > 0) {
		sc->directory = xstrdup(cfg_getstr(sec, "directory"));
		if (stat(sc->directory, &st) == -1)
			config_error(line_of(sec, "directory"),
			    "directory %s: %s", sc->directory, strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			config_error(line_of(sec, "directory"),
			    "directory %s is not a directory", sc->directory);
	}
	service_ids(sc, sec, root);
	service_command(sc, sec);
	service_workers(sc, sec);
	service_env(sc, sec);
	service_listen(conf, sc, sec);

	duration_min(sec, "workers_checking_interval", 10);
	duration_min(sec, "connect_timeout", 1);
	duration_min(sec, "ready_timeout", 1);
	duration_min(sec, "queue_timeout", 1);
	sc->check_interval = cfg_getint(sec, "workers_checking_interval");
	sc->connect_timeout = cfg_getint(sec, "connect_timeout");
	sc->ready_timeout = cfg_getint(sec, "ready_timeout");
	sc->queue_timeout = cfg_getint(sec, "queue_timeout");
	sc->idle_timeout = cfg_getint(sec, "idle_timeout");
	sc->shutdown_timeout = cfg_size(sec, "shutdown_timeout") > 0
	    ? cfg_getint(sec, "shutdown_timeout")
	    : conf->shutdown_timeout;
	sc->kill_timeout = cfg_size(sec, "kill_timeout") > 0
	    ? cfg_getint(sec, "kill_timeout")
	    : conf->kill_timeout;

	sc->sockdir = xasprintf("%s/%s", conf->runtime_dir, sc->name);
	/* Room for "/<serial>.sock" with a 10-digit serial. */
	if (strlen(sc->sockdir) + 17 > sizeof sun.sun_path)
		config_error(sc->line,
		    "service \"%s\": socket paths under %s would exceed %zu bytes; choose a shorter runtime_dir",
		    sc->name, conf->runtime_dir, sizeof sun.sun_path - 1);
	conf->nservices++;
}

static void
config_build(struct sn_config *conf, cfg_t *root)
{
	unsigned int i, n;
	const char  *target;
	char        *cause;

	conf->log_level = (int)cfg_getint(root, "log_level");
	target = cfg_getstr(root, "log_target");
	if (strcmp(target, "stderr") != 0 && strcmp(target, "syslog") != 0 &&
	    target[0] != '/')
		config_error(line_of(root, "log_target"),
		    "log_target must be stderr, syslog or an absolute file path, not \"%s\"",
		    target);
	conf->log_target = xstrdup(target);
	conf->runtime_dir = xstrdup(cfg_size(root, "runtime_dir") > 0
		? cfg_getstr(root, "runtime_dir")
		: config_default_runtime_dir());
	if (conf->runtime_dir[0] != '/')
		config_error(line_of(root, "runtime_dir"),
		    "runtime_dir must be an absolute path");
	else if (sockdir_check(conf->runtime_dir, &cause) == -1) {
		config_error(
		    line_of(root, "runtime_dir"), "runtime_dir: %s", cause);
		free(cause);
	}
	conf->shutdown_timeout = cfg_getint(root, "shutdown_timeout");
	conf->kill_timeout = cfg_getint(root, "kill_timeout");

	n = cfg_size(root, "service");
	if (n == 0)
		config_error(0, "no service defined");
	conf->services = xcalloc(n + 1, sizeof *conf->services);
	for (i = 0; i < n; i++)
		service_build(conf, root, cfg_getnsec(root, "service", i));
}

/*
 * The file with its comments blanked out, newlines kept: libconfuse 3.3
 * miscounts lines after a comment, and every message here names a line.
 */
static char *
config_read(const char *path)
{
	FILE  *f;
	char  *buf = NULL, *p, quote = 0;
	size_t len = 0;

	if ((f = fopen(path, "re")) == NULL)
		return (NULL);
	if (getdelim(&buf, &len, '\0', f) == -1) {
		free(buf);
		buf = xstrdup("");
	}
	fclose(f);
	for (p = buf; *p != '\0'; p++) {
		if (quote != 0) {
			if (*p == '\\' && quote == '"' && p[1] != '\0')
				p++;
			else if (*p == quote)
				quote = 0;
		} else if (*p == '"' || *p == '\'') {
			quote = *p;
		} else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			for (; *p != '\0' && *p != '\n'; p++)
				*p = ' ';
			if (*p == '\0')
				break;
		} else if (p[0] == '/' && p[1] == '*') {
			for (; *p != '\0' && !(p[0] == '*' && p[1] == '/'); p++)
				if (*p != '\n')
					*p = ' ';
			if (*p == '\0')
				break;
			p[0] = p[1] = ' ';
			p++;
		}
	}
	return (buf);
}

/* Register cb_record on every option of a section, recursively. */
static void
record_lines(cfg_t *cfg, cfg_opt_t *opts, const char *prefix)
{
	char *name;

	for (; opts->name != NULL; opts++) {
		name = prefix == NULL ? xstrdup(opts->name)
				      : xasprintf("%s|%s", prefix, opts->name);
		if (opts->type == CFGT_SEC)
			record_lines(cfg, opts->subopts, name);
		else
			cfg_set_validate_func(cfg, name, cb_record);
		free(name);
	}
}

struct sn_config *
config_load(const char *path)
{
	struct sn_config *conf;
	cfg_t            *cfg;
	char             *text;
	int               rc = CFG_FILE_ERROR;

	memset(&load, 0, sizeof load);
	load.path = path;
	cfg = cfg_init(root_opts, CFGF_NONE);
	cfg_set_error_function(cfg, cb_error);
	record_lines(cfg, root_opts, NULL);

	conf = xcalloc(1, sizeof *conf);
	conf->refs = 1;
	conf->path = xstrdup(path);
	if ((text = config_read(path)) != NULL) {
		cfg->filename = xstrdup(path);
		cfg->line = 1;
		rc = cfg_parse_buf(cfg, text);
		free(text);
	}
	if (rc == CFG_FILE_ERROR)
		config_error(0, "%s", strerror(errno));
	else if (rc == CFG_SUCCESS)
		config_build(conf, cfg);
	else if (load.errors == 0)
		config_error(0, "cannot parse");
	cfg_free(cfg);
	free(load.lines);
	if (load.errors > 0) {
		log_errorx("%s: %d error%s", path, load.errors,
		    load.errors == 1 ? "" : "s");
		config_unref(conf);
		return (NULL);
	}
	return (conf);
}

void
config_ref(struct sn_config *conf)
{
	conf->refs++;
}

/* Configurations live while a service still runs on them (reload). */
void
config_unref(struct sn_config *conf)
{
	struct sn_service_conf *sc;
	size_t                  i;

	if (conf == NULL || --conf->refs > 0)
		return;
	for (i = 0; i < conf->nservices; i++) {
		sc = &conf->services[i];
		free(sc->name);
		argv_free(sc->listen_text);
		free(sc->listen);
		argv_free(sc->argv);
		free(sc->exec_path);
		argv_free(sc->env);
		free(sc->directory);
		free(sc->user);
		free(sc->group);
		free(sc->sockdir);
	}
	free(conf->services);
	free(conf->path);
	free(conf->log_target);
	free(conf->runtime_dir);
	free(conf);
}
