#define _GNU_SOURCE
#include "setup/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include "common/utils.h"

int join_netns(const char *path, struct shim_error *err) {
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return shim_fail(err, "netns", path, errno, NULL);
  /* CLONE_NEWNET as nstype makes the kernel refuse a file that is not a
   * network namespace (EINVAL) instead of joining whatever it names */
  if (setns(fd, CLONE_NEWNET) < 0)
    return shim_fail(err, "netns", path, errno, NULL);
  return 0;
}
