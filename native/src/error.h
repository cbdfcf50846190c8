/* Setup errors, reported to the helper as one `error` status line. */
#ifndef CAPSA_ERROR_H
#define CAPSA_ERROR_H

#include <limits.h>
#include <stddef.h>

/* Which setup step failed, on which path (inside the container when the
 * step works there), with which errno. The helper turns this into a typed
 * error, so every field must be precise rather than pretty. */
struct shim_error {
  char step[32];
  char path[PATH_MAX];
  int errnum;
  char message[512];
};

/* Fills err and returns -1, so failure paths read `return shim_fail(...)`.
 * A NULL fmt makes the message the lower-cased strerror(errnum). */
int shim_fail(struct shim_error *err, const char *step, const char *path,
              int errnum, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Lower-cased strerror, the style of the helper's messages. */
const char *shim_strerror(int errnum, char *buf, size_t len);

/* Serialises err as `step\tpath\terrno\tmessage` (no newline), replacing
 * tabs and newlines inside fields so the line stays parseable. */
size_t shim_error_format(const struct shim_error *err, char *buf, size_t len);

/* Inverse of shim_error_format, used to carry a child's error to the parent. */
void shim_error_parse(struct shim_error *err, char *line);

#endif
