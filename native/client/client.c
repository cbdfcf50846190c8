/*
 * capsa: the command users run (bin/capsa execs it).
 *
 * Node needs about 100 ms just to start on a small machine, so the helper
 * keeps a warm CLI process started and waiting (server/warmclipool.ts,
 * server/cli/warm/process.ts). This client connects to it, hands over its command
 * line, environment, working directory, umask and its stdin, stdout and
 * stderr (SCM_RIGHTS), forwards signals to it while it runs and exits with
 * its status; a user other than root talks to its own warm processes, which
 * run as that user. When no warm CLI answers, it runs the Node CLI
 * (`node bin/capsa.js`) instead, which also starts the helper when none runs.
 *
 * The messages are described in server/cli/warm/wire.ts. Plain libc, one
 * file, no state beyond what a signal handler needs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/capsa/capsa.sock"
#define WARM_VERSION 1
#define HEADER_SIZE 24
#define MAX_REQUEST (256 * 1024)
/* Waiting for a warm process to accept: a replacement may still be loading. Nothing is sent before the hello, so giving up is safe. */
#define HELLO_TIMEOUT_MS 5000
#define EXIT_CAPSA 125

extern char **environ;

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH };

/* Shared with the signal handler. */
static volatile sig_atomic_t cli_pid;
static volatile sig_atomic_t cli_pidfd = -1;
static volatile sig_atomic_t last_signal;

static int have_termios;
static struct termios saved_termios;
static int saved_flags[3];

static void
forward_signal (int sig)
{
  int saved_errno = errno;
  last_signal = sig;
  if (cli_pid > 0)
    {
#ifdef SYS_pidfd_send_signal
      if (cli_pidfd >= 0 && syscall (SYS_pidfd_send_signal, cli_pidfd, sig, NULL, 0) == 0)
        {
          errno = saved_errno;
          return;
        }
#endif
      kill (cli_pid, sig);
    }
  errno = saved_errno;
}

/* Descriptors 0-2 exist, so that they can be sent (a closed one becomes /dev/null). */
static void
ensure_stdio (void)
{
  for (int fd = 0; fd < 3; fd++)
    if (fcntl (fd, F_GETFD) < 0 && errno == EBADF)
      {
        int n = open ("/dev/null", O_RDWR);
        if (n >= 0 && n != fd)
          close (n);
      }
}

/* What the warm CLI may change and a Node CLI would have put back: the terminal's mode (raw for -it) and O_NONBLOCK. */
static void
save_stdio_state (void)
{
  if (isatty (0) && tcgetattr (0, &saved_termios) == 0)
    have_termios = 1;
  for (int fd = 0; fd < 3; fd++)
    saved_flags[fd] = fcntl (fd, F_GETFL);
}

static void
restore_stdio_state (void)
{
  struct termios now;
  /* Only when changed: tcsetattr from a background job would stop it (SIGTTOU). */
  if (have_termios && tcgetattr (0, &now) == 0
      && (now.c_iflag != saved_termios.c_iflag || now.c_oflag != saved_termios.c_oflag
          || now.c_cflag != saved_termios.c_cflag || now.c_lflag != saved_termios.c_lflag
          || memcmp (now.c_cc, saved_termios.c_cc, sizeof now.c_cc) != 0))
    tcsetattr (0, TCSANOW, &saved_termios);
  for (int fd = 0; fd < 3; fd++)
    if (saved_flags[fd] >= 0 && fcntl (fd, F_GETFL) != saved_flags[fd])
      fcntl (fd, F_SETFL, saved_flags[fd]);
}

static void __attribute__ ((noreturn))
finish (int status)
{
  restore_stdio_state ();
  exit (status & 0xff);
}

/* The Node CLI, found from this binary: bin/capsa.js beside a copy in bin/,
   or from native/build/ (the build's output) the repository's bin/capsa.js,
   else the packaged extension's bundle, dist/cli.js. This mirrors the install
   layout that server/util/layout.ts describes: a change there is made here. */
static void __attribute__ ((noreturn))
run_node_cli (char **argv)
{
  char exe[PATH_MAX], script[PATH_MAX + 32];
  ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
  const char *failure = "cannot find bin/capsa.js";
  if (n > 0)
    {
      exe[n] = '\0';
      char *slash = strrchr (exe, '/');
      if (slash)
        *slash = '\0';
      static const char *const candidates[] = { "%s/capsa.js", "%s/../../bin/capsa.js", "%s/../../dist/cli.js" };
      for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++)
        {
          snprintf (script, sizeof script, candidates[i], exe);
          if (access (script, R_OK) == 0)
            break;
        }
      if (access (script, R_OK) == 0)
        {
          int argc = 0;
          while (argv[argc])
            argc++;
          char **args = calloc ((size_t) argc + 3, sizeof *args);
          if (args)
            {
              /* "--" first: Node 20 reads an --env-file anywhere in its
                 argv, the script's own arguments included (capsa run
                 --env-file F would be Node's), unless "--" ends its own. */
              args[0] = (char *) "node";
              args[1] = (char *) "--";
              args[2] = script;
              for (int i = 1; i < argc; i++)
                args[i + 2] = argv[i];
              execvp ("node", args);
              failure = "cannot run node";
            }
        }
    }
  fprintf (stderr, "capsa: %s: %s (the warm CLI is not running, and the Node CLI is needed instead)\n", failure, strerror (errno));
  exit (EXIT_CAPSA);
}

/* server/config.ts warmCliSocketPath: capsa.sock -> capsa-cli.sock, any other name + ".cli";
   for a user other than root, warmCliUserSocketPath: capsa.sock -> capsa-cli.d/UID.sock, any
   other name + ".cli.d/UID.sock". Root's processes serve root alone: a user's are the user's. */
static int
warm_socket_path (const char *socket_path, uid_t uid, char *out, size_t size)
{
  size_t len = strlen (socket_path);
  int stem = (int) (len >= 5 && strcmp (socket_path + len - 5, ".sock") == 0 ? len - 5 : len);
  const char *tail = stem < (int) len ? "-cli" : ".cli";
  int n;
  if (uid == 0)
    n = snprintf (out, size, "%.*s%s%s", stem, socket_path, tail, stem < (int) len ? ".sock" : "");
  else
    n = snprintf (out, size, "%.*s%s.d/%u.sock", stem, socket_path, tail, (unsigned) uid);
  return n > 0 && (size_t) n < size ? 0 : -1;
}

static int
connect_warm (const char *path)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (strlen (path) >= sizeof addr.sun_path)
    return -1;
  strcpy (addr.sun_path, path);
  int fd = socket (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (connect (fd, (struct sockaddr *) &addr, sizeof addr) < 0)
    {
      close (fd);
      return -1;
    }
  return fd;
}

static void
put_u32 (char *p, uint32_t v)
{
  p[0] = (char) (v & 0xff);
  p[1] = (char) ((v >> 8) & 0xff);
  p[2] = (char) ((v >> 16) & 0xff);
  p[3] = (char) ((v >> 24) & 0xff);
}

static uint32_t
get_u32 (const char *p)
{
  const unsigned char *u = (const unsigned char *) p;
  return (uint32_t) u[0] | (uint32_t) u[1] << 8 | (uint32_t) u[2] << 16 | (uint32_t) u[3] << 24;
}

/* "CPSA" version argc envc umask 0, then argv[1..], environ and cwd, each NUL-terminated. */
static char *
build_request (int argc, char **argv, const char *cwd, size_t *size)
{
  size_t envc = 0, total = HEADER_SIZE + strlen (cwd) + 1;
  for (int i = 1; i < argc; i++)
    total += strlen (argv[i]) + 1;
  for (char **e = environ; *e; e++, envc++)
    total += strlen (*e) + 1;
  *size = total;
  if (total > MAX_REQUEST)
    return NULL;
  char *buf = malloc (total), *p = buf + HEADER_SIZE;
  if (!buf)
    return NULL;
  mode_t mask = umask (0);
  umask (mask);
  memcpy (buf, "CPSA", 4);
  put_u32 (buf + 4, WARM_VERSION);
  put_u32 (buf + 8, (uint32_t) (argc - 1));
  put_u32 (buf + 12, (uint32_t) envc);
  put_u32 (buf + 16, (uint32_t) mask);
  put_u32 (buf + 20, 0);
  for (int i = 1; i < argc; i++)
    p = stpcpy (p, argv[i]) + 1;
  for (char **e = environ; *e; e++)
    p = stpcpy (p, *e) + 1;
  stpcpy (p, cwd);
  return buf;
}

static int
send_request (int fd, char *buf, size_t size)
{
  int fds[3] = { 0, 1, 2 };
  union
  {
    char buf[CMSG_SPACE (sizeof fds)];
    struct cmsghdr align;
  } control;
  struct iovec iov = { .iov_base = buf, .iov_len = size };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
  memset (control.buf, 0, sizeof control.buf);
  struct cmsghdr *cmsg = CMSG_FIRSTHDR (&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN (sizeof fds);
  memcpy (CMSG_DATA (cmsg), fds, sizeof fds);
  /* A SOCK_SEQPACKET message must fit the send buffer whole (unix(7)). */
  int sndbuf = (int) size + 4096;
  if (size > 64 * 1024)
    setsockopt (fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  ssize_t n;
  do
    n = sendmsg (fd, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t) size ? 0 : -1;
}

/* One reply; 0 when the warm CLI closed the connection. Retries on signals. */
static ssize_t
receive (int fd, char *buf, size_t size)
{
  ssize_t n;
  do
    n = recv (fd, buf, size, 0);
  while (n < 0 && errno == EINTR);
  return n;
}

/* Whether the hello came: 1 yes (and the same version), 0 no warm CLI to talk to. */
static int
wait_hello (int fd)
{
  struct pollfd p = { .fd = fd, .events = POLLIN };
  int r;
  do
    r = poll (&p, 1, HELLO_TIMEOUT_MS);
  while (r < 0 && errno == EINTR);
  if (r <= 0)
    return 0;
  char buf[64];
  ssize_t n = receive (fd, buf, sizeof buf);
  return n == 5 && buf[0] == 'H' && get_u32 (buf + 1) == WARM_VERSION;
}

static void
set_cli_pid (pid_t pid)
{
  sigset_t block, old;
  sigemptyset (&block);
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
    sigaddset (&block, forwarded[i]);
  sigprocmask (SIG_BLOCK, &block, &old);
#ifdef SYS_pidfd_open
  cli_pidfd = (sig_atomic_t) syscall (SYS_pidfd_open, pid, 0);
#endif
  cli_pid = pid;
  int pending = last_signal;
  sigprocmask (SIG_SETMASK, &old, NULL);
  /* A signal that came before the pid goes now. */
  if (pending)
    forward_signal (pending);
}

/* A background job of the terminal on stdin. */
static int
in_background (void)
{
  pid_t fg = isatty (0) ? tcgetpgrp (0) : -1;
  return fg > 0 && fg != getpgrp ();
}

int
main (int argc, char **argv)
{
  ensure_stdio ();
  /* The terminal stops a background job that takes it (SIGTTOU, SIGTTIN)
     until `fg`. A warm process is in a session of its own, which the
     terminal would not stop: a background call runs the Node CLI. */
  if (in_background ())
    run_node_cli (argv);
  const char *helper = getenv ("CAPSA_SOCKET");
  char path[sizeof ((struct sockaddr_un *) 0)->sun_path];
  if (!helper || !*helper)
    helper = DEFAULT_SOCKET;
  int fd = warm_socket_path (helper, getuid (), path, sizeof path) == 0 ? connect_warm (path) : -1;
  if (fd < 0)
    run_node_cli (argv);

  struct ucred peer;
  socklen_t len = sizeof peer;
  if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) < 0 || (peer.uid != 0 && peer.uid != getuid ()))
    {
      fprintf (stderr, "capsa: %s is not served by root or by you: refusing to hand it this command\n", path);
      return EXIT_CAPSA;
    }
  if (!wait_hello (fd))
    {
      close (fd);
      run_node_cli (argv);
    }

  char *cwd = getcwd (NULL, 0);
  size_t size = 0;
  char *request = cwd ? build_request (argc, argv, cwd, &size) : NULL;
  if (!request)
    {
      if (size > MAX_REQUEST)
        fprintf (stderr, "capsa: the command line and environment take %zu bytes, more than the warm CLI's limit of %d: running the slower Node CLI\n", size, MAX_REQUEST);
      close (fd);
      run_node_cli (argv);
    }
  free (cwd);

  save_stdio_state ();
  struct sigaction sa = { .sa_handler = forward_signal };
  sigemptyset (&sa.sa_mask);
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
    sigaddset (&sa.sa_mask, forwarded[i]);
  /* No SA_RESTART: a blocked recv returns EINTR and the loop goes on. */
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
    sigaction (forwarded[i], &sa, NULL);

  if (send_request (fd, request, size) < 0)
    {
      /* The warm process went away before reading it: nothing ran. */
      close (fd);
      for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
        signal (forwarded[i], SIG_DFL);
      if (last_signal)
        finish (128 + last_signal);
      run_node_cli (argv);
    }
  free (request);

  char buf[4096];
  for (;;)
    {
      ssize_t n = receive (fd, buf, sizeof buf - 1);
      if (n < 0)
        {
          fprintf (stderr, "capsa: lost the warm CLI process: %s\n", strerror (errno));
          finish (last_signal ? 128 + last_signal : EXIT_CAPSA);
        }
      if (n == 0)
        {
          if (last_signal)
            finish (128 + last_signal);
          fprintf (stderr, "capsa: the CLI process ended without an exit status\n");
          finish (EXIT_CAPSA);
        }
      buf[n] = '\0';
      if (buf[0] == 'P' && n == 5)
        set_cli_pid ((pid_t) get_u32 (buf + 1));
      else if (buf[0] == 'S' && n == 5)
        finish ((int) get_u32 (buf + 1));
      else if (buf[0] == 'E')
        {
          fprintf (stderr, "capsa: %s\n", buf + 1);
          finish (EXIT_CAPSA);
        }
      else if (buf[0] == 'F' && !cli_pid)
        {
          /* Not the helper our configuration names: nothing ran. */
          close (fd);
          if (last_signal)
            finish (128 + last_signal);
          for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
            signal (forwarded[i], SIG_DFL);
          run_node_cli (argv);
        }
    }
}
