/* The status channel, fd 4: what the shim tells the helper, one line each
 * (server/runtime/native.ts `parseStatusLine` reads them):
 *   monitor <pid>     the detached monitor's pid (run --monitor only)
 *   started <pid>     the container's command runs (host pid)
 *   error <step>\t<path>\t<errno>\t<message>[\t<context>…]
 *                     setup failed; the context fields, outermost first, say
 *                     what each layer was doing (error.h)
 *   exit <code>       the command ended (relay mode only) */
#ifndef CAPSA_COMMON_STATUS_H
#define CAPSA_COMMON_STATUS_H

#include "common/error.h"

/* The exit status of a failed setup, the one runc and Docker use. */
#define SHIM_SETUP_FAILED 125

struct status_channel {
  int fd; /* -1: closed, or never given; lines then go to stderr */
};

void status_printf(const struct status_channel *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reports err as an `error` line; returns SHIM_SETUP_FAILED. */
int status_error(const struct status_channel *st, const struct shim_error *err);

#endif
