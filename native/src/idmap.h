/* Idmapped bind mounts: files the container writes under such a mount land
 * on disk owned by a chosen host user, and that user's files appear as the
 * container user's, with nothing chowned (mount_setattr(2), MOUNT_ATTR_IDMAP). */
#ifndef CAPSA_IDMAP_H
#define CAPSA_IDMAP_H

#include "error.h"
#include "plan.h"

/* Runs after do_mounts, before pivot_root: stacks an idmapped clone of the
 * mount at each `idmap` record's path (inside the rootfs) on top of it. */
int do_idmaps(const struct plan *plan, struct shim_error *err);

#endif
