/* Device nodes and symlinks inside the container's /dev (and elsewhere). */
#ifndef CAPSA_SETUP_DEVICES_H
#define CAPSA_SETUP_DEVICES_H

#include "common/error.h"
#include "common/plan.h"

/* The plan's device nodes, then its symlinks, inside plan->rootfs (before
 * pivot_root). A node the kernel refuses to make (EPERM: a user namespace)
 * is the host's, bound; an existing entry is left as it is. */
int do_devices(const struct plan *plan, struct shim_error *err);

#endif
