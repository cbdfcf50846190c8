#define _GNU_SOURCE
#include "setup/idmap.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/utils.h"
#include "setup/inroot.h"

static int write_file(const char *path, const char *text) {
  cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  size_t n = strlen(text);
  return write(fd, text, n) == (ssize_t)n ? 0 : -1;
}

/* What the short-lived child of idmap_userns reports: its pid as the procfs
 * here names it (the shim may already be in a new pid namespace while /proc
 * is still the host's), empty when it could not read it. */
struct userns_child {
  char self[32];
};

static int userns_child(void *arg) {
  struct userns_child *c = arg;
  ssize_t n = readlink("/proc/self", c->self, sizeof c->self - 1);
  c->self[n > 0 ? n : 0] = '\0';
  return 0;
}

/* A user namespace with the given maps (uid_map/gid_map text), as an fd.
 * A child is cloned into a new user namespace, sharing this process's
 * memory and running while this one waits (CLONE_VM | CLONE_VFORK, as
 * posix_spawn does): it writes its procfs pid and exits. Its namespace
 * outlives it as long as it is not reaped: a zombie keeps its credentials,
 * so its uid_map and gid_map can still be written once (this process is
 * privileged in the parent namespace) and its ns/user opened. Then it is
 * reaped. No pipe and no second wake-up: a child that waited for its maps
 * on a pipe made every creation wait for the scheduler twice, milliseconds
 * on a busy machine. The exit signal is none, so a SIGCHLD disposition of
 * the shim's can neither reap it early nor see it. `what` names the path
 * the namespace is for in errors. */
int idmap_userns(const char *uid_map, const char *gid_map, const char *what, struct shim_error *err) {
  /* the child's stack: it makes one readlink call */
  char stack[16384] __attribute__((aligned(16)));
  struct userns_child child = {.self = ""};
  pid_t pid = clone(userns_child, stack + sizeof stack, CLONE_NEWUSER | CLONE_VM | CLONE_VFORK, &child);
  if (pid < 0)
    return shim_fail(err, "idmap", what, errno, "cannot create a user namespace: clone: %s", shim_strerror(errno, (char[128]){0}, 128));

  int fd = -1, rc = 0;
  char path[64];
  if (!child.self[0]) {
    rc = shim_fail(err, "idmap", what, EIO, "the user namespace's first process could not read /proc/self");
  } else {
    snprintf(path, sizeof path, "/proc/%s/uid_map", child.self);
    if (write_file(path, uid_map) < 0) {
      rc = shim_fail(err, "idmap", what, errno, "writing %s: %s", path, shim_strerror(errno, (char[128]){0}, 128));
    } else {
      snprintf(path, sizeof path, "/proc/%s/gid_map", child.self);
      if (write_file(path, gid_map) < 0) {
        rc = shim_fail(err, "idmap", what, errno, "writing %s: %s", path, shim_strerror(errno, (char[128]){0}, 128));
      } else {
        snprintf(path, sizeof path, "/proc/%s/ns/user", child.self);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
          rc = shim_fail(err, "idmap", what, errno, "opening %s: %s", path, shim_strerror(errno, (char[128]){0}, 128));
      }
    }
  }
  /* __WALL: a child whose exit signal is not SIGCHLD is waited for only with it */
  while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
    ;
  return rc < 0 ? rc : fd;
}

/* A detached copy of the mount tree at `from`, made idmapped with `userns`,
 * attached at `to` (stacked on whatever is mounted there). */
static int idmap_clone(int from, int to, int userns, const char *what, struct shim_error *err) {
  cleanup_close int tree = open_tree(from, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0)
    return shim_fail(err, "idmap", what, errno, "open_tree: %s", shim_strerror(errno, (char[128]){0}, 128));
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (unsigned long long)userns};
  if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
    int e = errno;
    return shim_fail(err, "idmap", what, e, "mount_setattr: %s%s", shim_strerror(e, (char[128]){0}, 128),
                     e == EINVAL ? " (the filesystem may not support idmapped mounts)" : "");
  }
  if (move_mount(tree, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
    return shim_fail(err, "idmap", what, errno, "move_mount: %s", shim_strerror(errno, (char[128]){0}, 128));
  return 0;
}

static int idmap_one(int rootfd, const struct plan_idmap *m, struct shim_error *err) {
  /* A bind's target is a directory or, for a bind of one file, a file: open_tree,
   * mount_setattr and move_mount take either, so no O_DIRECTORY here. */
  cleanup_close int target = open_in_root(rootfd, m->path, O_PATH, err, "idmap");
  if (target < 0)
    return -1;
  /* A mount idmapping reads an on-disk id as an id inside the namespace and
   * shows it as the id it maps to outside: disk (host) ids go on the left. */
  char uid_map[64], gid_map[64];
  snprintf(uid_map, sizeof uid_map, "%u %u 1\n", (unsigned)m->uid_outside, (unsigned)m->uid_inside);
  snprintf(gid_map, sizeof gid_map, "%u %u 1\n", (unsigned)m->gid_outside, (unsigned)m->gid_inside);
  cleanup_close int userns = idmap_userns(uid_map, gid_map, m->path, err);
  if (userns < 0)
    return -1;
  return idmap_clone(target, target, userns, m->path, err);
}

int userns_create(const struct plan *plan, struct shim_error *err) {
  char map[96];
  snprintf(map, sizeof map, "0 %u %u\n", (unsigned)plan->userns.uid, (unsigned)plan->userns.size);
  char gmap[96];
  snprintf(gmap, sizeof gmap, "0 %u %u\n", (unsigned)plan->userns.gid, (unsigned)plan->userns.size);
  int fd = idmap_userns(map, gmap, "userns", err);
  return fd < 0 ? shim_error_wrap(err, "while creating the container's user namespace") : fd;
}

int do_idlowers(const struct plan *plan, int userns, struct shim_error *err) {
  for (size_t i = 0; i < plan->n_idlowers; i++) {
    const struct plan_idlower *l = &plan->idlowers[i];
    cleanup_close int from = open(l->source, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (from < 0)
      return shim_fail(err, "idmap", l->source, errno, NULL);
    cleanup_close int to = open(l->target, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (to < 0)
      return shim_fail(err, "idmap", l->target, errno, NULL);
    if (idmap_clone(from, to, userns, l->source, err) < 0)
      return shim_error_wrap(err, "while attaching an idmapped copy of layer %s", l->source);
  }
  return 0;
}

int userns_enter(int userns, struct shim_error *err) {
  if (setns(userns, CLONE_NEWUSER) < 0)
    return shim_fail(err, "userns", "setns", errno, NULL);
  /* setns leaves the ids as they were (host root, unmapped here): become the
   * namespace's root before the user step picks the container's user */
  if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
    return shim_fail(err, "userns", "setresuid", errno, NULL);
  return 0;
}

int do_idmaps(const struct plan *plan, struct shim_error *err) {
  if (plan->n_idmaps == 0)
    return 0;
  cleanup_close int rootfd = open(plan->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return shim_fail(err, "rootfs", plan->rootfs, errno, NULL);
  for (size_t i = 0; i < plan->n_idmaps; i++)
    if (idmap_one(rootfd, &plan->idmaps[i], err) < 0)
      return shim_error_wrap(err, "while idmapping the mount at %s", plan->idmaps[i].path);
  return 0;
}
