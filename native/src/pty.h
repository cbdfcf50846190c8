/* Terminals: the pty pair is made in the host before cloning; the child
 * takes the slave as its controlling terminal, the shim keeps the master. */
#ifndef CAPSA_PTY_H
#define CAPSA_PTY_H

#include "error.h"

struct pty {
  int master, slave;
  char name[64]; /* the slave's path in the host's /dev/pts */
};

int pty_open(struct pty *pty, unsigned short rows, unsigned short cols, struct shim_error *err);
int pty_resize(int master, unsigned short rows, unsigned short cols);

/* In the child: new session, slave as controlling terminal and as 0, 1, 2. */
int pty_attach(int slave, struct shim_error *err);

#endif
