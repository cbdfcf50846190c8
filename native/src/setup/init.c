#define _GNU_SOURCE
#include "setup/init.h"

#include <errno.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/signals.h"

static void rename_self(const struct init_title *title) {
  static const char name[] = "init";
  if (!title->area || title->len == 0)
    return;
  memset(title->area, 0, title->len);
  memcpy(title->area, name, title->len - 1 < sizeof name - 1 ? title->len - 1 : sizeof name - 1);
  prctl(PR_SET_NAME, name, 0, 0, 0);
}

int become_init(const struct init_title *title, int errfd, int slave, int sock, struct shim_error *err) {
  /* PID 1 only receives signals it handles or blocks; blocking every
   * catchable, non-fault signal lets sigwaitinfo take each and pass it on. */
  static const int keep[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT, SIGTTIN, SIGTTOU, SIGTSTP};
  sigset_t set, old;
  sigfillset(&set);
  for (size_t i = 0; i < sizeof keep / sizeof *keep; i++)
    sigdelset(&set, keep[i]);
  sigprocmask(SIG_BLOCK, &set, &old);

  pid_t child = fork();
  if (child < 0)
    return shim_fail(err, "init", "fork", errno, NULL);
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    return 0;
  }
  rename_self(title);
  for (int i = 0, fds[] = {errfd, slave, sock}; i < 3; i++)
    if (fds[i] >= 0)
      close(fds[i]);

  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    if (sig < 0) {
      if (errno == EINTR)
        continue;
      _exit(125);
    }
    if (sig != SIGCHLD) {
      kill(child, sig);
      continue;
    }
    /* orphans re-parented to PID 1 are reaped here with the command */
    int status;
    pid_t r;
    while ((r = waitpid(-1, &status, WNOHANG)) > 0)
      if (r == child)
        _exit(wait_status_code(status));
  }
}
