/**
 * The warm CLI process's stdio: each call gets process.stdin, stdout and
 * stderr made on that call's fds 0-2, and loses them after it.
 *
 * Node makes process.stdin/stdout/stderr once, on first use, for whatever
 * fds 0-2 are then, and keeps them. Here getters make them lazily per call,
 * following Node's rules (lib/internal/bootstrap/switches/is_main_thread.js:
 * getStdout, getStdin, createWritableStdioStream), and they are destroyed
 * after the call. No public API does this, so this module is the one place
 * that relies on Node internals; test/unit/warm-stdio-contract.test.ts pins
 * each of them, by name, so that a Node upgrade that changes one fails there:
 *
 *   - process.stdin/stdout/stderr are configurable properties of `process`
 *     (they are replaced with our getters);
 *   - the global console caches its streams in the writable properties
 *     `console._stdout` / `console._stderr` and reads process.stdout/stderr
 *     again once they are set to undefined;
 *   - a Writable's `_destroy` may be replaced on the instance, and
 *     `_undestroy()` with `_writableState.emitClose` revive it (Node's
 *     dummyDestroy: destroying stdout or stderr leaves the fd open);
 *   - a net.Socket made on an fd with `manualStart` has a `_handle` with
 *     `reading` and `readStop()`, its `_readableState.reading` mirrors them,
 *     and `_writableState.ended` marks a read-only one;
 *   - tty.WriteStream has `_refreshSize()` (Node calls it on SIGWINCH for
 *     its own stdout);
 *   - handleType (below) sees an fd as Node's guessHandleType does;
 *   - destroying a stream on fds 0-2 leaves the fd open (libuv never closes
 *     them): the caller puts /dev/null there.
 *
 * It imports only Node: what it does to fds 0-2 otherwise (putting
 * /dev/null there between calls) is the caller's.
 */
import { createReadStream, fstatSync, writeSync } from 'node:fs';
import * as net from 'node:net';
import { Readable, Writable } from 'node:stream';
import * as tty from 'node:tty';

type AnyStream = (Readable | Writable) & Record<string | symbol, unknown>;
let stdio: { stdin?: AnyStream; stdout?: AnyStream; stderr?: AnyStream } = {};
/** The call put its terminal in raw mode (libuv then keeps that terminal's mode to restore at exit: this process does not serve again). */
let rawModeUsed = false;

/** Whether the streams made since installStdio put a terminal in raw mode. */
export function usedRawMode(): boolean {
  return rawModeUsed;
}
const kNodeDestroy = Symbol('nodeDestroy');

/** Makes process.stdin/stdout/stderr getters that make streams on fds 0-2 as they are when first used. */
export function installStdio(): void {
  rawModeUsed = false;
  const makers = { stdin: makeStdin, stdout: () => makeWritable(1), stderr: () => makeWritable(2) };
  for (const name of ['stdin', 'stdout', 'stderr'] as const) {
    Object.defineProperty(process, name, { configurable: true, enumerable: true, get: () => (releasing ? placeholder[name] : (stdio[name] ??= makers[name]())) });
  }
  // the global console keeps the streams it first wrote to: it takes this call's from now on
  const c = console as unknown as Record<string, unknown>;
  c._stdout = undefined;
  c._stderr = undefined;
}

/** While releaseStdio destroys streams (net.Socket's destroy looks at process.stderr), the getters make none on the call's fds. */
let releasing = false;
const placeholder = {
  get stdin() {
    return emptyReadable();
  },
  get stdout() {
    return blackHole() as unknown as AnyStream;
  },
  get stderr() {
    return blackHole() as unknown as AnyStream;
  },
};

/**
 * Destroys the call's stream objects. libuv never closes fds 0-2 (its
 * uv__stream_close skips them), so the client's descriptors stay there until
 * the caller puts something else on 0-2 (/dev/null), which also keeps any
 * open() from taking them.
 */
export function releaseStdio(): void {
  const { stdin, stdout, stderr } = stdio;
  stdio = {};
  releasing = true;
  try {
    if (stdin) {
      const t = stdin as unknown as tty.ReadStream;
      if (t.isTTY && t.isRaw) t.setRawMode(false);
      stdin.destroy();
    }
  } catch {
    // destroyed already
  }
  for (const s of [stdout, stderr]) {
    if (!s) continue;
    try {
      (s as Record<string, unknown>)._destroy = s[kNodeDestroy];
      s.destroy();
    } catch {
      // destroyed already
    }
  }
  releasing = false;
}

/** Resolves once what the call wrote to stdout and stderr was handed to the kernel. */
export async function flushStdio(): Promise<void> {
  for (const s of [stdio.stdout, stdio.stderr]) {
    const w = s as Writable | undefined;
    if (w && w.writable && !w.destroyed) await new Promise<void>((resolve) => w.write('', () => resolve()));
  }
}

/** libuv's uv_guess_handle, as Node's guessHandleType sees it (exported for its contract test). */
export function handleType(fd: number): 'TTY' | 'FILE' | 'PIPE' | 'UNKNOWN' {
  let st;
  try {
    st = fstatSync(fd);
  } catch {
    return 'UNKNOWN';
  }
  if (tty.isatty(fd)) return 'TTY';
  if (st.isFile() || st.isCharacterDevice()) return 'FILE';
  if (st.isFIFO() || st.isSocket()) return 'PIPE';
  return 'UNKNOWN';
}

/** Node's internal SyncWriteStream: stdout or stderr on a file, written synchronously. */
class SyncWriteStream extends Writable {
  constructor(readonly fd: number) {
    super();
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      writeSync(this.fd, chunk);
    } catch (err) {
      cb(err as Error);
      return;
    }
    cb();
  }
}

function blackHole(): Writable {
  return new Writable({ write: (_chunk, _encoding, cb) => cb() });
}

function dummyDestroy(this: AnyStream, err: Error | null, cb: (err: Error | null) => void): void {
  cb(err);
  (this as unknown as { _undestroy(): void })._undestroy();
  if (!(this._writableState as { emitClose: boolean }).emitClose) process.nextTick(() => this.emit('close'));
}

function makeWritable(fd: number): AnyStream {
  let stream: AnyStream;
  switch (handleType(fd)) {
    case 'TTY':
      stream = new tty.WriteStream(fd) as unknown as AnyStream;
      stream._type = 'tty';
      break;
    case 'FILE':
      stream = new SyncWriteStream(fd) as unknown as AnyStream;
      stream._type = 'fs';
      break;
    case 'PIPE':
      try {
        stream = new net.Socket({ fd, readable: false, writable: true }) as unknown as AnyStream;
        stream._type = 'pipe';
      } catch {
        stream = blackHole() as unknown as AnyStream;
      }
      break;
    default:
      stream = blackHole() as unknown as AnyStream;
  }
  stream.fd = fd;
  stream._isStdio = true;
  stream.destroySoon = stream.destroy;
  // as Node's: destroying stdout or stderr does not close the fd (releaseStdio puts the real one back)
  stream[kNodeDestroy] = stream._destroy;
  stream._destroy = dummyDestroy;
  if ((stream as unknown as tty.WriteStream).isTTY) process.on('SIGWINCH', () => (stream as unknown as { _refreshSize(): void })._refreshSize());
  return stream;
}

function emptyReadable(): AnyStream {
  const r = new Readable({ read() {} });
  r.push(null);
  return r as unknown as AnyStream;
}

function makeStdin(): AnyStream {
  let stdin: AnyStream;
  switch (handleType(0)) {
    case 'TTY': {
      const t = new tty.ReadStream(0);
      const setRawMode = t.setRawMode.bind(t);
      t.setRawMode = (mode: boolean) => {
        if (mode) rawModeUsed = true;
        return setRawMode(mode);
      };
      stdin = t as unknown as AnyStream;
      break;
    }
    case 'FILE':
      stdin = createReadStream(null as unknown as string, { fd: 0, autoClose: false }) as unknown as AnyStream;
      break;
    case 'PIPE':
      try {
        stdin = new net.Socket({ fd: 0, readable: true, writable: false, manualStart: true } as net.SocketConstructorOpts) as unknown as AnyStream;
        (stdin._writableState as { ended: boolean }).ended = true;
      } catch {
        stdin = emptyReadable();
      }
      break;
    default:
      stdin = emptyReadable();
  }
  stdin.fd = 0;
  // it starts paused, which Node's stream does not know yet
  const handle = stdin._handle as { readStop?: () => void; reading?: boolean } | undefined;
  const state = stdin._readableState as { reading: boolean };
  if (handle?.readStop) {
    handle.reading = false;
    state.reading = false;
    handle.readStop();
  }
  // once paused, stop reading, so that the call can end
  stdin.on('pause', () =>
    process.nextTick(() => {
      const h = stdin._handle as { readStop(): void; reading: boolean } | undefined;
      if (h?.reading && !(stdin as unknown as Readable).readableFlowing) {
        state.reading = false;
        h.reading = false;
        h.readStop();
      }
    }),
  );
  return stdin;
}

