#define _GNU_SOURCE
#include "setup/setup.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/pty.h"
#include "common/trace.h"
#include "common/utils.h"
#include "setup/child.h"
#include "setup/idmap.h"
#include "setup/netns.h"
#include "setup/process.h"

/* What the parent holds during one setup; released by release_state. */
struct setup_state {
  int *cgfds;
  int userns;
  int ptysock[2];
  int in_pipe[2], out_pipe[2], err_pipe[2];
  int errpipe[2];
  struct pty pty;
  sigset_t oldmask;
};

static void close_fd(int *fd) {
  if (*fd >= 0)
    close(*fd);
  *fd = -1;
}

static void release_state(const struct plan *plan, struct setup_state *s) {
  if (s->cgfds)
    close_cgroups(plan, s->cgfds);
  free(s->cgfds);
  s->cgfds = NULL;
  int *fds[] = {&s->userns,      &s->ptysock[0],  &s->ptysock[1],  &s->in_pipe[0],  &s->in_pipe[1],
                &s->out_pipe[0], &s->out_pipe[1], &s->err_pipe[0], &s->err_pipe[1], &s->errpipe[0],
                &s->errpipe[1],  &s->pty.master,  &s->pty.slave};
  for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
    close_fd(fds[i]);
}

/* Blocks the plan's forwarded signals and SIGCHLD from here on: they queue
 * on the signalfd until the monitor or the relay forwards them, so none is
 * lost during setup. */
static int block_signals(const struct plan *plan, sigset_t *oldmask, struct shim_error *err) {
  sigset_t mask;
  sigemptyset(&mask);
  for (size_t i = 0; i < plan->n_signals; i++)
    sigaddset(&mask, plan->signals[i]);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, oldmask);
  int fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0)
    return shim_fail(err, "signal", "signalfd", errno, NULL);
  return fd;
}

/* Everything made before the clone, in the host's (or, for exec, the
 * joined) namespaces. */
static int prepare(const struct setup_request *req, struct setup_state *s, struct shim_error *err) {
  const struct plan *plan = req->plan;
  if (plan->n_cgroups && !(s->cgfds = calloc(plan->n_cgroups, sizeof *s->cgfds)))
    return shim_fail(err, "cgroup", "", ENOMEM, NULL);
  if (open_cgroups(plan, s->cgfds, err) < 0)
    return -1;
  if (req->exec_mode && join_namespaces(plan, err) < 0)
    return -1;
  /* a prepared network namespace: joined here so the child inherits it
   * (its file is out of reach once the child pivots into the rootfs) */
  if (!req->exec_mode && plan->netns && join_netns(plan->netns, err) < 0)
    return -1;
  /* exec mode: after setns(mnt) the shim's /dev/ptmx is the container's */
  if (req->exec_mode && plan->tty && pty_open(&s->pty, plan->rows, plan->cols, err) < 0)
    return -1;
  /* run mode: the child makes the pty and sends the master back here */
  if (!req->exec_mode && plan->tty && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s->ptysock) < 0)
    return shim_fail(err, "tty", "socketpair", errno, NULL);
  if (req->pipe_stdio && !plan->tty &&
      (pipe2(s->out_pipe, O_CLOEXEC) < 0 || pipe2(s->err_pipe, O_CLOEXEC) < 0 ||
       (req->stdin_pipe && pipe2(s->in_pipe, O_CLOEXEC) < 0)))
    return shim_fail(err, "monitor", "pipe", errno, NULL);
  /* close-on-exec error pipe: EOF with no data means the exec succeeded */
  if (pipe2(s->errpipe, O_CLOEXEC) < 0)
    return shim_fail(err, "clone", "pipe", errno, NULL);
  if (!req->exec_mode && plan->userns.size && (s->userns = userns_create(plan, err)) < 0)
    return -1;
  return 0;
}

/* In the parent once the child runs: takes the pty master, if the child
 * made one, and waits for the exec. Returns -1 with err filled from the
 * child's report when its setup failed. */
static int await_exec(pid_t pid, struct setup_state *s, struct shim_error *err) {
  close_fd(&s->errpipe[1]);
  if (s->ptysock[0] >= 0) {
    close_fd(&s->ptysock[1]);
    /* the child's end closes at exec or exit: no fd then means it failed,
     * which the error pipe explains */
    s->pty.master = pty_recv_fd(s->ptysock[0]);
    close_fd(&s->ptysock[0]);
    if (s->pty.master >= 0)
      fcntl(s->pty.master, F_SETFL, fcntl(s->pty.master, F_GETFL) | O_NONBLOCK);
  }
  cleanup_free char *child_err = NULL;
  ssize_t n = read_to_eof(s->errpipe[0], &child_err);
  close_fd(&s->errpipe[0]);
  if (n == 0)
    return 0;
  if (n > 0)
    shim_error_parse(err, child_err);
  else
    shim_fail(err, "exec", "", errno, "reading the setup status: %s", shim_strerror(errno, (char[128]){0}, 128));
  /* the child exits right after reporting; with it goes its pid namespace,
   * and with that every mount it made */
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
    ;
  return -1;
}

/* The caller's ends, handed over in c and no longer the state's. */
static void hand_over(struct setup_state *s, struct container *c) {
  c->master = steal_fd(&s->pty.master);
  c->out = steal_fd(&s->out_pipe[0]);
  c->err = steal_fd(&s->err_pipe[0]);
  c->in = steal_fd(&s->in_pipe[1]);
}

int setup_container(const struct setup_request *req, struct container *c, struct shim_error *err) {
  const struct plan *plan = req->plan;
  struct setup_state s = {
      .userns = -1,
      .ptysock = {-1, -1},
      .in_pipe = {-1, -1},
      .out_pipe = {-1, -1},
      .err_pipe = {-1, -1},
      .errpipe = {-1, -1},
      .pty = {.master = -1, .slave = -1},
  };
  *c = (struct container){.proc = {.pid = -1, .pidfd = -1}, .sigfd = -1, .master = -1, .out = -1, .err = -1, .in = -1};
  if ((c->sigfd = block_signals(plan, &s.oldmask, err)) < 0 || prepare(req, &s, err) < 0)
    goto fail;
  trace_mark("sandbox prepared");
  /* the cgroup namespace is made by the child once it is in its cgroups */
  pid_t pid = spawn_child(req->exec_mode ? 0 : plan->ns_flags & ~CLONE_NEWCGROUP, &c->proc.pidfd, err);
  if (pid < 0)
    goto fail;
  if (pid == 0) {
    struct child_fds fds = {
        .cgroups = s.cgfds,
        .userns = s.userns,
        .ptysock = s.ptysock[1],
        .errpipe = s.errpipe[1],
        .parent_ends = {s.errpipe[0], s.ptysock[0], s.out_pipe[0], s.err_pipe[0], s.in_pipe[1]},
        .stdin_r = s.in_pipe[0],
        .stdout_w = s.out_pipe[1],
        .stderr_w = s.err_pipe[1],
        .pty = &s.pty,
        .oldmask = &s.oldmask,
    };
    child_main(req, &fds);
  }
  c->proc.pid = pid;
  /* the master reports EIO only once no slave fd is left: the parent's goes */
  close_fd(&s.pty.slave);
  close_fd(&s.in_pipe[0]);
  close_fd(&s.out_pipe[1]);
  close_fd(&s.err_pipe[1]);
  if (s.cgfds)
    close_cgroups(plan, s.cgfds);
  if (await_exec(pid, &s, err) < 0)
    goto fail;
  trace_mark("exec seen");
  hand_over(&s, c);
  release_state(plan, &s);
  return 0;
fail:
  release_state(plan, &s);
  close_fd(&c->sigfd);
  close_fd(&c->proc.pidfd);
  if (req->exec_mode)
    return shim_error_wrap(err, "while joining the container of pid %d", (int)plan->join_pid);
  return shim_error_wrap(err, "while creating the container");
}
