/**
 * No handle on host binaries from inside a container (CVE-2019-5736's
 * class). The shim is the host's own binary: while it joins a container
 * (exec) or sets one up (run), and for good as an --init PID 1, its
 * /proc/<pid>/exe is visible to the container's processes. A process in the
 * container that could open it (even O_PATH, to reopen for writing once the
 * shim is gone) could overwrite the host's shim. The shim is non-dumpable
 * from before it enters the container until execve, so the kernel's ptrace
 * access check refuses those opens to a container without CAP_SYS_PTRACE.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, statSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, fileRegistry, ok, testHelper, type TestHelper } from '../helpers/capsa';

const registry = fileRegistry();
const SHIM = path.join(REPO_ROOT, 'native', 'build', 'capsa-shim');
let tools: string;

/**
 * racer DEV INO MAX_SECONDS [once]: scans /proc/<pid>/exe of every process
 * it sees, opening each for reading, for writing and as O_PATH, and reports
 * a descriptor it got that is the host's shim: the same device and inode,
 * or the same bytes as /shim.copy. Stops when /tmp/stop appears (or after
 * one scan with `once`); prints `scans N hits M`.
 */
const RACER = String.raw`#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
static char *copy; static off_t copy_len;
static long copies;
/* the shim's sealed memfd copy (what it runs from): no handle on the host's binary, and no one can write it */
static int sealed_copy(int fd) {
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_WRITE)) return 0;
  copies++;
  return 1;
}
static int same_bytes(int fd, off_t len) {
  if (len != copy_len) return 0;
  char buf[65536]; off_t off = 0;
  while (off < len) { ssize_t n = pread(fd, buf, sizeof buf, off); if (n <= 0) return 0; if (memcmp(buf, copy + off, (size_t)n)) return 0; off += n; }
  return 1;
}
int main(int argc, char **argv) {
  unsigned long long dev = strtoull(argv[1], 0, 10), ino = strtoull(argv[2], 0, 10);
  time_t deadline = time(0) + atoi(argv[3]);
  int once = argc > 4;
  int cfd = open("/shim.copy", O_RDONLY); struct stat cs; fstat(cfd, &cs);
  copy_len = cs.st_size; copy = malloc((size_t)copy_len);
  if (pread(cfd, copy, (size_t)copy_len, 0) != copy_len) { printf("cannot read /shim.copy\n"); return 1; }
  static const struct { int flags; const char *name; } modes[] = {{O_RDONLY, "read"}, {O_WRONLY, "write"}, {O_PATH, "path"}};
  long scans = 0, hits = 0, opened = 0; char self[32]; snprintf(self, sizeof self, "%d", getpid());
  for (;;) {
    DIR *d = opendir("/proc"); struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9' || !strcmp(e->d_name, self)) continue;
      char p[64]; snprintf(p, sizeof p, "/proc/%s/exe", e->d_name);
      for (int m = 0; m < 3; m++) {
        int fd = open(p, modes[m].flags | O_CLOEXEC);
        if (fd < 0) continue;
        opened++;
        struct stat st;
        int hit = fstat(fd, &st) == 0 && ((st.st_dev == dev && st.st_ino == ino) || (modes[m].flags == O_RDONLY && same_bytes(fd, st.st_size) && !sealed_copy(fd)));
        if (!hit && modes[m].flags == O_PATH) {
          char q[64]; snprintf(q, sizeof q, "/proc/self/fd/%d", fd);
          int shim = 0, r = open(q, O_RDONLY | O_CLOEXEC);
          if (r >= 0) { shim = same_bytes(r, st.st_size); hit = shim && !sealed_copy(r); close(r); }
          /* CVE-2019-5736's next step: reopen the handle for writing (the same first byte back: changes nothing) */
          int w = shim ? open(q, O_WRONLY | O_CLOEXEC) : -1;
          if (w >= 0) { if (pwrite(w, copy, 1, 0) == 1) { hit = 1; printf("written pid %s\n", e->d_name); } close(w); }
        }
        if (hit) { hits++; printf("hit pid %s %s\n", e->d_name, modes[m].name); fflush(stdout); }
        close(fd);
      }
    }
    closedir(d); scans++;
    if (once || access("/tmp/stop", F_OK) == 0 || time(0) > deadline) break;
  }
  printf("scans %ld hits %ld opened %ld copies %ld\n", scans, hits, opened, copies);
  return 0;
}
`;

before(async () => {
  tools = mkdtempSync(path.join(tmpdir(), 'capsa-exe-'));
  await fs.writeFile(path.join(tools, 'racer.c'), RACER);
  execFileSync('cc', ['-static', '-O2', '-o', path.join(tools, 'racer'), path.join(tools, 'racer.c')]);
  copyFileSync(SHIM, path.join(tools, 'shim.copy'));
});
after(async () => fs.rm(tools, { recursive: true, force: true }));

function racerArgs(): string[] {
  return ['-v', `${tools}/racer:/racer:ro`, '-v', `${tools}/shim.copy:/shim.copy:ro`];
}

function shimId(): [string, string] {
  const st = statSync(SHIM, { bigint: true });
  return [String(st.dev), String(st.ino)];
}

/** The helper that started the test still runs and answers. */
async function assertSameHelper(h: TestHelper): Promise<void> {
  assert.equal(h.process.exitCode, null, 'the helper still runs');
  assert.match(await ok(h, ['version']), new RegExp(`pid ${h.process.pid}\\b`), 'the same helper answers');
}

test('a process in the container racing 200 capsa exec calls never gets a descriptor of the host shim from /proc/<pid>/exe', { timeout: 180_000 }, async (t) => {
  const h = await testHelper(t, registry.url);
  const shimBefore = await fs.readFile(SHIM);
  await ok(h, ['run', '-d', '--name', 'racer', ...racerArgs(), 'busybox', '/racer', ...shimId(), '120']);
  // four at a time: the exec shims overlap, more windows for the racer to find
  for (let round = 0; round < 50; round++) {
    const calls = await Promise.all(Array.from({ length: 4 }, () => h.cli(['exec', 'racer', 'true'])));
    for (const c of calls) assert.equal(c.code, 0, c.stderr);
  }
  await ok(h, ['exec', 'racer', 'touch', '/tmp/stop']);
  assert.equal((await ok(h, ['wait', 'racer'])).trim(), '0');
  const out = await ok(h, ['logs', 'racer']);
  const m = /^scans (\d+) hits (\d+) opened (\d+) copies (\d+)$/m.exec(out);
  assert.ok(m, `the racer reported: ${out}`);
  assert.ok(Number(m[1]) > 100, `the racer scanned /proc while the execs ran: ${out}`);
  assert.doesNotMatch(out, /^hit /m, `the container got a descriptor of the host's shim:\n${out}`);
  assert.equal(m[2], '0');
  assert.deepEqual(await fs.readFile(SHIM), shimBefore, 'the host shim is unchanged');
  await assertSameHelper(h);
});

test('with CAP_SYS_PTRACE (which passes the dumpable check) a racing container reaches only the sealed copy the shim runs from, never the host binary, and cannot write it', { timeout: 180_000 }, async (t) => {
  const h = await testHelper(t, registry.url);
  const shimBefore = await fs.readFile(SHIM);
  await ok(h, ['run', '-d', '--name', 'racer', '--cap-add', 'SYS_PTRACE', ...racerArgs(), 'busybox', '/racer', ...shimId(), '120']);
  for (let round = 0; round < 50; round++) {
    const calls = await Promise.all(Array.from({ length: 4 }, () => h.cli(['exec', 'racer', 'true'])));
    for (const c of calls) assert.equal(c.code, 0, c.stderr);
  }
  await ok(h, ['exec', 'racer', 'touch', '/tmp/stop']);
  assert.equal((await ok(h, ['wait', 'racer'])).trim(), '0');
  const out = await ok(h, ['logs', 'racer']);
  const m = /^scans (\d+) hits (\d+) opened (\d+) copies (\d+)$/m.exec(out);
  assert.ok(m, `the racer reported: ${out}`);
  assert.doesNotMatch(out, /^(hit|written) /m, `the container got a descriptor of the host's shim:\n${out}`);
  assert.equal(m[2], '0');
  assert.ok(Number(m[4]) > 0, `the racer reached the shims (as their sealed copies): ${out}`);
  assert.deepEqual(await fs.readFile(SHIM), shimBefore, 'the host shim is unchanged');
  await assertSameHelper(h);
});

test("an --init container's PID 1, which is the shim, gives no handle on the host binary through /proc/1/exe (read, write or O_PATH)", async (t) => {
  const h = await testHelper(t, registry.url);
  const r = await h.cli(['run', '--rm', '--init', ...racerArgs(), 'busybox', '/racer', ...shimId(), '10', 'once']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^scans 1 hits 0 /m, `the container got a descriptor of the host's shim:\n${r.stdout}`);
  // the shim as root inside (tried by pid): what an exec's process sees of PID 1
  await ok(h, ['run', '-d', '--init', '--name', 'inited', ...racerArgs(), 'busybox', 'sleep', '600']);
  const e = await h.cli(['exec', 'inited', '/racer', ...shimId(), '10', 'once']);
  assert.equal(e.code, 0, e.stderr);
  assert.match(e.stdout, /^scans 1 hits 0 /m, `an exec'd process got a descriptor of the host's shim:\n${e.stdout}`);
  await assertSameHelper(h);
});

test('the container processes that the shim execs are dumpable again: /proc/self is theirs, for root and for another user', async (t) => {
  const h = await testHelper(t, registry.url);
  await ok(h, ['run', '-d', '--name', 'plain', 'busybox', 'sleep', '600']);
  for (const user of ['0', '1000']) {
    // a non-dumpable process's /proc/self files belong to root, and environ (0400) would be unreadable to uid 1000
    const r = await h.cli(['exec', '-u', user, '-e', 'MARK=here', 'plain', 'sh', '-c', 'stat -c %u /proc/self/status; grep -q MARK=here /proc/self/environ && echo MARK=here; readlink /proc/self/exe; ls /proc/self/fd >/dev/null && echo fds']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${user}\nMARK=here\n/bin/busybox\nfds\n`, `as uid ${user}`);
  }
  const run = await h.cli(['run', '--rm', 'busybox', 'sh', '-c', 'stat -c %u /proc/1/status; readlink /proc/1/exe']);
  assert.equal(run.stdout, '0\n/bin/busybox\n', run.stderr);
  await assertSameHelper(h);
});
