#define _GNU_SOURCE
#include "setup/process.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/utils.h"

int open_cgroups(const struct plan *plan, int *fds, struct shim_error *err) {
  for (size_t i = 0; i < plan->n_cgroups; i++)
    fds[i] = -1;
  for (size_t i = 0; i < plan->n_cgroups; i++) {
    if ((fds[i] = open(plan->cgroups[i], O_WRONLY | O_CLOEXEC)) < 0) {
      int saved = errno;
      close_cgroups(plan, fds);
      return shim_fail(err, "cgroup", plan->cgroups[i], saved, NULL);
    }
  }
  return 0;
}

int enter_cgroups(const struct plan *plan, int *fds, struct shim_error *err) {
  /* "0": the writer itself, whatever pid namespace it is in */
  for (size_t i = 0; i < plan->n_cgroups; i++) {
    if (write_all(fds[i], "0\n", 2) < 0)
      return shim_fail(err, "cgroup", plan->cgroups[i], errno, NULL);
    close(fds[i]);
    fds[i] = -1;
  }
  return 0;
}

void close_cgroups(const struct plan *plan, int *fds) {
  for (size_t i = 0; i < plan->n_cgroups; i++)
    if (fds[i] >= 0) {
      close(fds[i]);
      fds[i] = -1;
    }
}

pid_t spawn_child(int ns_flags, int *pidfd, struct shim_error *err) {
  /* clone3 with no stack behaves like fork, creates the namespaces in the
   * same call (so the child is PID 1 of its pid namespace) and hands back a
   * pidfd for race-free signalling. */
  int fd = -1;
  struct clone_args args = {
      .flags = (uint64_t)ns_flags | CLONE_PIDFD,
      .pidfd = (uint64_t)(uintptr_t)&fd,
      .exit_signal = SIGCHLD,
  };
  pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0 && errno == ENOSYS) {
    pid = (pid_t)syscall(SYS_clone, (unsigned long)ns_flags | SIGCHLD, 0, 0, 0, 0);
    fd = -1;
  }
  if (pid < 0)
    return shim_fail(err, "clone", "", errno, NULL);
  if (pid == 0)
    return 0;
  if (fd >= 0)
    fcntl(fd, F_SETFD, FD_CLOEXEC);
  *pidfd = fd;
  return pid;
}

int join_namespaces(const struct plan *plan, struct shim_error *err) {
  /* every fd is opened before the first setns (after mnt, /proc/<pid> would
   * name a different process or none); user last: a --userns auto
   * container's other namespaces belong to the host's user namespace, and
   * joining them needs the rights the shim has only there */
  static const struct {
    int flag;
    const char *name;
  } order[] = {{CLONE_NEWCGROUP, "cgroup"}, {CLONE_NEWIPC, "ipc"}, {CLONE_NEWUTS, "uts"},  {CLONE_NEWNET, "net"},
               {CLONE_NEWPID, "pid"},       {CLONE_NEWNS, "mnt"},  {CLONE_NEWUSER, "user"}};
  enum { N = sizeof order / sizeof *order };
  int fds[N];
  int rc = 0;
  for (size_t i = 0; i < N; i++)
    fds[i] = -1;
  /* open all first: every /proc lookup must happen in the host's namespaces */
  for (size_t i = 0; i < N && rc == 0; i++) {
    if (!(plan->ns_flags & order[i].flag))
      continue;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/%s", plan->join_pid, order[i].name);
    if ((fds[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
      rc = shim_fail(err, "setns", path, errno, NULL);
  }
  for (size_t i = 0; i < N && rc == 0; i++) {
    if (fds[i] >= 0 && setns(fds[i], order[i].flag) < 0) {
      char path[64];
      snprintf(path, sizeof path, "/proc/%d/ns/%s", plan->join_pid, order[i].name);
      rc = shim_fail(err, "setns", path, errno, NULL);
    }
  }
  for (size_t i = 0; i < N; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  /* setns(mnt) already moved root and cwd to the namespace's root; say so
   * explicitly rather than rely on it */
  if (rc == 0 && (plan->ns_flags & CLONE_NEWNS) && chdir("/") < 0)
    rc = shim_fail(err, "setns", "/", errno, NULL);
  return rc;
}

int set_hostname(const struct plan *plan, struct shim_error *err) {
  if (plan->hostname && sethostname(plan->hostname, strlen(plan->hostname)) < 0)
    return shim_fail(err, "hostname", plan->hostname, errno, NULL);
  return 0;
}

int loopback_up(struct shim_error *err) {
  cleanup_close int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0)
    return shim_fail(err, "network", "lo", errno, NULL);
  struct ifreq ifr = {0};
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
  if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
    return shim_fail(err, "network", "lo", errno, NULL);
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
    return shim_fail(err, "network", "lo", errno, NULL);
  return 0;
}

int switch_user(const struct plan *plan, struct shim_error *err) {
  char id[32];
  /* groups before gid before uid: each later step drops the right to the earlier */
  if (setgroups(plan->n_groups, plan->groups) < 0)
    return shim_fail(err, "user", "setgroups", errno, NULL);
  snprintf(id, sizeof id, "%u", (unsigned)plan->gid);
  if (setresgid(plan->gid, plan->gid, plan->gid) < 0)
    return shim_fail(err, "user", id, errno, "setgid %u: %s", (unsigned)plan->gid,
                     shim_strerror(errno, (char[128]){0}, 128));
  snprintf(id, sizeof id, "%u", (unsigned)plan->uid);
  if (setresuid(plan->uid, plan->uid, plan->uid) < 0)
    return shim_fail(err, "user", id, errno, "setuid %u: %s", (unsigned)plan->uid,
                     shim_strerror(errno, (char[128]){0}, 128));
  return 0;
}

int exec_command(const struct plan *plan, struct shim_error *err) {
  static char *no_env[] = {NULL};
  char *const *envp = plan->env ? plan->env : no_env;
  const char *file = plan->args[0];
  char msg[128];

  if (strchr(file, '/')) {
    execve(file, plan->args, envp);
    return shim_fail(err, "exec", file, errno, "exec: \"%s\": %s", file, shim_strerror(errno, msg, sizeof msg));
  }
  if (!*file)
    return shim_fail(err, "exec", file, ENOENT, "exec: \"\": executable file not found in $PATH");

  /* the plan's search path (the container's PATH, as the helper decided), never the shim's */
  const char *path = plan->search_path;
  int seen_eacces = 0;
  char candidate[PATH_MAX];
  for (const char *p = path;; p++) {
    const char *end = strchrnul(p, ':');
    int dirlen = (int)(end - p);
    /* an empty PATH entry means the current directory */
    int n = dirlen ? snprintf(candidate, sizeof candidate, "%.*s/%s", dirlen, p, file)
                   : snprintf(candidate, sizeof candidate, "%s", file);
    if (n > 0 && n < (int)sizeof candidate) {
      execve(candidate, plan->args, envp);
      switch (errno) {
      case EACCES:
        seen_eacces = 1;
        /* fallthrough */
      case ENOENT:
      case ENOTDIR:
      case ELOOP:
      case ENAMETOOLONG:
        break;
      default:
        return shim_fail(err, "exec", file, errno, "exec: \"%s\": %s", file, shim_strerror(errno, msg, sizeof msg));
      }
    }
    if (!*end)
      break;
    p = end;
  }
  if (seen_eacces)
    return shim_fail(err, "exec", file, EACCES, "exec: \"%s\": permission denied", file);
  return shim_fail(err, "exec", file, ENOENT, "exec: \"%s\": executable file not found in $PATH", file);
}
