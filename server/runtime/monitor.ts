/**
 * The helper's side of a container's monitor (native/src/monitor/monitor.c,
 * `struct monitor`): `capsa-shim run --monitor DIR` detaches from the helper, owns
 * the container's stdio, writes DIR/container.log and DIR/exit.json and
 * serves DIR/attach.sock. A helper (the one that launched it or a later one)
 * follows the container through that socket; this module speaks its frames.
 */
import { EventEmitter } from 'node:events';
import { promises as fs, openSync, closeSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { ShimError, followShimStatus, shimPath, spawnShim, type ShimStarted } from './native';
import { NO_TRACE, type RunTrace } from './trace';
import { encodePlan, type Plan } from './plan';

/** What the monitor records in exit.json when the container ended. */
export interface ExitInfo {
  /** Exit status; 128+N when killed by signal N. */
  exitCode: number;
  /** The signal that killed the container's PID 1, or 0. */
  signal: number;
  /** Host pid the container's PID 1 had. */
  pid: number;
  /** RFC 3339 time with nanoseconds. */
  finishedAt: string;
}

export const LOG_FILE = 'container.log';
export const EXIT_FILE = 'exit.json';
export const ATTACH_SOCKET = 'attach.sock';

/** Largest frame the monitor accepts from a client (ATTACH_FRAME_MAX in attach.h). */
const FRAME_MAX = 16384;

/**
 * One connection to a monitor's attach socket. Emits `output` (stream, data)
 * for every chunk the container writes and settles `exited` once: with the
 * exit info when the monitor says the container ended, or undefined when the
 * connection closes without that (the monitor died, or ended as we connected).
 */
export class MonitorClient extends EventEmitter {
  readonly exited: Promise<ExitInfo | undefined>;
  private buf: Buffer = Buffer.alloc(0);
  private exitInfo: ExitInfo | undefined;

  constructor(private readonly socket: net.Socket) {
    super();
    this.exited = new Promise((resolve) => {
      socket.on('data', (d: Buffer) => this.onData(d));
      socket.on('error', () => undefined); // 'close' follows
      socket.once('close', () => resolve(this.exitInfo));
    });
  }

  /** Connects to DIR/attach.sock; undefined when no monitor listens there. */
  static async connect(dir: string): Promise<MonitorClient | undefined> {
    let fd: number;
    try {
      fd = openSync(dir, 'r');
    } catch {
      return undefined;
    }
    try {
      // through /proc/self/fd: the socket's full path may exceed sun_path's 108 bytes
      const socket = await new Promise<net.Socket | undefined>((resolve) => {
        const s = net.connect(`/proc/self/fd/${fd}/${ATTACH_SOCKET}`);
        s.once('connect', () => resolve(s));
        s.once('error', () => resolve(undefined));
      });
      return socket ? new MonitorClient(socket) : undefined;
    } finally {
      closeSync(fd);
    }
  }

  input(data: Buffer, eof: boolean): void {
    for (let off = 0; off < data.length; off += FRAME_MAX) this.send('i', data.subarray(off, off + FRAME_MAX));
    if (eof) this.send('c', Buffer.alloc(0));
  }

  resize(rows: number, cols: number): void {
    this.send('r', Buffer.from(`${Math.trunc(rows)} ${Math.trunc(cols)}`));
  }

  signal(n: number): void {
    this.send('s', Buffer.from(String(Math.trunc(n))));
  }

  close(): void {
    this.socket.destroy();
  }

  private send(type: string, payload: Buffer): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    const h = Buffer.alloc(5);
    h.write(type, 0, 'latin1');
    h.writeUInt32BE(payload.length, 1);
    this.socket.write(payload.length ? Buffer.concat([h, payload]) : h);
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    let off = 0;
    while (this.buf.length - off >= 5) {
      const len = this.buf.readUInt32BE(off + 1);
      if (this.buf.length - off < 5 + len) break;
      const type = String.fromCharCode(this.buf[off]);
      const payload = this.buf.subarray(off + 5, off + 5 + len);
      off += 5 + len;
      if (type === 'o' || type === 'e') this.emit('output', type === 'o' ? 'stdout' : 'stderr', Buffer.from(payload));
      else if (type === 'x') this.exitInfo = parseExit(payload.toString('utf8'));
    }
    this.buf = off === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(off);
  }
}

function parseExit(text: string): ExitInfo | undefined {
  try {
    const v = JSON.parse(text) as Partial<ExitInfo>;
    if (typeof v.exitCode !== 'number') return undefined;
    return { exitCode: v.exitCode, signal: v.signal ?? 0, pid: v.pid ?? 0, finishedAt: v.finishedAt ?? new Date().toISOString() };
  } catch {
    return undefined;
  }
}

/** DIR/exit.json, or undefined while the container runs (or never ran). */
export async function readExitFile(dir: string): Promise<ExitInfo | undefined> {
  // no exit.json is the answer "no exit recorded"; one that cannot be read says no more than that
  const text = await fs.readFile(path.join(dir, EXIT_FILE), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : parseExit(text);
}

export interface LaunchedMonitor {
  /** The attach connection of the launching helper: every byte from the first. */
  client: MonitorClient;
  /** Resolves once the container's command runs; rejects with the setup error. */
  started: Promise<ShimStarted>;
}

/**
 * Launches a monitor for plan in dir. The shim forks the monitor and exits;
 * the monitor reports on fd 4 and takes fd 5 as its first attach client.
 */
export function launchMonitor(plan: Plan, dir: string, opts: { stdin: boolean; shim?: string; bindFds?: number[]; trace?: RunTrace }): LaunchedMonitor {
  const shim = opts.shim ?? shimPath();
  const trace = opts.trace ?? NO_TRACE;
  // the bind sources' descriptors become the shim's fds 6, 7, … (the plan's bindfd records name them)
  const child = spawnShim(shim, ['run', '--monitor', dir, ...(opts.stdin ? ['--stdin'] : []), ...(trace.on ? ['--trace'] : [])], { fds: ['socket', 'socket', 'socket', ...(opts.bindFds ?? [])], setsid: true });
  if (child instanceof ShimError) {
    const started = Promise.reject(child);
    // the launcher's caller awaits `started`; this only keeps an early rejection from counting as unhandled
    started.catch(() => undefined);
    const none = new net.Socket();
    none.destroy(); // 'close' settles the client's `exited`, as after a failed start
    return { client: new MonitorClient(none), started };
  }
  trace.mark('shim spawned');
  const [planFd, statusFd, attachFd] = child.sockets as net.Socket[];
  const client = new MonitorClient(attachFd);
  const { started } = followShimStatus(statusFd, child.exited);
  // a start that failed has no container to follow: its attach connection goes
  started.catch(() => client.close());
  planFd.on('error', () => undefined); // EPIPE: the shim died early; the status pipe says why
  planFd.end(encodePlan(plan));
  trace.mark('plan sent');
  return { client, started };
}
