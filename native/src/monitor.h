/* The shim's life after the container started: one poll loop that relays
 * the pty, obeys control lines, forwards signals and waits for the exit. */
#ifndef CAPSA_MONITOR_H
#define CAPSA_MONITOR_H

#include <signal.h>
#include <sys/types.h>

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

#endif
