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
