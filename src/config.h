/* The configuration file, parsed and validated into plain C structures. */
#ifndef SN_CONFIG_H
#define SN_CONFIG_H

#include <sys/types.h>

#include "proxy.h"
#include "util.h"

#define WORKERS_MAX 4096 /* min_workers, max_workers, worker_count */

/* Receives each configuration error ("file:line: what is wrong"). */
typedef void config_error_fn(const char *msg, void *arg);

struct tls_conf;

enum sn_backend {
	BACKEND_UNIX,
	BACKEND_TCP,
	BACKEND_AGENT, /* the worker reports its address */
};

/* Who moves a client's bytes: the master, or the worker it hands the fd. */
enum sn_mode {
	MODE_RELAY,
	MODE_HANDOFF, /* SCM_RIGHTS over the control channel (handoff.c) */
};

/* Active checks of each worker (HAProxy's check inter/rise/fall). */
struct sn_health_conf {
	int       enabled;
	int       http;   /* else a TCP connect */
	char     *path;   /* http: GET this */
	int       expect; /* http: this status */
	long long interval;
	long long timeout;
	int       rise; /* passes in a row: healthy again */
	int       fall; /* failures in a row: unhealthy */
};

struct sn_service_conf {
	char *name;
	int   line;

	char          **listen_text;
	struct sn_addr *listen;
	size_t          nlisten;
	int             backlog;

	char          **argv;      /* words, placeholders unexpanded */
	char           *exec_path; /* argv[0] resolved at load time */
	enum sn_backend backend;
	enum sn_mode    mode;
	int             handoff_node; /* handoffs on a Node IPC channel */
	int             activation;
	int             control; /* SOCKETNAUT_CONTROL_FD channel */
	char          **env;     /* NAME=value additions */
	char           *directory;
	char           *user;
	char           *group;
	uid_t           uid;
	gid_t           gid;
	int             switch_ids;
	int             no_new_privs; /* PR_SET_NO_NEW_PRIVS in workers */
	int             cgroup;       /* a cgroup per worker, if available */

	int min_workers;
	int max_workers;
	int max_connections;
	int worker_concurrency; /* connections a worker is given; 0: see pick */
	int spawn_concurrency;  /* workers starting at once, at most */
	int spare_workers;      /* idle ready workers kept above demand */
	int max_queue; /* queued clients before accepts pause; 0: any */
	int log_rate;  /* worker log lines a second */
	int log_burst; /* and at once */

	long long check_interval; /* all durations in ms */
	long long connect_timeout;
	long long ready_timeout;
	long long queue_timeout;
	long long idle_timeout;
	long long stall_timeout; /* 0: off */

	struct sn_health_conf health;
	enum proxy_version    proxy_protocol; /* header sent to workers */
	enum proxy_version    accept_proxy;   /* header read from clients */
	struct proxy_cidr    *trusted_proxies;
	size_t                ntrusted_proxies;
	long long             proxy_timeout;
	long long             shutdown_timeout;
	long long             kill_timeout;

	char *sockdir;    /* runtime_dir/name */
	char *access_log; /* its own, or the global one */

	struct tls_conf *tls; /* NULL: plain TCP */
};

struct sn_config {
	int                     refs; /* main's, plus one per service */
	char                   *path;
	int                     log_level;
	char                   *log_target;
	char                   *runtime_dir;
	char                   *pid_file; /* NULL: none */
	long long               shutdown_timeout;
	long long               drain_delay; /* SIGTERM: 503, then stop */
	long long               kill_timeout;
	int                     worker_cgroup;   /* auto (1) or off (0) */
	long long               upgrade_timeout; /* new master ready within */
	char                   *access_log;      /* "off", "syslog" or a path */
	char                   *stats_listen;    /* "ADDR:PORT", or NULL */
	struct sn_addr          stats_addr;
	char                   *admin_socket; /* NULL: off */
	char                   *admin_group;  /* NULL: none */
	gid_t                   admin_gid;
	struct sn_service_conf *services;
	size_t                  nservices;
};

struct sn_config *config_load(const char *path);
void              config_ref(struct sn_config *);
void              config_unref(struct sn_config *);
const char       *config_default_runtime_dir(void);
void              config_error_sink(config_error_fn *, void *arg);

#endif
