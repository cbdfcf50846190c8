/* The shim runs from a sealed copy of itself, as runc does (CVE-2019-5736):
 * whatever a container process reaches through /proc/<pid>/exe is then that
 * copy in memory, which no one can write, never the host's binary. */
#ifndef CAPSA_SETUP_CLONED_H
#define CAPSA_SETUP_CLONED_H

#include "common/error.h"

/* Re-executes the shim from a sealed memfd copy of /proc/self/exe with the
 * same argv and environment, unless it already runs from one. Returns 0 in
 * the copy; returns only on error otherwise. */
int run_from_sealed_copy(char **argv, char **envp, struct shim_error *err);

#endif
