/* The attach socket, <container dir>/attach.sock (root only): where a helper
 * (the one that started the container, or one started later) receives the
 * container's output live and sends input, terminal sizes and signals.
 *
 * Frames in both directions: 1 byte type, 4 bytes length (big endian), payload.
 *   monitor -> client  'o' stdout bytes   'e' stderr bytes
 *                      'x' the container ended (payload: the JSON of exit.json)
 *   client -> monitor  'i' stdin bytes    'c' close stdin
 *                      'r' "ROWS COLS"    's' "SIGNAL"
 * Unknown types are skipped, so either side may be newer. */
#ifndef CAPSA_MONITOR_ATTACH_H
#define CAPSA_MONITOR_ATTACH_H

#include <stddef.h>

#include "common/error.h"

#define ATTACH_MAX_CLIENTS 16
/* largest client frame; the helper sends input in smaller pieces */
#define ATTACH_FRAME_MAX 16384

struct attach_client {
  int fd; /* -1: free slot */
  char *rbuf;
  size_t rlen;
  char *pending; /* output the socket did not take yet */
  size_t pending_len, pending_off;
};

struct attach_server {
  int listen_fd;
  int dirfd;
  const char *name; /* the socket's name in dirfd */
  struct attach_client clients[ATTACH_MAX_CLIENTS];
};

typedef void (*attach_frame_fn)(void *ctx, char type, const char *data, size_t len);

void attach_init(struct attach_server *s);
/* Binds and listens on dirfd/name with mode 0600. */
int attach_listen(struct attach_server *s, int dirfd, const char *name, struct shim_error *err);
/* Adds an already connected socket as a client (the helper's fd 5). */
int attach_add(struct attach_server *s, int fd);
void attach_accept(struct attach_server *s);
/* Sends one frame to every client; what a socket cannot take now stays pending. */
void attach_broadcast(struct attach_server *s, char type, const char *data, size_t len);
/* Whether any client has output pending (the monitor then stops reading the
 * container's output: a slow reader slows the container, nothing is lost). */
int attach_has_pending(const struct attach_server *s);
void attach_flush(struct attach_client *c);
/* Reads what the client sent and calls fn for each whole frame. */
void attach_read(struct attach_client *c, attach_frame_fn fn, void *ctx);
void attach_drop(struct attach_client *c);
/* Stops listening and removes the socket file. */
void attach_unlisten(struct attach_server *s);
/* Sends the last frame to every client (waiting a bounded time for slow ones) and closes them. */
void attach_finish(struct attach_server *s, char type, const char *data, size_t len);
/* Every fd of the server (the listening socket, the clients), for the
 * container's process to close: fills fds (room for max), returns how many. */
size_t attach_fds(const struct attach_server *s, int *fds, size_t max);

#endif
