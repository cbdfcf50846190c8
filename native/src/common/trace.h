/* Phase stamps, with `--trace` only (server/runtime/trace.ts reads them):
 * the shim and the container's first process each stamp the phases they
 * end, on CLOCK_MONOTONIC (the helper's process.hrtime clock), into one
 * shared page made before the clone; the shim reports them all on the
 * status channel, as `phase <name> <ns>` lines, before `started`. Without
 * --trace, trace_mark returns at once: no page, no clock read. */
#ifndef CAPSA_COMMON_TRACE_H
#define CAPSA_COMMON_TRACE_H

#include "common/status.h"

/* Makes the shared page; a failure leaves tracing off (it is a debugging aid). */
void trace_init(void);
void trace_mark(const char *phase);
/* Writes every stamp so far as a `phase` line, then forgets them. */
void trace_report(const struct status_channel *st);

#endif
