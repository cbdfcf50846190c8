#define _GNU_SOURCE
#include "common/error.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *shim_strerror(int errnum, char *buf, size_t len) {
  const char *desc = strerrordesc_np(errnum);
  snprintf(buf, len, "%s", desc ? desc : "unknown error");
  if (buf[0])
    buf[0] = (char)tolower((unsigned char)buf[0]);
  return buf;
}

int shim_fail(struct shim_error *err, const char *step, const char *path, int errnum, const char *fmt, ...) {
  snprintf(err->step, sizeof err->step, "%s", step);
  snprintf(err->path, sizeof err->path, "%s", path ? path : "");
  err->errnum = errnum;
  err->n_context = 0;
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

int shim_error_wrap(struct shim_error *err, const char *fmt, ...) {
  if (err->n_context < SHIM_ERROR_CONTEXT_MAX) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->context[err->n_context++], SHIM_ERROR_CONTEXT_LEN, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* Appends s to buf at *at with tabs and line breaks blanked: they delimit
 * the status line and its fields. */
static void put_field(char *buf, size_t len, size_t *at, const char *sep, const char *s) {
  int n = snprintf(buf + *at, len - *at, "%s%s", sep, s);
  if (n < 0)
    return;
  size_t end = *at + (size_t)n < len ? *at + (size_t)n : len - 1;
  for (size_t i = *at + strlen(sep); i < end; i++)
    if (buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r')
      buf[i] = ' ';
  *at = end;
}

size_t shim_error_format(const struct shim_error *err, char *buf, size_t len) {
  char errnum[16];
  size_t at = 0;
  if (len == 0)
    return 0;
  buf[0] = '\0';
  snprintf(errnum, sizeof errnum, "%d", err->errnum);
  put_field(buf, len, &at, "", err->step);
  put_field(buf, len, &at, "\t", err->path);
  put_field(buf, len, &at, "\t", errnum);
  put_field(buf, len, &at, "\t", err->message);
  for (size_t i = err->n_context; i > 0; i--)
    put_field(buf, len, &at, "\t", err->context[i - 1]);
  return at;
}

void shim_error_parse(struct shim_error *err, char *line) {
  char *fields[4 + SHIM_ERROR_CONTEXT_MAX] = {"setup", "", "0", "unknown error"};
  size_t n = 0;
  while (line && n < sizeof fields / sizeof *fields) {
    fields[n++] = line;
    line = strchr(line, '\t');
    if (line)
      *line++ = '\0';
  }
  snprintf(err->step, sizeof err->step, "%s", fields[0]);
  snprintf(err->path, sizeof err->path, "%s", fields[1]);
  err->errnum = atoi(fields[2]);
  snprintf(err->message, sizeof err->message, "%s", fields[3]);
  /* the line holds the frames outermost first; the struct, innermost first */
  err->n_context = n > 4 ? n - 4 : 0;
  for (size_t i = 0; i < err->n_context; i++)
    snprintf(err->context[i], SHIM_ERROR_CONTEXT_LEN, "%s", fields[n - 1 - i]);
}
