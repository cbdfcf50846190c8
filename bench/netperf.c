/*
 * TCP throughput and connection rate, for bench/run-network.sh. Static, so
 * the same binary runs on the host and bind-mounted into any container.
 *
 *   netperf sink PORT            accept forever; read each connection to EOF, then close
 *   netperf send HOST PORT MIB   one stream of MIB MiB; prints MiB/s (to the peer's EOF)
 *   netperf conn HOST PORT N     N connections one after another (connect, close,
 *                                wait for the peer's close); prints connections/s
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dial(const char *host, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) return fprintf(stderr, "bad address %s\n", host), -1;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0 || connect(s, (void *)&a, sizeof a) < 0) return perror("connect"), close(s), -1;
  return s;
}

static char buf[1 << 17];

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 3 && !strcmp(argv[1], "sink")) {
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (void *)&a, sizeof a) || listen(l, 128)) return perror("listen"), 1;
    for (;;) {
      int c = accept(l, NULL, NULL);
      if (c < 0) continue;
      while (read(c, buf, sizeof buf) > 0) {}
      close(c);
    }
  }
  if (argc == 5 && !strcmp(argv[1], "send")) {
    long long left = atoll(argv[4]) << 20;
    double t0 = now();
    int s = dial(argv[2], atoi(argv[3]));
    if (s < 0) return 1;
    while (left > 0) {
      ssize_t n = write(s, buf, left < (long long)sizeof buf ? (size_t)left : sizeof buf);
      if (n <= 0) return perror("write"), 1;
      left -= n;
    }
    shutdown(s, SHUT_WR);
    while (read(s, buf, sizeof buf) > 0) {}
    printf("%.1f\n", atoll(argv[4]) / (now() - t0));
    return 0;
  }
  if (argc == 5 && !strcmp(argv[1], "conn")) {
    int n = atoi(argv[4]);
    double t0 = now();
    for (int i = 0; i < n; i++) {
      int s = dial(argv[2], atoi(argv[3]));
      if (s < 0) return 1;
      shutdown(s, SHUT_WR);
      while (read(s, buf, sizeof buf) > 0) {}
      close(s);
    }
    printf("%.0f\n", n / (now() - t0));
    return 0;
  }
  fprintf(stderr, "usage: netperf sink PORT | send HOST PORT MIB | conn HOST PORT N\n");
  return 2;
}
