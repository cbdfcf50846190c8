#define _GNU_SOURCE
#include "setup/cloned.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/utils.h"

/* Every seal that keeps the copy as it is: no write, no resize, no new seal. */
#define SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

static int is_sealed_copy(int fd) {
  int seals = fcntl(fd, F_GET_SEALS);
  return seals >= 0 && (seals & SEALS) == SEALS;
}

int run_from_sealed_copy(char **argv, char **envp, struct shim_error *err) {
  cleanup_close int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (self < 0)
    return shim_fail(err, "self", "/proc/self/exe", errno, NULL);
  if (is_sealed_copy(self))
    return 0;
  struct stat st;
  if (fstat(self, &st) < 0)
    return shim_fail(err, "self", "/proc/self/exe", errno, NULL);
  /* close-on-exec: the copy runs from the mapping execveat makes, and no fd
   * of it is left for the container to inherit */
  cleanup_close int copy = memfd_create("capsa-shim", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (copy < 0)
    return shim_fail(err, "self", "memfd_create", errno, NULL);
  for (off_t off = 0; off < st.st_size;) {
    ssize_t n = sendfile(copy, self, &off, (size_t)(st.st_size - off));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return shim_fail(err, "self", "copy", n < 0 ? errno : EIO, NULL);
  }
  if (fcntl(copy, F_ADD_SEALS, SEALS) < 0)
    return shim_fail(err, "self", "seal", errno, NULL);
  syscall(SYS_execveat, copy, "", argv, envp, AT_EMPTY_PATH);
  return shim_fail(err, "self", "execveat", errno, NULL);
}
