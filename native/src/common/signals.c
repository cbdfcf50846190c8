#define _GNU_SOURCE
#include "common/signals.h"

#include <errno.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int signal_process(const struct container_proc *proc, int sig) {
  /* a pidfd cannot hit a recycled pid after the container was reaped */
  if (proc->pidfd >= 0) {
    if (syscall(SYS_pidfd_send_signal, proc->pidfd, sig, NULL, 0) == 0)
      return 0;
    if (errno != ENOSYS)
      return -1;
  }
  return kill(proc->pid, sig);
}

int wait_status_code(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return 125;
}

/* An ignored signal survives exec, and the helper's posix_spawn (threaded
 * glibc) leaves glibc's two internal signals, 32 and 33, ignored in us: the
 * container must not inherit that. glibc's sigaction refuses those two,
 * hence the raw call; an all-zero kernel sigaction is SIG_DFL with no flags
 * and an empty mask. */
void signals_reset_all(void) {
  uint64_t dfl[4] = {0};
  for (int sig = 1; sig <= 64; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      syscall(SYS_rt_sigaction, sig, dfl, NULL, 8);
}
