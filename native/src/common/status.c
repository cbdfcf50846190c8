#define _GNU_SOURCE
#include "common/status.h"

#include <stdarg.h>
#include <stdio.h>

#include "common/utils.h"

void status_printf(const struct status_channel *st, const char *fmt, ...) {
  char line[SHIM_ERROR_LINE_MAX + 16];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof line)
    n = (int)sizeof line - 1;
  /* without a status channel, stderr is the only way left to say anything */
  write_all(st->fd >= 0 ? st->fd : 2, line, (size_t)n);
}

int status_error(const struct status_channel *st, const struct shim_error *err) {
  char line[SHIM_ERROR_LINE_MAX];
  shim_error_format(err, line, sizeof line);
  status_printf(st, "error %s\n", line);
  return SHIM_SETUP_FAILED;
}
