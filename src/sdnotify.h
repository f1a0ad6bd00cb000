/* systemd's readiness protocol (sd_notify), without libsystemd. */
#ifndef SN_SDNOTIFY_H
#define SN_SDNOTIFY_H

void sdnotify_init(void);
void sdnotify_hold(int held);
void sdnotify(const char *, ...) __attribute__((format(printf, 1, 2)));

#endif
