/* Errors of the shim, crun style: a failing call returns -1 and fills a
 * struct shim_error with the step, the path and the errno; each layer it
 * passes through may add what it was doing (shim_error_wrap). The helper
 * receives all of it as one `error` status line (status.h). */
#ifndef CAPSA_COMMON_ERROR_H
#define CAPSA_COMMON_ERROR_H

#include <limits.h>
#include <stddef.h>

#define SHIM_ERROR_CONTEXT_MAX 8
#define SHIM_ERROR_CONTEXT_LEN 160
/* room for every field of a formatted error, separators included */
#define SHIM_ERROR_LINE_MAX (PATH_MAX + 1024 + SHIM_ERROR_CONTEXT_MAX * SHIM_ERROR_CONTEXT_LEN)

/* Which step failed, on which path (inside the container when the step
 * works there), with which errno. The helper turns this into a typed error,
 * so every field must be precise rather than pretty. */
struct shim_error {
  char step[32];
  char path[PATH_MAX];
  int errnum;
  char message[512];
  /* "while …" frames, innermost first: what each caller was doing */
  size_t n_context;
  char context[SHIM_ERROR_CONTEXT_MAX][SHIM_ERROR_CONTEXT_LEN];
};

/* Fills err and returns -1, so failure paths read `return shim_fail(...)`.
 * A NULL fmt makes the message the lower-cased strerror(errnum). */
int shim_fail(struct shim_error *err, const char *step, const char *path, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Adds one frame of context ("while mounting /proc") to an error a callee
 * filled, keeping its step, path, errno and message; returns -1 as
 * shim_fail does. Frames beyond SHIM_ERROR_CONTEXT_MAX are dropped: the
 * innermost ones say the most. */
int shim_error_wrap(struct shim_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Whether err holds a failure. */
static inline int shim_error_set(const struct shim_error *err) { return err->step[0] != '\0'; }

/* Lower-cased strerror, the style of the helper's messages. */
const char *shim_strerror(int errnum, char *buf, size_t len);

/* Serialises err as `step\tpath\terrno\tmessage` followed by one
 * `\tcontext` field per frame, outermost first (no newline), replacing tabs
 * and line breaks inside fields so the line stays parseable. */
size_t shim_error_format(const struct shim_error *err, char *buf, size_t len);

/* Inverse of shim_error_format, used to carry a child's error to the parent. */
void shim_error_parse(struct shim_error *err, char *line);

#endif
