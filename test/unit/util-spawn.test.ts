import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import type * as net from 'node:net';
import { spawnProgram } from '../../server/util/spawn';
import { launchMonitor } from '../../server/runtime/monitor';

function readAll(s: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('close', () => resolve(out));
  });
}

test('a spawned program gets a socket on each extra fd, both ways', async () => {
  // cat reads fd 3 and writes to fd 4; our ends are sockets[0] and sockets[1]
  const p = spawnProgram('/bin/sh', ['-c', 'cat <&3 >&4'], { fds: ['socket', 'socket'], setsid: false });
  const out = readAll(p.sockets[1]!);
  p.sockets[0]!.end('through the shim fds\n');
  assert.equal(await out, 'through the shim fds\n');
  assert.deepEqual(await p.exited, { code: 0, signal: null });
});

test('the exit status and the killing signal are reported', async () => {
  assert.deepEqual(await spawnProgram('/bin/sh', ['-c', 'exit 7'], { fds: [], setsid: false }).exited, { code: 7, signal: null });
  assert.deepEqual(await spawnProgram('/bin/sh', ['-c', 'kill -9 $$'], { fds: [], setsid: false }).exited, { code: null, signal: 9 });
});

test('the child starts with default signal dispositions, an empty mask and /dev/null on 0-2', async () => {
  // Looked at from outside while it sleeps; posix_spawn returns once the child has exec'd, so no wait
  // is needed, and the sleep is long so that a slow machine cannot see it gone: it is killed after the look.
  const p = spawnProgram('/bin/sleep', ['60'], { fds: [], setsid: false });
  let status: string;
  let fds: string[];
  try {
    status = readFileSync(`/proc/${p.pid}/status`, 'utf8');
    fds = [0, 1, 2].map((fd) => readlinkSync(`/proc/${p.pid}/fd/${fd}`));
  } finally {
    process.kill(p.pid, 'SIGKILL');
    await p.exited;
  }
  assert.match(status, /^SigBlk:\s+0+$/m);
  // none of signals 1-31 ignored (Node ignores SIGPIPE, bit 12); glibc's posix_spawn leaves
  // its internal 32 and 33 ignored, which the shim resets itself (native/src/common/signals.c)
  const ignored = BigInt(`0x${/^SigIgn:\s+([0-9a-f]+)$/m.exec(status)![1]}`);
  assert.equal(ignored & 0x7fffffffn, 0n, `ignored signals: ${ignored.toString(16)}`);
  assert.deepEqual(fds, ['/dev/null', '/dev/null', '/dev/null']);
});

test('setsid puts the child in a session of its own; without it, it shares ours', async () => {
  const sid = async (setsid: boolean) => {
    const p = spawnProgram('/bin/sh', ['-c', 'cut -d" " -f6 /proc/self/stat >&3'], { fds: ['socket'], setsid });
    const out = await readAll(p.sockets[0]!);
    await p.exited;
    return { sid: Number(out.trim()), pid: p.pid };
  };
  const own = await sid(true);
  assert.equal(own.sid, own.pid);
  const shared = await sid(false);
  assert.notEqual(shared.sid, shared.pid);
});

test('a program that does not exist is a clear error and leaks no fd', async () => {
  const before = readdirSync('/proc/self/fd').length;
  assert.throws(() => spawnProgram('/nonexistent/capsa-shim', [], { fds: ['socket', 'socket', 'socket'], setsid: true }), /cannot start \/nonexistent\/capsa-shim: no such file \(ENOENT\)/);
  assert.equal(readdirSync('/proc/self/fd').length, before);
});

test('a monitor whose shim is missing fails its start with the path and the reason', async () => {
  const { started, client } = launchMonitor({} as never, '/tmp', { stdin: false, shim: '/nonexistent/capsa-shim' });
  await assert.rejects(started, /cannot start the shim \/nonexistent\/capsa-shim: .*ENOENT/);
  assert.equal(await client.exited, undefined);
});

test('a descriptor of ours is passed on as it is, next to new sockets', async () => {
  // fd 3: a file we opened; fd 4: a socket back to us
  const { openSync, closeSync, mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const dir = mkdtempSync('/tmp/capsa-spawn-');
  writeFileSync(`${dir}/in`, 'passed on\n');
  const fd = openSync(`${dir}/in`, 'r');
  try {
    const p = spawnProgram('/bin/sh', ['-c', 'cat <&3 >&4'], { fds: [fd, 'socket'], setsid: false });
    assert.equal(p.sockets[0], undefined);
    assert.equal(await readAll(p.sockets[1]!), 'passed on\n');
    assert.deepEqual(await p.exited, { code: 0, signal: null });
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('stdin, stdout and stderr can be sockets or descriptors of ours; unset ones are /dev/null', async () => {
  const { openSync, closeSync, mkdtempSync, readFileSync: read, rmSync } = await import('node:fs');
  const dir = mkdtempSync('/tmp/capsa-spawn-');
  const file = openSync(`${dir}/err`, 'w');
  try {
    // 0 and 1 sockets, 2 a file of ours; the extra fd 3 still comes after them
    const p = spawnProgram('/bin/sh', ['-c', 'tr a-z A-Z; echo to-stderr >&2; readlink /proc/self/fd/0 >&3'], { stdio: ['socket', 'socket', file], fds: ['socket'], setsid: false });
    assert.equal(p.stdio[2], undefined);
    const out = readAll(p.stdio[1]!);
    const fd0 = readAll(p.sockets[0]!);
    p.stdio[0]!.end('through stdin\n');
    assert.equal(await out, 'THROUGH STDIN\n');
    assert.match(await fd0, /^socket:\[\d+\]\n$/);
    assert.deepEqual(await p.exited, { code: 0, signal: null });
    assert.equal(read(`${dir}/err`, 'utf8'), 'to-stderr\n');
    // only stdout asked for: 0 and 2 are /dev/null
    const q = spawnProgram('/bin/sh', ['-c', 'readlink /proc/self/fd/0 /proc/self/fd/2'], { stdio: ['null', 'socket'], fds: [], setsid: false });
    assert.equal(await readAll(q.stdio[1]!), '/dev/null\n/dev/null\n');
    await q.exited;
  } finally {
    closeSync(file);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('with ref, a pidfd-watched program keeps the event loop alive until it ends', async () => {
  // nothing else holds the loop here: without ref the test would end with the promise pending
  const p = spawnProgram('/bin/sh', ['-c', 'sleep 0.3; exit 3'], { fds: [], setsid: false, watch: 'pidfd', ref: true });
  assert.deepEqual(await p.exited, { code: 3, signal: null });
});

test('a long-lived program is watched through a pidfd, not a pool thread: its end and signal are seen', async (t) => {
  // the watch does not keep a process alive (the helper's exit must not wait for it): this test does
  const alive = setInterval(() => undefined, 1000);
  t.after(() => clearInterval(alive));
  const p = spawnProgram('/bin/sleep', ['30'], { fds: [], setsid: true, watch: 'pidfd' });
  process.kill(p.pid, 'SIGTERM');
  assert.deepEqual(await p.exited, { code: null, signal: 15 });
  const env = spawnProgram('/bin/sh', ['-c', 'test "$ONLY" = this'], { fds: [], setsid: false, env: { ONLY: 'this' }, watch: 'pidfd' });
  assert.deepEqual(await env.exited, { code: 0, signal: null }, 'the environment given, not the helper\'s');
});
