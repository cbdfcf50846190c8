/* The running container as the setup hands it over (setup/setup.h) and
 * the monitor or the relay looks after it: its process and the ends of its
 * stdio and signals that the shim holds. */
#ifndef CAPSA_COMMON_CONTAINER_H
#define CAPSA_COMMON_CONTAINER_H

#include <sys/types.h>

/* The container's process: its host pid and, when the kernel has them, a pidfd. */
struct container_proc {
  pid_t pid;
  int pidfd; /* -1 when unavailable: signals then go by kill(2) */
};

/* The container's process, once its command runs. */
struct container {
  struct container_proc proc;
  int sigfd;  /* signalfd of the plan's forwarded signals and SIGCHLD, blocked since before the clone */
  int master; /* the pty master (non-blocking), or -1 without a terminal */
  int out;    /* with pipe_stdio: read end of the command's stdout, else -1 */
  int err;    /* with pipe_stdio: read end of its stderr, else -1 */
  int in;     /* with pipe_stdio and stdin_pipe: write end of its stdin, else -1 */
};

#endif
