/* capsa-shim: creates (run) or joins (exec) a container and carries out the
 * helper's plan. Must stay single-threaded: see docs/ARCHITECTURE.md,
 * "Why a native shim".
 *
 *   fd 3  in   the plan, until EOF (server/runtime/plan.ts)
 *   fd 4  out  status lines (common/status.h)
 *   fd 5  in   relay: control lines (relay/relay.h); monitor: the first attach client
 *
 * --trace: phase stamps on fd 4 before `started` (common/trace.h).
 *
 * This file only wires the parts together: the setup (setup/, crun's job)
 * makes the container's process; then either the monitor (monitor/,
 * conmon's job: `run --monitor DIR [--stdin]`, detached, reports
 * `monitor <pid>` first) or the relay (relay/: `exec`, or `run` alone, in
 * the foreground) looks after it until it ends.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/error.h"
#include "common/plan.h"
#include "common/signals.h"
#include "common/status.h"
#include "common/trace.h"
#include "monitor/monitor.h"
#include "relay/relay.h"
#include "setup/cloned.h"
#include "setup/rootfs.h"
#include "setup/setup.h"

#define PLAN_FD 3
#define STATUS_FD 4
#define CONTROL_FD 5

struct shim_args {
  int exec_mode;
  const char *monitor_dir; /* run --monitor DIR; NULL: the relay, stdio inherited */
  int stdin_open;          /* --stdin: the clients' input reaches the command */
  int trace;               /* --trace: phase stamps before `started` (common/trace.h) */
  struct init_title title;
};

static int fd_is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

static int check_plan(const struct plan *plan, int exec_mode, struct shim_error *err) {
  if (exec_mode != (plan->join_pid != 0))
    return shim_fail(err, "plan", "join", EINVAL, exec_mode ? "exec needs a join record" : "run takes no join record");
  /* pivot_root outside a private mount namespace would move the host's root */
  if (!exec_mode && !(plan->ns_flags & CLONE_NEWNS))
    return shim_fail(err, "plan", "ns", EINVAL, "run needs a mount namespace");
  return 0;
}

/* The bind sources' descriptors (the plan's bindfd records): the shim's
 * side has no use for them once the container's process runs (its mounts
 * are made then), and holding them would pin the sources for as long as
 * the container runs. */
static void close_bindfds(const struct plan *plan) {
  for (size_t i = 0; i < plan->n_bindfds; i++)
    close(plan->bindfds[i]);
}

/* The highest descriptor the monitor keeps from the helper: the control fd
 * and the bind sources' descriptors above it. */
static int inherited_max(const struct plan *plan) {
  int max = CONTROL_FD;
  for (size_t i = 0; i < plan->n_bindfds; i++)
    if (plan->bindfds[i] > max)
      max = plan->bindfds[i];
  return max;
}

/* run --monitor: the monitor detaches, the setup runs in it, then it looks
 * after the container. */
static int run_monitored(const struct shim_args *args, const struct plan *plan, struct status_channel *st) {
  struct shim_error err = {0};
  struct monitor mon;
  if (monitor_detach(&mon, args->monitor_dir, inherited_max(plan), CONTROL_FD, &err) < 0) {
    shim_error_wrap(&err, "while starting the monitor in %s", args->monitor_dir);
    monitor_abort(&mon);
    return status_error(st, &err);
  }
  trace_mark("monitor detached");
  status_printf(st, "monitor %d\n", getpid());
  int close_in_child[2 + ATTACH_MAX_CLIENTS + 1];
  struct setup_request req = {
      .plan = plan,
      .pipe_stdio = 1,
      .stdin_pipe = args->stdin_open,
      .child_close = close_in_child,
      .n_child_close = monitor_fds(&mon, close_in_child, sizeof close_in_child / sizeof *close_in_child),
      .title = args->title,
  };
  struct container c;
  int rc = clone_bind_trees(plan, &err) < 0 ? -1 : setup_container(&req, &c, &err);
  close_bindfds(plan);
  if (rc < 0) {
    monitor_abort(&mon);
    return status_error(st, &err);
  }
  trace_report(st);
  status_printf(st, "started %d\n", c.proc.pid);
  close(st->fd);
  st->fd = -1;
  return monitor_run(&mon, &c, args->stdin_open);
}

/* exec, or run alone: the setup, then the relay in the foreground. */
static int run_relayed(const struct shim_args *args, const struct plan *plan, const struct status_channel *st) {
  struct shim_error err = {0};
  struct setup_request req = {.plan = plan, .exec_mode = args->exec_mode, .title = args->title};
  struct container c;
  int rc = clone_bind_trees(plan, &err) < 0 ? -1 : setup_container(&req, &c, &err);
  close_bindfds(plan);
  if (rc < 0)
    return status_error(st, &err);
  trace_report(st);
  status_printf(st, "started %d\n", c.proc.pid);
  struct relay r = {.c = &c, .ctlfd = fd_is_open(CONTROL_FD) ? CONTROL_FD : -1};
  int code = relay_run(&r);
  status_printf(st, "exit %d\n", code);
  return code;
}

static int run(const struct shim_args *args, struct status_channel *st) {
  struct shim_error err = {0};
  struct plan plan;
  if (!fd_is_open(PLAN_FD)) {
    shim_fail(&err, "plan", "fd 3", EBADF, "no plan on fd 3");
    return status_error(st, &err);
  }
  if (plan_read(PLAN_FD, &plan, &err) < 0 || check_plan(&plan, args->exec_mode, &err) < 0)
    return status_error(st, &err);
  close(PLAN_FD);
  trace_mark("plan read");
  return args->monitor_dir ? run_monitored(args, &plan, st) : run_relayed(args, &plan, st);
}

static int parse_args(int argc, char **argv, struct shim_args *args) {
  *args = (struct shim_args){0};
  if (argc < 2 || (strcmp(argv[1], "run") && strcmp(argv[1], "exec")))
    return -1;
  args->exec_mode = !strcmp(argv[1], "exec");
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--monitor") && i + 1 < argc && !args->exec_mode)
      args->monitor_dir = argv[++i];
    else if (!strcmp(argv[i], "--stdin"))
      args->stdin_open = 1;
    else if (!strcmp(argv[i], "--trace"))
      args->trace = 1;
    else
      return -1;
  }
  if (args->stdin_open && !args->monitor_dir)
    return -1;
  args->title = (struct init_title){argv[0], (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) - argv[0])};
  return 0;
}

extern char **environ;

int main(int argc, char **argv) {
  struct status_channel st = {.fd = -1};
  struct shim_error err = {0};
  /* first of all: the re-exec keeps fds 3-5 open (they are not close-on-exec yet) */
  if (run_from_sealed_copy(argv, environ, &err) < 0) {
    if (fd_is_open(STATUS_FD))
      st.fd = STATUS_FD;
    return status_error(&st, &err);
  }
  struct shim_args args;
  if (parse_args(argc, argv, &args) < 0) {
    fprintf(stderr, "usage: capsa-shim run [--monitor DIR [--stdin]] [--trace] | exec [--trace]  (plan on fd 3, status on fd 4, "
                    "control on fd 5)\n");
    return SHIM_SETUP_FAILED;
  }
  if (args.trace) {
    trace_init();
    trace_mark("shim running");
  }
  signals_reset_all();
  /* a helper that went away must not kill the shim while the container runs */
  signal(SIGPIPE, SIG_IGN);
  if (fd_is_open(STATUS_FD)) {
    st.fd = STATUS_FD;
    fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC);
  }
  if (fd_is_open(CONTROL_FD))
    fcntl(CONTROL_FD, F_SETFD, FD_CLOEXEC);
  /* Before anything joins or makes the container's namespaces: a process
   * of the container must get no handle on this host binary through
   * /proc/<pid>/exe (CVE-2019-5736), which ptrace access rules guard only
   * for a non-dumpable process. Inherited by every fork and clone; execve
   * of the container's command (a readable, non-setuid file) makes that
   * process dumpable again, as it would be under runc. An --init PID 1
   * never execs and stays non-dumpable for good. A container that holds
   * CAP_SYS_PTRACE passes that check: it then reaches the sealed copy the
   * shim runs from (setup/cloned.h), not the host's binary. */
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
    shim_fail(&err, "dumpable", "prctl", errno, NULL);
    return status_error(&st, &err);
  }
  return run(&args, &st);
}
