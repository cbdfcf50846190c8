/* The container's filesystem: path resolution confined to the rootfs,
 * plan mounts, pivot_root, masked and read-only paths. Runs in the child,
 * inside its new mount namespace. */
#ifndef CAPSA_ROOTFS_H
#define CAPSA_ROOTFS_H

#include "error.h"
#include "plan.h"

/* Opens path (absolute, inside the container) relative to rootfd as if
 * rootfd were "/": `..` and symlinks, absolute ones included, cannot leave it.
 * flags are open(2) flags; O_CLOEXEC is added. */
int open_in_root(int rootfd, const char *path, int flags, struct shim_error *err, const char *step);

/* mkdir -p of path inside the root; returns an O_PATH fd of the directory. */
int mkdir_in_root(int rootfd, const char *path, struct shim_error *err, const char *step);

/* Resolves every symlink of path (absolute, inside the container) as the
 * kernel would with rootfd as "/", into out: a path with no symlink among
 * its existing components; the missing rest is kept as written. */
int resolve_in_root(int rootfd, const char *path, char out[PATH_MAX], struct shim_error *err, const char *step);

/* Opens path inside the root for use as a mount point, creating it first
 * when missing: a directory, or an empty file when as_file. A dangling
 * symlink is followed inside the root and its target created. */
int open_mountpoint(int rootfd, const char *path, int as_file, struct shim_error *err, const char *step);

/* Makes every mount private so nothing below propagates back to the host. */
int make_private(struct shim_error *err);

/* Performs the plan's mount records in order, inside plan->rootfs. */
int do_mounts(const struct plan *plan, struct shim_error *err);

/* Bind-mounts the pty slave (its path in the container's devpts) onto
 * /dev/console; run after pivot_root. */
int mount_console(const char *slave_path, struct shim_error *err);

/* pivot_root into plan->rootfs and detach the old root. */
int pivot_into(const struct plan *plan, struct shim_error *err);

/* Mask and read-only records; run after pivot_root, so "/" is the container's. */
int do_masks(const struct plan *plan, struct shim_error *err);
int do_readonly(const struct plan *plan, struct shim_error *err);

#endif
