#define _GNU_SOURCE
#include "common/pty.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "common/utils.h"

int pty_resize(int master, unsigned short rows, unsigned short cols) {
  struct winsize ws = {.ws_row = rows, .ws_col = cols};
  return ioctl(master, TIOCSWINSZ, &ws);
}

int pty_open(struct pty *pty, unsigned short rows, unsigned short cols, struct shim_error *err) {
  cleanup_close int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0)
    return shim_fail(err, "tty", "/dev/ptmx", errno, NULL);
  if (grantpt(master) < 0 || unlockpt(master) < 0)
    return shim_fail(err, "tty", "/dev/ptmx", errno, NULL);
  if (ptsname_r(master, pty->name, sizeof pty->name) != 0)
    return shim_fail(err, "tty", "/dev/ptmx", errno, NULL);
  /* TIOCGPTPEER opens the slave through the master, with no path lookup
   * that a racing process could redirect */
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0 && (slave = open(pty->name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
    return shim_fail(err, "tty", pty->name, errno, NULL);
  /* size from the first byte: set before the child can write anything */
  if ((rows || cols) && pty_resize(master, rows, cols) < 0) {
    int saved = errno;
    close(slave);
    return shim_fail(err, "tty", "winsize", saved, NULL);
  }
  /* the relay must never block on the master once the child has gone */
  fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
  pty->master = steal_fd(&master);
  pty->slave = slave;
  return 0;
}

int pty_attach(int slave, struct shim_error *err) {
  if (setsid() < 0)
    return shim_fail(err, "tty", "setsid", errno, NULL);
  if (ioctl(slave, TIOCSCTTY, 0) < 0)
    return shim_fail(err, "tty", "TIOCSCTTY", errno, NULL);
  for (int fd = 0; fd < 3; fd++)
    if (dup2(slave, fd) < 0) /* dup2 clears CLOEXEC on the copies */
      return shim_fail(err, "tty", "dup2", errno, NULL);
  if (slave > 2)
    close(slave);
  return 0;
}

int pty_send_fd(int sock, int fd) {
  char byte = 0;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr hdr;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t n;
  do
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n == 1 ? 0 : -1;
}

int pty_recv_fd(int sock) {
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr hdr;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  ssize_t n;
  do
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n <= 0) {
    if (n == 0)
      errno = 0;
    return -1;
  }
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))) {
    errno = EPROTO;
    return -1;
  }
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}
