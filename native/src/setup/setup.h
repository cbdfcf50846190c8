/* The setup: crun's job. Creates (run) or joins (exec) the container's
 * namespaces, clones its first process, has it carry out the plan up to the
 * execve of the command, and hands back what the caller (the monitor or the
 * relay) needs to look after it. Everything it uses comes in through
 * struct setup_request; everything it leaves goes out through struct
 * container. */
#ifndef CAPSA_SETUP_SETUP_H
#define CAPSA_SETUP_SETUP_H

#include <stddef.h>

#include "common/container.h"
#include "common/error.h"
#include "common/plan.h"
#include "setup/init.h"

struct setup_request {
  const struct plan *plan;
  int exec_mode; /* join the namespaces of plan->join_pid instead of creating them */
  /* without a tty: the command's stdout and stderr, and its stdin with
   * stdin_pipe, are pipes to the caller; otherwise it inherits the shim's */
  int pipe_stdio;
  int stdin_pipe;
  /* the caller's fds the container's process must not hold (an --init PID 1
   * never execs, so close-on-exec is not enough); negative ones are skipped */
  const int *child_close;
  size_t n_child_close;
  struct init_title title;
};

/* Returns 0 once the command was exec'd, or -1 with err filled (the child,
 * if any, has then exited and taken every mount it made with it). */
int setup_container(const struct setup_request *req, struct container *c, struct shim_error *err);

#endif
