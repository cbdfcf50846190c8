#define _GNU_SOURCE
#include "setup/inroot.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/utils.h"

int open_in_root(int rootfd, const char *path, int flags, struct shim_error *err, const char *step) {
  /* RESOLVE_IN_ROOT makes the kernel treat rootfd as "/" for every component,
   * symlinks planted by the image included; magic links (/proc/self/root…)
   * would still jump out, so those are refused too. */
  struct open_how how = {
      .flags = (unsigned long long)(flags | O_CLOEXEC),
      .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
  };
  int fd;
  do
    fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
  while (fd < 0 && errno == EAGAIN); /* a concurrent rename elsewhere: retry */
  if (fd < 0)
    return shim_fail(err, step, path, errno, NULL);
  return fd;
}

int mkdir_in_root(int rootfd, const char *path, struct shim_error *err, const char *step) {
  char prefix[PATH_MAX];
  if (snprintf(prefix, sizeof prefix, "%s", path) >= (int)sizeof prefix)
    return shim_fail(err, step, path, ENAMETOOLONG, NULL);

  cleanup_close int cur = open_in_root(rootfd, "/", O_PATH | O_DIRECTORY, err, step);
  if (cur < 0)
    return -1;
  size_t len = strlen(prefix);
  for (size_t i = 0; i <= len; i++) {
    if (prefix[i] != '/' && prefix[i] != '\0')
      continue;
    if (i == 0 || prefix[i - 1] == '/')
      continue; /* leading or repeated slash */
    char saved = prefix[i];
    prefix[i] = '\0';
    /* Each prefix is resolved from the root again, never from the parent fd:
     * a symlink component must resolve as it would inside the container. */
    int next = open_in_root(rootfd, prefix, O_PATH | O_DIRECTORY, err, step);
    if (next < 0 && err->errnum == ENOENT) {
      const char *base = strrchr(prefix, '/');
      base = base ? base + 1 : prefix;
      if (mkdirat(cur, base, 0755) < 0 && errno != EEXIST)
        return shim_fail(err, step, prefix, errno, NULL);
      next = open_in_root(rootfd, prefix, O_PATH | O_DIRECTORY, err, step);
    }
    if (next < 0)
      return -1;
    close(cur);
    cur = next;
    prefix[i] = saved;
  }
  return steal_fd(&cur);
}

/* Appends component c (of length n) to the resolved path out, or for `..`
 * drops its last one: out never holds a symlink, so that is exact. */
static int join_component(char out[PATH_MAX], const char *c, size_t n) {
  if (n == 1 && c[0] == '.')
    return 0;
  if (n == 2 && c[0] == '.' && c[1] == '.') {
    char *slash = strrchr(out, '/');
    *(slash ? slash : out) = '\0'; /* `..` of the root is the root, as inside it */
    return 0;
  }
  size_t len = strlen(out);
  if (len + 1 + n >= PATH_MAX)
    return -1;
  out[len] = '/';
  memcpy(out + len + 1, c, n);
  out[len + 1 + n] = '\0';
  return 0;
}

int resolve_in_root(int rootfd, const char *path, char out[PATH_MAX], struct shim_error *err, const char *step) {
  char todo[PATH_MAX], link[PATH_MAX];
  if (snprintf(todo, sizeof todo, "%s", path) >= (int)sizeof todo)
    return shim_fail(err, step, path, ENAMETOOLONG, NULL);
  out[0] = '\0';
  int hops = 0, missing = 0;
  const char *p = todo;
  while (*p) {
    while (*p == '/')
      p++;
    size_t n = strcspn(p, "/");
    if (n == 0)
      break;
    const char *c = p;
    p += n;
    size_t before = strlen(out);
    if (join_component(out, c, n) < 0)
      return shim_fail(err, step, path, ENAMETOOLONG, NULL);
    if (missing || strlen(out) <= before)
      continue; /* below a missing component nothing exists to follow; `.` and `..` are lexical */
    struct open_how how = {.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    cleanup_close int fd = -1;
    do
      fd = (int)syscall(SYS_openat2, rootfd, out, &how, sizeof how);
    while (fd < 0 && errno == EAGAIN);
    if (fd < 0 && errno == ENOENT) {
      missing = 1;
      continue;
    }
    if (fd < 0)
      return shim_fail(err, step, out, errno, NULL);
    struct stat st;
    if (fstatat(fd, "", &st, AT_EMPTY_PATH) < 0)
      return shim_fail(err, step, out, errno, NULL);
    if (!S_ISLNK(st.st_mode))
      continue;
    if (++hops > 40)
      return shim_fail(err, step, path, ELOOP, NULL);
    ssize_t len = readlinkat(fd, "", link, sizeof link - 1);
    if (len < 0)
      return shim_fail(err, step, out, errno, NULL);
    link[len] = '\0';
    /* the link replaces its own component: an absolute target restarts at
     * the container's root, a relative one continues from its directory */
    out[before] = '\0';
    if (link[0] == '/')
      out[0] = '\0';
    char rest[PATH_MAX];
    if (snprintf(rest, sizeof rest, "%s/%s", link, p) >= (int)sizeof rest)
      return shim_fail(err, step, path, ENAMETOOLONG, NULL);
    memcpy(todo, rest, strlen(rest) + 1);
    p = todo;
  }
  if (!out[0])
    snprintf(out, PATH_MAX, "/");
  return 0;
}

int open_mountpoint(int rootfd, const char *path_in, int as_file, struct shim_error *err, const char *step) {
  int fd = open_in_root(rootfd, path_in, O_PATH, err, step);
  if (fd >= 0 || err->errnum != ENOENT)
    return fd;
  /* A missing target may be a dangling symlink, as images made for
   * systemd-resolved ship /etc/resolv.conf: what is created is its target,
   * resolved inside the root, so the mount lands where the link points
   * (as runc does) and nothing outside the root is ever touched. */
  char path[PATH_MAX];
  if (resolve_in_root(rootfd, path_in, path, err, step) < 0)
    return -1;
  if (!as_file) {
    fd = mkdir_in_root(rootfd, path, err, step);
    return fd;
  }
  char parent[PATH_MAX];
  snprintf(parent, sizeof parent, "%s", path);
  char *slash = strrchr(parent, '/');
  const char *base = slash ? slash + 1 : parent;
  if (slash)
    *slash = '\0';
  cleanup_close int dirfd = mkdir_in_root(rootfd, slash && parent[0] ? parent : "/", err, step);
  if (dirfd < 0)
    return -1;
  /* O_NOFOLLOW: a dangling symlink here must not create a file elsewhere */
  int created = openat(dirfd, base, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (created < 0 && errno != EEXIST && errno != ELOOP)
    return shim_fail(err, step, path, errno, NULL);
  if (created >= 0)
    close(created);
  return open_in_root(rootfd, path, O_PATH, err, step);
}
