/* Device nodes and symlinks inside the container's /dev (and elsewhere). */
#ifndef CAPSA_SETUP_DEVICES_H
#define CAPSA_SETUP_DEVICES_H

#include "common/error.h"
#include "common/plan.h"

int do_devices(const struct plan *plan, struct shim_error *err);
int do_symlinks(const struct plan *plan, struct shim_error *err);

#endif
