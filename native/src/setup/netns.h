/* Joining a network namespace the helper prepared (bridge mode, container:NAME). */
#ifndef CAPSA_SETUP_NETNS_H
#define CAPSA_SETUP_NETNS_H

#include "common/error.h"

/* setns(CLONE_NEWNET) into the namespace that `path` (an nsfs bind mount or
 * /proc/<pid>/ns/net) names. Called in the shim before clone, so the
 * container inherits it: the path lies outside the container's rootfs. */
int join_netns(const char *path, struct shim_error *err);

#endif
