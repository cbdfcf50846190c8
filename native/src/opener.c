/*
 * capsa-open: opens one path with a caller's rights and hands the
 * descriptor back (server/util/opener.ts).
 *
 * The helper is root, so a file a client names must not be opened by the
 * helper itself: the kernel has to check the client's own uid, gid and
 * supplementary groups on every component of the path. This short-lived
 * child takes them (setgroups, setresgid, setresuid, in that order: each
 * later call gives up the right to make the earlier ones), sets
 * no_new_privs, opens the path and passes the descriptor over its fd 3
 * with SCM_RIGHTS. Node cannot do this itself: its child_process drops the
 * supplementary groups when it is given a uid and gid.
 *
 *   fd 3  a SOCK_SEQPACKET socket. In: one request, NUL-terminated fields
 *         `uid gid groups how nofollow mode path` (groups comma-separated,
 *         possibly empty; how one of the `modes` below; nofollow 0 or 1;
 *         mode octal, for `create`). Out: `ok` with the descriptor, or
 *         `error <step>\t<path>\t<errno>\t<message>` as the shim reports.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/error.h"

#define SOCK_FD 3
#define MAX_GROUPS 65536
#define REQUEST_MAX (PATH_MAX + 16 * MAX_GROUPS)

/* What the helper may ask for; always close-on-exec. A read or create
 * open is non-blocking so a FIFO cannot hold it; that is cleared after. */
static const struct {
  const char *name;
  int flags;
} modes[] = {
    {"path", O_PATH},
    {"read", O_RDONLY | O_NONBLOCK},
    {"create", O_WRONLY | O_CREAT | O_EXCL | O_NONBLOCK},
};

struct request {
  uid_t uid;
  gid_t gid;
  gid_t *groups;
  size_t ngroups;
  int flags;
  mode_t mode;
  const char *path;
};

static int reply(const char *text, int fd) {
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    memset(control.buf, 0, sizeof control.buf);
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
  }
  return sendmsg(SOCK_FD, &msg, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

static int report(const struct shim_error *err) {
  char line[sizeof err->path + sizeof err->message + 64];
  memcpy(line, "error ", 6);
  shim_error_format(err, line + 6, sizeof line - 6);
  return reply(line, -1);
}

static int parse_id(const char *s, unsigned long max, unsigned long *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (!*s || *end || errno || v > max)
    return -1;
  *out = v;
  return 0;
}

/* Fields of the request, in place; -1 and err filled when it is malformed. */
static int parse(char *buf, size_t len, struct request *req, struct shim_error *err) {
  char *field[7];
  size_t n = 0;
  for (size_t start = 0, i = 0; i < len && n < 7; i++)
    if (buf[i] == '\0') {
      field[n++] = buf + start;
      start = i + 1;
    }
  if (n != 7)
    return shim_fail(err, "request", "", EINVAL, "expected 7 NUL-terminated fields, got %zu", n);
  unsigned long v;
  if (parse_id(field[0], (uid_t)-2, &v) < 0)
    return shim_fail(err, "request", "", EINVAL, "bad uid");
  req->uid = (uid_t)v;
  if (parse_id(field[1], (gid_t)-2, &v) < 0)
    return shim_fail(err, "request", "", EINVAL, "bad gid");
  req->gid = (gid_t)v;
  req->groups = calloc(MAX_GROUPS, sizeof *req->groups);
  if (!req->groups)
    return shim_fail(err, "request", "", ENOMEM, NULL);
  req->ngroups = 0;
  for (char *g = field[2], *next; *g; g = next) {
    next = strchr(g, ',');
    if (next)
      *next++ = '\0';
    else
      next = g + strlen(g);
    if (req->ngroups == MAX_GROUPS || parse_id(g, (gid_t)-2, &v) < 0)
      return shim_fail(err, "request", "", EINVAL, "bad group list");
    req->groups[req->ngroups++] = (gid_t)v;
  }
  req->flags = -1;
  for (size_t i = 0; i < sizeof modes / sizeof *modes; i++)
    if (strcmp(field[3], modes[i].name) == 0)
      req->flags = modes[i].flags | O_CLOEXEC;
  if (req->flags < 0)
    return shim_fail(err, "request", "", EINVAL, "unknown open mode %.32s", field[3]);
  if (strcmp(field[4], "1") == 0)
    req->flags |= O_NOFOLLOW;
  else if (strcmp(field[4], "0") != 0)
    return shim_fail(err, "request", "", EINVAL, "nofollow must be 0 or 1");
  char *end;
  unsigned long mode = strtoul(field[5], &end, 8);
  if (!*field[5] || *end || mode > 07777)
    return shim_fail(err, "request", "", EINVAL, "bad mode");
  req->mode = (mode_t)mode;
  req->path = field[6];
  if (req->path[0] != '/')
    return shim_fail(err, "request", req->path, EINVAL, "the path must be absolute");
  return 0;
}

/* The caller's identity, for good: groups first (needs CAP_SETGID), then gid, then uid. */
static int become(const struct request *req, struct shim_error *err) {
  if (setgroups(req->ngroups, req->groups) < 0)
    return shim_fail(err, "setgroups", "", errno, NULL);
  if (setresgid(req->gid, req->gid, req->gid) < 0)
    return shim_fail(err, "setresgid", "", errno, NULL);
  if (setresuid(req->uid, req->uid, req->uid) < 0)
    return shim_fail(err, "setresuid", "", errno, NULL);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return shim_fail(err, "no_new_privs", "", errno, NULL);
  return 0;
}

int main(void) {
  struct shim_error err = {0};
  /* Only 0-2 (/dev/null) and the socket: a /proc/self/fd/N path can name nothing of the helper's. */
#ifdef SYS_close_range
  if (syscall(SYS_close_range, SOCK_FD + 1, ~0U, 0) < 0)
#endif
    for (int fd = SOCK_FD + 1; fd < 1024; fd++)
      close(fd);
  char *buf = malloc(REQUEST_MAX + 1);
  if (!buf)
    return shim_fail(&err, "request", "", ENOMEM, NULL), report(&err), 1;
  ssize_t n;
  do
    n = recv(SOCK_FD, buf, REQUEST_MAX, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return 1;
  struct request req = {0};
  if (parse(buf, (size_t)n, &req, &err) < 0 || become(&req, &err) < 0)
    return report(&err), 1;
  int fd = open(req.path, req.flags, req.mode);
  if (fd < 0)
    return shim_fail(&err, "open", req.path, errno, NULL), report(&err), 1;
  if (req.flags & O_NONBLOCK) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
      return shim_fail(&err, "fcntl", req.path, errno, NULL), report(&err), 1;
  }
  return reply("ok", fd) < 0 ? 1 : 0;
}
