#define _GNU_SOURCE
#include "common/plan.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/utils.h"

/* Appends a zeroed slot to a list; the list stays one slot longer than its
 * count so env/args are always NULL-terminated for execve. */
static void *push(void *items, size_t *n, size_t size, void **slot) {
  char *grown = realloc(items, (*n + 2) * size);
  if (!grown)
    return NULL;
  memset(grown + (*n + 1) * size, 0, size);
  *slot = grown + (*n) * size;
  memset(*slot, 0, size);
  (*n)++;
  return grown;
}

#define PUSH(plan, list, slot)                                                                    \
  ({                                                                                              \
    void *grown_ = push((plan)->list, &(plan)->n_##list, sizeof *(plan)->list, (void **)&(slot)); \
    if (grown_)                                                                                   \
      (plan)->list = grown_;                                                                      \
    grown_ != NULL;                                                                               \
  })

static int parse_num(const char *s, unsigned long max, unsigned long *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 0);
  if (errno || end == s || *end || v > max)
    return -1;
  *out = v;
  return 0;
}

static int parse_ns(struct plan *plan, char *list) {
  static const struct {
    const char *name;
    int flag;
  } kinds[] = {{"mount", CLONE_NEWNS}, {"pid", CLONE_NEWPID},       {"uts", CLONE_NEWUTS},  {"ipc", CLONE_NEWIPC},
               {"net", CLONE_NEWNET},  {"cgroup", CLONE_NEWCGROUP}, {"user", CLONE_NEWUSER}};
  char *save = NULL;
  for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    size_t i;
    for (i = 0; i < sizeof kinds / sizeof *kinds; i++)
      if (strcmp(tok, kinds[i].name) == 0)
        break;
    if (i == sizeof kinds / sizeof *kinds)
      return -1;
    plan->ns_flags |= kinds[i].flag;
  }
  return 0;
}

/* Number of fields each record carries, by tag. */
static const struct {
  const char *tag;
  int fields;
} records[] = {
    {"ns", 1},         {"rootfs", 1},   {"mount", 5},      {"device", 7},  {"symlink", 2}, {"mask", 1},
    {"readonly", 1},   {"hostname", 1}, {"cwd", 1},        {"env", 1},     {"arg", 1},     {"user", 2},
    {"group", 1},      {"tty", 1},      {"winsize", 2},    {"lo", 1},      {"cgroup", 1},  {"join", 1},
    {"rlimit", 3},     {"caps", 5},     {"nonewprivs", 1}, {"seccomp", 1}, {"init", 1},    {"netns", 1},
    {"idmap", 5},      {"userns", 3},   {"idlower", 2},    {"umask", 1},   {"steps", 1},   {"signals", 1},
    {"searchpath", 1}, {"bindfd", 1},   {"hostdevice", 8},
};

static int parse_limit(const char *s, unsigned long long *out) {
  if (!strcmp(s, "unlimited")) {
    *out = RLIM_INFINITY;
    return 0;
  }
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || v == RLIM_INFINITY)
    return -1;
  *out = v;
  return 0;
}

static int parse_mask(const char *s, unsigned long long *out) {
  char *end;
  errno = 0;
  *out = strtoull(s, &end, 16);
  return (errno || end == s || *end) ? -1 : 0;
}

/* Decodes hex in place: the record's own text becomes the program. */
static int parse_hex(char *s, size_t *len) {
  size_t n = strlen(s);
  if (n % 2)
    return -1;
  for (size_t i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1)
      return -1;
    s[i] = (char)v;
  }
  *len = n / 2;
  return 0;
}

static const char *const step_names[PLAN_STEP_COUNT] = {
    [PLAN_STEP_RLIMITS] = "rlimits",
    [PLAN_STEP_TTY] = "tty",
    [PLAN_STEP_SECCOMP] = "seccomp",
    [PLAN_STEP_USER] = "user",
    [PLAN_STEP_CWD] = "cwd",
    [PLAN_STEP_UMASK] = "umask",
    [PLAN_STEP_NONEWPRIVS] = "nonewprivs",
};

const char *plan_step_name(enum plan_step step) {
  return step >= 0 && step < PLAN_STEP_COUNT ? step_names[step] : "unknown";
}

static int parse_steps(struct plan *plan, char *list, struct shim_error *err) {
  unsigned seen = 0;
  char *save = NULL;
  for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int step = 0;
    while (step < PLAN_STEP_COUNT && strcmp(tok, step_names[step]))
      step++;
    if (step == PLAN_STEP_COUNT)
      return shim_fail(err, "plan", "steps", EINVAL, "unknown step %s", tok);
    if (seen & (1U << step))
      return shim_fail(err, "plan", "steps", EINVAL, "step %s listed twice", tok);
    seen |= 1U << step;
    void *slot;
    if (!PUSH(plan, steps, slot))
      return shim_fail(err, "plan", "steps", ENOMEM, NULL);
    *(enum plan_step *)slot = (enum plan_step)step;
  }
  /* a step left out would be a confinement silently skipped */
  if (plan->n_steps != PLAN_STEP_COUNT)
    return shim_fail(err, "plan", "steps", EINVAL, "steps must list each of the %d steps once", PLAN_STEP_COUNT);
  return 0;
}

static int parse_signals(struct plan *plan, char *list, struct shim_error *err) {
  char *save = NULL;
  for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    unsigned long sig;
    if (parse_num(tok, (unsigned long)SIGRTMAX, &sig) < 0 || sig == 0 || sig == SIGKILL || sig == SIGSTOP ||
        sig == SIGCHLD)
      return shim_fail(err, "plan", "signals", EINVAL, "signal %s cannot be forwarded", tok);
    void *slot;
    if (!PUSH(plan, signals, slot))
      return shim_fail(err, "plan", "signals", ENOMEM, NULL);
    *(int *)slot = (int)sig;
  }
  return 0;
}

static int record(struct plan *plan, const char *tag, char **f, struct shim_error *err) {
  unsigned long a, b, c, d, e;
  void *slot;
#define NUM(s, max, out)                                                                    \
  do {                                                                                      \
    if (parse_num((s), (max), &(out)) < 0)                                                  \
      return shim_fail(err, "plan", tag, EINVAL, "invalid number %s in %s record", s, tag); \
  } while (0)
#define OOM() shim_fail(err, "plan", tag, ENOMEM, NULL)
#define APPEND(list, type, ...)    \
  do {                             \
    if (!PUSH(plan, list, slot))   \
      return OOM();                \
    *(type *)slot = (__VA_ARGS__); \
  } while (0)

  if (!strcmp(tag, "ns")) {
    if (parse_ns(plan, f[0]) < 0)
      return shim_fail(err, "plan", f[0], EINVAL, "unknown namespace in %s", f[0]);
  } else if (!strcmp(tag, "rootfs")) {
    plan->rootfs = f[0];
  } else if (!strcmp(tag, "mount")) {
    NUM(f[3], ULONG_MAX, a);
    APPEND(mounts, struct plan_mount, (struct plan_mount){f[0], f[1], f[2], f[4], a});
  } else if (!strcmp(tag, "device") || !strcmp(tag, "hostdevice")) {
    if (strcmp(f[1], "c") && strcmp(f[1], "b"))
      return shim_fail(err, "plan", f[0], EINVAL, "device type must be c or b, not %s", f[1]);
    NUM(f[2], UINT32_MAX, a);
    NUM(f[3], UINT32_MAX, b);
    NUM(f[4], 07777, c);
    NUM(f[5], UINT32_MAX, d);
    NUM(f[6], UINT32_MAX, e);
    APPEND(devices, struct plan_device,
           (struct plan_device){f[0], f[1][0], (unsigned)a, (unsigned)b, (mode_t)c, (uid_t)d, (gid_t)e,
                                tag[0] == 'h' ? f[7] : NULL});
  } else if (!strcmp(tag, "symlink")) {
    APPEND(symlinks, struct plan_symlink, (struct plan_symlink){f[0], f[1]});
  } else if (!strcmp(tag, "bindfd")) {
    /* above the plan, status and control fds (3-5), below any sane limit */
    NUM(f[0], 1023, a);
    if (a < 6)
      return shim_fail(err, "plan", f[0], EINVAL, "bindfd must be a descriptor above 5");
    APPEND(bindfds, int, (int)a);
  } else if (!strcmp(tag, "mask")) {
    APPEND(masks, const char *, f[0]);
  } else if (!strcmp(tag, "readonly")) {
    APPEND(readonly, const char *, f[0]);
  } else if (!strcmp(tag, "hostname")) {
    plan->hostname = f[0];
  } else if (!strcmp(tag, "cwd")) {
    plan->cwd = f[0];
  } else if (!strcmp(tag, "env")) {
    APPEND(env, char *, f[0]);
  } else if (!strcmp(tag, "arg")) {
    APPEND(args, char *, f[0]);
  } else if (!strcmp(tag, "user")) {
    NUM(f[0], UINT32_MAX - 1, a);
    NUM(f[1], UINT32_MAX - 1, b);
    plan->uid = (uid_t)a;
    plan->gid = (gid_t)b;
  } else if (!strcmp(tag, "group")) {
    NUM(f[0], UINT32_MAX - 1, a);
    APPEND(groups, gid_t, (gid_t)a);
  } else if (!strcmp(tag, "tty")) {
    NUM(f[0], 1, a);
    plan->tty = (int)a;
  } else if (!strcmp(tag, "winsize")) {
    NUM(f[0], UINT16_MAX, a);
    NUM(f[1], UINT16_MAX, b);
    plan->rows = (unsigned short)a;
    plan->cols = (unsigned short)b;
  } else if (!strcmp(tag, "lo")) {
    NUM(f[0], 1, a);
    plan->loopback = (int)a;
  } else if (!strcmp(tag, "cgroup")) {
    APPEND(cgroups, const char *, f[0]);
  } else if (!strcmp(tag, "join")) {
    NUM(f[0], INT32_MAX, a);
    if (a == 0)
      return shim_fail(err, "plan", tag, EINVAL, "join pid must be positive");
    plan->join_pid = (pid_t)a;
  } else if (!strcmp(tag, "rlimit")) {
    NUM(f[0], 64, a);
    unsigned long long soft, hard;
    if (parse_limit(f[1], &soft) < 0 || parse_limit(f[2], &hard) < 0)
      return shim_fail(err, "plan", tag, EINVAL, "invalid rlimit %s %s", f[1], f[2]);
    APPEND(rlimits, struct plan_rlimit, (struct plan_rlimit){(int)a, soft, hard});
  } else if (!strcmp(tag, "caps")) {
    if (parse_mask(f[0], &plan->cap_bounding) < 0 || parse_mask(f[1], &plan->cap_effective) < 0 ||
        parse_mask(f[2], &plan->cap_permitted) < 0 || parse_mask(f[3], &plan->cap_inheritable) < 0 ||
        parse_mask(f[4], &plan->cap_ambient) < 0)
      return shim_fail(err, "plan", tag, EINVAL, "invalid capability mask");
    plan->has_caps = 1;
  } else if (!strcmp(tag, "nonewprivs")) {
    NUM(f[0], 1, a);
    plan->no_new_privs = (int)a;
  } else if (!strcmp(tag, "seccomp")) {
    if (parse_hex(f[0], &plan->seccomp_len) < 0 || plan->seccomp_len == 0 || plan->seccomp_len % 8)
      return shim_fail(err, "plan", tag, EINVAL, "seccomp program must be hex of whole instructions");
    plan->seccomp = (unsigned char *)f[0];
  } else if (!strcmp(tag, "init")) {
    NUM(f[0], 1, a);
    plan->init = (int)a;
  } else if (!strcmp(tag, "netns")) {
    if (f[0][0] != '/')
      return shim_fail(err, "plan", f[0], EINVAL, "netns needs an absolute path");
    plan->netns = f[0];
  } else if (!strcmp(tag, "idmap")) {
    if (f[0][0] != '/')
      return shim_fail(err, "plan", f[0], EINVAL, "idmap needs an absolute path");
    NUM(f[1], UINT32_MAX - 1, a);
    NUM(f[2], UINT32_MAX - 1, b);
    NUM(f[3], UINT32_MAX - 1, c);
    NUM(f[4], UINT32_MAX - 1, d);
    APPEND(idmaps, struct plan_idmap, (struct plan_idmap){f[0], (uid_t)a, (uid_t)b, (gid_t)c, (gid_t)d});
  } else if (!strcmp(tag, "userns")) {
    NUM(f[0], UINT32_MAX - 1, a);
    NUM(f[1], UINT32_MAX - 1, b);
    NUM(f[2], UINT32_MAX - 1, c);
    if (c == 0 || a + c > UINT32_MAX - 1 || b + c > UINT32_MAX - 1)
      return shim_fail(err, "plan", tag, EINVAL, "userns range %s+%s does not fit", f[0], f[2]);
    plan->userns.uid = (uid_t)a;
    plan->userns.gid = (gid_t)b;
    plan->userns.size = (unsigned)c;
  } else if (!strcmp(tag, "idlower")) {
    if (f[0][0] != '/' || f[1][0] != '/')
      return shim_fail(err, "plan", f[0], EINVAL, "idlower needs absolute paths");
    APPEND(idlowers, struct plan_idlower, (struct plan_idlower){f[0], f[1]});
  } else if (!strcmp(tag, "umask")) {
    NUM(f[0], 0777, a);
    plan->umask = (mode_t)a;
    plan->has_umask = 1;
  } else if (!strcmp(tag, "steps")) {
    if (plan->n_steps)
      return shim_fail(err, "plan", tag, EINVAL, "more than one steps record");
    return parse_steps(plan, f[0], err);
  } else if (!strcmp(tag, "signals")) {
    return parse_signals(plan, f[0], err);
  } else if (!strcmp(tag, "searchpath")) {
    plan->search_path = f[0];
  }
  return 0;
#undef NUM
#undef OOM
#undef APPEND
}

int plan_read(int fd, struct plan *plan, struct shim_error *err) {
  memset(plan, 0, sizeof *plan);
  ssize_t len = read_to_eof(fd, &plan->buf);
  if (len < 0)
    return shim_fail(err, "plan", "fd 3", errno, NULL);

  char *p = plan->buf, *end = plan->buf + len;
  int ended = 0;
  while (p < end && !ended) {
    char *tag = p;
    p += strlen(p) + 1;
    if (!strcmp(tag, "end")) {
      ended = 1;
      break;
    }
    size_t i;
    for (i = 0; i < sizeof records / sizeof *records; i++)
      if (!strcmp(tag, records[i].tag))
        break;
    if (i == sizeof records / sizeof *records)
      return shim_fail(err, "plan", tag, EINVAL, "unknown plan record %s", tag);
    char *fields[8]; /* the most any record has: hostdevice */
    for (int k = 0; k < records[i].fields; k++) {
      if (p >= end)
        return shim_fail(err, "plan", tag, EINVAL, "truncated %s record", tag);
      fields[k] = p;
      p += strlen(p) + 1;
    }
    if (record(plan, tag, fields, err) < 0)
      return -1;
  }
  if (!ended)
    return shim_fail(err, "plan", "fd 3", EINVAL, "plan ended without an end record");
  if (!plan->join_pid && (!plan->rootfs || plan->rootfs[0] != '/'))
    return shim_fail(err, "plan", "rootfs", EINVAL, "plan needs an absolute rootfs path");
  if (plan->netns && (plan->ns_flags & CLONE_NEWNET))
    return shim_fail(err, "plan", "netns", EINVAL,
                     "a plan joins an existing network namespace or creates one, not both");
  if (plan->n_args == 0)
    return shim_fail(err, "plan", "arg", EINVAL, "plan has no command");
  /* the helper decides these; the shim has no defaults of its own */
  if (!plan->cwd)
    return shim_fail(err, "plan", "cwd", EINVAL, "plan has no working directory");
  if (!plan->has_umask)
    return shim_fail(err, "plan", "umask", EINVAL, "plan has no umask");
  if (!plan->n_steps)
    return shim_fail(err, "plan", "steps", EINVAL, "plan has no steps record");
  if (!plan->search_path)
    return shim_fail(err, "plan", "searchpath", EINVAL, "plan has no search path");
  return 0;
}
