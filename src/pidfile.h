/* The optional pid file: locked while we run, removed only if ours. */
#ifndef SN_PIDFILE_H
#define SN_PIDFILE_H

int  pidfile_lock(const char *path, char **cause);
int  pidfile_write(char **cause);
void pidfile_remove(void);

#endif
