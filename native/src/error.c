#define _GNU_SOURCE
#include "error.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *shim_strerror(int errnum, char *buf, size_t len) {
  snprintf(buf, len, "%s", strerrordesc_np(errnum) ? strerrordesc_np(errnum) : "unknown error");
  if (buf[0])
    buf[0] = (char)tolower((unsigned char)buf[0]);
  return buf;
}

int shim_fail(struct shim_error *err, const char *step, const char *path,
              int errnum, const char *fmt, ...) {
  snprintf(err->step, sizeof err->step, "%s", step);
  snprintf(err->path, sizeof err->path, "%s", path ? path : "");
  err->errnum = errnum;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  } else {
    shim_strerror(errnum, err->message, sizeof err->message);
  }
  return -1;
}

/* Copies s with tabs and line breaks blanked: they delimit the status line. */
static void clean(char *dst, size_t len, const char *s) {
  snprintf(dst, len, "%s", s);
  for (char *p = dst; *p; p++)
    if (*p == '\t' || *p == '\n' || *p == '\r')
      *p = ' ';
}

size_t shim_error_format(const struct shim_error *err, char *buf, size_t len) {
  char step[sizeof err->step], path[sizeof err->path], message[sizeof err->message];
  clean(step, sizeof step, err->step);
  clean(path, sizeof path, err->path);
  clean(message, sizeof message, err->message);
  int n = snprintf(buf, len, "%s\t%s\t%d\t%s", step, path, err->errnum, message);
  return n < 0 ? 0 : ((size_t)n < len ? (size_t)n : len - 1);
}

void shim_error_parse(struct shim_error *err, char *line) {
  char *fields[4] = {"setup", "", "0", "unknown error"};
  for (int i = 0; i < 4 && line; i++) {
    fields[i] = line;
    line = i < 3 ? strchr(line, '\t') : NULL;
    if (line)
      *line++ = '\0';
  }
  snprintf(err->step, sizeof err->step, "%s", fields[0]);
  snprintf(err->path, sizeof err->path, "%s", fields[1]);
  err->errnum = atoi(fields[2]);
  snprintf(err->message, sizeof err->message, "%s", fields[3]);
}
