/* Binary upgrade (SIGUSR2): re-execute, pass the listeners, hand over. */
#ifndef SN_UPGRADE_H
#define SN_UPGRADE_H

#include <sys/types.h>

struct service_head;

/* Called in the old master once the new one serves: stop accepting, drain. */
typedef void (*upgrade_handover_cb)(pid_t new_master);

void upgrade_init(int argc, char **argv);
void upgrade_start(struct service_head *, long long timeout_ms,
    long long kill_ms, upgrade_handover_cb);
int  upgrade_reaped(pid_t pid, int status);
void upgrade_abort(void);
void upgrade_ready(void);
int  upgrade_child(void);
int  upgrade_holding(void);
int  upgrade_handed_over(void);
void upgrade_free(void);

#endif
