/* The stats listener: HTTP /metrics, /status and /status.json (evhttp). */
#ifndef SN_STATS_H
#define SN_STATS_H

struct service_head;
struct sn_config;

int  stats_start(const struct sn_config *, struct service_head *, char **cause);
int  stats_reload(const struct sn_config *, char **cause);
void stats_stop(void);

#endif
