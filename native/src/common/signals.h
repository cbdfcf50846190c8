/* Signals and exit statuses of the container's process, shared by the
 * setup (which blocks the forwarded signals before the clone), the monitor
 * and the relay (which forward them). */
#ifndef CAPSA_COMMON_SIGNALS_H
#define CAPSA_COMMON_SIGNALS_H

#include <signal.h>

#include "common/container.h"

/* Sends sig to the process, by pidfd when there is one. */
int signal_process(const struct container_proc *proc, int sig);

/* A wait status as a shell reports it: the exit status, or 128 + signal. */
int wait_status_code(int status);

/* Every signal back to its default disposition (see signals.c for why). */
void signals_reset_all(void);

#endif
