/* What the process may do once it runs: rlimits, capabilities,
 * no_new_privs and the seccomp filter, all decided by the helper. */
#ifndef CAPSA_SETUP_SECURITY_H
#define CAPSA_SETUP_SECURITY_H

#include "common/error.h"
#include "common/plan.h"

int apply_rlimits(const struct plan *plan, struct shim_error *err);

/* Drops capabilities outside the bounding set; must run while still root. */
int drop_bounding(const struct plan *plan, struct shim_error *err);

/* Keeps permitted capabilities across the uid change that follows. */
int keep_caps(const struct plan *plan, int on, struct shim_error *err);

/* Sets effective, permitted, inheritable and ambient sets, after setuid. */
int apply_caps(const struct plan *plan, struct shim_error *err);

int apply_no_new_privs(const struct plan *plan, struct shim_error *err);
int load_seccomp(const struct plan *plan, struct shim_error *err);

#endif
