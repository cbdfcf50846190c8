/* A minimal init for `--init`: the shim's child stays PID 1 of the
 * container, reaps every orphan and forwards signals to the command. */
#ifndef CAPSA_SETUP_INIT_H
#define CAPSA_SETUP_INIT_H

#include <signal.h>
#include <stddef.h>

#include "common/error.h"

/* The shim's argv strings (contiguous), renamed in PID 1 so that the
 * container's /proc/1/cmdline does not show the host path of the shim. */
struct init_title {
  char *area;
  size_t len;
};

/* Forks the command's process. Returns 0 in it (setup continues there);
 * in PID 1 it never returns and exits with the command's exit code.
 * PID 1 closes the fds it must not hold (negative ones are skipped): the
 * error pipe must report the command's exec, not init's lifetime, and the
 * pty must hang up when the command's side closes. */
int become_init(const struct init_title *title, int errfd, int slave, int sock, struct shim_error *err);

#endif
