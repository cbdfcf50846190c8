/* The monitor: conmon's job. A process of its own session, detached from
 * the helper (`capsa-shim run --monitor DIR`), that stays the parent of the
 * container's first process for its whole life: it owns the container's
 * stdio, writes DIR/container.log (logfile.h), serves DIR/attach.sock
 * (attach.h) and, when the container ended, writes DIR/exit.json
 * atomically before it tells the attached clients. The container so
 * outlives any helper. */
#ifndef CAPSA_MONITOR_MONITOR_H
#define CAPSA_MONITOR_MONITOR_H

#include <stddef.h>

#include "common/container.h"
#include "common/error.h"
#include "monitor/attach.h"

struct monitor {
  int dirfd; /* DIR */
  int logfd; /* DIR/container.log */
  struct attach_server attach;
};

/* Leaves the helper: forks (the parent exits at once), starts a session,
 * closes every fd above inherited_max (whatever the helper leaked must not
 * live as long as the container), opens DIR's files and listens on
 * attach.sock; first_client, when open, is the first attach client (the
 * helper's connected socket, so it misses none of the output). */
int monitor_detach(struct monitor *m, const char *dir, int inherited_max, int first_client, struct shim_error *err);

/* The monitor's fds, which the container's process must close: fills fds
 * (room for max) and returns how many. */
size_t monitor_fds(const struct monitor *m, int *fds, size_t max);

/* After a failed setup: the socket is gone before the error is reported,
 * so whoever reads the error finds none. */
void monitor_abort(struct monitor *m);

/* Looks after the container until it ended and its output drained; returns
 * its exit code. stdin_open: the clients' input reaches the command. */
int monitor_run(struct monitor *m, struct container *c, int stdin_open);

#endif
