#define _GNU_SOURCE
#include "monitor/logfile.h"

#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "common/utils.h"

size_t log_timestamp(char *buf, size_t len) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                   tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
  return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

#define MAX_IOV 512

void log_write(int fd, enum log_stream stream, const char *data, size_t len) {
  if (fd < 0 || len == 0)
    return;
  /* one time stamp per chunk: the lines of one read(2) arrived together */
  char head_f[64], head_p[64];
  size_t t = log_timestamp(head_f, 40);
  const char *name = stream == LOG_STDERR ? "stderr" : "stdout";
  memcpy(head_p, head_f, t);
  size_t hf = t + (size_t)snprintf(head_f + t, sizeof head_f - t, " %s F ", name);
  size_t hp = t + (size_t)snprintf(head_p + t, sizeof head_p - t, " %s P ", name);

  struct iovec iov[MAX_IOV];
  int n = 0;
  static char nl = '\n';
  const char *p = data, *end = data + len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    int full = eol != NULL;
    const char *stop = full ? eol : end;
    iov[n++] = (struct iovec){.iov_base = full ? head_f : head_p, .iov_len = full ? hf : hp};
    iov[n++] = (struct iovec){.iov_base = (void *)p, .iov_len = (size_t)(stop - p)};
    iov[n++] = (struct iovec){.iov_base = &nl, .iov_len = 1};
    p = full ? eol + 1 : end;
    if (n + 3 > MAX_IOV || p >= end) {
      /* O_APPEND: each writev lands whole at the end, records never interleave */
      size_t total = 0;
      for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
      ssize_t w = writev(fd, iov, n);
      if (w >= 0 && (size_t)w < total) {
        /* a short write (disk full, signal): finish it byte-exact or give up */
        size_t skip = (size_t)w;
        for (int i = 0; i < n; i++) {
          if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
          }
          if (write_all(fd, (char *)iov[i].iov_base + skip, iov[i].iov_len - skip) < 0)
            break;
          skip = 0;
        }
      }
      n = 0;
    }
  }
}
