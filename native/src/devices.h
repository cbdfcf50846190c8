/* Device nodes and symlinks inside the container's /dev (and elsewhere). */
#ifndef CAPSA_DEVICES_H
#define CAPSA_DEVICES_H

#include "error.h"
#include "plan.h"

int do_devices(const struct plan *plan, struct shim_error *err);
int do_symlinks(const struct plan *plan, struct shim_error *err);

#endif
