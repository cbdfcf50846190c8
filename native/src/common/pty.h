/* Terminals. The pty pair is made on the container's own devpts instance
 * (so `tty` inside says /dev/pts/0, as under runc): by the child after
 * pivot_root in run mode, by the shim after setns in exec mode. The child
 * takes the slave as its controlling terminal; the master goes to the shim,
 * across the namespace boundary over a unix socket. */
#ifndef CAPSA_COMMON_PTY_H
#define CAPSA_COMMON_PTY_H

#include "common/error.h"

struct pty {
  int master, slave;
  char name[64]; /* the slave's path in the host's /dev/pts */
};

int pty_open(struct pty *pty, unsigned short rows, unsigned short cols, struct shim_error *err);
int pty_resize(int master, unsigned short rows, unsigned short cols);

/* Passes fd over a unix socket (SCM_RIGHTS). */
int pty_send_fd(int sock, int fd);
/* Receives one fd; returns -1 with errno 0 when the peer closed first. */
int pty_recv_fd(int sock);

/* In the child: new session, slave as controlling terminal and as 0, 1, 2. */
int pty_attach(int slave, struct shim_error *err);

#endif
