/* The plan: what the helper decided, read from fd 3 (see server/runtime/plan.ts
 * for the wire format). All strings point into one buffer the plan owns.
 * Every policy (which paths to mask, the umask, the order of the last
 * steps, which signals reach the container) comes from here: the shim only
 * carries it out. */
#ifndef CAPSA_COMMON_PLAN_H
#define CAPSA_COMMON_PLAN_H

#include <stddef.h>
#include <sys/types.h>

#include "common/error.h"

struct plan_mount {
  const char *source, *target, *fstype, *data;
  unsigned long flags;
};

struct plan_device {
  const char *path;
  char type; /* 'c' or 'b' */
  unsigned major, minor;
  mode_t mode;
  uid_t uid;
  gid_t gid;
  const char *host; /* the host's node bound when mknod is refused; NULL: path itself */
};

struct plan_rlimit {
  int resource;
  unsigned long long soft, hard; /* RLIM_INFINITY for `unlimited` */
};

/* An idmapped bind: at path (inside the container), uid/gid inside are read
 * and written as uid/gid outside on disk. */
struct plan_idmap {
  const char *path;
  uid_t uid_inside, uid_outside;
  gid_t gid_inside, gid_outside;
};

/* --userns auto: a layer directory and the empty directory its idmapped
 * copy is attached at, the overlay's lowerdir. */
struct plan_idlower {
  const char *source, *target;
};

struct plan_symlink {
  const char *target, *path;
};

/* The steps between setup and exec whose order is the plan's (`steps`). */
enum plan_step {
  PLAN_STEP_RLIMITS,    /* setrlimit for each rlimit record */
  PLAN_STEP_TTY,        /* the pty slave becomes the controlling terminal and 0, 1, 2 */
  PLAN_STEP_SECCOMP,    /* load the seccomp filter */
  PLAN_STEP_USER,       /* bounding set, uid/gid/groups keeping capabilities, capability sets */
  PLAN_STEP_CWD,        /* chdir to the working directory */
  PLAN_STEP_UMASK,      /* the command's umask */
  PLAN_STEP_NONEWPRIVS, /* PR_SET_NO_NEW_PRIVS */
  PLAN_STEP_COUNT
};

/* A growable array: items, count. */
#define PLAN_LIST(type, name) \
  type *name;                 \
  size_t n_##name

struct plan {
  int ns_flags; /* CLONE_NEW* */
  const char *rootfs;
  PLAN_LIST(struct plan_mount, mounts);
  PLAN_LIST(struct plan_device, devices);
  PLAN_LIST(struct plan_symlink, symlinks);
  PLAN_LIST(const char *, masks);
  PLAN_LIST(const char *, readonly);
  const char *hostname;
  const char *cwd;
  PLAN_LIST(char *, env);  /* NULL-terminated, for execve */
  PLAN_LIST(char *, args); /* NULL-terminated, argv */
  uid_t uid;
  gid_t gid;
  PLAN_LIST(gid_t, groups);
  int tty;
  unsigned short rows, cols;
  int loopback;
  PLAN_LIST(const char *, cgroups);
  pid_t join_pid; /* 0: create namespaces; else join those of this host pid */
  PLAN_LIST(struct plan_rlimit, rlimits);
  int has_caps;
  unsigned long long cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
  int no_new_privs;
  unsigned char *seccomp; /* sock_filter array */
  size_t seccomp_len;     /* in bytes, a multiple of 8 */
  int init;
  const char *netns; /* run mode: setns into this network namespace file rather than create one */
  PLAN_LIST(struct plan_idmap, idmaps);
  struct {
    uid_t uid; /* host ids container id 0 maps to; size 0: no user namespace */
    gid_t gid;
    unsigned size;
  } userns;
  PLAN_LIST(struct plan_idlower, idlowers);
  mode_t umask; /* the command's */
  int has_umask;
  PLAN_LIST(enum plan_step, steps); /* each once, in the order they run */
  PLAN_LIST(int, signals);          /* what the shim forwards to the container */
  const char *search_path;          /* where a command without a slash is looked up */
  PLAN_LIST(int, bindfds);          /* inherited O_PATH fds of bind sources, closed once mounted */
  char *buf;
};

/* The step's name in the `steps` record. */
const char *plan_step_name(enum plan_step step);

/* Reads and validates a whole plan from fd. */
int plan_read(int fd, struct plan *plan, struct shim_error *err);

#endif
