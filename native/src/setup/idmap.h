/* Idmapped bind mounts: files the container writes under such a mount land
 * on disk owned by a chosen host user, and that user's files appear as the
 * container user's, with nothing chowned (mount_setattr(2), MOUNT_ATTR_IDMAP). */
#ifndef CAPSA_SETUP_IDMAP_H
#define CAPSA_SETUP_IDMAP_H

#include "common/error.h"
#include "common/plan.h"

/* Runs after do_mounts, before pivot_root: stacks an idmapped clone of the
 * mount at each `idmap` record's path (inside the rootfs) on top of it. */
int do_idmaps(const struct plan *plan, struct shim_error *err);

/* A user namespace with these uid_map/gid_map contents, as an fd (< 0 on error). */
int idmap_userns(const char *uid_map, const char *gid_map, const char *what, struct shim_error *err);

/* --userns auto: the container's user namespace (ids 0..size-1 mapped onto
 * the plan's host range), as an fd, made before the clone. */
int userns_create(const struct plan *plan, struct shim_error *err);

/* Run mode, in the new mount namespace before do_mounts: each `idlower`
 * layer directory gets an idmapped copy (through `userns`) at its staging
 * path, which the overlay then takes as its lowerdir, so the image's files
 * appear owned as on disk inside the namespace, with nothing chowned. */
int do_idlowers(const struct plan *plan, int userns, struct shim_error *err);

/* Joins the container's user namespace once every privileged step in the
 * host's is done, as the namespace's root. */
int userns_enter(int userns, struct shim_error *err);

#endif
