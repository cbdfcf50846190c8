/* The container process: creating or joining namespaces, and the last
 * steps in the child before exec (hostname, loopback, ids, cwd, exec). */
#ifndef CAPSA_SETUP_PROCESS_H
#define CAPSA_SETUP_PROCESS_H

#include <sys/types.h>

#include "common/error.h"
#include "common/plan.h"

/* The container's cgroups are entered by its first process, right after
 * clone and before any setup, through cgroup.procs files the shim opened in
 * the host's mount namespace (fds: one per plan->cgroups entry): the shim
 * and the monitor stay outside, so they count against none of the limits
 * and need no moving out afterwards. */
int open_cgroups(const struct plan *plan, int *fds, struct shim_error *err);
int enter_cgroups(const struct plan *plan, int *fds, struct shim_error *err);
void close_cgroups(const struct plan *plan, int *fds);

/* fork(2) into the namespaces in flags (CLONE_NEW*), returning a pidfd in
 * *pidfd (-1 when the kernel has none). Returns the child's host pid in the
 * parent, 0 in the child, -1 on error. */
pid_t spawn_child(int ns_flags, int *pidfd, struct shim_error *err);

/* Exec mode: setns into every namespace of plan->join_pid listed in the plan.
 * The pid namespace applies to children only, hence spawn_child afterwards. */
int join_namespaces(const struct plan *plan, struct shim_error *err);

int set_hostname(const struct plan *plan, struct shim_error *err);
int loopback_up(struct shim_error *err);
int switch_user(const struct plan *plan, struct shim_error *err);

/* Replaces the process with the plan's command, searching the plan's search path.
 * Returns only on failure. */
int exec_command(const struct plan *plan, struct shim_error *err);

#endif
