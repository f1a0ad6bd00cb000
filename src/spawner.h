/*
 * The spawner: threads of the master that vfork the workers, so that an
 * exec that hangs (its file system does) suspends one of them, not the
 * event loop.
 */
#ifndef SN_SPAWNER_H
#define SN_SPAWNER_H

#include <sys/types.h>

/* How long the event loop waits for a child to exec before it goes on. */
#define SPAWN_WAIT_MS 1000
/* Threads at most: each may be held by a child whose exec hangs. */
#define SPAWNERS_MAX 8

/* Runs in the vforked child: it must exec or _exit, never return. */
typedef void (*spawn_child_fn)(void *) __attribute__((noreturn));

int   spawner_run(const void *, const char *, spawn_child_fn, void *,
      void (*)(void *), pid_t *);
pid_t spawner_stuck(const void *, long long *);

#endif
