/**
 * The Node behaviour that the warm CLI's stdio takeover
 * (server/cli/warm/stdio.ts) relies on, pinned one internal per test: a
 * Node upgrade that changes one fails here, by name, before a warm call
 * loses output or hangs. What is not public API is named in the test's title.
 * Tests that touch the process's own stdio or console run in a child process,
 * so that this runner's output is never at stake.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, constants, fstatSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import * as tty from 'node:tty';

const STDIO = path.resolve(__dirname, '..', '..', 'server', 'cli', 'warm', 'stdio.js');

/** A FIFO opened read-write twice (neither open blocks): a pipe fd as Node's stdio sees one. */
function fifo(t: { after(fn: () => void): void }): { a: number; b: number } {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  const p = path.join(dir, 'fifo');
  assert.equal(spawnSync('mkfifo', [p]).status, 0, 'mkfifo');
  const a = openSync(p, constants.O_RDWR | constants.O_NONBLOCK);
  const b = openSync(p, constants.O_RDWR);
  t.after(() => {
    for (const fd of [a, b]) {
      try {
        closeSync(fd);
      } catch {
        // closed by the test already
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return { a, b };
}

function isOpen(fd: number): boolean {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

function runChild(script: string, args: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...args, '-e', script], { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('process.stdin, process.stdout and process.stderr are configurable accessors of process (replaced with per-call getters)', () => {
  for (const name of ['stdin', 'stdout', 'stderr']) {
    const d = Object.getOwnPropertyDescriptor(process, name);
    assert.ok(d, `process.${name} is an own property`);
    assert.equal(d.configurable, true, `process.${name} is configurable`);
    assert.equal(typeof d.get, 'function', `process.${name} is an accessor`);
  }
});

test('the global console caches its streams in console._stdout/_stderr and reads process.stdout/stderr again once they are set to undefined', () => {
  const r = runChild(`
    const { Writable } = require('node:stream');
    let got = '';
    console.log('bound');
    const w = new Writable({ write(c, _e, cb) { got += c; cb(); } });
    Object.defineProperty(process, 'stdout', { configurable: true, get: () => w });
    console.log('cached');
    console._stdout = undefined;
    console.log('rebound');
    require('node:fs').writeSync(2, JSON.stringify(got));
  `);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'bound\ncached\n', 'console keeps the stream it first wrote to');
  assert.equal(r.stderr, JSON.stringify('rebound\n'), 'and takes process.stdout again after _stdout = undefined');
});

test('Writable.prototype._undestroy exists and _writableState.emitClose is a boolean (Node\'s dummyDestroy for stdout and stderr)', () => {
  const w = new Writable({ write: (_c, _e, cb) => cb() });
  assert.equal(typeof (w as unknown as { _undestroy: unknown })._undestroy, 'function');
  assert.equal(typeof (w as unknown as { _writableState: { emitClose: unknown } })._writableState.emitClose, 'boolean');
  assert.equal(typeof (Readable.prototype as unknown as { _undestroy: unknown })._undestroy, 'function');
});

test('a net.Socket on a pipe fd whose _destroy is replaced on the instance by a dummy stays open and usable after destroy(); with its own _destroy put back, destroy() closes the fd', async (t) => {
  const { a, b } = fifo(t);
  const s = new net.Socket({ fd: b, readable: false, writable: true }) as net.Socket & Record<string, unknown>;
  const own = s._destroy;
  s._destroy = function (this: typeof s, err: Error | null, cb: (err: Error | null) => void): void {
    cb(err);
    (this as unknown as { _undestroy(): void })._undestroy();
    if (!(this._writableState as { emitClose: boolean }).emitClose) process.nextTick(() => this.emit('close'));
  };
  s.destroy();
  await new Promise((r) => setImmediate(r));
  assert.equal(s.destroyed, false, 'undestroyed');
  assert.ok(isOpen(b), 'the fd stays open');
  await new Promise<void>((resolve, reject) => s.write('hello', (err) => (err ? reject(err) : resolve())));
  const buf = Buffer.alloc(16);
  assert.equal(buf.toString('utf8', 0, readSync(a, buf)), 'hello', 'and still writes');
  s._destroy = own;
  await new Promise((resolve) => {
    s.once('close', resolve);
    s.destroy();
  });
  assert.equal(isOpen(b), false, 'its own _destroy closes the fd');
});

test('a net.Socket made on an fd with manualStart has a _handle with readStop(), and _readableState.reading and _writableState.ended are booleans', (t) => {
  const { b } = fifo(t);
  const s = new net.Socket({ fd: b, readable: true, writable: false, manualStart: true } as net.SocketConstructorOpts) as net.Socket & Record<string, unknown>;
  t.after(() => s.destroy());
  const handle = s._handle as { readStop?: unknown };
  assert.ok(handle, '_handle');
  assert.equal(typeof handle.readStop, 'function', '_handle.readStop');
  assert.equal(typeof (s._readableState as { reading: unknown }).reading, 'boolean', '_readableState.reading');
  assert.equal(typeof (s._writableState as { ended: unknown }).ended, 'boolean', '_writableState.ended');
});

test('a net.Socket stopped with _handle.readStop() and _handle.reading = _readableState.reading = false reads again on resume(); pause() alone leaves _handle.reading on', async (t) => {
  const { a, b } = fifo(t);
  const s = new net.Socket({ fd: b, readable: true, writable: false, manualStart: true } as net.SocketConstructorOpts) as net.Socket & Record<string, unknown>;
  t.after(() => s.destroy());
  const handle = s._handle as { readStop(): void; reading: boolean };
  handle.reading = false;
  (s._readableState as { reading: boolean }).reading = false;
  handle.readStop();
  const data = new Promise<string>((resolve) => s.once('data', (d: Buffer) => resolve(d.toString())));
  writeSync(a, 'typed');
  s.resume();
  assert.equal(await data, 'typed');
  assert.equal(handle.reading, true, 'resume() started the handle again');
  s.pause();
  await new Promise((r) => setImmediate(r));
  assert.equal(handle.reading, true, 'pause() does not stop the handle: the warm CLI stops it itself');
});

test('tty.WriteStream.prototype._refreshSize is a function (called on SIGWINCH for a terminal stdout)', () => {
  assert.equal(typeof (tty.WriteStream.prototype as unknown as { _refreshSize: unknown })._refreshSize, 'function');
});

test("handleType agrees with Node's own guessHandleType (internal/util) for a file, /dev/null, a pipe and a socket (TCP counted as PIPE: Node makes both a net.Socket)", () => {
  const r = runChild(
    `
    const { guessHandleType } = require('internal/util');
    const { handleType } = require(${JSON.stringify(STDIO)});
    const fs = require('node:fs');
    const out = [];
    const check = (what, fd) => out.push([what, guessHandleType(fd), handleType(fd)]);
    check('file', fs.openSync(${JSON.stringify(STDIO)}, 'r'));
    check('/dev/null', fs.openSync('/dev/null', 'r'));
    check('pipe', 1);
    const net = require('node:net');
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const c = net.connect(srv.address().port, '127.0.0.1', () => {
        check('socket', c._handle.fd);
        fs.writeSync(2, JSON.stringify(out));
        process.exit(0);
      });
    });
  `,
    ['--expose-internals'],
  );
  assert.equal(r.status, 0, r.stderr);
  const rows = JSON.parse(r.stderr) as [string, string, string][];
  assert.equal(rows.length, 4);
  for (const [what, node, ours] of rows) assert.equal(ours, node === 'TCP' ? 'PIPE' : node, `${what}: Node says ${node}`);
});

test('installStdio makes stdout on a pipe a net.Socket that the console follows; flushStdio waits for it; releaseStdio leaves fd 1 open (libuv never closes fds 0-2: the caller puts /dev/null there)', () => {
  const r = runChild(`
    const fs = require('node:fs');
    const stdio = require(${JSON.stringify(STDIO)});
    console.log('before');
    stdio.installStdio();
    const type = process.stdout._type;
    process.stdout.write('via stdout\\n');
    console.log('via console');
    stdio.flushStdio().then(() => {
      stdio.releaseStdio();
      let open = true;
      try { fs.fstatSync(1); } catch { open = false; }
      fs.writeSync(2, JSON.stringify({ type, open, raw: stdio.usedRawMode() }));
    });
  `);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'before\nvia stdout\nvia console\n');
  assert.deepEqual(JSON.parse(r.stderr), { type: 'pipe', open: true, raw: false });
});
