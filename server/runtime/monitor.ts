/**
 * The helper's side of a container's monitor (native/src/monitor/monitor.c,
 * `struct monitor`): `capsa-shim run --monitor DIR` detaches from the helper, owns
 * the container's stdio, writes DIR/container.log and DIR/exit.json and
 * serves DIR/attach.sock. A helper (the one that launched it or a later one)
 * follows the container through that socket; this module speaks its frames.
 */
import { EventEmitter } from 'node:events';
import { promises as fs, openSync, closeSync, readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { ContainerSetupError, ShimError, parseStatusLine, shimPath } from './native';
import { encodePlan, type Plan } from './plan';
import { spawnProgram, type SpawnedProgram } from '../util/spawn';

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
  const text = await fs.readFile(path.join(dir, EXIT_FILE), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : parseExit(text);
}

/**
 * Start time of a process in clock ticks since boot (field 22 of
 * /proc/PID/stat): with the pid, it names a process for good, so a reused
 * pid is never mistaken for the one recorded.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may hold spaces and parentheses: count from the last ')'
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Whether pid still names the process that had startTime. */
export function sameProcess(pid: number | undefined, startTime: string | undefined): boolean {
  return !!pid && !!startTime && processStartTime(pid) === startTime;
}

/** SIGKILL for pid if it still names the process that had startTime; one that ends meanwhile is no error. */
export function killSameProcess(pid: number | undefined, startTime: string | undefined): void {
  if (!sameProcess(pid, startTime)) return;
  try {
    process.kill(pid!, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

export interface LaunchedMonitor {
  /** The attach connection of the launching helper: every byte from the first. */
  client: MonitorClient;
  /** Resolves once the container's command runs; rejects with the setup error. */
  started: Promise<{ pid: number; monitorPid: number }>;
}

/**
 * Launches a monitor for plan in dir. The shim forks the monitor and exits;
 * the monitor reports on fd 4 and takes fd 5 as its first attach client.
 */
export function launchMonitor(plan: Plan, dir: string, opts: { stdin: boolean; shim?: string }): LaunchedMonitor {
  const shim = opts.shim ?? shimPath();
  let child: SpawnedProgram;
  try {
    child = spawnProgram(shim, ['run', '--monitor', dir, ...(opts.stdin ? ['--stdin'] : [])], { fds: ['socket', 'socket', 'socket'], setsid: true });
  } catch (err) {
    const e = new ShimError(`cannot start the shim ${shim}: ${(err as Error).message}`, { cause: err });
    const started = Promise.reject(e);
    started.catch(() => undefined);
    const none = new net.Socket();
    none.destroy(); // 'close' settles the client's `exited`, as after a failed start
    return { client: new MonitorClient(none), started };
  }
  const [planFd, statusFd, attachFd] = child.sockets as net.Socket[];
  const client = new MonitorClient(attachFd);

  const started = new Promise<{ pid: number; monitorPid: number }>((resolve, reject) => {
    let monitorPid = 0;
    let settled = false;
    let pending = '';
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      client.close();
      reject(err);
    };
    statusFd.setEncoding('utf8');
    statusFd.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const m = /^monitor (\d+)$/.exec(line);
        if (m) {
          monitorPid = Number(m[1]);
          continue;
        }
        const s = parseStatusLine(line);
        if (s?.kind === 'started' && !settled) {
          settled = true;
          resolve({ pid: s.pid, monitorPid });
        } else if (s?.kind === 'error') fail(new ContainerSetupError(s));
      }
    });
    statusFd.once('close', () => {
      if (settled) return;
      void child.exited.then(({ code, signal }) =>
        fail(new ShimError(`the shim ended without reporting${code !== null ? ` (exit status ${code})` : signal !== null ? ` (signal ${signal})` : ''}`)),
      );
    });
  });
  started.catch(() => undefined);
  planFd.on('error', () => undefined); // EPIPE: the shim died early; the status pipe says why
  planFd.end(encodePlan(plan));
  return { client, started };
}
