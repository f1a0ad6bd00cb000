/* A cgroup v2 per worker, under the subtree the daemon was started in. */
#ifndef SN_CGROUP_H
#define SN_CGROUP_H

int         cgroup_init(char **cause);
const char *cgroup_path(void);
const char *cgroup_workers_path(void);
int         cgroup_worker_create(unsigned serial, int *procsfd, char **cause);
void        cgroup_worker_kill(unsigned serial);
int         cgroup_worker_procs(unsigned serial);
void        cgroup_worker_remove(unsigned serial);
int         cgroup_shutdown(void);

#endif
