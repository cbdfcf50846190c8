/* The container's filesystem: the plan's mounts, pivot_root, masked and
 * read-only paths (paths resolved through inroot.h). Runs in the child,
 * inside its new mount namespace. */
#ifndef CAPSA_SETUP_ROOTFS_H
#define CAPSA_SETUP_ROOTFS_H

#include "common/error.h"
#include "common/plan.h"

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
