/* Logging: stderr (journald-aware), syslog or a file, with syslog levels. */
#ifndef SN_LOG_H
#define SN_LOG_H

#include <syslog.h>

int         log_open(const char *target, char **cause);
void        log_setlevel(int level);
int         log_getlevel(void);
void        log_reopen(void);
int         log_fd(void);
int         log_level_parse(const char *name);
const char *log_level_name(int level);

void log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_errorx(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_notice(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_at(int, const char *, ...) __attribute__((format(printf, 2, 3)));
void log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
