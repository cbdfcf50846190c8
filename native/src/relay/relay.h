/* The relay: the shim's loop when it stays in the foreground (`exec`, and
 * `run` without --monitor). It relays the pty between the container and
 * the shim's own stdio, obeys the helper's control lines, forwards signals
 * and waits for the exit; without a pty the command has the shim's stdio
 * itself and the relay only forwards and waits. */
#ifndef CAPSA_RELAY_RELAY_H
#define CAPSA_RELAY_RELAY_H

#include "common/container.h"

struct relay {
  struct container *c;
  /* control lines from the helper, or -1:
   *   resize <rows> <cols>   signal <n>
   * unknown ones are ignored, so a newer helper can talk to an older shim */
  int ctlfd;
};

/* Runs until the container's process ended and the pty drained; returns its
 * exit code (status, or 128 + signal). */
int relay_run(struct relay *r);

#endif
