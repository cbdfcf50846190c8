#define _GNU_SOURCE
#include "setup/child.h"

#include <errno.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/status.h"
#include "common/trace.h"
#include "common/utils.h"
#include "setup/devices.h"
#include "setup/idmap.h"
#include "setup/process.h"
#include "setup/rootfs.h"
#include "setup/security.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* Run mode, after pivot_root: opens the pty on the container's devpts and
 * hands the master to the parent over sock. */
static int open_console(const struct plan *plan, struct pty *pty, int sock, struct shim_error *err) {
  if (pty_open(pty, plan->rows, plan->cols, err) < 0 || mount_console(pty->name, err) < 0)
    return -1;
  if (pty_send_fd(sock, pty->master) < 0)
    return shim_fail(err, "tty", "master", errno, NULL);
  close(pty->master);
  pty->master = -1;
  return 0;
}

/* The container's filesystem, made in its new mount namespace: only run mode makes one. */
static int make_rootfs(const struct plan *plan, const struct child_fds *fds, struct shim_error *err) {
  if (make_private(err) < 0 || do_idlowers(plan, fds->userns, err) < 0 || do_mounts(plan, err) < 0)
    return -1;
  /* mounted: the bind sources' descriptors must not reach the container
   * (an --init PID 1 never execs, so close-on-exec alone would not do) */
  for (size_t i = 0; i < plan->n_bindfds; i++)
    close(plan->bindfds[i]);
  if (do_idmaps(plan, err) < 0 || do_devices(plan, err) < 0 || pivot_into(plan, err) < 0)
    return -1;
  if (plan->tty && open_console(plan, fds->pty, fds->ptysock, err) < 0)
    return -1;
  return do_masks(plan, err) < 0 || do_readonly(plan, err) < 0 ? -1 : 0;
}

static int switch_identity(const struct plan *plan, struct shim_error *err) {
  if (drop_bounding(plan, err) < 0 || keep_caps(plan, 1, err) < 0 || switch_user(plan, err) < 0 ||
      keep_caps(plan, 0, err) < 0 || apply_caps(plan, err) < 0)
    return -1;
  return 0;
}

/* One of the last steps, which the plan orders (the seccomp filter, for
 * one, must come before the capabilities it needs are gone, or after
 * no_new_privs: spec.ts decides which). */
static int run_step(enum plan_step step, const struct plan *plan, const struct pty *pty, struct shim_error *err) {
  switch (step) {
  case PLAN_STEP_RLIMITS:
    return apply_rlimits(plan, err);
  case PLAN_STEP_TTY:
    return pty->slave >= 0 ? pty_attach(pty->slave, err) : 0;
  case PLAN_STEP_SECCOMP:
    return load_seccomp(plan, err);
  case PLAN_STEP_USER:
    return switch_identity(plan, err);
  case PLAN_STEP_CWD:
    return chdir(plan->cwd) < 0 ? shim_fail(err, "cwd", plan->cwd, errno, NULL) : 0;
  case PLAN_STEP_UMASK:
    umask(plan->umask);
    return 0;
  case PLAN_STEP_NONEWPRIVS:
    return apply_no_new_privs(plan, err);
  case PLAN_STEP_COUNT:
    break;
  }
  return shim_fail(err, "plan", "steps", EINVAL, "unknown step %d", (int)step);
}

/* Everything between clone and exec; returns only on error. */
static int setup_child(const struct setup_request *req, struct child_fds *fds, struct shim_error *err) {
  const struct plan *plan = req->plan;
  /* The forwarded signals stay blocked through setup (they queue for the
   * command, or for init); the shim's other settings must not leak in. */
  signal(SIGPIPE, SIG_DFL);
  syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  if (fds->pty->master >= 0)
    close(fds->pty->master);
  /* the modes the shim creates mount points and devices with are then exact */
  umask(0);

  if (!req->exec_mode && make_rootfs(plan, fds, err) < 0)
    return -1;
  trace_mark("rootfs mounted");
  if (set_hostname(plan, err) < 0)
    return -1;
  if (plan->loopback && loopback_up(err) < 0)
    return -1;
  /* after the steps that need the host's privileges (mounts, devices,
   * hostname, lo); the namespaces made by the clone stay the host user
   * namespace's, so root inside holds its capabilities over its own ids only */
  if (fds->userns >= 0 && userns_enter(fds->userns, err) < 0)
    return -1;
  if (plan->init && !req->exec_mode && become_init(&req->title, fds->errpipe, fds->pty->slave, fds->ptysock, err) < 0)
    return -1;
  sigprocmask(SIG_SETMASK, fds->oldmask, NULL);

  for (size_t i = 0; i < plan->n_steps; i++)
    if (run_step(plan->steps[i], plan, fds->pty, err) < 0)
      return shim_error_wrap(err, "in the plan's %s step", plan_step_name(plan->steps[i]));
  trace_mark("exec");
  return exec_command(plan, err);
}

/* The cgroups first, before anything the container does can be charged elsewhere. */
static int enter_own_cgroups(const struct setup_request *req, struct child_fds *fds, struct shim_error *err) {
  const struct plan *plan = req->plan;
  if (enter_cgroups(plan, fds->cgroups, err) < 0)
    return -1;
  /* the cgroup namespace is made once the process is in its cgroups, so
   * that they are its root (/proc/self/cgroup shows "/") */
  if (!req->exec_mode && (plan->ns_flags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) < 0)
    return shim_fail(err, "cgroup", "unshare", errno, NULL);
  return 0;
}

/* pipe_stdio without a tty: the pipes become stdin (when open), stdout and stderr. */
static int take_stdio(const struct setup_request *req, const struct child_fds *fds, struct shim_error *err) {
  if (!req->pipe_stdio || req->plan->tty)
    return 0;
  if ((fds->stdin_r >= 0 && dup2(fds->stdin_r, 0) < 0) || dup2(fds->stdout_w, 1) < 0 || dup2(fds->stderr_w, 2) < 0)
    return shim_fail(err, "monitor", "stdio", errno, NULL);
  return 0;
}

void child_main(const struct setup_request *req, struct child_fds *fds) {
  struct shim_error err = {0};
  for (size_t i = 0; i < sizeof fds->parent_ends / sizeof *fds->parent_ends; i++)
    if (fds->parent_ends[i] >= 0)
      close(fds->parent_ends[i]);
  trace_mark("cloned");
  if (enter_own_cgroups(req, fds, &err) == 0 && take_stdio(req, fds, &err) == 0) {
    for (size_t i = 0; i < req->n_child_close; i++)
      if (req->child_close[i] >= 0)
        close(req->child_close[i]);
    setup_child(req, fds, &err);
  }
  shim_error_wrap(&err, "while setting up the container's first process");
  char line[SHIM_ERROR_LINE_MAX];
  size_t n = shim_error_format(&err, line, sizeof line);
  write_all(fds->errpipe, line, n);
  _exit(SHIM_SETUP_FAILED);
}
