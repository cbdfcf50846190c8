/**
 * The warm CLI: processes of the Node CLI that the helper starts ahead of
 * any call and keeps idle, each waiting to take over one `capsa` call from
 * the compiled client (native/client/client.c), which then costs no Node
 * start-up (about 100 ms on a small machine; the whole call should cost
 * little more than the request itself).
 *
 * The helper creates the listening socket but never accepts on it: it hands
 * the descriptor to each warm process as fd 3 (server/cli/warm/process.ts), and the
 * kernel gives each connection to one of them. A process reports over its
 * fd 4 when it took a call and when it is back, idle, after it; it serves
 * call after call, and exits after one that may have left something behind.
 * Taking a call starts no replacement (that would cost a Node start-up per
 * call, on the same cores): one starts when a process has not come back
 * within LATE_MS (a long call: logs -f, run -it), when one ends, or when a
 * client waits with none idle and none likely back soon. At most `size`
 * stay idle; a surplus one is told to exit. One that dies before taking a
 * call is replaced after a backoff, and after MAX_FAILURES such deaths in a
 * row the warm CLI turns itself off (the socket goes, clients run the Node
 * CLI). A pool of a user other than root (server/warmusers.ts) has its
 * socket owned by that user and its processes drop to that user first
 * (server/cli/warm/become.ts).
 */
import { chmodSync, chownSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { constants as osConstants, getPriority, setPriority } from 'node:os';
import { describeError } from './errors';
import { closeFd, listenSeqpacket } from './util/seqpacket';
import { cliEntry } from './util/layout';
import { koffiNode, libcFunctions } from './util/libc';
import { spawnProgram } from './util/spawn';

export interface WarmCliOptions {
  /** The warm CLI socket, `warmCliSocketPath()` of the helper's. Created 0600. */
  socket: string;
  /** Idle processes to keep, at least 1. */
  size: number;
  /** The processes' environment: it must name this helper (CAPSA_SOCKET). */
  env: NodeJS.ProcessEnv;
  log: (message: string) => void;
  /** The CLI script run with `--warm`. Default: the Node CLI's (server/util/layout.ts cliEntry). */
  entry?: string;
  /** The user the processes run as (they start as root and drop: become.ts), who alone may connect to the socket. Default: root's pool. */
  user?: WarmUser;
  /** Asked before each start: a reason turns the pool off (its user is gone from /etc/passwd, say). */
  check?: () => string | undefined;
  /** Each call a process takes. */
  onTaken?: () => void;
}

/** A user other than root, as its processes take it (`--as UID:GID:NAME`, server/cli/warm/become.ts). */
export interface WarmUser {
  uid: number;
  gid: number;
  name: string;
}

const MAX_FAILURES = 5;
/** How much lower a warm process runs until it takes a call. */
const IDLE_NICENESS = 10;
const FIRST_BACKOFF_MS = 250;
/** A busy process not back from its call after this long gets a replacement started. */
const LATE_MS = 150;

export class WarmCliPool {
  private listenFd = -1;
  /** Started and waiting for a call (loading, or ready). */
  private readonly idle = new Set<WarmProcess>();
  /** Serving a call; each comes back to `idle` when its call leaves nothing behind, else it ends. */
  private readonly busy = new Set<WarmProcess>();
  /** Told to exit (surplus), or said it will (its call may have left something behind). */
  private readonly retiring = new Set<WarmProcess>();
  private failures = 0;
  private retry?: NodeJS.Timeout;
  private closed = false;
  private readonly entry: string;
  /** Armed while no idle process is ready: readable when a client waits for one. */
  private waitWatch?: { start(o: object, cb: () => void): void; stop(): void; close(): void; unref(): void };
  private waitArmed = false;

  constructor(private readonly opts: WarmCliOptions) {
    if (!Number.isInteger(opts.size) || opts.size < 1) throw new RangeError(`warm CLI pool size ${opts.size} must be a positive integer`);
    this.entry = opts.entry ?? cliEntry();
  }

  /**
   * Creates the socket (replacing a stale file). A client that connects now
   * waits in the backlog until start() has a process to take it, so the
   * helper creates this socket before its own: whoever sees the helper's
   * socket finds this one too.
   */
  listen(): void {
    const { socket, user } = this.opts;
    rmSync(socket, { force: true });
    // before listen: until then a connect is refused, whatever the socket's mode
    this.listenFd = listenSeqpacket(socket, () => {
      chmodSync(socket, 0o600);
      if (user) chownSync(socket, user.uid, user.gid);
    });
  }

  /** A process is serving a call. */
  get serving(): boolean {
    return this.busy.size > 0;
  }

  /** `pid` is one of this pool's processes (its connections to the helper are not a user's calls). */
  owns(pid: number): boolean {
    return [...this.idle, ...this.busy, ...this.retiring].some((c) => c.pid === pid);
  }

  /** Starts the processes (listening first if listen() was not called). */
  start(): void {
    if (this.listenFd < 0) this.listen();
    this.fill('the pool');
  }

  /**
   * Removes the socket and ends the idle processes, waiting (a second at
   * most) to reap them. Processes serving a call finish it, and then end
   * (their fd 4 closes).
   */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    this.closeSocket();
    const idle = [...this.idle, ...this.retiring];
    this.idle.clear();
    this.retiring.clear();
    for (const child of this.busy) {
      clearTimeout(child.late);
      child.reports.destroy();
    }
    this.busy.clear();
    for (const child of idle) child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(idle.map((c) => c.exited)), new Promise((r) => (timer = setTimeout(r, 1000)))]);
    clearTimeout(timer);
  }

  private closeSocket(): void {
    this.waitWatch?.close();
    this.waitWatch = undefined;
    this.waitArmed = false;
    if (this.listenFd >= 0) {
      closeFd(this.listenFd);
      this.listenFd = -1;
      rmSync(this.opts.socket, { force: true });
    }
  }

  /** Starts processes until `size` are idle; `why` goes in the log (a load-driven start reads differently from a leak). */
  private fill(why: string): void {
    while (!this.closed && !this.retry && this.listenFd >= 0 && this.idle.size < this.opts.size) this.spawnOne(why);
    this.watchWaitingClients();
  }

  /** A busy process that took its call less than LATE_MS ago: likely back soon to take the next. */
  private busyComingBack(): boolean {
    const now = Date.now();
    return [...this.busy].some((c) => now - c.takenAt < LATE_MS);
  }

  /**
   * Processes load at a lower priority so as not to slow the call they
   * replace; but once a client waits and none is ready, the loading ones are
   * what it waits for, and go back to the helper's priority (else any busy
   * process on the machine would hold the client up). A client that waits
   * with none idle at all, and no busy one likely back soon, gets one started.
   */
  private watchWaitingClients(): void {
    const arm = this.listenFd >= 0 && ![...this.idle].some((c) => c.ready);
    if (arm === this.waitArmed) return;
    this.waitArmed = arm;
    if (!arm) return this.waitWatch?.stop();
    const onWaiting = (): void => {
      for (const c of this.idle) if (!c.ready) c.prioritise();
      this.waitArmed = false;
      this.waitWatch?.stop();
      if (this.idle.size === 0 && !this.busyComingBack()) this.fill('a client waits, none is idle');
    };
    if (this.waitWatch) this.waitWatch.start({ readable: true }, onWaiting);
    else {
      this.waitWatch = koffiNode().poll(this.listenFd, { readable: true }, onWaiting) as unknown as NonNullable<WarmCliPool['waitWatch']>;
      this.waitWatch.unref();
    }
  }

  /** Tells an idle process to exit (it does when it next waits for a call; one that took a call meanwhile serves it first). */
  private retire(child: WarmProcess): void {
    this.idle.delete(child);
    this.retiring.add(child);
    child.reports.write('exit\n');
  }

  private spawnOne(why: string): void {
    const unfit = this.opts.check?.();
    if (unfit) {
      this.turnOff(`warm CLI turned off: ${unfit}`);
      return;
    }
    let child: WarmProcess;
    try {
      child = startWarmProcess(this.entry, this.opts.env, this.listenFd, this.opts.user);
    } catch (err) {
      this.failed(`warm CLI could not start: ${describeError(err)}`);
      return;
    }
    this.opts.log(`warm CLI ${child.pid} started (${why})`);
    this.idle.add(child);
    let failure = '';
    let pending = '';
    child.reports.setEncoding('utf8');
    child.reports.on('error', () => undefined);
    child.reports.on('data', (chunk: string) => {
      pending += chunk;
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const space = line.indexOf(' ');
        const [what, rest] = space < 0 ? [line, ''] : [line.slice(0, space), line.slice(space + 1)];
        if (what === 'ready') {
          this.failures = 0;
          child.ready = true;
          this.watchWaitingClients();
        } else if (what === 'taken') {
          child.served = true;
          child.takenAt = Date.now();
          this.opts.log(`warm CLI ${child.pid} took a call from pid ${rest}`);
          this.opts.onTaken?.();
          if (this.retiring.has(child)) continue; // it serves the call, then exits as told
          this.idle.delete(child);
          this.busy.add(child);
          // a long call (logs -f, run -it): the next client should not wait for it
          child.late = setTimeout(() => this.busy.has(child) && this.fill(`the call of ${child.pid} is late`), LATE_MS);
          this.watchWaitingClients();
        } else if (what === 'idle') {
          if (!this.busy.delete(child)) continue;
          clearTimeout(child.late);
          if (this.idle.size >= this.opts.size) {
            // one too many: rather one that has not served yet than this one, whose code is warm
            const fresh = [...this.idle].find((c) => !c.served);
            if (fresh) this.retire(fresh);
            else {
              this.retiring.add(child);
              child.reports.write('exit\n');
              continue;
            }
          }
          this.idle.add(child);
          this.watchWaitingClients();
        } else if (what === 'retiring') this.opts.log(`warm CLI ${child.pid} will not serve again: ${rest}`);
        else if (what === 'rejected') this.opts.log(`warm CLI ${child.pid} refused its call: ${rest}`);
        else if (what === 'failed') failure = rest;
      }
    });
    child.exited.then(({ code, signal }) => {
      child.reports.destroy();
      clearTimeout(child.late);
      const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
      if (this.retiring.delete(child) || this.closed) return;
      if (this.busy.delete(child)) {
        // the call ended the process (process.exit), or left something behind, or it was killed
        if (signal) this.opts.log(`warm CLI ${child.pid} ${how} during a call`);
        this.fill(`${child.pid} ended with its call`);
        return;
      }
      if (!this.idle.delete(child)) return;
      if (child.served) {
        this.opts.log(`warm CLI ${child.pid} ${how} while idle`);
        this.fill(`${child.pid} ended while idle`);
        return;
      }
      this.watchWaitingClients();
      this.failed(`warm CLI ${child.pid} ${how} before taking a call${failure ? `: ${failure}` : ''}`);
    });
  }

  /** A process that ended before taking a call, or did not start: retry after a backoff, or give up. */
  private failed(message: string): void {
    this.failures++;
    this.opts.log(message);
    if (this.failures >= MAX_FAILURES) {
      this.turnOff(`warm CLI turned off after ${this.failures} failed starts in a row`);
      return;
    }
    clearTimeout(this.retry);
    this.retry = setTimeout(
      () => {
        this.retry = undefined;
        this.fill('a retry');
      },
      FIRST_BACKOFF_MS * 2 ** (this.failures - 1),
    );
  }

  /** No more processes, no socket: calls run the Node CLI. */
  private turnOff(why: string): void {
    this.opts.log(`${why}: calls run the Node CLI`);
    for (const c of this.idle) c.kill('SIGTERM');
    this.idle.clear();
    this.closeSocket();
  }
}

interface WarmProcess {
  pid: number;
  /** It said it is ready to take a call. */
  ready: boolean;
  /** Our end of its fd 4. */
  reports: net.Socket;
  /** Settles when it ends (it is reaped then). */
  exited: Promise<{ code: number | null; signal: string | null }>;
  kill(signal: NodeJS.Signals): void;
  /** Back to the helper's priority (it starts IDLE_NICENESS lower). */
  prioritise(): void;
  /** It served a call. */
  served: boolean;
  /** When it took the call it serves now. */
  takenAt: number;
  /** Armed while it serves a call: a replacement starts if it is not back by then. */
  late?: NodeJS.Timeout;
}

const SIGNAL_NAMES = new Map(Object.entries(osConstants.signals).map(([name, n]) => [n as number, name]));

/**
 * Starts `node ENTRY --warm` in a session of its own, with /dev/null on 0-2,
 * the listening socket on fd 3 and a socketpair on fd 4. With posix_spawn,
 * as server/util/spawn.ts starts the shim and for the same reason: Node's
 * fork of the helper (page tables of V8's mappings) stalls the helper for
 * 10-30 ms, and it would do so at the very moment a call arrives, as the
 * replacement starts. Unlike the shim, a warm process may live for hours, so
 * its end is watched with a pidfd in the event loop, not a waitpid that
 * would hold a libuv pool thread.
 */
function startWarmProcess(entry: string, env: NodeJS.ProcessEnv, listenFd: number, user?: WarmUser): WarmProcess {
  const args = [entry, '--warm', ...(user ? ['--as', `${user.uid}:${user.gid}:${user.name}`] : [])];
  const spawned = spawnProgram(process.execPath, args, { fds: [listenFd, 'socket'], setsid: true, env, watch: 'pidfd' });
  const child = spawned.pid;
  // While it loads it must not slow the call it replaces (2 cores are common): it takes
  // the helper's priority back when it takes a call (server/cli/warm/process.ts), or when a client waits for it
  const priority = getPriority();
  try {
    setPriority(child, Math.min(19, priority + IDLE_NICENESS));
  } catch {
    // it loads at the helper's priority
  }
  // a user's process may go back up to the helper's priority by itself, and no higher (RLIMIT_NICE: setrlimit(2))
  if (user) allowNiceness(child, priority);
  const reports = spawned.sockets[1]!;
  const exited = spawned.exited.then(({ code, signal }) => ({ code, signal: signal === null ? null : (SIGNAL_NAMES.get(signal) ?? `signal ${signal}`) }));
  const kill = (signal: NodeJS.Signals): void => {
    try {
      process.kill(child, signal);
    } catch {
      // already gone
    }
  };
  const prioritise = (): void => {
    try {
      setPriority(child, priority);
    } catch {
      // gone, or not allowed
    }
  };
  return { pid: child, ready: false, reports, exited, kill, prioritise, served: false, takenAt: 0 };
}

const RLIMIT_NICE = 13;
let prlimit: ((pid: number, resource: number, limit: Buffer, old: null) => number) | undefined;

/** Lets `pid`, unprivileged, lower its niceness down to `nice` (a ceiling of 20 - rlim_cur). */
function allowNiceness(pid: number, nice: number): void {
  prlimit ??= libcFunctions({ prlimit: 'int prlimit(int pid, int resource, const void *new_limit, void *old_limit)' }).prlimit as unknown as typeof prlimit;
  const limit = Buffer.alloc(16);
  limit.writeBigUInt64LE(BigInt(20 - nice), 0);
  limit.writeBigUInt64LE(BigInt(20 - nice), 8);
  // without it the process serves at its loading priority (IDLE_NICENESS lower), slower but sound
  prlimit!(pid, RLIMIT_NICE, limit, null);
}
