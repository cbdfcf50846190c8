/**
 * The warm CLI: processes of the Node CLI that the helper starts ahead of
 * any call and keeps idle, each waiting to take over one `capsa` call from
 * the compiled client (native/src/client.c), which then costs no Node
 * start-up (about 100 ms on a small machine; the whole call should cost
 * little more than the request itself).
 *
 * The helper creates the listening socket but never accepts on it: it hands
 * the descriptor to each warm process as fd 3 (server/cli/warm.ts), and the
 * kernel gives each connection to one of them. A process reports over its
 * fd 4 the moment it took a call, and a replacement is started at once; one
 * that dies before taking a call is replaced after a backoff, and after
 * MAX_FAILURES such deaths in a row the warm CLI turns itself off (the
 * socket goes, clients run the Node CLI).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { describeError } from './errors';
import { closeFd, listenSeqpacket } from './util/seqpacket';

export interface WarmCliOptions {
  /** The warm CLI socket, `warmCliSocketPath()` of the helper's. Created 0600. */
  socket: string;
  /** Idle processes to keep, at least 1. */
  size: number;
  /** The processes' environment: it must name this helper (CAPSA_SOCKET). */
  env: NodeJS.ProcessEnv;
  log: (message: string) => void;
  /** The CLI script run with `--warm`. Default: warmCliEntry(). */
  entry?: string;
}

const MAX_FAILURES = 5;
const FIRST_BACKOFF_MS = 250;

/**
 * The CLI script: dist/cli.js beside the bundled helper (dist/server.js);
 * from out/server/, dist/cli.js unless out/ is newer (after a bare tsc),
 * the rule bin/capsa.js follows.
 */
export function warmCliEntry(dir = __dirname): string {
  const beside = path.join(dir, 'cli.js');
  if (existsSync(beside)) return beside;
  const bundle = path.join(dir, '..', '..', 'dist', 'cli.js');
  const compiled = path.join(dir, 'cli', 'main.js');
  const mtime = (f: string): number => {
    try {
      return statSync(f).mtimeMs;
    } catch {
      return -1;
    }
  };
  return mtime(bundle) >= mtime(compiled) ? bundle : compiled;
}

export class WarmCliPool {
  private listenFd = -1;
  /** Started and not yet taken a call (loading, or ready). */
  private readonly idle = new Set<ChildProcess>();
  private failures = 0;
  private retry?: NodeJS.Timeout;
  private closed = false;
  private readonly entry: string;

  constructor(private readonly opts: WarmCliOptions) {
    if (!Number.isInteger(opts.size) || opts.size < 1) throw new RangeError(`warm CLI pool size ${opts.size} must be a positive integer`);
    this.entry = opts.entry ?? warmCliEntry();
  }

  /** Creates the socket (replacing a stale file) and starts the processes. */
  start(): void {
    const { socket } = this.opts;
    rmSync(socket, { force: true });
    this.listenFd = listenSeqpacket(socket, () => chmodSync(socket, 0o600));
    this.fill();
  }

  /** Kills the idle processes and removes the socket. Processes serving a call finish it. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    for (const child of this.idle) child.kill('SIGTERM');
    this.idle.clear();
    this.closeSocket();
  }

  private closeSocket(): void {
    if (this.listenFd >= 0) {
      closeFd(this.listenFd);
      this.listenFd = -1;
      rmSync(this.opts.socket, { force: true });
    }
  }

  private fill(): void {
    while (!this.closed && !this.retry && this.listenFd >= 0 && this.idle.size < this.opts.size) this.spawnOne();
  }

  private spawnOne(): void {
    const child = spawn(process.execPath, [this.entry, '--warm'], {
      // fd 3: the listening socket; fd 4: its reports. No terminal: it gets its client's stdio.
      stdio: ['ignore', 'ignore', 'ignore', this.listenFd, 'pipe'],
      detached: true,
      env: this.opts.env,
    });
    this.idle.add(child);
    let taken = false;
    let failure = '';
    let ended = false;
    const pipe = child.stdio[4] as Readable;
    let pending = '';
    pipe.setEncoding('utf8');
    pipe.on('error', () => undefined);
    pipe.on('data', (chunk: string) => {
      pending += chunk;
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const space = line.indexOf(' ');
        const [what, rest] = space < 0 ? [line, ''] : [line.slice(0, space), line.slice(space + 1)];
        if (what === 'ready') this.failures = 0;
        else if (what === 'taken' && !taken) {
          taken = true;
          this.idle.delete(child);
          child.unref();
          (pipe as Readable & { unref?: () => void }).unref?.();
          this.opts.log(`warm CLI ${child.pid} took a call from pid ${rest}`);
          this.fill();
        } else if (what === 'rejected') this.opts.log(`warm CLI ${child.pid} refused its call: ${rest}`);
        else if (what === 'failed') failure = rest;
      }
    });
    const gone = (how: string): void => {
      if (ended) return;
      ended = true;
      if (taken || !this.idle.delete(child) || this.closed) return;
      this.failures++;
      this.opts.log(`warm CLI ${child.pid ?? '(not started)'} ${how} before taking a call${failure ? `: ${failure}` : ''}`);
      if (this.failures >= MAX_FAILURES) {
        this.opts.log(`warm CLI turned off after ${this.failures} failed starts in a row: calls run the Node CLI`);
        for (const c of this.idle) c.kill('SIGTERM');
        this.idle.clear();
        this.closeSocket();
        return;
      }
      clearTimeout(this.retry);
      this.retry = setTimeout(
        () => {
          this.retry = undefined;
          this.fill();
        },
        FIRST_BACKOFF_MS * 2 ** (this.failures - 1),
      );
    };
    child.on('error', (err) => gone(`could not start (${describeError(err)})`));
    child.on('exit', (code, signal) => gone(signal ? `was killed by ${signal}` : `exited with status ${code}`));
  }
}
