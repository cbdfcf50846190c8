/* The container's first process, between the clone and the execve of the
 * command: the in-container half of the setup (setup.h). */
#ifndef CAPSA_SETUP_CHILD_H
#define CAPSA_SETUP_CHILD_H

#include <signal.h>

#include "common/pty.h"
#include "setup/setup.h"

/* What the parent made for the child before the clone. */
struct child_fds {
  int *cgroups;                    /* one cgroup.procs fd per plan->cgroups entry */
  int userns;                      /* the container's user namespace (--userns auto), or -1 */
  int ptysock;                     /* run mode with a tty: where the master goes back, or -1 */
  int errpipe;                     /* write end of the close-on-exec error pipe */
  int parent_ends[5];              /* the parent's ends of the pipes and sockets above, closed here (-1 skipped) */
  int stdin_r, stdout_w, stderr_w; /* pipe_stdio: the command's ends, or -1 */
  struct pty *pty;                 /* exec mode: the pty the parent opened; run mode: filled here */
  const sigset_t *oldmask;
};

/* Carries out the plan in the child and execs the command; on failure
 * writes the error to fds->errpipe and exits with SHIM_SETUP_FAILED. */
void child_main(const struct setup_request *req, struct child_fds *fds) __attribute__((noreturn));

#endif
