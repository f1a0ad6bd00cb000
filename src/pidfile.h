/* The optional pid file: locked while we run, removed only if ours. */
#ifndef SN_PIDFILE_H
#define SN_PIDFILE_H

#define PIDFILE_ENV "SOCKETNAUT_PIDFILE_FD"

int  pidfile_lock(const char *path, char **cause);
int  pidfile_handle(void);
int  pidfile_write(char **cause);
void pidfile_remove(int handed_over);

#endif
