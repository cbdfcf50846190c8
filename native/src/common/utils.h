/* Small fd and buffer helpers shared by every part of the shim. */
#ifndef CAPSA_COMMON_UTILS_H
#define CAPSA_COMMON_UTILS_H

#include <errno.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

static inline void close_p(int *fd) {
  if (*fd >= 0) {
    int saved = errno; /* cleanup must not clobber the errno being reported */
    close(*fd);
    errno = saved;
  }
}
static inline void free_p(void *p) { free(*(void **)p); }

#define cleanup_close __attribute__((cleanup(close_p)))
#define cleanup_free __attribute__((cleanup(free_p)))

/* Returns the fd and leaves -1 behind, to hand an fd out of a cleanup scope. */
static inline int steal_fd(int *fd) {
  int r = *fd;
  *fd = -1;
  return r;
}

/* Writes all of buf, retrying short writes and EINTR. */
int write_all(int fd, const void *buf, size_t len);

/* Reads fd to EOF into a NUL-terminated malloc'ed buffer; returns its length. */
ssize_t read_to_eof(int fd, char **out);

/* "/proc/self/fd/N": how the shim names an fd it has resolved safely, so
 * that mount(2), which only takes paths, acts on exactly that inode. */
#define FD_PATH_LEN 32
void fd_path(int fd, char buf[FD_PATH_LEN]);

#endif
