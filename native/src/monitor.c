#define _GNU_SOURCE
#include <signal.h>

#include "monitor.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include "logfile.h"
#include "pty.h"
#include "utils.h"

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

void monitor_signals(sigset_t *set) {
  sigemptyset(set);
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
    sigaddset(set, forwarded[i]);
  sigaddset(set, SIGCHLD);
}

int monitor_send_signal(const struct monitor *m, int sig) {
  /* a pidfd cannot hit a recycled pid after the container was reaped */
  if (m->pidfd >= 0) {
    if (syscall(SYS_pidfd_send_signal, m->pidfd, sig, NULL, 0) == 0)
      return 0;
    if (errno != ENOSYS)
      return -1;
  }
  return kill(m->pid, sig);
}

/* Control lines: `resize <rows> <cols>`, `signal <n>`; unknown ones are
 * ignored so a newer helper can talk to an older shim. */
static void control_line(struct monitor *m, const char *line) {
  unsigned rows, cols;
  int sig;
  if (sscanf(line, "resize %u %u", &rows, &cols) == 2) {
    if (m->master >= 0 && rows <= 0xffff && cols <= 0xffff)
      pty_resize(m->master, (unsigned short)rows, (unsigned short)cols);
  } else if (sscanf(line, "signal %d", &sig) == 1 && sig > 0 && sig < NSIG) {
    monitor_send_signal(m, sig);
  }
}

struct linebuf {
  char data[512];
  size_t len;
};

/* Returns 0 on EOF or error (stop polling), 1 otherwise. */
static int read_control(struct monitor *m, struct linebuf *lb) {
  ssize_t n = read(m->ctlfd, lb->data + lb->len, sizeof lb->data - 1 - lb->len);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return 1;
  if (n <= 0)
    return 0;
  lb->len += (size_t)n;
  lb->data[lb->len] = '\0';
  char *start = lb->data, *nl;
  while ((nl = strchr(start, '\n'))) {
    *nl = '\0';
    control_line(m, start);
    start = nl + 1;
  }
  lb->len -= (size_t)(start - lb->data);
  memmove(lb->data, start, lb->len);
  if (lb->len == sizeof lb->data - 1)
    lb->len = 0; /* an overlong line is garbage: drop it */
  return 1;
}

int wait_status_code(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return 125;
}

/* Copies what the master has to fd 1. Returns 0 once the pty has no writer
 * left (EIO) or nothing more is buffered after the child ended. */
static int pump_master(int master, int *out_ok) {
  char buf[16384];
  for (;;) {
    ssize_t n = read(master, buf, sizeof buf);
    if (n > 0) {
      /* if the reader went away, keep draining so the container never blocks */
      if (*out_ok && write_all(1, buf, (size_t)n) < 0)
        *out_ok = 0;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return 1;
    return 0; /* EIO: every slave fd closed; or EOF */
  }
}

int monitor_run(struct monitor *m) {
  struct linebuf ctl = {.len = 0};
  char in[4096];
  size_t in_len = 0, in_off = 0;
  int stdin_open = m->master >= 0, out_ok = 1, master_open = m->master >= 0;
  int exited = 0, status = 0;

  while (!exited || master_open) {
    if (exited) {
      /* the container is gone: take what is buffered, then stop */
      pump_master(m->master, &out_ok);
      break;
    }
    struct pollfd fds[4];
    int n = 0, i_sig, i_ctl = -1, i_master = -1, i_in = -1;
    fds[i_sig = n++] = (struct pollfd){.fd = m->sigfd, .events = POLLIN};
    if (m->ctlfd >= 0)
      fds[i_ctl = n++] = (struct pollfd){.fd = m->ctlfd, .events = POLLIN};
    if (master_open)
      fds[i_master = n++] =
          (struct pollfd){.fd = m->master, .events = (short)(POLLIN | (in_len > in_off ? POLLOUT : 0))};
    if (stdin_open && in_len == in_off)
      fds[i_in = n++] = (struct pollfd){.fd = 0, .events = POLLIN};

    if (poll(fds, (nfds_t)n, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }

    if (fds[i_sig].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(m->sigfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo != SIGCHLD) {
          monitor_send_signal(m, (int)si.ssi_signo);
          continue;
        }
        /* SIGCHLD coalesces: reap until nothing is left */
        int st;
        pid_t r;
        while ((r = waitpid(-1, &st, WNOHANG)) > 0)
          if (r == m->pid) {
            exited = 1;
            status = st;
          }
      }
    }
    if (i_ctl >= 0 && fds[i_ctl].revents && !read_control(m, &ctl)) {
      close(m->ctlfd);
      m->ctlfd = -1;
    }
    if (i_master >= 0 && (fds[i_master].revents & (POLLIN | POLLHUP | POLLERR)))
      master_open = pump_master(m->master, &out_ok);
    if (i_master >= 0 && master_open && (fds[i_master].revents & POLLOUT) && in_len > in_off) {
      ssize_t w = write(m->master, in + in_off, in_len - in_off);
      if (w > 0)
        in_off += (size_t)w;
      else if (w < 0 && errno != EAGAIN && errno != EINTR)
        in_off = in_len; /* the terminal is gone: drop the input */
    }
    if (i_in >= 0 && fds[i_in].revents) {
      ssize_t r = read(0, in, sizeof in);
      if (r > 0) {
        in_len = (size_t)r;
        in_off = 0;
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        stdin_open = 0;
      }
    }
    if (in_off == in_len)
      in_len = in_off = 0;
  }

  /* the pty may have closed first: still wait for the exit status */
  while (!exited) {
    int st;
    pid_t r = waitpid(m->pid, &st, 0);
    if (r == m->pid) {
      exited = 1;
      status = st;
    } else if (r < 0 && errno != EINTR) {
      break;
    }
  }
  return wait_status_code(status);
}

/* ---- the detached monitor ------------------------------------------------ */

struct input {
  char *buf;
  size_t len, off;
  int close_after; /* a client sent 'c': close stdin once buf is written */
};

struct frame_ctx {
  struct supervisor *s;
  struct input *in;
};

static void on_frame(void *ctx, char type, const char *data, size_t len) {
  struct frame_ctx *f = ctx;
  struct supervisor *s = f->s;
  char text[64];
  size_t tl = len < sizeof text - 1 ? len : sizeof text - 1;
  memcpy(text, data, tl);
  text[tl] = '\0';
  switch (type) {
  case 'i': {
    if (s->in < 0 || len == 0)
      return;
    char *grown = realloc(f->in->buf, f->in->len + len);
    if (!grown)
      return;
    memcpy(grown + f->in->len, data, len);
    f->in->buf = grown;
    f->in->len += len;
    return;
  }
  case 'c':
    /* a terminal has no end of input short of hanging up: ignore it there, as docker does */
    if (s->m.master < 0)
      f->in->close_after = 1;
    return;
  case 'r': {
    unsigned rows, cols;
    if (s->m.master >= 0 && sscanf(text, "%u %u", &rows, &cols) == 2 && rows <= 0xffff && cols <= 0xffff)
      pty_resize(s->m.master, (unsigned short)rows, (unsigned short)cols);
    return;
  }
  case 's': {
    int sig;
    if (sscanf(text, "%d", &sig) == 1 && sig > 0 && sig < NSIG)
      monitor_send_signal(&s->m, sig);
    return;
  }
  default:
    return;
  }
}

/* Reads one chunk from a source, logs it and hands it to the clients.
 * Returns 0 at EOF (or EIO: a pty with no slave left), 1 otherwise. */
static int pump(struct supervisor *s, int fd, enum log_stream stream) {
  static char buf[16384];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return 1;
  if (n <= 0)
    return 0;
  log_write(s->logfd, stream, buf, (size_t)n);
  attach_broadcast(s->attach, stream == LOG_STDERR ? 'e' : 'o', buf, (size_t)n);
  return 1;
}

/* exit.json, replaced atomically. Not fsynced: it has to outlive the
 * helper, not the machine (after a reboot no container runs anyway). */
static size_t write_exit_file(struct supervisor *s, int status, char *json, size_t len) {
  char when[40];
  log_timestamp(when, sizeof when);
  int n = snprintf(json, len, "{\"exitCode\":%d,\"signal\":%d,\"pid\":%d,\"finishedAt\":\"%s\"}\n",
                   wait_status_code(status), WIFSIGNALED(status) ? WTERMSIG(status) : 0, (int)s->m.pid, when);
  if (n < 0 || (size_t)n >= len)
    return 0;
  int fd = openat(s->dirfd, "exit.json.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd >= 0) {
    int ok = write_all(fd, json, (size_t)n) == 0;
    close(fd);
    if (ok)
      renameat(s->dirfd, "exit.json.tmp", s->dirfd, "exit.json");
  }
  return (size_t)n - 1; /* the frame carries no newline */
}

int supervise(struct supervisor *s) {
  struct input in = {0};
  struct frame_ctx ctx = {s, &in};
  int exited = 0, status = 0;
  int out = s->out, err = s->err, master = s->m.master;
  if (s->in >= 0)
    fcntl(s->in, F_SETFL, fcntl(s->in, F_GETFL) | O_NONBLOCK);

  for (;;) {
    int sources = (out >= 0) + (err >= 0) + (master >= 0);
    if (exited && !sources)
      break;
    enum { MAXFDS = 6 + ATTACH_MAX_CLIENTS };
    struct pollfd fds[MAXFDS];
    int cl[MAXFDS];
    int n = 0, i_sig = -1, i_lis = -1, i_out = -1, i_err = -1, i_master = -1, i_in = -1;
    int paused = attach_has_pending(s->attach);
    if (!exited) {
      fds[i_sig = n++] = (struct pollfd){.fd = s->m.sigfd, .events = POLLIN};
      fds[i_lis = n++] = (struct pollfd){.fd = s->attach->listen_fd, .events = POLLIN};
    }
    if (out >= 0 && !paused)
      fds[i_out = n++] = (struct pollfd){.fd = out, .events = POLLIN};
    if (err >= 0 && !paused)
      fds[i_err = n++] = (struct pollfd){.fd = err, .events = POLLIN};
    int in_waiting = in.len > in.off;
    if (master >= 0 && (!paused || in_waiting))
      fds[i_master = n++] = (struct pollfd){.fd = master, .events = (short)((paused ? 0 : POLLIN) | (in_waiting ? POLLOUT : 0))};
    if (s->in >= 0 && s->in != master && in_waiting)
      fds[i_in = n++] = (struct pollfd){.fd = s->in, .events = POLLOUT};
    int first_client = n;
    for (int i = 0; i < ATTACH_MAX_CLIENTS; i++) {
      struct attach_client *c = &s->attach->clients[i];
      if (c->fd < 0)
        continue;
      /* input is taken only as fast as the container reads it */
      short ev = (short)((in_waiting ? 0 : POLLIN) | (c->pending ? POLLOUT : 0));
      cl[n] = i;
      fds[n++] = (struct pollfd){.fd = c->fd, .events = ev};
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
      while (read(s->m.sigfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo != SIGCHLD) {
          monitor_send_signal(&s->m, (int)si.ssi_signo);
          continue;
        }
        int st;
        pid_t w;
        while ((w = waitpid(-1, &st, WNOHANG)) > 0)
          if (w == s->m.pid) {
            exited = 1;
            status = st;
          }
      }
    }
    if (i_lis >= 0 && (fds[i_lis].revents & POLLIN))
      attach_accept(s->attach);
    if (i_out >= 0 && fds[i_out].revents && !pump(s, out, LOG_STDOUT)) {
      close(out);
      out = -1;
    }
    if (i_err >= 0 && fds[i_err].revents && !pump(s, err, LOG_STDERR)) {
      close(err);
      err = -1;
    }
    if (i_master >= 0 && (fds[i_master].revents & (POLLIN | POLLHUP | POLLERR)) && !paused &&
        !pump(s, master, LOG_STDOUT)) {
      /* EIO: no slave left. The master stays open for resize until the end. */
      master = -1;
    }
    int sink = i_in >= 0 ? i_in : (i_master >= 0 && master >= 0 ? i_master : -1);
    if (sink >= 0 && (fds[sink].revents & (POLLOUT | POLLERR | POLLHUP)) && in.len > in.off) {
      ssize_t w = write(fds[sink].fd, in.buf + in.off, in.len - in.off);
      if (w > 0)
        in.off += (size_t)w;
      else if (w < 0 && errno != EAGAIN && errno != EINTR)
        in.off = in.len; /* the reader is gone: drop the input */
    }
    if (in.off == in.len) {
      in.len = in.off = 0;
      if (in.close_after && s->in >= 0 && s->in != s->m.master) {
        close(s->in);
        s->in = -1;
      }
    }
    for (int k = first_client; k < n; k++) {
      struct attach_client *c = &s->attach->clients[cl[k]];
      if (c->fd < 0 || !fds[k].revents)
        continue;
      if (fds[k].revents & POLLOUT)
        attach_flush(c);
      if (c->fd >= 0 && (fds[k].revents & (POLLIN | POLLHUP | POLLERR)))
        attach_read(c, on_frame, &ctx);
    }
    /* a close that came with no input still pending takes effect now */
    if (in.len == in.off && in.close_after && s->in >= 0 && s->in != s->m.master) {
      close(s->in);
      s->in = -1;
    }
  }
  free(in.buf);

  /* the output may have ended first (a command that closed its stdout) */
  while (!exited) {
    int st;
    pid_t w = waitpid(s->m.pid, &st, 0);
    if (w == s->m.pid) {
      exited = 1;
      status = st;
    } else if (w < 0 && errno != EINTR) {
      break;
    }
  }
  char json[256];
  size_t len = write_exit_file(s, status, json, sizeof json);
  attach_finish(s->attach, 'x', json, len);
  return wait_status_code(status);
}
