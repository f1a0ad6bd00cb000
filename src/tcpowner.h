/* Whose listener takes connections to a loopback TCP address. */
#ifndef SN_TCPOWNER_H
#define SN_TCPOWNER_H

#include <sys/types.h>

#include <stdint.h>

#include "util.h"

struct tcpowner {
	uid_t    uid;   /* its socket's owner */
	uint32_t inode; /* its socket's inode, as in /proc/PID/fd */
};

int tcpowner_lookup(const struct sn_addr *, struct tcpowner *, char **cause);
int tcpowner_held(pid_t pid, int procsfd, uint32_t inode);

#endif
