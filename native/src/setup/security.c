#define _GNU_SOURCE
#include "setup/security.h"

#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int apply_rlimits(const struct plan *plan, struct shim_error *err) {
  for (size_t i = 0; i < plan->n_rlimits; i++) {
    const struct plan_rlimit *r = &plan->rlimits[i];
    struct rlimit lim = {.rlim_cur = r->soft, .rlim_max = r->hard};
    if (setrlimit((__rlimit_resource_t)r->resource, &lim) < 0) {
      char name[32];
      snprintf(name, sizeof name, "rlimit %d", r->resource);
      return shim_fail(err, "rlimit", name, errno, NULL);
    }
  }
  return 0;
}

static int last_cap(void) {
  /* the running kernel may know more or fewer capabilities than our headers */
  FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
  int n = CAP_LAST_CAP;
  if (f) {
    if (fscanf(f, "%d", &n) != 1)
      n = CAP_LAST_CAP;
    fclose(f);
  }
  return n;
}

int drop_bounding(const struct plan *plan, struct shim_error *err) {
  if (!plan->has_caps)
    return 0;
  int last = last_cap();
  for (int cap = 0; cap <= last && cap < 64; cap++) {
    if (plan->cap_bounding & (1ULL << cap))
      continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
      char name[16];
      snprintf(name, sizeof name, "cap %d", cap);
      return shim_fail(err, "capabilities", name, errno, NULL);
    }
  }
  return 0;
}

int keep_caps(const struct plan *plan, int on, struct shim_error *err) {
  if (plan->has_caps && prctl(PR_SET_KEEPCAPS, on, 0, 0, 0) < 0)
    return shim_fail(err, "capabilities", "keepcaps", errno, NULL);
  return 0;
}

int apply_caps(const struct plan *plan, struct shim_error *err) {
  if (!plan->has_caps)
    return 0;
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  for (int i = 0; i < 2; i++) {
    data[i].effective = (__u32)(plan->cap_effective >> (32 * i));
    data[i].permitted = (__u32)(plan->cap_permitted >> (32 * i));
    data[i].inheritable = (__u32)(plan->cap_inheritable >> (32 * i));
  }
  if (syscall(SYS_capset, &hdr, data) < 0)
    return shim_fail(err, "capabilities", "capset", errno, NULL);
  /* ambient capabilities must be in both permitted and inheritable */
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    return shim_fail(err, "capabilities", "ambient", errno, NULL);
  for (int cap = 0; cap < 64; cap++)
    if ((plan->cap_ambient & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) {
      char name[16];
      snprintf(name, sizeof name, "cap %d", cap);
      return shim_fail(err, "capabilities", name, errno, NULL);
    }
  return 0;
}

int apply_no_new_privs(const struct plan *plan, struct shim_error *err) {
  if (plan->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return shim_fail(err, "seccomp", "no_new_privs", errno, NULL);
  return 0;
}

int load_seccomp(const struct plan *plan, struct shim_error *err) {
  if (!plan->seccomp)
    return 0;
  struct sock_fprog prog = {
      .len = (unsigned short)(plan->seccomp_len / sizeof(struct sock_filter)),
      .filter = (struct sock_filter *)plan->seccomp,
  };
  if (plan->seccomp_len / sizeof(struct sock_filter) > BPF_MAXINSNS)
    return shim_fail(err, "seccomp", "filter", E2BIG, "seccomp program has more than %d instructions", BPF_MAXINSNS);
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
    return shim_fail(err, "seccomp", "filter", errno, NULL);
  return 0;
}
