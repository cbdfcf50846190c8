#define _GNU_SOURCE
#include "setup/rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/utils.h"
#include "setup/inroot.h"

/* Mount flags that change how a mount is attached rather than what it is. */
#define PROPAGATION (MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE)

int make_private(struct shim_error *err) {
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    return shim_fail(err, "mount", "/", errno, NULL);
  return 0;
}

static int open_rootfs(const struct plan *plan, struct shim_error *err) {
  int fd = open(plan->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return shim_fail(err, "rootfs", plan->rootfs, errno, NULL);
  return fd;
}

/* Applies flags that mount(2) ignores on a first bind (ro, nosuid…). A
 * bind remount would set them on the top mount only, leaving a submount of
 * the source writable: mount_setattr with AT_RECURSIVE (Linux 5.12) sets
 * them on every mount of the tree, as Docker 25 does for read-only binds. */
static int bind_attrs(int rootfd, const char *target, unsigned long flags, int recursive, struct shim_error *err) {
  static const struct {
    unsigned long ms;
    unsigned long long attr;
  } map[] = {{MS_RDONLY, MOUNT_ATTR_RDONLY},
             {MS_NOSUID, MOUNT_ATTR_NOSUID},
             {MS_NODEV, MOUNT_ATTR_NODEV},
             {MS_NOEXEC, MOUNT_ATTR_NOEXEC}};
  struct mount_attr attr = {0};
  for (size_t i = 0; i < sizeof map / sizeof *map; i++)
    if (flags & map[i].ms) {
      attr.attr_set |= map[i].attr;
      flags &= ~map[i].ms;
    }
  if (flags)
    return shim_fail(err, "mount", target, EINVAL, "bind mount flags 0x%lx cannot be applied", flags);
  cleanup_close int fd = open_in_root(rootfd, target, O_PATH, err, "mount");
  if (fd < 0)
    return -1;
  if (mount_setattr(fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr) < 0) {
    int e = errno;
    return shim_fail(err, "mount", target, e, "making the bind mount and its submounts %s: mount_setattr: %s%s",
                     (attr.attr_set & MOUNT_ATTR_RDONLY) ? "read-only" : "restricted",
                     shim_strerror(e, (char[128]){0}, 128), e == ENOSYS ? " (needs linux 5.12 or later)" : "");
  }
  return 0;
}

/* overlayfs takes lowerdir in mount(2)'s data, which the kernel copies
 * only up to a page: some 40 store paths. Each lower directory is opened
 * here and named by its fd number, relative to /proc/self/fd as the cwd
 * (overlayfs resolves the names at mount time and follows the fd links),
 * so even 500 layers, overlayfs's most, take about 2 KiB. */
static int mount_overlay(const char *dst, const struct plan_mount *m, unsigned long flags, struct shim_error *err) {
  size_t n = 1;
  for (const char *c = m->data; *c; c++)
    n += *c == ':' || *c == ',';
  cleanup_free char *opts = strdup(m->data);
  cleanup_free char *data = malloc(strlen(m->data) + 12 * n + 1);
  cleanup_free int *fds = malloc(n * sizeof *fds);
  if (!opts || !data || !fds)
    return shim_fail(err, "mount", m->target, ENOMEM, NULL);
  size_t nfds = 0, len = 0;
  int rc = -1;
  data[0] = '\0';
  char *save = NULL;
  for (char *opt = strtok_r(opts, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
    if (len)
      data[len++] = ',';
    if (strncmp(opt, "lowerdir=", 9)) {
      len += (size_t)sprintf(data + len, "%s", opt);
      continue;
    }
    len += (size_t)sprintf(data + len, "lowerdir=");
    char *dsave = NULL;
    for (char *dir = strtok_r(opt + 9, ":", &dsave); dir; dir = strtok_r(NULL, ":", &dsave)) {
      int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) {
        shim_fail(err, "mount", m->target, errno, "lower directory %s: %s", dir,
                  shim_strerror(errno, (char[128]){0}, 128));
        goto out;
      }
      fds[nfds++] = fd;
      len += (size_t)sprintf(data + len, "%s%d", nfds > 1 && data[len - 1] != '=' ? ":" : "", fd);
    }
  }
  {
    cleanup_close int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    cleanup_close int fddir = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0 || fddir < 0 || fchdir(fddir) < 0) {
      shim_fail(err, "mount", m->target, errno, "/proc/self/fd: %s", shim_strerror(errno, (char[128]){0}, 128));
      goto out;
    }
    int r = mount(m->source, dst, m->fstype, flags, data);
    int e = errno;
    if (fchdir(cwd) < 0 && r == 0) {
      r = -1;
      e = errno;
    }
    if (r < 0) {
      shim_fail(err, "mount", m->target, e, NULL);
      goto out;
    }
  }
  rc = 0;
out:
  for (size_t i = 0; i < nfds; i++)
    close(fds[i]);
  return rc;
}

static int mount_one(int *rootfd, const struct plan *plan, const struct plan_mount *m, struct shim_error *err) {
  int bind = (m->flags & MS_BIND) != 0;
  int as_file = 0;
  if (bind) {
    struct stat st;
    if (stat(m->source, &st) < 0)
      return shim_fail(err, "mount", m->target, errno, "bind source %s: %s", m->source,
                       shim_strerror(errno, (char[128]){0}, 128));
    as_file = !S_ISDIR(st.st_mode);
  }
  cleanup_close int target = open_mountpoint(*rootfd, m->target, as_file, err, "mount");
  if (target < 0)
    return -1;
  char path[FD_PATH_LEN];
  fd_path(target, path);

  unsigned long flags = m->flags & ~PROPAGATION;
  const char *data = m->data[0] ? m->data : NULL;
  if (bind) {
    if (mount(m->source, path, NULL, MS_BIND | (flags & MS_REC), NULL) < 0)
      return shim_fail(err, "mount", m->target, errno, NULL);
  } else if (!strcmp(m->fstype, "overlay")) {
    if (mount_overlay(path, m, flags, err) < 0)
      return -1;
  } else if (mount(m->source, path, m->fstype, flags, data) < 0) {
    return shim_fail(err, "mount", m->target, errno, NULL);
  }

  /* A mount onto "/" covers the directory rootfd points at: reopen it so
   * later lookups see the new filesystem, not the one underneath. */
  if (!strcmp(m->target, "/")) {
    close(*rootfd);
    if ((*rootfd = open_rootfs(plan, err)) < 0)
      return -1;
  }
  if (bind && (flags & ~(MS_BIND | MS_REC)))
    if (bind_attrs(*rootfd, m->target, flags & ~(MS_BIND | MS_REC | MS_REMOUNT), (flags & MS_REC) != 0, err) < 0)
      return -1;
  if (m->flags & PROPAGATION) {
    cleanup_close int fd = open_in_root(*rootfd, m->target, O_PATH, err, "mount");
    if (fd < 0)
      return -1;
    fd_path(fd, path);
    if (mount(NULL, path, NULL, m->flags & (PROPAGATION | MS_REC), NULL) < 0)
      return shim_fail(err, "mount", m->target, errno, NULL);
  }
  return 0;
}

int do_mounts(const struct plan *plan, struct shim_error *err) {
  int covers_root = 0;
  for (size_t i = 0; i < plan->n_mounts; i++)
    covers_root |= !strcmp(plan->mounts[i].target, "/");
  /* pivot_root needs the new root to be a mount point */
  if (!covers_root && mount(plan->rootfs, plan->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
    return shim_fail(err, "mount", "/", errno, NULL);

  cleanup_close int rootfd = open_rootfs(plan, err);
  if (rootfd < 0)
    return -1;
  for (size_t i = 0; i < plan->n_mounts; i++)
    if (mount_one(&rootfd, plan, &plan->mounts[i], err) < 0)
      return shim_error_wrap(err, "while mounting %s on %s", plan->mounts[i].source, plan->mounts[i].target);
  return 0;
}

int mount_console(const char *slave_path, struct shim_error *err) {
  cleanup_close int rootfd = open_in_root(AT_FDCWD, "/", O_PATH | O_DIRECTORY, err, "console");
  if (rootfd < 0)
    return -1;
  cleanup_close int target = open_mountpoint(rootfd, "/dev/console", 1, err, "console");
  if (target < 0)
    return -1;
  char dst[FD_PATH_LEN];
  fd_path(target, dst);
  if (mount(slave_path, dst, NULL, MS_BIND, NULL) < 0)
    return shim_fail(err, "console", "/dev/console", errno, NULL);
  return 0;
}

int pivot_into(const struct plan *plan, struct shim_error *err) {
  cleanup_close int rootfd = open_rootfs(plan, err);
  if (rootfd < 0)
    return -1;
  if (fchdir(rootfd) < 0)
    return shim_fail(err, "pivot_root", plan->rootfs, errno, NULL);
  /* pivot_root(".", ".") stacks the old root on top of the new one at "/",
   * so it can be detached without needing a directory to park it in. */
  if (syscall(SYS_pivot_root, ".", ".") < 0)
    return shim_fail(err, "pivot_root", plan->rootfs, errno, NULL);
  /* keep the unmount below from propagating anywhere */
  if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
    return shim_fail(err, "pivot_root", "/", errno, NULL);
  if (umount2(".", MNT_DETACH) < 0)
    return shim_fail(err, "pivot_root", "/", errno, NULL);
  if (chdir("/") < 0)
    return shim_fail(err, "pivot_root", "/", errno, NULL);
  return 0;
}

typedef int (*path_fn)(int rootfd, int fd, const char *path, struct shim_error *err);

/* After pivot_root: calls fn with an O_PATH fd of each path that exists
 * inside the container ("/" now), resolved there. */
static int each_existing(const char *const *paths, size_t n, const char *step, path_fn fn, struct shim_error *err) {
  if (!n)
    return 0;
  cleanup_close int rootfd = open_in_root(AT_FDCWD, "/", O_PATH | O_DIRECTORY, err, step);
  if (rootfd < 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    cleanup_close int fd = open_in_root(rootfd, paths[i], O_PATH, err, step);
    if (fd < 0 && err->errnum == ENOENT)
      continue; /* nothing to hide or to protect */
    if (fd < 0 || fn(rootfd, fd, paths[i], err) < 0)
      return -1;
  }
  return 0;
}

static int mask_one(int rootfd, int fd, const char *p, struct shim_error *err) {
  (void)rootfd;
  struct stat st;
  if (fstat(fd, &st) < 0)
    return shim_fail(err, "mask", p, errno, NULL);
  char path[FD_PATH_LEN];
  fd_path(fd, path);
  int r = S_ISDIR(st.st_mode) ? mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0")
                              : mount("/dev/null", path, NULL, MS_BIND, NULL);
  if (r < 0)
    return shim_fail(err, "mask", p, errno, NULL);
  return 0;
}

/* A bind remount must repeat the flags the mount (fd's) already has, or
 * the kernel refuses to clear locked ones (nosuid, nodev, noexec). */
static int remount_readonly(int fd, const char *target, const char *p, struct shim_error *err) {
  struct statvfs sv;
  if (fstatvfs(fd, &sv) < 0)
    return shim_fail(err, "readonly", p, errno, NULL);
  unsigned long keep = sv.f_flag & (ST_NOSUID | ST_NODEV | ST_NOEXEC | ST_NOATIME | ST_NODIRATIME | ST_RELATIME);
  if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, NULL) < 0)
    return shim_fail(err, "readonly", p, errno, NULL);
  return 0;
}

static int readonly_one(int rootfd, int fd, const char *p, struct shim_error *err) {
  /* the root is already a mount of its own (pivot_root needed that):
   * remount it in place, a bind would duplicate every submount */
  if (!strcmp(p, "/"))
    return remount_readonly(fd, "/", p, err);
  char path[FD_PATH_LEN];
  fd_path(fd, path);
  if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0)
    return shim_fail(err, "readonly", p, errno, NULL);
  cleanup_close int bound = open_in_root(rootfd, p, O_PATH, err, "readonly");
  if (bound < 0)
    return -1;
  fd_path(bound, path);
  return remount_readonly(bound, path, p, err);
}

int do_masks(const struct plan *plan, struct shim_error *err) {
  if (each_existing(plan->masks, plan->n_masks, "mask", mask_one, err) < 0)
    return shim_error_wrap(err, "while masking the plan's paths");
  return 0;
}

int do_readonly(const struct plan *plan, struct shim_error *err) {
  if (each_existing(plan->readonly, plan->n_readonly, "readonly", readonly_one, err) < 0)
    return shim_error_wrap(err, "while making the plan's paths read-only");
  return 0;
}
