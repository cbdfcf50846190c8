/*
 * The floor for starting a container: clone into new mount, PID, UTS, IPC
 * and network namespaces, chroot into the rootfs and exec `true` from its
 * busybox. No mounts, no cgroups, no pivot_root: what any runtime pays at
 * least.
 *
 *   floor ROOTFS [ARGV...]   (default argv: /bin/busybox true)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *rootfs;
static char **child_argv;
static char *default_argv[] = { "/bin/busybox", "true", NULL };

static int
child (void *arg)
{
  (void) arg;
  if (chroot (rootfs) < 0 || chdir ("/") < 0)
    {
      fprintf (stderr, "floor: chroot %s: %s\n", rootfs, strerror (errno));
      return 127;
    }
  execv (child_argv[0], child_argv);
  fprintf (stderr, "floor: exec %s: %s\n", child_argv[0], strerror (errno));
  return 127;
}

int
main (int argc, char **argv)
{
  static char stack[64 * 1024];
  int status;
  pid_t pid;

  if (argc < 2)
    {
      fprintf (stderr, "usage: floor ROOTFS [ARGV...]\n");
      return 2;
    }
  rootfs = argv[1];
  child_argv = argc > 2 ? argv + 2 : default_argv;

  pid = clone (child, stack + sizeof stack,
               CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | SIGCHLD, NULL);
  if (pid < 0)
    {
      fprintf (stderr, "floor: clone: %s\n", strerror (errno));
      return 1;
    }
  if (waitpid (pid, &status, 0) < 0)
    {
      fprintf (stderr, "floor: waitpid: %s\n", strerror (errno));
      return 1;
    }
  return WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status);
}
