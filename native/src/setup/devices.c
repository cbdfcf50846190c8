#define _GNU_SOURCE
#include "setup/devices.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/utils.h"
#include "setup/inroot.h"

typedef int (*entry_fn)(int rootfd, int dirfd, const char *base, const void *entry, struct shim_error *err);

/* Makes one entry at an in-container path: creates its parent directory
 * inside the root when missing, then calls fn with an fd of it and the
 * last component. */
static int in_parent(int rootfd, const char *path, const char *step, entry_fn fn, const void *entry,
                     struct shim_error *err) {
  char parent[PATH_MAX];
  if (snprintf(parent, sizeof parent, "%s", path) >= (int)sizeof parent)
    return shim_fail(err, step, path, ENAMETOOLONG, NULL);
  char *slash = strrchr(parent, '/');
  const char *base = slash ? path + (slash - parent) + 1 : path;
  if (!*base)
    return shim_fail(err, step, path, EINVAL, "path has no file name");
  if (slash)
    *slash = '\0';
  cleanup_close int dirfd = mkdir_in_root(rootfd, slash && parent[0] ? parent : "/", err, step);
  if (dirfd < 0)
    return shim_error_wrap(err, "while creating the directory of %s", path);
  return fn(rootfd, dirfd, base, entry, err);
}

/* Without the right to mknod, the host's node is bound instead: the kernel
 * refuses mknod to a shim that is itself in a user namespace (the container's
 * own is entered only after this, child.c), and the container's cgroup, which
 * this process is already in, refuses it for a `--device` without `m`. A
 * bind needs neither, and the cgroup still decides every open of it. The
 * node bound is the host's own (d->host for a `--device` whose container
 * path differs), resolved here, before pivot_root; its mode and owner are
 * the host's, as with runc. */
static int bind_host_device(int rootfd, const struct plan_device *d, struct shim_error *err) {
  const char *host = d->host ? d->host : d->path;
  /* the node itself, never a symlink put in its place since the helper looked, and the device the plan and the
   * cgroup rule name: a path swapped for another file must not be bound into the container */
  cleanup_close int src = open(host, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (src < 0)
    return shim_fail(err, "device", host, errno, NULL);
  struct stat st;
  if (fstat(src, &st) < 0)
    return shim_fail(err, "device", host, errno, NULL);
  if ((st.st_mode & S_IFMT) != (d->type == 'b' ? S_IFBLK : S_IFCHR) || major(st.st_rdev) != d->major ||
      minor(st.st_rdev) != d->minor)
    return shim_fail(err, "device", host, ENODEV, "the host's node is no longer the %s device %u:%u",
                     d->type == 'b' ? "block" : "character", d->major, d->minor);
  cleanup_close int fd = open_mountpoint(rootfd, d->path, 1, err, "device");
  if (fd < 0)
    return -1;
  char from[FD_PATH_LEN], path[FD_PATH_LEN];
  fd_path(src, from);
  fd_path(fd, path);
  if (mount(from, path, NULL, MS_BIND, NULL) < 0)
    return shim_fail(err, "device", host, errno, NULL);
  return 0;
}

/* A node of its own, by mknod, where the kernel allows it (the shim is
 * still in the host's user namespace here, even for `--userns auto`): it
 * has exactly the plan's mode and owner (the host node's, for `--device`,
 * as Docker gives them), and it stays the
 * container's whatever becomes of the host's path later; the tmpfs on /dev
 * is mounted without nodev for it. An entry already there (the image's own
 * file, or a mount) is left as it is, as runc leaves it. */
static int make_device(int rootfd, int dirfd, const char *base, const void *entry, struct shim_error *err) {
  const struct plan_device *d = entry;
  mode_t type = d->type == 'b' ? S_IFBLK : S_IFCHR;
  if (mknodat(dirfd, base, type | d->mode, makedev(d->major, d->minor)) < 0) {
    int e = errno;
    if (e == EPERM && bind_host_device(rootfd, d, err) < 0)
      return shim_error_wrap(err, "while binding the host's %s, mknod being refused", d->host ? d->host : d->path);
    if (e != EPERM && e != EEXIST)
      return shim_fail(err, "device", d->path, e, NULL);
    return 0; /* bound; or an existing entry, maybe a symlink: never chmod through it */
  }
  /* the mode passed to mknod went through the umask; set it exactly */
  if (fchmodat(dirfd, base, d->mode, 0) < 0)
    return shim_fail(err, "device", d->path, errno, NULL);
  if (fchownat(dirfd, base, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
    return shim_fail(err, "device", d->path, errno, NULL);
  return 0;
}

static int make_symlink(int rootfd, int dirfd, const char *base, const void *entry, struct shim_error *err) {
  const struct plan_symlink *s = entry;
  (void)rootfd;
  if (symlinkat(s->target, dirfd, base) < 0 && errno != EEXIST)
    return shim_fail(err, "symlink", s->path, errno, NULL);
  return 0;
}

int do_devices(const struct plan *plan, struct shim_error *err) {
  if (!plan->n_devices && !plan->n_symlinks)
    return 0;
  cleanup_close int rootfd = open(plan->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return shim_fail(err, plan->n_devices ? "device" : "symlink", plan->rootfs, errno, NULL);
  for (size_t i = 0; i < plan->n_devices; i++)
    if (in_parent(rootfd, plan->devices[i].path, "device", make_device, &plan->devices[i], err) < 0)
      return -1;
  for (size_t i = 0; i < plan->n_symlinks; i++)
    if (in_parent(rootfd, plan->symlinks[i].path, "symlink", make_symlink, &plan->symlinks[i], err) < 0)
      return -1;
  return 0;
}
