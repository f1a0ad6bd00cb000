/*
 * The spawner: threads of the master that vfork the workers, so that an
 * exec that hangs (its file system does) suspends one of them, not the
 * event loop.
 */
#ifndef SN_SPAWNER_H
#define SN_SPAWNER_H

#include <sys/types.h>

/* How long the loop waits for a child's exec before it goes on. */
#define SPAWN_SYNC_MS 20
/* A child that has not exec'd after this long is late (logged). */
#define SPAWN_LATE_MS 1000
/* Threads at most (made as needed; a start holds one until its exec). */
#define SPAWNERS_MAX 1024

/* Runs in the vforked child: it must exec or _exit, never return. */
typedef void (*spawn_child_fn)(void *) __attribute__((noreturn));

int   spawner_run(const void *, const char *, int, spawn_child_fn, void *,
      void (*)(void *), pid_t *);
pid_t spawner_late_child(const void *, pid_t, long long *);

#endif
