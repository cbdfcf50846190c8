#define _GNU_SOURCE
#include "common/utils.h"

#include <stdio.h>
#include <string.h>

int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

ssize_t read_to_eof(int fd, char **out) {
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  if (!buf)
    return -1;
  for (;;) {
    if (len + 1 >= cap) {
      char *grown = realloc(buf, cap *= 2);
      if (!grown) {
        free(buf);
        return -1;
      }
      buf = grown;
    }
    ssize_t n = read(fd, buf + len, cap - len - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int saved = errno;
      free(buf);
      errno = saved;
      return -1;
    }
    if (n == 0)
      break;
    len += (size_t)n;
  }
  buf[len] = '\0';
  *out = buf;
  return (ssize_t)len;
}

void fd_path(int fd, char buf[FD_PATH_LEN]) { snprintf(buf, FD_PATH_LEN, "/proc/self/fd/%d", fd); }
