#define _GNU_SOURCE
#include "monitor/attach.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/utils.h"

void attach_init(struct attach_server *s) {
  s->listen_fd = -1;
  s->dirfd = -1;
  for (int i = 0; i < ATTACH_MAX_CLIENTS; i++)
    s->clients[i] = (struct attach_client){.fd = -1};
}

int attach_listen(struct attach_server *s, int dirfd, const char *name, struct shim_error *err) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  /* through the directory's fd: a container directory's path can be longer
   * than sun_path's 108 bytes */
  snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/%s", dirfd, name);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return shim_fail(err, "monitor", name, errno, NULL);
  unlinkat(dirfd, name, 0); /* a previous run's monitor left it */
  mode_t old = umask(077);
  int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
  umask(old);
  if (rc < 0 || listen(fd, 16) < 0) {
    int saved = errno;
    close(fd);
    return shim_fail(err, "monitor", name, saved, NULL);
  }
  s->listen_fd = fd;
  s->dirfd = dirfd;
  s->name = name;
  return 0;
}

int attach_add(struct attach_server *s, int fd) {
  for (int i = 0; i < ATTACH_MAX_CLIENTS; i++) {
    struct attach_client *c = &s->clients[i];
    if (c->fd >= 0)
      continue;
    c->rbuf = malloc(5 + ATTACH_FRAME_MAX);
    if (!c->rbuf)
      break;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    c->fd = fd;
    c->rlen = 0;
    return 0;
  }
  close(fd);
  return -1;
}

void attach_accept(struct attach_server *s) {
  int fd;
  while ((fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0)
    attach_add(s, fd);
}

void attach_drop(struct attach_client *c) {
  if (c->fd < 0)
    return;
  close(c->fd);
  free(c->rbuf);
  free(c->pending);
  *c = (struct attach_client){.fd = -1};
}

static void header(char h[5], char type, size_t len) {
  h[0] = type;
  h[1] = (char)(len >> 24);
  h[2] = (char)(len >> 16);
  h[3] = (char)(len >> 8);
  h[4] = (char)len;
}

static void send_frame(struct attach_client *c, const char *h, const char *data, size_t len) {
  size_t total = 5 + len, done = 0;
  if (!c->pending) {
    struct iovec iov[2] = {{(void *)h, 5}, {(void *)data, len}};
    ssize_t w = writev(c->fd, iov, 2);
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
      attach_drop(c);
      return;
    }
    done = w > 0 ? (size_t)w : 0;
    if (done == total)
      return;
  }
  /* keep the rest: appended to what is already pending */
  size_t keep = total - done, have = c->pending ? c->pending_len - c->pending_off : 0;
  char *buf = malloc(have + keep);
  if (!buf) {
    attach_drop(c);
    return;
  }
  if (have)
    memcpy(buf, c->pending + c->pending_off, have);
  for (size_t i = done; i < total; i++)
    buf[have + i - done] = i < 5 ? h[i] : data[i - 5];
  free(c->pending);
  c->pending = buf;
  c->pending_len = have + keep;
  c->pending_off = 0;
}

void attach_broadcast(struct attach_server *s, char type, const char *data, size_t len) {
  char h[5];
  header(h, type, len);
  for (int i = 0; i < ATTACH_MAX_CLIENTS; i++)
    if (s->clients[i].fd >= 0)
      send_frame(&s->clients[i], h, data, len);
}

int attach_has_pending(const struct attach_server *s) {
  for (int i = 0; i < ATTACH_MAX_CLIENTS; i++)
    if (s->clients[i].fd >= 0 && s->clients[i].pending)
      return 1;
  return 0;
}

void attach_flush(struct attach_client *c) {
  if (!c->pending)
    return;
  ssize_t w = write(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off);
  if (w < 0 && errno != EAGAIN && errno != EINTR) {
    attach_drop(c);
    return;
  }
  if (w > 0 && (c->pending_off += (size_t)w) == c->pending_len) {
    free(c->pending);
    c->pending = NULL;
    c->pending_len = c->pending_off = 0;
  }
}

void attach_read(struct attach_client *c, attach_frame_fn fn, void *ctx) {
  ssize_t n = read(c->fd, c->rbuf + c->rlen, 5 + ATTACH_FRAME_MAX - c->rlen);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) {
    attach_drop(c);
    return;
  }
  c->rlen += (size_t)n;
  size_t off = 0;
  while (c->rlen - off >= 5) {
    const unsigned char *h = (const unsigned char *)c->rbuf + off;
    size_t len = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
    if (len > ATTACH_FRAME_MAX) {
      attach_drop(c); /* not a client that speaks this protocol */
      return;
    }
    if (c->rlen - off < 5 + len)
      break;
    fn(ctx, (char)h[0], c->rbuf + off + 5, len);
    if (c->fd < 0)
      return; /* fn dropped the client */
    off += 5 + len;
  }
  memmove(c->rbuf, c->rbuf + off, c->rlen - off);
  c->rlen -= off;
}

void attach_unlisten(struct attach_server *s) {
  if (s->listen_fd < 0)
    return;
  close(s->listen_fd);
  s->listen_fd = -1;
  unlinkat(s->dirfd, s->name, 0);
}

void attach_finish(struct attach_server *s, char type, const char *data, size_t len) {
  attach_unlisten(s);
  attach_broadcast(s, type, data, len);
  /* a client that takes nothing for two seconds misses the end; it can
   * still read exit.json */
  for (int round = 0; round < 20 && attach_has_pending(s); round++) {
    struct pollfd fds[ATTACH_MAX_CLIENTS];
    int n = 0;
    for (int i = 0; i < ATTACH_MAX_CLIENTS; i++)
      if (s->clients[i].fd >= 0 && s->clients[i].pending)
        fds[n++] = (struct pollfd){.fd = s->clients[i].fd, .events = POLLOUT};
    poll(fds, (nfds_t)n, 100);
    for (int i = 0; i < ATTACH_MAX_CLIENTS; i++)
      if (s->clients[i].fd >= 0)
        attach_flush(&s->clients[i]);
  }
  for (int i = 0; i < ATTACH_MAX_CLIENTS; i++)
    if (s->clients[i].fd >= 0) {
      shutdown(s->clients[i].fd, SHUT_WR);
      attach_drop(&s->clients[i]);
    }
}

size_t attach_fds(const struct attach_server *s, int *fds, size_t max) {
  size_t n = 0;
  if (s->listen_fd >= 0 && n < max)
    fds[n++] = s->listen_fd;
  for (int i = 0; i < ATTACH_MAX_CLIENTS && n < max; i++)
    if (s->clients[i].fd >= 0)
      fds[n++] = s->clients[i].fd;
  return n;
}
