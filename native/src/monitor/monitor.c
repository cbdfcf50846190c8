#define _GNU_SOURCE
#include "monitor/monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/pty.h"
#include "common/signals.h"
#include "common/utils.h"
#include "monitor/logfile.h"

int monitor_detach(struct monitor *m, const char *dir, int inherited_max, int first_client, struct shim_error *err) {
  *m = (struct monitor){.dirfd = -1, .logfd = -1};
  attach_init(&m->attach);
  pid_t pid = fork();
  if (pid < 0)
    return shim_fail(err, "monitor", "fork", errno, NULL);
  if (pid > 0)
    _exit(0);
  setsid();
  syscall(SYS_close_range, (unsigned)inherited_max + 1, ~0U, 0);
  if (chdir("/") < 0)
    return shim_fail(err, "monitor", "/", errno, NULL);
  if ((m->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
    return shim_fail(err, "monitor", dir, errno, NULL);
  m->logfd = openat(m->dirfd, "container.log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (m->logfd < 0)
    return shim_fail(err, "monitor", "container.log", errno, NULL);
  if (attach_listen(&m->attach, m->dirfd, "attach.sock", err) < 0)
    return -1;
  if (fcntl(first_client, F_GETFD) >= 0)
    attach_add(&m->attach, first_client);
  return 0;
}

size_t monitor_fds(const struct monitor *m, int *fds, size_t max) {
  size_t n = attach_fds(&m->attach, fds, max);
  if (n < max)
    fds[n++] = m->logfd;
  if (n < max)
    fds[n++] = m->dirfd;
  return n;
}

void monitor_abort(struct monitor *m) { attach_unlisten(&m->attach); }

struct input {
  char *buf;
  size_t len, off;
  int close_after; /* a client sent 'c': close stdin once buf is written */
};

/* One run of the loop: what on_frame and pump need. */
struct loop {
  struct monitor *m;
  struct container *c;
  int in_fd; /* where input goes: the stdin pipe, the master (a tty), or -1 */
  struct input in;
};

static void on_frame(void *ctx, char type, const char *data, size_t len) {
  struct loop *l = ctx;
  char text[64];
  size_t tl = len < sizeof text - 1 ? len : sizeof text - 1;
  memcpy(text, data, tl);
  text[tl] = '\0';
  switch (type) {
  case 'i': {
    if (l->in_fd < 0 || len == 0)
      return;
    char *grown = realloc(l->in.buf, l->in.len + len);
    if (!grown)
      return;
    memcpy(grown + l->in.len, data, len);
    l->in.buf = grown;
    l->in.len += len;
    return;
  }
  case 'c':
    /* a terminal has no end of input short of hanging up: ignore it there, as docker does */
    if (l->c->master < 0)
      l->in.close_after = 1;
    return;
  case 'r': {
    unsigned rows, cols;
    if (l->c->master >= 0 && sscanf(text, "%u %u", &rows, &cols) == 2 && rows <= 0xffff && cols <= 0xffff)
      pty_resize(l->c->master, (unsigned short)rows, (unsigned short)cols);
    return;
  }
  case 's': {
    int sig;
    if (sscanf(text, "%d", &sig) == 1 && sig > 0 && sig < NSIG)
      signal_process(&l->c->proc, sig);
    return;
  }
  default:
    return;
  }
}

/* Reads one chunk from a source, logs it and hands it to the clients.
 * Returns 0 at EOF (or EIO: a pty with no slave left), 1 otherwise. */
static int pump(struct loop *l, int fd, enum log_stream stream) {
  char buf[16384];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return 1;
  if (n <= 0)
    return 0;
  log_write(l->m->logfd, stream, buf, (size_t)n);
  attach_broadcast(&l->m->attach, stream == LOG_STDERR ? 'e' : 'o', buf, (size_t)n);
  return 1;
}

/* exit.json, replaced atomically. Not fsynced: it has to outlive the
 * helper, not the machine (after a reboot no container runs anyway). */
static size_t write_exit_file(const struct loop *l, int status, char *json, size_t len) {
  char when[40];
  log_timestamp(when, sizeof when);
  int n = snprintf(json, len, "{\"exitCode\":%d,\"signal\":%d,\"pid\":%d,\"finishedAt\":\"%s\"}\n",
                   wait_status_code(status), WIFSIGNALED(status) ? WTERMSIG(status) : 0, (int)l->c->proc.pid, when);
  if (n < 0 || (size_t)n >= len)
    return 0;
  int fd = openat(l->m->dirfd, "exit.json.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd >= 0) {
    int ok = write_all(fd, json, (size_t)n) == 0;
    close(fd);
    if (ok)
      renameat(l->m->dirfd, "exit.json.tmp", l->m->dirfd, "exit.json");
  }
  return (size_t)n - 1; /* the frame carries no newline */
}

int monitor_run(struct monitor *m, struct container *c, int stdin_open) {
  struct loop l = {.m = m, .c = c, .in_fd = !stdin_open ? -1 : c->master >= 0 ? c->master : c->in};
  struct input *in = &l.in;
  int exited = 0, status = 0;
  int out = c->out, err = c->err, master = c->master;
  for (int i = 0, fds[] = {out, err, l.in_fd}; i < 3; i++)
    if (fds[i] >= 0)
      fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);

  for (;;) {
    int sources = (out >= 0) + (err >= 0) + (master >= 0);
    if (exited && !sources)
      break;
    enum { MAXFDS = 6 + ATTACH_MAX_CLIENTS };
    struct pollfd fds[MAXFDS];
    int cl[MAXFDS];
    int n = 0, i_sig = -1, i_lis = -1, i_out = -1, i_err = -1, i_master = -1, i_in = -1;
    int paused = attach_has_pending(&m->attach);
    if (!exited) {
      fds[i_sig = n++] = (struct pollfd){.fd = c->sigfd, .events = POLLIN};
      fds[i_lis = n++] = (struct pollfd){.fd = m->attach.listen_fd, .events = POLLIN};
    }
    if (out >= 0 && !paused)
      fds[i_out = n++] = (struct pollfd){.fd = out, .events = POLLIN};
    if (err >= 0 && !paused)
      fds[i_err = n++] = (struct pollfd){.fd = err, .events = POLLIN};
    int in_waiting = in->len > in->off;
    if (master >= 0 && (!paused || in_waiting))
      fds[i_master = n++] =
          (struct pollfd){.fd = master, .events = (short)((paused ? 0 : POLLIN) | (in_waiting ? POLLOUT : 0))};
    if (l.in_fd >= 0 && l.in_fd != master && in_waiting)
      fds[i_in = n++] = (struct pollfd){.fd = l.in_fd, .events = POLLOUT};
    int first_client = n;
    for (int i = 0; i < ATTACH_MAX_CLIENTS; i++) {
      struct attach_client *ac = &m->attach.clients[i];
      if (ac->fd < 0)
        continue;
      /* input is taken only as fast as the container reads it */
      short ev = (short)((in_waiting ? 0 : POLLIN) | (ac->pending ? POLLOUT : 0));
      cl[n] = i;
      fds[n++] = (struct pollfd){.fd = ac->fd, .events = ev};
    }

    /* after the exit, output still buffered is taken; a writer that stays
     * (a process outside the container's pid namespace) is not waited for */
    int r = poll(fds, (nfds_t)n, exited ? 200 : -1);
    if (r < 0 && errno != EINTR)
      break;
    if (r == 0 && exited)
      break;
    if (r <= 0)
      continue;

    if (i_sig >= 0 && (fds[i_sig].revents & POLLIN)) {
      struct signalfd_siginfo si;
      while (read(c->sigfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo != SIGCHLD) {
          signal_process(&c->proc, (int)si.ssi_signo);
          continue;
        }
        int st;
        pid_t w;
        while ((w = waitpid(-1, &st, WNOHANG)) > 0)
          if (w == c->proc.pid) {
            exited = 1;
            status = st;
          }
      }
    }
    if (i_lis >= 0 && (fds[i_lis].revents & POLLIN))
      attach_accept(&m->attach);
    if (i_out >= 0 && fds[i_out].revents && !pump(&l, out, LOG_STDOUT)) {
      close(out);
      out = -1;
    }
    if (i_err >= 0 && fds[i_err].revents && !pump(&l, err, LOG_STDERR)) {
      close(err);
      err = -1;
    }
    if (i_master >= 0 && (fds[i_master].revents & (POLLIN | POLLHUP | POLLERR)) && !paused &&
        !pump(&l, master, LOG_STDOUT)) {
      /* EIO: no slave left. The master stays open for resize until the end. */
      master = -1;
    }
    int sink = i_in >= 0 ? i_in : (i_master >= 0 && master >= 0 ? i_master : -1);
    if (sink >= 0 && (fds[sink].revents & (POLLOUT | POLLERR | POLLHUP)) && in->len > in->off) {
      ssize_t w = write(fds[sink].fd, in->buf + in->off, in->len - in->off);
      if (w > 0)
        in->off += (size_t)w;
      else if (w < 0 && errno != EAGAIN && errno != EINTR)
        in->off = in->len; /* the reader is gone: drop the input */
    }
    if (in->off == in->len) {
      in->len = in->off = 0;
      if (in->close_after && l.in_fd >= 0 && l.in_fd != c->master) {
        close(l.in_fd);
        l.in_fd = -1;
      }
    }
    for (int k = first_client; k < n; k++) {
      struct attach_client *ac = &m->attach.clients[cl[k]];
      if (ac->fd < 0 || !fds[k].revents)
        continue;
      if (fds[k].revents & POLLOUT)
        attach_flush(ac);
      if (ac->fd >= 0 && (fds[k].revents & (POLLIN | POLLHUP | POLLERR)))
        attach_read(ac, on_frame, &l);
    }
    /* a close that came with no input still pending takes effect now */
    if (in->len == in->off && in->close_after && l.in_fd >= 0 && l.in_fd != c->master) {
      close(l.in_fd);
      l.in_fd = -1;
    }
  }
  free(in->buf);

  /* the output may have ended first (a command that closed its stdout) */
  while (!exited) {
    int st;
    pid_t w = waitpid(c->proc.pid, &st, 0);
    if (w == c->proc.pid) {
      exited = 1;
      status = st;
    } else if (w < 0 && errno != EINTR) {
      break;
    }
  }
  char json[256];
  size_t len = write_exit_file(&l, status, json, sizeof json);
  attach_finish(&m->attach, 'x', json, len);
  return wait_status_code(status);
}
