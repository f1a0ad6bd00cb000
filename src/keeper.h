/* The keeper: kills the workers' descendants when the master is killed. */
#ifndef SN_KEEPER_H
#define SN_KEEPER_H

#include <sys/types.h>

int   keeper_start(char **cause);
pid_t keeper_getpid(void);
void  keeper_track(pid_t pgid);
void  keeper_untrack(pid_t pgid);
int   keeper_reaped(pid_t pid, int status);

#endif
