#define _GNU_SOURCE
#include "relay/relay.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/pty.h"
#include "common/signals.h"
#include "common/utils.h"

/* Control lines: `resize <rows> <cols>`, `signal <n>`; unknown ones are
 * ignored so a newer helper can talk to an older shim. */
static void control_line(struct relay *r, const char *line) {
  unsigned rows, cols;
  int sig;
  if (sscanf(line, "resize %u %u", &rows, &cols) == 2) {
    if (r->c->master >= 0 && rows <= 0xffff && cols <= 0xffff)
      pty_resize(r->c->master, (unsigned short)rows, (unsigned short)cols);
  } else if (sscanf(line, "signal %d", &sig) == 1 && sig > 0 && sig < NSIG) {
    signal_process(&r->c->proc, sig);
  }
}

struct linebuf {
  char data[512];
  size_t len;
};

/* Returns 0 on EOF or error (stop polling), 1 otherwise. */
static int read_control(struct relay *r, struct linebuf *lb) {
  ssize_t n = read(r->ctlfd, lb->data + lb->len, sizeof lb->data - 1 - lb->len);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return 1;
  if (n <= 0)
    return 0;
  lb->len += (size_t)n;
  lb->data[lb->len] = '\0';
  char *start = lb->data, *nl;
  while ((nl = strchr(start, '\n'))) {
    *nl = '\0';
    control_line(r, start);
    start = nl + 1;
  }
  lb->len -= (size_t)(start - lb->data);
  memmove(lb->data, start, lb->len);
  if (lb->len == sizeof lb->data - 1)
    lb->len = 0; /* an overlong line is garbage: drop it */
  return 1;
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

int relay_run(struct relay *r) {
  struct linebuf ctl = {.len = 0};
  char in[4096];
  size_t in_len = 0, in_off = 0;
  int stdin_open = r->c->master >= 0, out_ok = 1, master_open = r->c->master >= 0;
  int exited = 0, status = 0;

  while (!exited || master_open) {
    if (exited) {
      /* the container is gone: take what is buffered, then stop */
      pump_master(r->c->master, &out_ok);
      break;
    }
    struct pollfd fds[4];
    int n = 0, i_sig, i_ctl = -1, i_master = -1, i_in = -1;
    fds[i_sig = n++] = (struct pollfd){.fd = r->c->sigfd, .events = POLLIN};
    if (r->ctlfd >= 0)
      fds[i_ctl = n++] = (struct pollfd){.fd = r->ctlfd, .events = POLLIN};
    if (master_open)
      fds[i_master = n++] =
          (struct pollfd){.fd = r->c->master, .events = (short)(POLLIN | (in_len > in_off ? POLLOUT : 0))};
    if (stdin_open && in_len == in_off)
      fds[i_in = n++] = (struct pollfd){.fd = 0, .events = POLLIN};

    if (poll(fds, (nfds_t)n, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }

    if (fds[i_sig].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(r->c->sigfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo != SIGCHLD) {
          signal_process(&r->c->proc, (int)si.ssi_signo);
          continue;
        }
        /* SIGCHLD coalesces: reap until nothing is left */
        int st;
        pid_t w;
        while ((w = waitpid(-1, &st, WNOHANG)) > 0)
          if (w == r->c->proc.pid) {
            exited = 1;
            status = st;
          }
      }
    }
    if (i_ctl >= 0 && fds[i_ctl].revents && !read_control(r, &ctl)) {
      close(r->ctlfd);
      r->ctlfd = -1;
    }
    if (i_master >= 0 && (fds[i_master].revents & (POLLIN | POLLHUP | POLLERR)))
      master_open = pump_master(r->c->master, &out_ok);
    if (i_master >= 0 && master_open && (fds[i_master].revents & POLLOUT) && in_len > in_off) {
      ssize_t w = write(r->c->master, in + in_off, in_len - in_off);
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
    pid_t w = waitpid(r->c->proc.pid, &st, 0);
    if (w == r->c->proc.pid) {
      exited = 1;
      status = st;
    } else if (w < 0 && errno != EINTR) {
      break;
    }
  }
  return wait_status_code(status);
}
