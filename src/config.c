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
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "config.h"
#include "log.h"
#include "sockdir.h"
#include "tls.h"

#define SERVICE_NAME_MAX 32
#define LOG_RATE_MAX     1000000 /* worker_log_rate, lines */
/* How long a check of a command or directory may wait on its file system. */
#define FS_WAIT_MS 2000
/* After one check went unanswered the load has failed: the next wait less. */
#define FS_WAIT_AFTER_MS 100

/*
 * Where each option was set, keyed by section and option name (libconfuse
 * keeps no line per option); a section's own line is under SECTION_KEY.
 * A hash table, so that looking a line up does not grow with the file.
 */
struct line_rec {
	const cfg_t *sec;
	const char  *name;
	int          line;
};

#define SECTION_KEY     "{"
#define CONFIG_SIZE_MAX (16 * 1024 * 1024)
#define CONFIG_ALL_MAX  (4 * CONFIG_SIZE_MAX) /* with every include */
#define INCLUDE_DEPTH   8    /* includes inside includes, at most */
#define INCLUDE_FILES   1024 /* files in one configuration, at most */
#define SCAN_DEPTH      16   /* nested sections the scan follows */

/*
 * One file of the configuration: the main file or an included one.  Lines
 * are numbered across files (a file's line n is base + n), so that every
 * int line in this file still says where; config_error translates.
 */
struct conf_file {
	char  *path;
	int    base;
	int    nlines;
	int    parent; /* the file that included it, or -1 */
	dev_t  dev;
	ino_t  ino;
	size_t nextsec; /* its next service section in seclines */
};

/* An include statement found by config_scan, already blanked out. */
struct include {
	char  *pattern;
	int    line;  /* of the statement */
	size_t start; /* bytes of the file before it */
	size_t end;   /* and after it */
	int    endline;
};

#define ADMIN_SOCKET_NAME "admin.sock" /* in runtime_dir, by default */

/* State of one config_load() call; the callbacks have no user pointer. */
static struct {
	const char      *path;
	int              errors;
	struct line_rec *lines; /* open addressing, a power of two */
	size_t           linecap;
	size_t           nlines;
	/* Each service section's line, from config_scan. */
	int   *seclines;
	size_t nseclines;
	/* Service sections cb_section took from libconfuse. */
	cfg_value_t **secs;
	size_t        nsecs;
	/* The files read so far, the one being parsed, and its offset. */
	struct conf_file *files;
	int               nfiles;
	int               cur;
	int               nextbase;
	size_t            total;   /* bytes read, every file */
	int               lineadd; /* libconfuse's line + this: ours */
	int               parse_failed;
	int               fs_silent; /* a file system check went unanswered */
	/* Include statements of the file config_scan is reading. */
	struct include *incs;
	size_t          nincs;
} load;

/* Where a line numbered across files is: its file and its own line. */
static const char *
config_where(int line, int *fline)
{
	int i;

	for (i = load.nfiles - 1; i >= 0; i--) {
		if (line > load.files[i].base) {
			*fline = line - load.files[i].base;
			return (load.files[i].path);
		}
	}
	*fline = line;
	return (load.path);
}

/*
 * How long a check of a command or directory waits for its file system.
 * Each unanswered one would otherwise hold the master for the whole wait.
 */
static long
fs_wait(void)
{
	return (load.fs_silent ? FS_WAIT_AFTER_MS : FS_WAIT_MS);
}

/* Why a check by path_lookup_within or stat_within has no answer. */
static const char *
fs_silent(int error)
{
	static char buf[128];

	if (error == EAGAIN)
		snprintf(buf, sizeof buf, "%s",
		    "its file system was not asked: earlier checks on file "
		    "systems that do not answer are still waiting");
	else
		snprintf(buf, sizeof buf,
		    "its file system did not answer within %ld ms", fs_wait());
	load.fs_silent = 1;
	return (buf);
}

static void
config_error(int, const char *, ...) __attribute__((format(printf, 2, 3)));
static char *config_access_log(cfg_t *);
static void  config_writable(cfg_t *, const char *, const char *);

/* Also given every error (socketnautctl reload), when set. */
static config_error_fn *error_sink;
static void            *error_sink_arg;

void
config_error_sink(config_error_fn *fn, void *arg)
{
	error_sink = fn;
	error_sink_arg = arg;
}

static void
config_report(const char *text)
{
	log_errorx("%s", text);
	if (error_sink != NULL)
		error_sink(text, error_sink_arg);
}

static void
config_error(int line, const char *fmt, ...)
{
	va_list     ap;
	char       *msg, *text;
	const char *path;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	if (line > 0) {
		path = config_where(line, &line);
		text = xasprintf("%s:%d: %s", path, line, msg);
	} else
		text = xasprintf("%s: %s",
		    load.nfiles > 0 ? load.files[load.cur].path : load.path,
		    msg);
	config_report(text);
	free(text);
	free(msg);
	load.errors++;
}

static void
cb_error(cfg_t *cfg, const char *fmt, va_list ap)
{
	char *msg;

	if (vasprintf(&msg, fmt, ap) == -1)
		fatal("vasprintf");
	config_error(cfg != NULL ? load.lineadd + cfg->line : 0, "%s", msg);
	free(msg);
}

static size_t
line_hash(const cfg_t *sec, const char *name)
{
	uint64_t h = (uint64_t)(uintptr_t)sec * 0x9e3779b97f4a7c15ULL;

	for (; *name != '\0'; name++)
		h = (h ^ (unsigned char)*name) * 0x100000001b3ULL;
	return ((size_t)(h ^ (h >> 29)));
}

/* The slot of (sec, name): its record, or the empty slot it would take. */
static struct line_rec *
line_slot(const cfg_t *sec, const char *name)
{
	struct line_rec *r;
	size_t           i = line_hash(sec, name) & (load.linecap - 1);

	for (;;) {
		r = &load.lines[i];
		if (r->sec == NULL ||
		    (r->sec == sec && strcmp(r->name, name) == 0))
			return (r);
		i = (i + 1) & (load.linecap - 1);
	}
}

/* Remember that name was set in sec on line; a later setting wins. */
static void
line_set(const cfg_t *sec, const char *name, int line)
{
	struct line_rec *old = load.lines, *r;
	size_t           i, oldcap = load.linecap;

	if ((load.nlines + 1) * 2 > load.linecap) {
		load.linecap = oldcap == 0 ? 64 : oldcap * 2;
		load.lines = xcalloc(load.linecap, sizeof *load.lines);
		for (i = 0; i < oldcap; i++) {
			if (old[i].sec != NULL)
				*line_slot(old[i].sec, old[i].name) = old[i];
		}
		free(old);
	}
	r = line_slot(sec, name);
	if (r->sec == NULL) {
		r->sec = sec;
		r->name = name;
		load.nlines++;
	}
	r->line = line;
}

static int
line_get(const cfg_t *sec, const char *name)
{
	struct line_rec *r;

	if (load.linecap == 0)
		return (0);
	r = line_slot(sec, name);
	return (r->sec != NULL ? r->line : 0);
}

/* The line an option was set on, or its section's own line. */
static int
line_of(cfg_t *sec, const char *name)
{
	int line;

	if ((line = line_get(sec, name)) != 0)
		return (line);
	return (line_get(sec, SECTION_KEY));
}

/* Validator run for every option as it is set: remember its line. */
static int
cb_record(cfg_t *cfg, cfg_opt_t *opt)
{
	line_set(cfg, opt->name, load.lineadd + cfg->line);
	return (0);
}

/*
 * Validator run as each service section closes: take the section out of
 * libconfuse's list, which looks through every earlier section for the
 * same title before it adds one (quadratic). config_sections_restore puts
 * them back; config_names_unique finds duplicate titles instead.
 */
static int
cb_section(cfg_t *cfg, cfg_opt_t *opt)
{
	cfg_value_t      *val;
	struct conf_file *f = &load.files[load.cur];
	size_t            k = load.nsecs, i = f->nextsec++;

	(void)cfg;
	if (opt->nvalues == 0)
		return (0);
	val = opt->values[--opt->nvalues];
	if ((k & (k - 1)) == 0)
		load.secs = xreallocarray(
		    load.secs, k == 0 ? 1 : k * 2, sizeof *load.secs);
	load.secs[load.nsecs++] = val;
	line_set(val->section, SECTION_KEY,
	    i < load.nseclines ? load.seclines[i]
			       : load.lineadd + val->section->line);
	return (0);
}

static int
cb_duration(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	long long ms;
	char     *cause;

	if (duration_parse(value, &ms, &cause) == -1) {
		config_error(
		    load.lineadd + cfg->line, "%s: %s", opt->name, cause);
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
		config_error(load.lineadd + cfg->line,
		    "%s: unknown level \"%s\" (expected emerg, alert, crit, error, warning, notice, info or debug)",
		    opt->name, value);
		level = LOG_INFO;
	}
	*(long *)result = level;
	return (0);
}

/* One keyword of a closed list; the first is the fallback after an error. */
struct keyword {
	const char *name;
	long        value;
};

static int
keyword_parse(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result,
    const struct keyword *kw, const char *what, const char *expected)
{
	const struct keyword *k;

	for (k = kw; k->name != NULL; k++) {
		if (strcmp(value, k->name) == 0) {
			*(long *)result = k->value;
			return (0);
		}
	}
	config_error(load.lineadd + cfg->line,
	    "%s: unknown %s \"%s\" (expected %s)", opt->name, what, value,
	    expected);
	*(long *)result = kw->value;
	return (0);
}

static int
cb_backend(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	static const struct keyword kw[] = { { "unix", BACKEND_UNIX },
		{ "tcp", BACKEND_TCP }, { "agent", BACKEND_AGENT },
		{ NULL, 0 } };

	return (keyword_parse(
	    cfg, opt, value, result, kw, "backend", "unix, tcp or agent"));
}

/* mode: relay (the master moves the bytes) or handoff (the worker gets the fd).
 */
static int
cb_mode(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	static const struct keyword kw[] = { { "relay", MODE_RELAY },
		{ "handoff", MODE_HANDOFF }, { NULL, 0 } };

	return (keyword_parse(
	    cfg, opt, value, result, kw, "mode", "relay or handoff"));
}

/* handoff_channel: "control" (0) or "node" (1, see handoff.c). */
static int
cb_handoff_channel(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	static const struct keyword kw[] = { { "control", 0 }, { "node", 1 },
		{ NULL, 0 } };

	return (keyword_parse(
	    cfg, opt, value, result, kw, "channel", "control or node"));
}

static int
cb_proxy_protocol(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	static const struct keyword kw[] = { { "off", PROXY_OFF },
		{ "v1", PROXY_V1 }, { "v2", PROXY_V2 }, { NULL, 0 } };

	return (keyword_parse(
	    cfg, opt, value, result, kw, "version", "off, v1 or v2"));
}

static int
cb_accept_proxy(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	static const struct keyword kw[] = { { "off", PROXY_OFF },
		{ "v1", PROXY_V1 }, { "v2", PROXY_V2 }, { "any", PROXY_ANY },
		{ NULL, 0 } };

	return (keyword_parse(
	    cfg, opt, value, result, kw, "version", "off, v1, v2 or any"));
}

static cfg_opt_t health_opts[] = { CFG_STR("type", "tcp", CFGF_NONE),
	CFG_STR("path", "/", CFGF_NONE), CFG_INT("expect", 200, CFGF_NONE),
	CFG_INT_CB("interval", 2000, CFGF_NONE, cb_duration),
	CFG_INT_CB("timeout", 1000, CFGF_NONE, cb_duration),
	CFG_INT("rise", 2, CFGF_NONE), CFG_INT("fall", 3, CFGF_NONE),
	CFG_END() };

/* worker_cgroup: "auto" (1) or "off" (0). */
static int
cb_cgroup(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	static const struct keyword kw[] = { { "auto", 1 }, { "off", 0 },
		{ NULL, 0 } };

	return (
	    keyword_parse(cfg, opt, value, result, kw, "value", "auto or off"));
}

/* verify_client: off, optional or required. */
static int
cb_verify(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	static const struct keyword kw[] = { { "off", TLS_VERIFY_OFF },
		{ "optional", TLS_VERIFY_OPTIONAL },
		{ "required", TLS_VERIFY_REQUIRED }, { NULL, 0 } };

	return (keyword_parse(
	    cfg, opt, value, result, kw, "value", "off, optional or required"));
}

/* min_protocol, max_protocol: TLSv1.2 or TLSv1.3 (older ones never are). */
static int
cb_protocol(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	static const struct keyword kw[] = { { "TLSv1.2", TLS1_2_VERSION },
		{ "TLSv1.3", TLS1_3_VERSION }, { NULL, 0 } };

	return (keyword_parse(
	    cfg, opt, value, result, kw, "protocol", "TLSv1.2 or TLSv1.3"));
}

static cfg_opt_t tls_opts[] = { CFG_STR_LIST(
				    "certificate", NULL, CFGF_NODEFAULT),
	CFG_STR_LIST("key", NULL, CFGF_NODEFAULT),
	CFG_STR_LIST("ocsp_response", NULL, CFGF_NODEFAULT),
	CFG_INT_CB("min_protocol", TLS1_2_VERSION, CFGF_NONE, cb_protocol),
	CFG_INT_CB("max_protocol", 0, CFGF_NONE, cb_protocol),
	CFG_STR("ciphers", NULL, CFGF_NODEFAULT),
	CFG_STR("ciphersuites", NULL, CFGF_NODEFAULT),
	CFG_STR_LIST("alpn", NULL, CFGF_NODEFAULT),
	CFG_INT("session_cache", 20480, CFGF_NONE),
	CFG_INT_CB("ticket_key_rotation", 3600000, CFGF_NONE, cb_duration),
	CFG_STR("ticket_key_file", NULL, CFGF_NODEFAULT),
	CFG_STR("client_ca", NULL, CFGF_NODEFAULT),
	CFG_INT_CB("verify_client", TLS_VERIFY_OFF, CFGF_NONE, cb_verify),
	CFG_INT_CB(
	    "handshake_timeout", TLS_HANDSHAKE_TIMEOUT, CFGF_NONE, cb_duration),
	CFG_END() };

static cfg_opt_t service_opts[] = { CFG_STR_LIST(
					"listen", NULL, CFGF_NODEFAULT),
	CFG_INT("backlog", 511, CFGF_NONE),
	CFG_STR_LIST("command", NULL, CFGF_NODEFAULT),
	CFG_INT_CB("backend", BACKEND_UNIX, CFGF_NONE, cb_backend),
	CFG_INT_CB("mode", MODE_RELAY, CFGF_NONE, cb_mode),
	CFG_INT_CB("handoff_channel", 0, CFGF_NONE, cb_handoff_channel),
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
	CFG_BOOL("no_new_privileges", cfg_true, CFGF_NONE),
	CFG_INT_CB("worker_cgroup", 1, CFGF_NODEFAULT, cb_cgroup),
	CFG_INT_CB("connect_timeout", 5000, CFGF_NONE, cb_duration),
	CFG_INT_CB("ready_timeout", 30000, CFGF_NONE, cb_duration),
	CFG_INT_CB("queue_timeout", 30000, CFGF_NONE, cb_duration),
	CFG_INT_CB("idle_timeout", 300000, CFGF_NONE, cb_duration),
	CFG_INT_CB("stall_timeout", 30000, CFGF_NONE, cb_duration),
	CFG_SEC("health_check", health_opts, CFGF_NODEFAULT),
	CFG_INT_CB("shutdown_timeout", 0, CFGF_NODEFAULT, cb_duration),
	CFG_INT_CB("kill_timeout", 0, CFGF_NODEFAULT, cb_duration),
	CFG_INT("max_connections", 0, CFGF_NONE),
	CFG_INT("worker_concurrency", 0, CFGF_NONE),
	CFG_INT("spawn_concurrency", 0, CFGF_NODEFAULT),
	CFG_INT("spare_workers", 0, CFGF_NONE),
	CFG_INT("max_queue", 0, CFGF_NONE),
	CFG_STR("worker_log_rate", "100/s", CFGF_NONE),
	CFG_STR("access_log", NULL, CFGF_NODEFAULT),
	CFG_INT_CB("proxy_protocol", PROXY_OFF, CFGF_NONE, cb_proxy_protocol),
	CFG_INT_CB("accept_proxy", PROXY_OFF, CFGF_NONE, cb_accept_proxy),
	CFG_STR_LIST("trusted_proxies", NULL, CFGF_NONE),
	CFG_INT_CB("proxy_timeout", 5000, CFGF_NONE, cb_duration),
	CFG_SEC("tls", tls_opts, CFGF_NODEFAULT), CFG_END() };

static cfg_opt_t root_opts[] = { CFG_INT_CB("log_level", LOG_INFO, CFGF_NONE,
				     cb_level),
	CFG_STR("log_target", "stderr", CFGF_NONE),
	CFG_STR("access_log", "off", CFGF_NONE),
	CFG_STR("stats_listen", NULL, CFGF_NODEFAULT),
	CFG_STR("runtime_dir", NULL, CFGF_NODEFAULT),
	CFG_STR("pid_file", NULL, CFGF_NODEFAULT),
	CFG_STR("user", NULL, CFGF_NODEFAULT),
	CFG_STR("group", NULL, CFGF_NODEFAULT),
	CFG_INT_CB("shutdown_timeout", 30000, CFGF_NONE, cb_duration),
	CFG_INT_CB("drain_delay", 0, CFGF_NONE, cb_duration),
	CFG_INT_CB("kill_timeout", 5000, CFGF_NONE, cb_duration),
	CFG_INT_CB("worker_cgroup", 1, CFGF_NONE, cb_cgroup),
	CFG_INT_CB("upgrade_timeout", 60000, CFGF_NONE, cb_duration),
	CFG_STR("admin_socket", NULL, CFGF_NODEFAULT),
	CFG_STR("admin_group", NULL, CFGF_NODEFAULT),
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

/* One listening address of a service, for finding the same one twice. */
struct listen_use {
	const struct sn_addr         *addr;
	const struct sn_service_conf *sc;
	int                           line;
	size_t order; /* services first, then addresses */
};

static int
addr_cmp(const struct sn_addr *a, const struct sn_addr *b)
{
	if (a->len != b->len)
		return (a->len < b->len ? -1 : 1);
	return (memcmp(&a->ss, &b->ss, a->len));
}

static int
listen_use_cmp(const void *va, const void *vb)
{
	const struct listen_use *a = va, *b = vb;
	int                      c;

	if ((c = addr_cmp(a->addr, b->addr)) != 0)
		return (c);
	return (a->order < b->order ? -1 : a->order > b->order);
}

/* The same address twice, in one service or two: sorted, not all pairs. */
static void
config_listen_unique(struct sn_config *conf, cfg_t *root)
{
	struct listen_use *u;
	size_t             i, j, n = 0;
	int                line;
	char               buf[ADDRSTRLEN];

	for (i = 0; i < conf->nservices; i++)
		n += conf->services[i].nlisten;
	u = xcalloc(n + 1, sizeof *u);
	n = 0;
	for (i = 0; i < conf->nservices; i++) {
		line = line_of(cfg_getnsec(root, "service", i), "listen");
		for (j = 0; j < conf->services[i].nlisten; j++) {
			u[n].addr = &conf->services[i].listen[j];
			u[n].sc = &conf->services[i];
			u[n].line = line;
			u[n].order = n;
			n++;
		}
	}
	qsort(u, n, sizeof *u, listen_use_cmp);
	for (i = 1; i < n; i++) {
		if (addr_cmp(u[i - 1].addr, u[i].addr) != 0)
			continue;
		config_error(u[i].line,
		    "listen: %s is already used by service \"%s\"",
		    addr_str(
			(struct sockaddr *)&u[i].addr->ss, buf, sizeof buf),
		    u[i - 1].sc->name);
	}
	free(u);
}

static int
service_name_cmp(const void *va, const void *vb)
{
	const struct sn_service_conf *const *a = va, *const *b = vb;
	int                                  c;

	if ((c = strcmp((*a)->name, (*b)->name)) != 0)
		return (c);
	return ((*a)->line < (*b)->line ? -1 : (*a)->line > (*b)->line);
}

/* Each service name once: sorted, so loading stays n log n. */
static void
config_names_unique(struct sn_config *conf)
{
	struct sn_service_conf **v;
	size_t                   i;
	const char              *first;
	int                      line, other;

	v = xcalloc(conf->nservices + 1, sizeof *v);
	for (i = 0; i < conf->nservices; i++)
		v[i] = &conf->services[i];
	qsort(v, conf->nservices, sizeof *v, service_name_cmp);
	for (i = 1; i < conf->nservices; i++) {
		if (strcmp(v[i - 1]->name, v[i]->name) != 0)
			continue;
		first = config_where(v[i - 1]->line, &line);
		if (first == config_where(v[i]->line, &other))
			config_error(v[i]->line,
			    "service \"%s\" is already defined on line %d",
			    v[i]->name, line);
		else
			config_error(v[i]->line,
			    "service \"%s\" is already defined at %s:%d",
			    v[i]->name, first, line);
	}
	free(v);
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

/* worker_log_rate: "N/s" (a burst of 2N) or "N/s burst M", in lines. */
/*
 * mode = handoff: the worker takes the client's fd over its control
 * channel, so it must be an agent; the master never sees the bytes, so
 * nothing that needs them (active checks of an address, TLS) applies.
 */
static void
service_mode(struct sn_service_conf *sc, cfg_t *sec)
{
	sc->mode = (enum sn_mode)cfg_getint(sec, "mode");
	sc->handoff_node = (int)cfg_getint(sec, "handoff_channel");
	if (sc->handoff_node && sc->mode != MODE_HANDOFF)
		config_error(line_of(sec, "handoff_channel"),
		    "handoff_channel needs mode handoff");
	if (sc->mode != MODE_HANDOFF)
		return;
	if (sc->backend != BACKEND_AGENT)
		config_error(line_of(sec, "mode"),
		    "mode handoff needs backend agent: only an agent worker can take a connection over its control channel");
	if (cfg_size(sec, "health_check") > 0)
		config_error(line_of(sec, "mode"),
		    "mode handoff and health_check exclude each other: a handoff worker has no address to check");
	if (cfg_getint(sec, "proxy_protocol") != PROXY_OFF)
		config_error(line_of(sec, "mode"),
		    "mode handoff and proxy_protocol exclude each other: the worker gets the client's own socket, and the client's address with it");
	if (cfg_size(sec, "tls") > 0)
		config_error(line_of(sec, "mode"),
		    "mode handoff and tls exclude each other: the master would have to hand over a TLS session it cannot pass on");
}

static void
service_log_rate(struct sn_service_conf *sc, cfg_t *sec)
{
	const char *v = cfg_getstr(sec, "worker_log_rate"), *p;
	char       *end;
	long        rate, burst;

	sc->log_rate = 100;
	sc->log_burst = 200;
	if (v[0] < '0' || v[0] > '9')
		goto bad;
	rate = strtol(v, &end, 10);
	if (strncmp(end, "/s", 2) != 0)
		goto bad;
	end += 2;
	burst = rate > LOG_RATE_MAX / 2 ? LOG_RATE_MAX : 2 * rate;
	if (strncmp(end, " burst ", 7) == 0) {
		p = end + 7;
		if (p[0] < '0' || p[0] > '9')
			goto bad;
		burst = strtol(p, &end, 10);
	}
	if (*end != '\0')
		goto bad;
	if (rate < 1 || rate > LOG_RATE_MAX || burst < 1 ||
	    burst > LOG_RATE_MAX) {
		config_error(line_of(sec, "worker_log_rate"),
		    "worker_log_rate \"%s\": lines a second and burst must be between 1 and %d",
		    v, LOG_RATE_MAX);
		return;
	}
	sc->log_rate = (int)rate;
	sc->log_burst = (int)burst;
	return;
bad:
	config_error(line_of(sec, "worker_log_rate"),
	    "worker_log_rate \"%s\": expected LINES/s or LINES/s burst LINES",
	    v);
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
			sc->exec_path =
			    path_lookup_within(word, sc->directory, fs_wait());
			if (sc->exec_path == NULL &&
			    (errno == ETIMEDOUT || errno == EAGAIN))
				config_error(line, "command: \"%s\": %s", word,
				    fs_silent(errno));
			else if (sc->exec_path == NULL)
				config_error(line,
				    "command: cannot execute \"%s\": %s", word,
				    strerror(errno));
		}
		free(word);
	}
}

/* min_workers and max_workers, or worker_count for both. */
static void
service_pool_bounds(struct sn_service_conf *sc, cfg_t *sec, long ncpu)
{
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
service_workers(struct sn_service_conf *sc, cfg_t *sec)
{
	static long ncpu;

	if (ncpu == 0) /* sysconf reads a file each time */
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	service_pool_bounds(sc, sec, ncpu);
	int_range(sec, "worker_concurrency", 0, 1000000);
	sc->worker_concurrency = (int)cfg_getint(sec, "worker_concurrency");
	/*
	 * Twice the CPUs: measured on 2 CPUs (bench/RESULTS-node.md), a burst
	 * of 1000 clients on Node workers that start in 150ms of CPU took
	 * 7.9s with 2 starts at once, 7.2s with 4 and 6, and 7.6-12.3s with
	 * 8 (the more that start, the longer each takes); C workers that
	 * start in 5ms gained a little up to 8 (1.94s, 1.86s, 1.71s).
	 */
	sc->spawn_concurrency = ncpu > 0 ? 2 * (int)ncpu : 2;
	if (cfg_size(sec, "spawn_concurrency") > 0) {
		int_range(sec, "spawn_concurrency", 1, WORKERS_MAX);
		sc->spawn_concurrency =
		    (int)cfg_getint(sec, "spawn_concurrency");
	}
	int_range(sec, "spare_workers", 0, WORKERS_MAX);
	sc->spare_workers = (int)cfg_getint(sec, "spare_workers");
	if (sc->spare_workers > sc->max_workers)
		config_error(line_of(sec, "spare_workers"),
		    "spare_workers (%d) is greater than max_workers (%d)",
		    sc->spare_workers, sc->max_workers);
	int_range(sec, "max_queue", 0, 1000000);
	sc->max_queue = (int)cfg_getint(sec, "max_queue");
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
service_listen(struct sn_service_conf *sc, cfg_t *sec)
{
	struct sn_addr *addrs;
	size_t          i, n;
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
}

static void service_health(struct sn_service_conf *, cfg_t *);
static void service_tls(struct sn_service_conf *, cfg_t *);

/*
 * PROXY protocol both ways.  A header from a load balancer is believed
 * only from trusted_proxies, which accept_proxy therefore requires: an
 * empty list would let anyone who reaches the port name any address.
 */
static void
service_proxy(struct sn_service_conf *sc, cfg_t *sec)
{
	size_t i, n = cfg_size(sec, "trusted_proxies");
	int    line = line_of(sec, "trusted_proxies");

	sc->proxy_protocol =
	    (enum proxy_version)cfg_getint(sec, "proxy_protocol");
	sc->accept_proxy = (enum proxy_version)cfg_getint(sec, "accept_proxy");
	sc->proxy_timeout = cfg_getint(sec, "proxy_timeout");
	if (sc->proxy_timeout < 1 || sc->proxy_timeout > 3600 * MS_PER_SEC)
		config_error(line_of(sec, "proxy_timeout"),
		    "proxy_timeout must be between 1ms and 1h");
	sc->trusted_proxies = xcalloc(n + 1, sizeof *sc->trusted_proxies);
	for (i = 0; i < n; i++) {
		if (proxy_cidr_parse(cfg_getnstr(sec, "trusted_proxies", i),
			&sc->trusted_proxies[sc->ntrusted_proxies]) == -1) {
			config_error(line,
			    "trusted_proxies: \"%s\" is not an address or a CIDR (10.0.0.0/8, ::1/128; no host bits past the prefix)",
			    cfg_getnstr(sec, "trusted_proxies", i));
			continue;
		}
		sc->ntrusted_proxies++;
	}
	if (sc->accept_proxy != PROXY_OFF && n == 0)
		config_error(line_of(sec, "accept_proxy"),
		    "accept_proxy needs trusted_proxies: the load balancers whose headers are believed");
}

static void
service_build(struct sn_config *conf, cfg_t *root, cfg_t *sec)
{
	struct sn_service_conf *sc = &conf->services[conf->nservices];
	struct stat             st;
	struct sockaddr_un      sun;

	sc->name = xstrdup(cfg_title(sec));
	sc->line = line_get(sec, SECTION_KEY);
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
	service_mode(sc, sec);
	int_range(sec, "backlog", 1, 65535);
	sc->backlog = (int)cfg_getint(sec, "backlog");
	int_range(sec, "max_connections", 0, 1000000);
	sc->max_connections = (int)cfg_getint(sec, "max_connections");
	service_log_rate(sc, sec);

	if (cfg_size(sec, "directory") > 0) {
		sc->directory = xstrdup(cfg_getstr(sec, "directory"));
		if (stat_within(sc->directory, &st, fs_wait()) == -1)
			config_error(line_of(sec, "directory"),
			    "directory %s: %s", sc->directory,
			    errno == ETIMEDOUT || errno == EAGAIN
				? fs_silent(errno)
				: strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			config_error(line_of(sec, "directory"),
			    "directory %s is not a directory", sc->directory);
	}
	service_ids(sc, sec, root);
	sc->no_new_privs = cfg_getbool(sec, "no_new_privileges");
	sc->cgroup = cfg_size(sec, "worker_cgroup") > 0
	    ? (int)cfg_getint(sec, "worker_cgroup")
	    : conf->worker_cgroup;
	service_command(sc, sec);
	service_workers(sc, sec);
	service_proxy(sc, sec);
	service_env(sc, sec);
	service_listen(sc, sec);

	duration_min(sec, "workers_checking_interval", 10);
	duration_min(sec, "connect_timeout", 1);
	duration_min(sec, "ready_timeout", 1);
	duration_min(sec, "queue_timeout", 1);
	sc->check_interval = cfg_getint(sec, "workers_checking_interval");
	sc->connect_timeout = cfg_getint(sec, "connect_timeout");
	sc->ready_timeout = cfg_getint(sec, "ready_timeout");
	sc->queue_timeout = cfg_getint(sec, "queue_timeout");
	sc->idle_timeout = cfg_getint(sec, "idle_timeout");
	sc->stall_timeout = cfg_getint(sec, "stall_timeout");
	if (sc->stall_timeout != 0 && sc->stall_timeout < 100)
		config_error(line_of(sec, "stall_timeout"),
		    "stall_timeout must be 0 (off) or at least 100ms");
	sc->shutdown_timeout = cfg_size(sec, "shutdown_timeout") > 0
	    ? cfg_getint(sec, "shutdown_timeout")
	    : conf->shutdown_timeout;
	sc->kill_timeout = cfg_size(sec, "kill_timeout") > 0
	    ? cfg_getint(sec, "kill_timeout")
	    : conf->kill_timeout;

	if (cfg_size(sec, "access_log") > 0) {
		sc->access_log = config_access_log(sec);
		if (sc->access_log[0] == '/')
			config_writable(sec, "access_log", sc->access_log);
	} else
		sc->access_log = xstrdup(conf->access_log);
	sc->sockdir = xasprintf("%s/%s", conf->runtime_dir, sc->name);
	/* Room for "/<pid>-<serial>.sock": 10 digits each. */
	if (strlen(sc->sockdir) + 28 > sizeof sun.sun_path)
		config_error(sc->line,
		    "service \"%s\": socket paths under %s would exceed %zu bytes; choose a shorter runtime_dir",
		    sc->name, conf->runtime_dir, sizeof sun.sun_path - 1);
	service_health(sc, sec);
	service_tls(sc, sec);
	conf->nservices++;
}

/*
 * A file the daemon will write or create (a log, the pid file): one it
 * could open at start, by the same rules (sockdir_open_file).
 */
static void
config_writable(cfg_t *sec, const char *name, const char *path)
{
	char *cause;
	int   how;

	/* A log may be a device (/dev/null); the pid file is ours to remove. */
	how = SOCKDIR_FILE_CHECK;
	if (strcmp(name, "pid_file") != 0)
		how |= SOCKDIR_FILE_DEV;
	if (sockdir_open_file(path, O_WRONLY, how, &cause) == -1) {
		config_error(line_of(sec, name), "%s: %s", name, cause);
		free(cause);
	}
}

/* Whether this host has addr: bound with port 0, so a port in use passes. */
static int
config_addr_assignable(const struct sn_addr *a)
{
	struct sockaddr_storage ss = a->ss;
	int                     fd, rc, saved;

	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return (-1);
	rc = bind(fd, (struct sockaddr *)&ss, a->len);
	saved = errno;
	close(fd);
	errno = saved;
	return (rc);
}

#define ASSIGNABLE_SEEN 16 /* distinct addresses remembered as checked */

/* Every listen address must be one this host has (not 192.0.2.1). */
static void
config_listen_assignable(struct sn_config *conf, cfg_t *root)
{
	struct sn_addr seen[ASSIGNABLE_SEEN], a;
	size_t         i, j, k, nseen = 0;
	char           buf[ADDRSTRLEN];

	for (i = 0; i < conf->nservices; i++) {
		for (j = 0; j < conf->services[i].nlisten; j++) {
			a = conf->services[i].listen[j];
			if (a.ss.ss_family == AF_INET)
				((struct sockaddr_in *)&a.ss)->sin_port = 0;
			else
				((struct sockaddr_in6 *)&a.ss)->sin6_port = 0;
			for (k = 0; k < nseen; k++) {
				if (addr_cmp(&seen[k], &a) == 0)
					break;
			}
			if (k < nseen)
				continue;
			if (config_addr_assignable(&a) == -1) {
				config_error(
				    line_of(cfg_getnsec(root, "service", i),
					"listen"),
				    "listen: cannot bind %s: %s",
				    addr_str((struct sockaddr *)&a.ss, buf,
					sizeof buf),
				    strerror(errno));
				continue;
			}
			if (nseen < ASSIGNABLE_SEEN)
				seen[nseen++] = a;
		}
	}
}

/* access_log of the file or of a service section: off, syslog or a path. */
static char *
config_access_log(cfg_t *sec)
{
	const char *v = cfg_getstr(sec, "access_log");

	if (strcmp(v, "off") != 0 && strcmp(v, "syslog") != 0 && v[0] != '/')
		config_error(line_of(sec, "access_log"),
		    "access_log must be off, syslog or an absolute file path, not \"%s\"",
		    v);
	return (xstrdup(v));
}

/* The access log and the stats listener (HTTP: /metrics, /status). */
static void
config_operations(struct sn_config *conf, cfg_t *root)
{
	const char *v;
	char       *cause;

	conf->access_log = config_access_log(root);
	if (conf->access_log[0] == '/')
		config_writable(root, "access_log", conf->access_log);
	if (cfg_size(root, "stats_listen") == 0)
		return;
	v = cfg_getstr(root, "stats_listen");
	conf->stats_listen = xstrdup(v);
	if (addr_parse_numeric(v, &conf->stats_addr, &cause) == -1) {
		config_error(line_of(root, "stats_listen"),
		    "stats_listen: %s (expected ADDRESS:PORT, e.g. 127.0.0.1:9100)",
		    cause);
		free(cause);
	}
}

/*
 * admin_socket: "off", an absolute path, or by default admin.sock in the
 * runtime directory; admin_group: a group whose members may use it.
 */
static void
config_admin(struct sn_config *conf, cfg_t *root)
{
	struct sockaddr_un sun;
	struct group      *gr;
	const char        *v;

	if (cfg_size(root, "admin_socket") == 0)
		conf->admin_socket =
		    xasprintf("%s/%s", conf->runtime_dir, ADMIN_SOCKET_NAME);
	else if (strcmp((v = cfg_getstr(root, "admin_socket")), "off") != 0) {
		conf->admin_socket = xstrdup(v);
		if (v[0] != '/' || v[strlen(v) - 1] == '/')
			config_error(line_of(root, "admin_socket"),
			    "admin_socket must be off or the absolute path of a socket, not \"%s\"",
			    v);
	}
	if (conf->admin_socket != NULL &&
	    strlen(conf->admin_socket) >= sizeof sun.sun_path)
		config_error(line_of(root, "admin_socket"),
		    "admin_socket %s is longer than %zu bytes",
		    conf->admin_socket, sizeof sun.sun_path - 1);
	if (cfg_size(root, "admin_group") == 0)
		return;
	conf->admin_group = xstrdup(cfg_getstr(root, "admin_group"));
	if ((gr = getgrnam(conf->admin_group)) == NULL)
		config_error(line_of(root, "admin_group"),
		    "admin_group: unknown group \"%s\"", conf->admin_group);
	else
		conf->admin_gid = gr->gr_gid;
	if (conf->admin_socket == NULL)
		config_error(line_of(root, "admin_group"),
		    "admin_group is set but admin_socket is off");
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
	else if (target[0] == '/')
		config_writable(root, "log_target", target);
	conf->log_target = xstrdup(target);
	if (cfg_size(root, "pid_file") > 0) {
		conf->pid_file = xstrdup(cfg_getstr(root, "pid_file"));
		if (conf->pid_file[0] != '/')
			config_error(line_of(root, "pid_file"),
			    "pid_file must be an absolute path");
		else
			config_writable(root, "pid_file", conf->pid_file);
	}
	config_operations(conf, root);
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
	conf->drain_delay = cfg_getint(root, "drain_delay");
	conf->kill_timeout = cfg_getint(root, "kill_timeout");
	conf->worker_cgroup = (int)cfg_getint(root, "worker_cgroup");
	conf->upgrade_timeout = cfg_getint(root, "upgrade_timeout");
	if (conf->upgrade_timeout < 1000)
		config_error(line_of(root, "upgrade_timeout"),
		    "upgrade_timeout must be at least 1s");
	config_admin(conf, root);

	n = cfg_size(root, "service");
	if (n == 0)
		config_error(0, "no service defined");
	conf->services = xcalloc(n + 1, sizeof *conf->services);
	for (i = 0; i < n; i++)
		service_build(conf, root, cfg_getnsec(root, "service", i));
	config_names_unique(conf);
	config_listen_unique(conf, root);
	config_listen_assignable(conf, root);
}

/* The whole file, if it is a regular file of at most CONFIG_SIZE_MAX. */
static char *
config_read(const char *path, size_t *lenp, struct stat *stp)
{
	struct stat st;
	char       *buf = NULL, *cause, *owner;
	size_t      len = 0, cap;
	ssize_t     n;
	int         fd;

	if ((fd = sockdir_open_read(path, &cause)) == -1) {
		config_error(0, "%s", cause);
		free(cause);
		goto fail;
	}
	if (fstat(fd, &st) == -1) {
		config_error(0, "%s", strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		config_error(0, "%s",
		    S_ISDIR(st.st_mode) ? "a directory, not a file"
					: "not a regular file");
		goto fail;
	}
	/* Who can write it runs commands as us. */
	if ((st.st_uid != 0 && st.st_uid != geteuid()) ||
	    (st.st_mode & S_IWOTH) != 0 ||
	    ((st.st_mode & S_IWGRP) != 0 && st.st_gid != 0)) {
		owner = sockdir_owner(st.st_uid);
		config_error(0,
		    "owned by %s with mode %04o: whoever can write it runs commands as socketnautd's user; it must be owned by root or that user and writable by nobody else",
		    owner, (unsigned)(st.st_mode & 07777));
		free(owner);
		goto fail;
	}
	cap = st.st_size < CONFIG_SIZE_MAX ? (size_t)st.st_size + 1
					   : CONFIG_SIZE_MAX + 1;
	buf = xcalloc(cap + 1, 1);
	while (len <= CONFIG_SIZE_MAX) {
		if (len == cap) {
			/* The file grew while we read it. */
			cap = cap * 2 > CONFIG_SIZE_MAX ? CONFIG_SIZE_MAX + 1
							: cap * 2;
			buf = xreallocarray(buf, cap + 1, 1);
		}
		if ((n = read(fd, buf + len, cap - len)) == -1) {
			if (errno == EINTR)
				continue;
			config_error(0, "%s", strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += n;
	}
	if (len > CONFIG_SIZE_MAX) {
		config_error(0, "larger than %d MiB", CONFIG_SIZE_MAX >> 20);
		goto fail;
	}
	buf[len] = '\0';
	close(fd);
	*lenp = len;
	*stp = st;
	return (buf);
fail:
	free(buf);
	if (fd != -1)
		close(fd);
	return (NULL);
}

/* A quoted string at *pp: step to its closing quote, or say why not. */
static int
config_scan_string(char **pp, const char *end, int *line)
{
	char *p = *pp, *q, quote = *p;
	int   start = *line;

	for (p++; p < end && *p != quote; p++) {
		if (*p == '\\' && p + 1 < end) {
			/* A backslash at the end of a line continues it. */
			if (*++p == '\n')
				(*line)++;
		} else if (*p == '\n') {
			break;
		} else if (quote == '"' && p[0] == '$' && p[1] == '{' &&
		    (q = memchr(p, '}', end - p)) != NULL) {
			/* libconfuse's ${VAR}: it runs to the next '}'. */
			if (memchr(p, '\n', q - p) != NULL)
				break;
			p = q;
		}
	}
	if (p >= end || *p != quote) {
		config_error(start,
		    "the string opened on this line is not closed on it (end a line with \\ to continue a string)");
		return (-1);
	}
	*pp = p;
	return (0);
}

/* A comment at *pp: blank it out but for its newlines. */
static int
config_scan_comment(char **pp, const char *end, int *line)
{
	char *p = *pp;
	int   start = *line;

	if (p[0] != '/' || p[1] != '*') {
		for (; p < end && *p != '\n'; p++)
			*p = ' ';
		*pp = p - 1;
		return (0);
	}
	p[0] = p[1] = ' ';
	for (p += 2; p < end && !(p[0] == '*' && p[1] == '/'); p++) {
		if (*p == '\n')
			(*line)++;
		else
			*p = ' ';
	}
	if (p >= end) {
		config_error(start,
		    "comment /* is not closed: everything after it would be ignored");
		return (-1);
	}
	p[0] = p[1] = ' ';
	*pp = p + 1;
	return (0);
}

/* Note a '{' or '}', and the line of each service section as it opens. */
static void
config_scan_brace(char c, int line, int *depth, const int tokline[2],
    const int tokstr[2], int *opened)
{
	if (c == '}') {
		if (*depth > 0)
			(*depth)--;
		return;
	}
	if ((*depth)++ > 0)
		return;
	/* `name "title" {`: the section starts at its name. */
	if (tokstr[0] && tokstr[1])
		line = tokline[1];
	*opened = line;
	if (tokstr[0] && tokstr[1]) {
		if ((load.nseclines & (load.nseclines - 1)) == 0)
			load.seclines = xreallocarray(load.seclines,
			    load.nseclines == 0 ? 1 : load.nseclines * 2,
			    sizeof *load.seclines);
		load.seclines[load.nseclines++] = line;
	}
}

/* Where config_scan is in the statements: checks names, finds includes. */
enum scan_state {
	SCAN_NAME,       /* a statement starts */
	SCAN_AFTER_NAME, /* name read: = (option), { or title (section) */
	SCAN_TITLE,      /* name "title": { next */
	SCAN_VALUE,      /* name =: a value or { list } */
	SCAN_LIST,       /* inside = { ... } */
	SCAN_ARGS,       /* inside name( ... ) */
};

struct scan {
	enum scan_state state;
	cfg_opt_t      *ctx[SCAN_DEPTH]; /* each open section's options */
	int             depth;           /* sections open */
	char           *stmt;            /* where the statement starts */
	char           *name;            /* its name, without quotes */
	size_t          namelen;
	int             nameline;
	char           *skip;      /* an unknown section starts here */
	int             skipdepth; /* and ends back at this depth */
};

enum { TOK_WORD = 256, TOK_STRING };

/* The option called name in opts, or NULL. */
static cfg_opt_t *
scan_lookup(cfg_opt_t *opts, const char *name, size_t len)
{
	for (; opts->name != NULL; opts++) {
		if (strlen(opts->name) == len &&
		    memcmp(opts->name, name, len) == 0)
			return (opts);
	}
	return (NULL);
}

/*
 * The statement's name is an option of the section it is in: libconfuse
 * (CFGF_IGNORE_UNKNOWN) skips an unknown one silently, so it is said here
 * and the errors after it are found too.  Returns the option or NULL.
 */
static cfg_opt_t *
scan_known(struct scan *st)
{
	cfg_opt_t *ctx, *opt;

	ctx = st->depth < SCAN_DEPTH ? st->ctx[st->depth] : NULL;
	if (ctx == NULL)
		return (NULL);
	if ((opt = scan_lookup(ctx, st->name, st->namelen)) == NULL)
		config_error(st->nameline, "unknown option \"%.*s\"",
		    (int)st->namelen, st->name);
	return (opt);
}

/*
 * An unknown section is blanked out when it closes: libconfuse 3.3, told
 * to ignore it, skips up to one closing brace too many.
 */
static void
scan_open_section(struct scan *st)
{
	cfg_opt_t *ctx, *opt = scan_known(st);

	ctx = st->depth < SCAN_DEPTH ? st->ctx[st->depth] : NULL;
	if (ctx != NULL && opt == NULL && st->skip == NULL) {
		st->skip = st->stmt;
		st->skipdepth = st->depth;
	}
	st->depth++;
	if (st->depth < SCAN_DEPTH)
		st->ctx[st->depth] =
		    opt != NULL && opt->type == CFGT_SEC ? opt->subopts : NULL;
	st->state = SCAN_NAME;
}

/* include "pattern": remembered for config_file, blanked for libconfuse. */
static void
scan_include(struct scan *st, char *buf, char *tok, char *tokend, int line)
{
	struct include *inc;
	char           *p;

	if (st->depth > 0)
		config_error(st->nameline,
		    "include is only allowed at the top level, outside sections");
	else if (memchr(tok, '\\', tokend - tok) != NULL ||
	    memchr(tok, '$', tokend - tok) != NULL || tokend - tok < 3)
		config_error(st->nameline,
		    "include: write the file or pattern plainly, without \\ or $");
	else {
		load.incs =
		    xreallocarray(load.incs, load.nincs + 1, sizeof *load.incs);
		inc = &load.incs[load.nincs++];
		inc->pattern =
		    xasprintf("%.*s", (int)(tokend - tok - 2), tok + 1);
		inc->line = st->nameline;
		inc->start = st->stmt - buf;
		inc->end = tokend - buf;
		inc->endline = line;
	}
	for (p = st->stmt; p < tokend; p++) {
		if (*p != '\n')
			*p = ' ';
	}
	st->state = SCAN_NAME;
}

/* One token of the text: a word, a string or one of ={}()+,* */
static void
scan_token(
    struct scan *st, char *buf, int kind, char *tok, char *tokend, int line)
{
	switch (st->state) {
	case SCAN_NAME:
		/* libconfuse takes a quoted name as well as a bare one. */
		if (kind == TOK_WORD ||
		    (kind == TOK_STRING && (*tok == '"' || *tok == '\''))) {
			st->stmt = tok;
			st->name = kind == TOK_WORD ? tok : tok + 1;
			st->namelen = tokend - tok - (kind == TOK_WORD ? 0 : 2);
			st->nameline = line;
			st->state = SCAN_AFTER_NAME;
		} else if (kind == '}' && st->depth > 0) {
			st->depth--;
			if (st->skip != NULL && st->depth == st->skipdepth) {
				for (; st->skip < tokend; st->skip++) {
					if (*st->skip != '\n')
						*st->skip = ' ';
				}
				st->skip = NULL;
			}
		}
		break;
	case SCAN_AFTER_NAME:
		if (kind == TOK_STRING && st->namelen == 7 &&
		    memcmp(st->name, "include", 7) == 0)
			scan_include(st, buf, tok, tokend, line);
		else if (kind == TOK_STRING || kind == TOK_WORD)
			st->state =
			    SCAN_TITLE; /* service "web" or service web */
		else if (kind == '{')
			scan_open_section(st);
		else if (kind == '=' || kind == '+' || kind == '(') {
			scan_known(st);
			st->state = kind == '(' ? SCAN_ARGS : SCAN_VALUE;
		} else
			st->state = SCAN_NAME; /* libconfuse will say */
		break;
	case SCAN_TITLE:
		if (kind == '{')
			scan_open_section(st);
		else
			st->state = SCAN_NAME;
		break;
	case SCAN_VALUE:
		if (kind == '{')
			st->state = SCAN_LIST;
		else if (kind != '=')
			st->state = SCAN_NAME;
		break;
	case SCAN_LIST:
		if (kind == '}')
			st->state = SCAN_NAME;
		break;
	case SCAN_ARGS:
		if (kind == ')')
			st->state = SCAN_NAME;
		break;
	}
}

/*
 * Walk the text as libconfuse's lexer will, blank out its comments (their
 * newlines kept: libconfuse 3.3 miscounts lines after a comment, and every
 * message here names a line) and refuse what libconfuse would silently cut
 * short: a NUL byte, an unclosed comment or string, a section that the end
 * of the file closes.  Unknown options are errors here; include statements
 * go to load.incs.  Lines are numbered from base + 1.
 */
static int
config_scan(char *buf, size_t len, int base)
{
	char       *p, *q, *tok, *end = buf + len;
	int         line = base + 1, depth = 0, opened = 0, inword = 0, str, c;
	int         tokline[2] = { 0, 0 }, tokstr[2] = { 0, 0 }, kind;
	struct scan st;

	memset(&st, 0, sizeof st);
	st.ctx[0] = root_opts;

	if ((q = memchr(buf, '\0', len)) != NULL) {
		for (p = buf; p < q; p++)
			line += *p == '\n';
		config_error(
		    line, "NUL byte: everything after it would be ignored");
		return (-1);
	}
	for (p = buf; p < end; p++) {
		c = (unsigned char)*p;
		if (c == '\n' || c == ' ' || c == '\t' || c == '\r') {
			line += c == '\n';
			inword = 0;
			continue;
		}
		/* A comment, unless // or / * is inside a word. */
		if (c == '#' ||
		    (!inword && c == '/' && (p[1] == '/' || p[1] == '*'))) {
			if (config_scan_comment(&p, end, &line) == -1)
				return (-1);
			inword = 0;
			continue;
		}
		if (inword && strchr("\"'={}()+,*", c) == NULL)
			continue;
		str = 1;
		inword = 0;
		tok = p;
		kind = TOK_STRING;
		if (c == '"' || c == '\'') {
			if (config_scan_string(&p, end, &line) == -1)
				return (-1);
		} else if (c == '$' && p[1] == '{' &&
		    (q = memchr(p, '}', end - p)) != NULL &&
		    memchr(p, '\n', q - p) == NULL)
			p = q;
		else if (strchr("={}()+,*", c) != NULL) {
			str = 0;
			kind = c;
			if (c == '{' || c == '}')
				config_scan_brace(
				    c, line, &depth, tokline, tokstr, &opened);
		} else {
			inword = 1;
			kind = TOK_WORD;
			for (q = p + 1; q < end &&
			     strchr(" \t\r\n#\"'={}()+,*", *q) == NULL;
			     q++)
				;
			p = q - 1;
			inword = 0;
		}
		scan_token(&st, buf, kind, tok, p + 1, line);
		tokline[1] = tokline[0];
		tokstr[1] = tokstr[0];
		tokline[0] = line;
		tokstr[0] = str;
	}
	if (depth > 0)
		config_error(opened,
		    "section opened here is not closed: a } is missing");
	return (0);
}

/* Register cb_record on every option of a section, recursively. */
static void
record_lines(cfg_t *cfg, cfg_opt_t *opts, const char *prefix)
{
	char *name;

	for (; opts->name != NULL; opts++) {
		name = prefix == NULL ? xstrdup(opts->name)
				      : xasprintf("%s|%s", prefix, opts->name);
		if (opts->type == CFGT_SEC) {
			record_lines(cfg, opts->subopts, name);
			/* Only the titled, repeated service sections. */
			if (opts->flags & CFGF_TITLE)
				cfg_set_validate_func(cfg, name, cb_section);
		} else
			cfg_set_validate_func(cfg, name, cb_record);
		free(name);
	}
}

/* The optional health_check section: active checks of each worker. */
static void
service_health(struct sn_service_conf *sc, cfg_t *sec)
{
	struct sn_health_conf *h = &sc->health;
	const char            *type, *path;
	cfg_t                 *hs;

	if (cfg_size(sec, "health_check") == 0)
		return;
	hs = cfg_getsec(sec, "health_check");
	h->enabled = 1;
	type = cfg_getstr(hs, "type");
	if (strcmp(type, "http") == 0)
		h->http = 1;
	else if (strcmp(type, "tcp") != 0)
		config_error(line_of(hs, "type"),
		    "health_check: unknown type \"%s\" (expected tcp or http)",
		    type);
	path = cfg_getstr(hs, "path");
	if (path[0] != '/' || strcspn(path, " \t\r\n") != strlen(path) ||
	    strlen(path) > 1024)
		config_error(line_of(hs, "path"),
		    "health_check: path \"%s\" must start with / and have no spaces or control characters (at most 1024 bytes)",
		    path);
	h->path = xstrdup(path);
	int_range(hs, "expect", 100, 599);
	int_range(hs, "rise", 1, 100);
	int_range(hs, "fall", 1, 100);
	duration_min(hs, "interval", 100);
	duration_min(hs, "timeout", 10);
	h->expect = cfg_getint(hs, "expect");
	h->rise = cfg_getint(hs, "rise");
	h->fall = cfg_getint(hs, "fall");
	h->interval = cfg_getint(hs, "interval");
	h->timeout = cfg_getint(hs, "timeout");
	if (h->timeout > h->interval)
		config_error(line_of(hs, "timeout"),
		    "health_check: timeout (%lldms) must not exceed interval (%lldms)",
		    h->timeout, h->interval);
}

static void
config_warning(int, const char *, ...) __attribute__((format(printf, 2, 3)));

/* A problem that does not stop the configuration: file:line: warning. */
static void
config_warning(int line, const char *fmt, ...)
{
	va_list ap;
	char   *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	log_warnx("%s:%d: %s", load.path, line, msg);
	free(msg);
}

/* tls_new() reports each problem against the option it concerns. */
static void
tls_report(void *arg, const char *option, int error, const char *message)
{
	cfg_t *ts = arg;
	int    line =
            option != NULL ? line_of(ts, option) : line_get(ts, SECTION_KEY);

	if (line == 0)
		line = ts->line;
	if (error)
		config_error(line, "tls: %s", message);
	else
		config_warning(line, "tls: %s", message);
}

/* The ALPN names: 1 to 255 printable bytes each, at most 16. */
static void
tls_alpn_check(struct tls_conf *t, cfg_t *ts)
{
	size_t i, j, n;

	t->alpn = list_copy(ts, "alpn");
	if (argv_count(t->alpn) > 16)
		config_error(
		    line_of(ts, "alpn"), "tls: alpn: at most 16 protocols");
	for (i = 0; t->alpn[i] != NULL; i++) {
		n = strlen(t->alpn[i]);
		for (j = 0; j < n; j++) {
			if (t->alpn[i][j] <= 0x20 || t->alpn[i][j] >= 0x7f)
				break;
		}
		if (n == 0 || n > 255 || j < n)
			config_error(line_of(ts, "alpn"),
			    "tls: alpn: \"%s\" must be 1 to 255 printable characters",
			    t->alpn[i]);
	}
}

/*
 * The optional tls section: the options checked one by one, then the
 * contexts built (files read, each key against its certificate), so that
 * `-t` and a reload fail as a start would.
 */
static void
service_tls(struct sn_service_conf *sc, cfg_t *sec)
{
	struct tls_conf *t;
	cfg_t           *ts;
	int              errors = load.errors;

	if (cfg_size(sec, "tls") == 0)
		return;
	ts = cfg_getsec(sec, "tls");
	t = sc->tls = xcalloc(1, sizeof *t);
	t->certificates = list_copy(ts, "certificate");
	t->keys = list_copy(ts, "key");
	t->ocsp = list_copy(ts, "ocsp_response");
	t->ncerts = argv_count(t->certificates);
	if (t->ncerts == 0)
		config_error(
		    line_get(ts, SECTION_KEY), "tls: certificate is required");
	else if (argv_count(t->keys) != t->ncerts)
		config_error(line_of(ts, "key"),
		    "tls: %zu key%s for %zu certificate%s: one key per certificate, in the same order",
		    argv_count(t->keys), argv_count(t->keys) == 1 ? "" : "s",
		    t->ncerts, t->ncerts == 1 ? "" : "s");
	else if (t->ncerts > 64)
		config_error(
		    line_of(ts, "certificate"), "tls: at most 64 certificates");
	if (argv_count(t->ocsp) > t->ncerts)
		config_error(line_of(ts, "ocsp_response"),
		    "tls: more ocsp_response files than certificates");
	t->min_protocol = (int)cfg_getint(ts, "min_protocol");
	t->max_protocol = (int)cfg_getint(ts, "max_protocol");
	if (t->max_protocol != 0 && t->max_protocol < t->min_protocol)
		config_error(line_of(ts, "max_protocol"),
		    "tls: max_protocol is older than min_protocol: no protocol is left to offer");
	if (cfg_size(ts, "ciphers") > 0)
		t->ciphers = xstrdup(cfg_getstr(ts, "ciphers"));
	if (cfg_size(ts, "ciphersuites") > 0)
		t->ciphersuites = xstrdup(cfg_getstr(ts, "ciphersuites"));
	tls_alpn_check(t, ts);
	int_range(ts, "session_cache", 0, 10000000);
	t->session_cache = cfg_getint(ts, "session_cache");
	t->ticket_rotation = cfg_getint(ts, "ticket_key_rotation");
	if (t->ticket_rotation != 0 &&
	    (t->ticket_rotation < 1000 || t->ticket_rotation > 7 * 86400000LL))
		config_error(line_of(ts, "ticket_key_rotation"),
		    "tls: ticket_key_rotation must be 0 (no tickets) or between 1s and 7d");
	if (cfg_size(ts, "ticket_key_file") > 0) {
		t->ticket_key_file = xstrdup(cfg_getstr(ts, "ticket_key_file"));
		if (t->ticket_rotation == 0)
			config_error(line_of(ts, "ticket_key_file"),
			    "tls: ticket_key_file is set but ticket_key_rotation is 0 (no tickets)");
	}
	t->verify_client = (enum tls_verify)cfg_getint(ts, "verify_client");
	if (cfg_size(ts, "client_ca") > 0)
		t->client_ca = xstrdup(cfg_getstr(ts, "client_ca"));
	if (t->verify_client != TLS_VERIFY_OFF && t->client_ca == NULL)
		config_error(line_of(ts, "verify_client"),
		    "tls: verify_client needs client_ca (the CA that signs client certificates)");
	if (t->verify_client == TLS_VERIFY_OFF && t->client_ca != NULL)
		config_error(line_of(ts, "client_ca"),
		    "tls: client_ca is set but verify_client is off");
	duration_min(ts, "handshake_timeout", 100);
	t->handshake_timeout = cfg_getint(ts, "handshake_timeout");
	if (load.errors == errors)
		t->tls = tls_new(t, sc->name, tls_report, ts);
}

/* Give libconfuse back the sections cb_section took, so cfg_free has them. */
static void
config_sections_restore(cfg_t *cfg)
{
	cfg_opt_t *opt = cfg_getopt(cfg, "service");
	size_t     i, n = load.nsecs + opt->nvalues;

	load.secs = xreallocarray(load.secs, n + 1, sizeof *load.secs);
	for (i = 0; i < opt->nvalues; i++)
		load.secs[load.nsecs + i] = opt->values[i];
	free(opt->values);
	opt->values = load.secs;
	opt->nvalues = n;
	load.secs = NULL;
	load.nsecs = 0;
}

/* Parse text[start, end) of the file being read; it starts on line. */
static void
config_parse_part(cfg_t *cfg, char *text, size_t start, size_t end, int line)
{
	size_t i;
	char   c;

	for (i = start; i < end && strchr(" \t\r\n", text[i]) != NULL; i++)
		;
	if (i == end)
		return;
	c = text[end];
	text[end] = '\0';
	load.lineadd = line - 1;
	if (cfg_parse_buf(cfg, text + start) != CFG_SUCCESS)
		load.parse_failed = 1;
	load.lineadd = 0;
	text[end] = c;
}

static void config_include(cfg_t *, const struct include *, int);

/*
 * Read, scan and parse one file, the files it includes parsed where their
 * include statements were.  depth: how deep in includes it is.
 */
static void
config_file(cfg_t *cfg, const char *path, int depth)
{
	struct conf_file *f;
	struct include   *incs;
	struct stat       st;
	char             *text, *p;
	size_t            len, nincs, i, pos;
	int               idx, saved = load.cur, line;

	load.files =
	    xreallocarray(load.files, load.nfiles + 1, sizeof *load.files);
	idx = load.nfiles++;
	f = &load.files[idx];
	memset(f, 0, sizeof *f);
	f->path = xstrdup(path);
	f->parent = load.nfiles > 1 ? saved : -1;
	f->base = load.nextbase;
	load.cur = idx;
	if ((text = config_read(path, &len, &st)) == NULL) {
		load.parse_failed = 1;
		goto done;
	}
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->nlines = 1;
	for (p = text; (p = memchr(p, '\n', text + len - p)) != NULL; p++)
		f->nlines++;
	load.nextbase += f->nlines + 1;
	if ((load.total += len) > CONFIG_ALL_MAX) {
		config_error(0,
		    "the configuration and its includes exceed %d MiB",
		    CONFIG_ALL_MAX >> 20);
		load.parse_failed = 1;
		free(text);
		goto done;
	}
	f->nextsec = load.nseclines;
	if (config_scan(text, len, f->base) == -1)
		load.parse_failed = 1;
	incs = load.incs;
	nincs = load.nincs;
	load.incs = NULL;
	load.nincs = 0;
	pos = 0;
	line = load.files[idx].base + 1;
	for (i = 0; i < nincs && !load.parse_failed; i++) {
		config_parse_part(cfg, text, pos, incs[i].start, line);
		config_include(cfg, &incs[i], depth + 1);
		load.cur = idx;
		pos = incs[i].end;
		line = incs[i].endline;
	}
	if (!load.parse_failed)
		config_parse_part(cfg, text, pos, len, line);
	for (i = 0; i < nincs; i++)
		free(incs[i].pattern);
	free(incs);
	free(text);
done:
	load.cur = saved;
}

/* The pattern of an include, relative to the directory of its file. */
static char *
config_include_pattern(const char *from, const char *pattern)
{
	const char *slash;

	if (pattern[0] == '/' || (slash = strrchr(from, '/')) == NULL)
		return (xstrdup(pattern));
	return (xasprintf("%.*s/%s", (int)(slash - from), from, pattern));
}

/*
 * include "conf.d/NAME.conf" (a glob): every match, sorted by glob(3).  A
 * pattern that matches nothing is no error (an empty conf.d), a plain file
 * name that does not exist is; a file that includes itself, through any
 * chain, is refused, and so are includes deeper than INCLUDE_DEPTH.
 */
/* A directory glob(3) cannot read: fatal unless it does not exist. */
static int
config_glob_error(const char *path, int error)
{
	(void)path;
	return (error != ENOENT && error != ENOTDIR);
}

static void
config_include(cfg_t *cfg, const struct include *inc, int depth)
{
	struct stat st;
	glob_t      g;
	char       *pattern;
	size_t      i;
	int         rc, p;

	if (depth > INCLUDE_DEPTH) {
		config_error(inc->line,
		    "include \"%s\": includes nested more than %d deep",
		    inc->pattern, INCLUDE_DEPTH);
		return;
	}
	pattern =
	    config_include_pattern(load.files[load.cur].path, inc->pattern);
	rc = glob(pattern, 0, config_glob_error, &g);
	if (rc == GLOB_NOMATCH && strpbrk(inc->pattern, "*?[") != NULL)
		rc = 0;
	else if (rc == GLOB_NOMATCH)
		config_error(inc->line, "include \"%s\": %s: no such file",
		    inc->pattern, pattern);
	else if (rc != 0)
		config_error(inc->line, "include \"%s\": cannot read %s",
		    inc->pattern, pattern);
	for (i = 0; rc == 0 && i < g.gl_pathc; i++) {
		if (load.nfiles >= INCLUDE_FILES) {
			config_error(inc->line,
			    "include \"%s\": more than %d files in the configuration",
			    inc->pattern, INCLUDE_FILES);
			break;
		}
		if (stat(g.gl_pathv[i], &st) == 0) {
			for (p = load.cur; p != -1; p = load.files[p].parent) {
				if (load.files[p].dev == st.st_dev &&
				    load.files[p].ino == st.st_ino)
					break;
			}
			if (p != -1) {
				config_error(inc->line,
				    "include \"%s\": %s includes itself",
				    inc->pattern, g.gl_pathv[i]);
				continue;
			}
		}
		config_file(cfg, g.gl_pathv[i], depth);
	}
	if (rc == 0 || rc == GLOB_NOMATCH)
		globfree(&g);
	free(pattern);
}

struct sn_config *
config_load(const char *path)
{
	struct sn_config *conf;
	cfg_t            *cfg;
	char             *text;
	int               i;

	memset(&load, 0, sizeof load);
	load.path = path;
	/* Unknown options are config_scan's to report, and not fatal. */
	cfg = cfg_init(root_opts, CFGF_IGNORE_UNKNOWN);
	cfg_set_error_function(cfg, cb_error);
	record_lines(cfg, root_opts, NULL);

	conf = xcalloc(1, sizeof *conf);
	conf->refs = 1;
	conf->path = xstrdup(path);
	config_file(cfg, path, 0);
	config_sections_restore(cfg);
	if (!load.parse_failed)
		config_build(conf, cfg);
	else if (load.errors == 0)
		config_error(0, "cannot parse");
	cfg_free(cfg);
	free(load.lines);
	free(load.seclines);
	if (load.errors > 0) {
		text = xasprintf("%s: %d error%s", path, load.errors,
		    load.errors == 1 ? "" : "s");
		config_report(text);
		free(text);
	}
	for (i = 0; i < load.nfiles; i++)
		free(load.files[i].path);
	free(load.files);
	if (load.errors > 0) {
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
		free(sc->trusted_proxies);
		argv_free(sc->argv);
		free(sc->exec_path);
		argv_free(sc->env);
		free(sc->directory);
		free(sc->user);
		free(sc->group);
		free(sc->sockdir);
		free(sc->access_log);
		free(sc->health.path);
		tls_conf_free(sc->tls);
	}
	free(conf->services);
	free(conf->path);
	free(conf->log_target);
	free(conf->pid_file);
	free(conf->access_log);
	free(conf->stats_listen);
	free(conf->runtime_dir);
	free(conf->admin_socket);
	free(conf->admin_group);
	free(conf);
}
