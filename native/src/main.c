/* capsa-shim: creates (run) or joins (exec) a container and carries out the
 * helper's plan. Must stay single-threaded: see docs/ARCHITECTURE.md,
 * "Why a native shim".
 *
 *   fd 3  in   the plan, until EOF (server/runtime/plan.ts)
 *   fd 4  out  status: `started <pid>`, `error <step>\t<path>\t<errno>\t<msg>`, `exit <code>`
 *   fd 5  in   optional control lines: `resize <rows> <cols>`, `signal <n>`
 *
 * `run --monitor DIR [--stdin]` detaches a monitor for the container instead
 * (see monitor.h, `struct supervisor`): the shim forks and exits at once; the
 * monitor, in its own session, reports `monitor <pid>` then `started <pid>`
 * (or `error …`) on fd 4 and closes it. It owns the container's stdio, writes
 * DIR/container.log and DIR/exit.json and serves DIR/attach.sock; fd 5, when
 * open, is its first attach client (a connected stream socket), so the
 * helper that starts the container misses none of its output.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cloned.h"
#include "devices.h"
#include "error.h"
#include "idmap.h"
#include "init.h"
#include "logfile.h"
#include "monitor.h"
#include "netns.h"
#include "plan.h"
#include "process.h"
#include "pty.h"
#include "rootfs.h"
#include "security.h"
#include "utils.h"

#define PLAN_FD 3
#define STATUS_FD 4
#define CONTROL_FD 5
#define SETUP_FAILED 125 /* the exit status runc and Docker use for this */

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static int status_fd = -1;

/* Monitor mode (`run --monitor DIR`). */
struct monitor_opts {
  const char *dir; /* NULL: the classic shim, stdio inherited */
  int stdin_open;
};
static struct attach_server attach = {.listen_fd = -1};
static int logfd = -1, dirfd_ = -1;
/* --userns auto: the container's user namespace, made before the clone */
static int userns_fd = -1;

static void status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void status(const char *fmt, ...) {
  char line[PATH_MAX + 1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof line)
    n = (int)sizeof line - 1;
  /* without a status pipe, stderr is the only way left to say anything */
  write_all(status_fd >= 0 ? status_fd : 2, line, (size_t)n);
}

static int report_error(const struct shim_error *err) {
  char line[PATH_MAX + 1024];
  shim_error_format(err, line, sizeof line);
  /* a failed start leaves no socket for a helper to find: gone before the
   * error is reported, so whoever reads the error finds none */
  attach_unlisten(&attach);
  status("error %s\n", line);
  return SETUP_FAILED;
}

static int fd_is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/* Run mode, in the child after pivot_root: opens the pty on the container's
 * devpts and hands the master to the shim over sock. */
static int child_pty(const struct plan *plan, struct pty *pty, int sock, struct shim_error *err) {
  if (pty_open(pty, plan->rows, plan->cols, err) < 0 || mount_console(pty->name, err) < 0)
    return -1;
  if (pty_send_fd(sock, pty->master) < 0)
    return shim_fail(err, "tty", "master", errno, NULL);
  close(pty->master);
  pty->master = -1;
  return 0;
}

/* Everything the child does between clone and exec; returns only on error. */
static int child_setup(const struct plan *plan, struct pty *pty, int sock, int errfd, const sigset_t *oldmask,
                       struct shim_error *err) {
  /* The forwarded signals stay blocked through setup (they queue for the
   * command, or for init); the shim's other settings must not leak in. */
  signal(SIGPIPE, SIG_DFL);
  syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  if (pty->master >= 0)
    close(pty->master);
  umask(0);

  if (!plan->join_pid) {
    if (make_private(err) < 0 || do_idlowers(plan, userns_fd, err) < 0 || do_mounts(plan, err) < 0 ||
        do_idmaps(plan, err) < 0 || do_devices(plan, err) < 0 ||
        do_symlinks(plan, err) < 0 || pivot_into(plan, err) < 0)
      return -1;
    if (plan->tty && child_pty(plan, pty, sock, err) < 0)
      return -1;
    if (do_masks(plan, err) < 0 || do_readonly(plan, err) < 0)
      return -1;
  }
  if (set_hostname(plan, err) < 0)
    return -1;
  if (plan->loopback && loopback_up(err) < 0)
    return -1;
  /* after the steps that need the host's privileges (mounts, devices,
   * hostname, lo); the namespaces made by the clone stay the host user
   * namespace's, so root inside holds its capabilities over its own ids only */
  if (userns_fd >= 0 && userns_enter(userns_fd, err) < 0)
    return -1;
  if (plan->init && !plan->join_pid) {
    if (become_init(errfd, pty->slave, sock, err) < 0)
      return -1;
  }
  sigprocmask(SIG_SETMASK, oldmask, NULL);

  if (apply_rlimits(plan, err) < 0)
    return -1;
  if (pty->slave >= 0 && pty_attach(pty->slave, err) < 0)
    return -1;
  /* Without no_new_privs the kernel wants CAP_SYS_ADMIN to load a filter,
   * which the capability step below may drop: load it first in that case
   * (the filter must then allow the remaining setup calls, as Docker's does). */
  if (!plan->no_new_privs && load_seccomp(plan, err) < 0)
    return -1;
  if (drop_bounding(plan, err) < 0 || keep_caps(plan, 1, err) < 0 || switch_user(plan, err) < 0 ||
      keep_caps(plan, 0, err) < 0 || apply_caps(plan, err) < 0)
    return -1;
  if (chdir(plan->cwd) < 0)
    return shim_fail(err, "cwd", plan->cwd, errno, NULL);
  umask(022); /* what a container process gets under runc and Docker */
  if (apply_no_new_privs(plan, err) < 0)
    return -1;
  /* as late as possible: every syscall before exec is the shim's, not the image's */
  if (plan->no_new_privs && load_seccomp(plan, err) < 0)
    return -1;
  return exec_command(plan, err);
}

/* Leaves the helper: a child in its own session carries on, so the
 * container's life no longer depends on the helper's. */
static int detach_monitor(const struct monitor_opts *mo, struct shim_error *err) {
  pid_t pid = fork();
  if (pid < 0)
    return shim_fail(err, "monitor", "fork", errno, NULL);
  if (pid > 0)
    _exit(0);
  setsid();
  /* whatever the helper leaked to us must not live as long as the container */
  syscall(SYS_close_range, CONTROL_FD + 1, ~0U, 0);
  if (chdir("/") < 0)
    return shim_fail(err, "monitor", "/", errno, NULL);
  if ((dirfd_ = open(mo->dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
    return shim_fail(err, "monitor", mo->dir, errno, NULL);
  logfd = openat(dirfd_, "container.log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (logfd < 0)
    return shim_fail(err, "monitor", "container.log", errno, NULL);
  if (attach_listen(&attach, dirfd_, "attach.sock", err) < 0)
    return -1;
  if (fd_is_open(CONTROL_FD))
    attach_add(&attach, CONTROL_FD);
  status("monitor %d\n", getpid());
  return 0;
}

/* In the container's first process: nothing of the monitor's may stay open
 * there (an --init PID 1 never execs, so close-on-exec is not enough). */
static void close_monitor_fds(int out_r, int err_r, int in_w) {
  attach_close_fds(&attach);
  for (int i = 0, fds[] = {logfd, dirfd_, out_r, err_r, in_w}; i < 5; i++)
    if (fds[i] >= 0)
      close(fds[i]);
}

/* Monitor mode, in the child: the pipes become its stdin (when open), stdout and stderr. */
static int child_stdio(const struct plan *plan, int in, int out, int errw, struct shim_error *err) {
  if (plan->tty)
    return 0;
  if ((in >= 0 && dup2(in, 0) < 0) || dup2(out, 1) < 0 || dup2(errw, 2) < 0)
    return shim_fail(err, "monitor", "stdio", errno, NULL);
  return 0;
}

static int run(int join_mode, const struct monitor_opts *mo) {
  struct shim_error err = {0};
  struct plan plan;

  if (plan_read(PLAN_FD, &plan, &err) < 0)
    return report_error(&err);
  close(PLAN_FD);
  if (join_mode != (plan.join_pid != 0))
    return shim_fail(&err, "plan", "join", EINVAL, join_mode ? "exec needs a join record" : "run takes no join record"),
           report_error(&err);
  /* pivot_root outside a private mount namespace would move the host's root */
  if (!join_mode && !(plan.ns_flags & CLONE_NEWNS))
    return shim_fail(&err, "plan", "ns", EINVAL, "run needs a mount namespace"), report_error(&err);

  attach_init(&attach);
  if (mo->dir && detach_monitor(mo, &err) < 0)
    return report_error(&err);

  /* Block the forwarded signals from here on: they queue on the signalfd
   * until the monitor loop forwards them, so none is lost during setup. */
  sigset_t mask, oldmask;
  monitor_signals(&mask);
  sigprocmask(SIG_BLOCK, &mask, &oldmask);
  cleanup_close int sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0)
    return shim_fail(&err, "signal", "signalfd", errno, NULL), report_error(&err);

  int *cgfds = plan.n_cgroups ? calloc(plan.n_cgroups, sizeof *cgfds) : NULL;
  if (plan.n_cgroups && !cgfds)
    return shim_fail(&err, "cgroup", "", ENOMEM, NULL), report_error(&err);
  if (open_cgroups(&plan, cgfds, &err) < 0)
    return report_error(&err);
  if (join_mode && join_namespaces(&plan, &err) < 0)
    return report_error(&err);
  /* a prepared network namespace: joined here so the child inherits it
   * (its file is out of reach once the child pivots into the rootfs) */
  if (!join_mode && plan.netns && join_netns(plan.netns, &err) < 0)
    return report_error(&err);
  /* exec mode: after setns(mnt) the shim's /dev/ptmx is the container's */
  struct pty pty = {.master = -1, .slave = -1};
  if (join_mode && plan.tty && pty_open(&pty, plan.rows, plan.cols, &err) < 0)
    return report_error(&err);
  /* run mode: the child makes the pty and sends the master back here */
  int ptysock[2] = {-1, -1};
  if (!join_mode && plan.tty && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ptysock) < 0)
    return shim_fail(&err, "tty", "socketpair", errno, NULL), report_error(&err);

  /* monitor mode without a tty: the container's stdio are pipes to the monitor */
  int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  if (mo->dir && !plan.tty &&
      (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0 ||
       (mo->stdin_open && pipe2(in_pipe, O_CLOEXEC) < 0)))
    return shim_fail(&err, "monitor", "pipe", errno, NULL), report_error(&err);

  /* Close-on-exec error pipe: EOF with no data means the exec succeeded. */
  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC) < 0)
    return shim_fail(&err, "clone", "pipe", errno, NULL), report_error(&err);

  if (!join_mode && plan.userns.size && (userns_fd = userns_create(&plan, &err)) < 0)
    return report_error(&err);

  int pidfd = -1;
  /* the cgroup namespace is made by the child once it is in its cgroups,
   * so that they are its root (/proc/self/cgroup shows "/") */
  pid_t pid = spawn_child(join_mode ? 0 : plan.ns_flags & ~CLONE_NEWCGROUP, &pidfd, &err);
  if (pid < 0)
    return report_error(&err);
  if (pid == 0) {
    close(errpipe[0]);
    if (ptysock[0] >= 0)
      close(ptysock[0]);
    if (enter_cgroups(&plan, cgfds, &err) == 0 && !join_mode && (plan.ns_flags & CLONE_NEWCGROUP) &&
        unshare(CLONE_NEWCGROUP) < 0)
      shim_fail(&err, "cgroup", "unshare", errno, NULL);
    if (!err.step[0] && mo->dir && child_stdio(&plan, in_pipe[0], out_pipe[1], err_pipe[1], &err) == 0)
      close_monitor_fds(out_pipe[0], err_pipe[0], in_pipe[1]);
    if (!err.step[0])
      child_setup(&plan, &pty, ptysock[1], errpipe[1], &oldmask, &err);
    char line[PATH_MAX + 1024];
    size_t n = shim_error_format(&err, line, sizeof line);
    write_all(errpipe[1], line, n);
    _exit(SETUP_FAILED);
  }

  close(errpipe[1]);
  close_cgroups(&plan, cgfds);
  for (int i = 0, fds[] = {in_pipe[0], out_pipe[1], err_pipe[1]}; i < 3; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  if (pty.slave >= 0)
    close(pty.slave); /* the master reports EIO only once no slave fd is left */
  if (ptysock[0] >= 0) {
    close(ptysock[1]);
    /* the child's end closes at exec or exit: no fd then means it failed,
     * which the error pipe explains */
    pty.master = pty_recv_fd(ptysock[0]);
    close(ptysock[0]);
    if (pty.master >= 0)
      fcntl(pty.master, F_SETFL, fcntl(pty.master, F_GETFL) | O_NONBLOCK);
  }
  char *child_err = NULL;
  ssize_t n = read_to_eof(errpipe[0], &child_err);
  close(errpipe[0]);
  if (n != 0) {
    if (n > 0)
      shim_error_parse(&err, child_err);
    else
      shim_fail(&err, "exec", "", errno, "reading the setup status: %s", shim_strerror(errno, (char[128]){0}, 128));
    /* the child exits right after reporting; with it goes its pid
     * namespace, and with that every mount it made */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    return report_error(&err);
  }
  status("started %d\n", pid);

  if (mo->dir) {
    close(STATUS_FD);
    status_fd = -1;
    struct supervisor sv = {
        .m = {.pid = pid, .pidfd = pidfd, .sigfd = sigfd, .ctlfd = -1, .master = pty.master},
        .out = out_pipe[0],
        .err = err_pipe[0],
        .in = !mo->stdin_open ? -1 : plan.tty ? pty.master : in_pipe[1],
        .logfd = logfd,
        .dirfd = dirfd_,
        .attach = &attach,
    };
    if (sv.out >= 0)
      fcntl(sv.out, F_SETFL, O_NONBLOCK);
    if (sv.err >= 0)
      fcntl(sv.err, F_SETFL, O_NONBLOCK);
    return supervise(&sv);
  }

  struct monitor m = {
      .pid = pid,
      .pidfd = pidfd,
      .sigfd = sigfd,
      .ctlfd = fd_is_open(CONTROL_FD) ? CONTROL_FD : -1,
      .master = pty.master,
  };
  int code = monitor_run(&m);
  status("exit %d\n", code);
  return code;
}

/* Every signal back to its default disposition. An ignored signal survives
 * exec, and the helper's posix_spawn (threaded glibc) leaves glibc's two
 * internal signals, 32 and 33, ignored in us: the container must not inherit
 * that. glibc's sigaction refuses those two, hence the raw call; an all-zero
 * kernel sigaction is SIG_DFL with no flags and an empty mask. */
static void default_signals(void) {
  uint64_t dfl[4] = {0};
  for (int sig = 1; sig <= 64; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      syscall(SYS_rt_sigaction, sig, dfl, NULL, 8);
}

extern char **environ;

int main(int argc, char **argv) {
  /* first of all: the re-exec keeps fds 3-5 open (they are not close-on-exec yet) */
  struct shim_error cerr = {0};
  if (run_from_sealed_copy(argv, environ, &cerr) < 0) {
    if (fd_is_open(STATUS_FD))
      status_fd = STATUS_FD;
    return report_error(&cerr);
  }
  struct monitor_opts mo = {0};
  int bad = argc < 2 || (strcmp(argv[1], "run") && strcmp(argv[1], "exec"));
  for (int i = 2; !bad && i < argc; i++) {
    if (!strcmp(argv[i], "--monitor") && i + 1 < argc && !strcmp(argv[1], "run"))
      mo.dir = argv[++i];
    else if (!strcmp(argv[i], "--stdin"))
      mo.stdin_open = 1;
    else
      bad = 1;
  }
  if (bad || (mo.stdin_open && !mo.dir)) {
    fprintf(stderr, "usage: capsa-shim run [--monitor DIR [--stdin]] | exec  (plan on fd 3, status on fd 4, control on fd 5)\n");
    return SETUP_FAILED;
  }
  init_set_argv_area(argv[0], (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) - argv[0]));
  default_signals();
  /* a helper that went away must not kill the shim while the container runs */
  signal(SIGPIPE, SIG_IGN);
  if (fd_is_open(STATUS_FD)) {
    status_fd = STATUS_FD;
    fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC);
  }
  if (fd_is_open(CONTROL_FD))
    fcntl(CONTROL_FD, F_SETFD, FD_CLOEXEC);
  if (!fd_is_open(PLAN_FD)) {
    struct shim_error err;
    shim_fail(&err, "plan", "fd 3", EBADF, "no plan on fd 3");
    return report_error(&err);
  }
  /* Before anything joins or makes the container's namespaces: a process
   * of the container must get no handle on this host binary through
   * /proc/<pid>/exe (CVE-2019-5736), which ptrace access rules guard only
   * for a non-dumpable process. Inherited by every fork and clone; execve
   * of the container's command (a readable, non-setuid file) makes that
   * process dumpable again, as it would be under runc. An --init PID 1
   * never execs and stays non-dumpable for good. A container that holds
   * CAP_SYS_PTRACE passes that check: it then reaches the sealed copy the
   * shim runs from (cloned.h), not the host's binary. */
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
    struct shim_error err;
    shim_fail(&err, "dumpable", "prctl", errno, NULL);
    return report_error(&err);
  }
  return run(!strcmp(argv[1], "exec"), &mo);
}
