/* The shim's life after the container started: one poll loop that relays
 * the pty, obeys control lines, forwards signals and waits for the exit. */
#ifndef CAPSA_MONITOR_H
#define CAPSA_MONITOR_H

#include <signal.h>
#include <sys/types.h>

#include "attach.h"

struct monitor {
  pid_t pid;
  int pidfd;  /* -1 when unavailable: fall back to kill(2) */
  int sigfd;  /* signalfd of the forwarded signals and SIGCHLD */
  int ctlfd;  /* control lines from the helper, or -1 */
  int master; /* pty master, or -1 without a terminal */
};

/* Signals the shim forwards to the container (plus SIGCHLD, which it keeps). */
void monitor_signals(sigset_t *set);

int monitor_send_signal(const struct monitor *m, int sig);

/* A wait status as a shell reports it: the exit status, or 128 + signal. */
int wait_status_code(int status);

/* Runs until the container process ended and the pty drained; returns its
 * exit code (status, or 128 + signal). */
int monitor_run(struct monitor *m);

/* The detached monitor (`capsa-shim run --monitor DIR`): the container's
 * stdio goes through it rather than through the helper, so the container
 * outlives any helper. It writes <DIR>/container.log (logfile.h), serves
 * <DIR>/attach.sock (attach.h) and, when the container ended, writes
 * <DIR>/exit.json atomically before it tells the attached clients. */
struct supervisor {
  struct monitor m; /* pid, pidfd, sigfd, master (ctlfd unused) */
  int out, err;     /* read ends of the stdout and stderr pipes (no tty), or -1 */
  int in;           /* write end of the stdin pipe, or -1 (with a tty: the master, if stdin is open) */
  int logfd;
  int dirfd;
  struct attach_server *attach;
};

/* Runs until the container ended and its output drained; returns its exit code. */
int supervise(struct supervisor *s);

#endif
