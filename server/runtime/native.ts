/**
 * The bridge to the native shim (native/): spawns `capsa-shim run|exec`,
 * hands it the plan on fd 3, reads its status lines from fd 4 and sends
 * control lines on fd 5. The shim is single-threaded on purpose; see
 * docs/ARCHITECTURE.md, "Why a native shim".
 */
import type * as net from 'node:net';
import { constants as osConstants } from 'node:os';
import { Readable, Writable } from 'node:stream';
import { CapsaError } from '../errors';
import { encodePlan, Plan } from './plan';
import { spawnProgram, type SpawnedProgram } from '../util/spawn';
import { shimPath } from '../util/layout';

/** The status the shim writes to fd 4, one line each. */
export type ShimStatus =
  | { kind: 'started'; pid: number }
  /** `run --monitor`: the pid of the monitor the shim forked, before `started`. */
  | { kind: 'monitor'; pid: number }
  | { kind: 'error'; step: string; path: string; errno: number; message: string; context?: string[] }
  | { kind: 'exit'; code: number }
  /** `--trace` only: a phase the shim (or the container's first process) ended, at `ns` on CLOCK_MONOTONIC. */
  | { kind: 'phase'; phase: string; ns: bigint };

/** A container could not be set up: names the step, the path and the errno. */
export class ContainerSetupError extends CapsaError {
  /** Setup step that failed, e.g. `mount`, `exec`, `cwd`, `cgroup`. */
  readonly step: string;
  /** Path the step worked on (inside the container for in-container steps). */
  readonly path: string;
  /** errno number (0 when the failure had none). */
  readonly errno: number;
  /** Symbolic errno, e.g. `EACCES`, when known. */
  readonly errnoName: string | undefined;
  /** What each layer of the shim was doing when the step failed, outermost first ("while creating the container", …). */
  readonly context: string[];

  constructor(status: { step: string; path: string; errno: number; message: string; context?: string[] }) {
    super('E_CONTAINER_SETUP', formatSetupError(status), { fields: { step: status.step, path: status.path, errno: status.errno } });
    this.step = status.step;
    this.path = status.path;
    this.errno = status.errno;
    this.errnoName = errnoName(status.errno);
    this.context = status.context ?? [];
  }
}

/** The shim ended without the status it owes (killed, crashed, not built). */
export class ShimError extends CapsaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_SHIM', message, options);
  }
}

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name]),
);

/** `EACCES` for 13, or undefined for numbers this platform does not name. */
export function errnoName(errno: number): string | undefined {
  return errnoNames.get(errno);
}

function formatSetupError(s: { step: string; path: string; errno: number; message: string }): string {
  // the shim already phrases exec failures the way users know them from runc
  if (s.step === 'exec') return s.message;
  const name = errnoName(s.errno);
  const where = s.path ? ` ${JSON.stringify(s.path)}` : '';
  return `container setup failed at ${s.step}${where}: ${s.message}${name ? ` (${name})` : ''}`;
}

/**
 * Parses one status line (without its newline). Returns undefined for a
 * line this version does not know, so an older helper tolerates a newer shim.
 */
export function parseStatusLine(line: string): ShimStatus | undefined {
  const space = line.indexOf(' ');
  const verb = space < 0 ? line : line.slice(0, space);
  const rest = space < 0 ? '' : line.slice(space + 1);
  switch (verb) {
    case 'started':
    case 'monitor': {
      const pid = parseDecimal(rest);
      return pid !== undefined && pid > 0 ? { kind: verb, pid } : undefined;
    }
    case 'exit': {
      const code = parseDecimal(rest);
      return code !== undefined ? { kind: 'exit', code } : undefined;
    }
    case 'phase': {
      const at = rest.lastIndexOf(' ');
      const ns = at > 0 ? rest.slice(at + 1) : '';
      return /^\d{1,20}$/.test(ns) ? { kind: 'phase', phase: rest.slice(0, at), ns: BigInt(ns) } : undefined;
    }
    case 'error': {
      const fields = rest.split('\t');
      if (fields.length < 4) return undefined;
      const [step, p, errno] = fields;
      const n = parseDecimal(errno);
      if (n === undefined) return undefined;
      // fields after the message: the context chain, outermost first (the shim blanks tabs inside fields)
      const context = fields.slice(4).filter((c) => c !== '');
      return { kind: 'error', step, path: p, errno: n, message: fields[3], ...(context.length ? { context } : {}) };
    }
    default:
      return undefined;
  }
}

function parseDecimal(s: string): number | undefined {
  return /^\d{1,10}$/.test(s) ? Number(s) : undefined;
}

/**
 * Splits a byte stream into lines and hands each complete one to onLine.
 * Exposed for tests; handles lines split across chunks.
 */
export class StatusLineReader {
  private pending = '';
  constructor(private readonly onLine: (status: ShimStatus) => void) {}

  push(chunk: string): void {
    this.pending += chunk;
    let nl: number;
    while ((nl = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      const status = parseStatusLine(line);
      if (status) this.onLine(status);
    }
  }
}

/** Absolute path of the shim binary: `<package root>/native/build/capsa-shim` (server/util/layout.ts). */
export { shimPath };

export type ShimStdio = 'pipe' | 'ignore' | 'inherit' | number;

export interface StartShimOptions {
  stdin: ShimStdio;
  stdout: ShimStdio;
  stderr: ShimStdio;
  /** `run` creates a container; `exec` joins the one named by `plan.joinPid`. */
  mode: 'run' | 'exec';
  /** Overrides {@link shimPath} (tests). */
  shim?: string;
}

export interface ShimHandle {
  /** The shim's own pid (0 when it could not be started). */
  pid: number;
  /** Signals the shim, which passes the signal on to the container process; nothing once the shim has ended. */
  kill(signal: NodeJS.Signals): void;
  /** Host pid of the container process, once it has exec'd its command. */
  started: Promise<number>;
  /** The container process's exit code (128 + signal when killed); 125 when setup failed. */
  exited: Promise<number>;
  /** Sets the pty's window size (no-op without a terminal). */
  resize(rows: number, cols: number): void;
  /** Sends signal n to the container process (through its pidfd). */
  signal(n: number): void;
  stdin: Writable | null;
  stdout: Readable | null;
  stderr: Readable | null;
}

/** What the shim's status pipe said, once the shim has ended and the pipe is read to its end. */
export interface ShimOutcome {
  /** The `exit` line: the container process's status (exec). */
  reported?: number;
  /** The `error` line, if the shim reported one. */
  setupError?: ContainerSetupError;
  /** The shim's own end. */
  code: number | null;
  signal: number | null;
}

/**
 * Follows a shim's status pipe, for run and exec alike: `started` resolves
 * at `started` (with the monitor's pid when a `monitor` line came first),
 * rejects with the {@link ContainerSetupError} of an `error` line, or with a
 * {@link ShimError} once the shim ended without either; `ended` settles when
 * both the shim has ended and its status pipe is read to the end.
 */
/** What `started` resolves with: the command's pid, the monitor's (0 without one), and with --trace the shim's phases. */
export interface ShimStarted {
  pid: number;
  monitorPid: number;
  phases?: Array<{ phase: string; at: bigint }>;
}

export function followShimStatus(
  statusFd: net.Socket,
  childExited: Promise<{ code: number | null; signal: number | null }>,
): { started: Promise<ShimStarted>; ended: Promise<ShimOutcome> } {
  let resolveStarted!: (v: ShimStarted) => void;
  let rejectStarted!: (err: Error) => void;
  const started = new Promise<ShimStarted>((res, rej) => {
    resolveStarted = res;
    rejectStarted = rej;
  });
  // callers that only await `ended` (or `exited`) must not see an unhandled rejection
  started.catch(() => undefined);
  let monitorPid = 0;
  const phases: ShimStarted['phases'] = [];
  let reported: number | undefined;
  let setupError: ContainerSetupError | undefined;
  const reader = new StatusLineReader((s) => {
    if (s.kind === 'monitor') monitorPid = s.pid;
    else if (s.kind === 'phase') phases.push({ phase: `shim: ${s.phase}`, at: s.ns });
    else if (s.kind === 'started') resolveStarted({ pid: s.pid, monitorPid, ...(phases.length ? { phases } : {}) });
    else if (s.kind === 'error') {
      setupError ??= new ContainerSetupError(s);
      rejectStarted(setupError);
    } else reported = s.code;
  });
  statusFd.setEncoding('utf8');
  statusFd.on('data', (chunk: string) => reader.push(chunk));
  const statusRead = new Promise<void>((resolve) => statusFd.once('close', () => resolve()));
  const ended = Promise.all([childExited, statusRead]).then(([{ code, signal }]) => {
    // a no-op once `started` has settled
    rejectStarted(new ShimError(`the shim ended without reporting (${signal !== null ? `signal ${signal}` : `exit status ${code}`})`));
    return { reported, setupError, code, signal };
  });
  return { started, ended };
}

/**
 * Spawns the shim with args: the one place run and exec start it. A shim
 * that cannot be started at all comes back as the ShimError to report.
 */
export function spawnShim(shim: string, args: string[], options: Parameters<typeof spawnProgram>[2]): SpawnedProgram | ShimError {
  try {
    return spawnProgram(shim, args, options);
  } catch (err) {
    return new ShimError(`cannot start the shim ${shim}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Spawns the shim for plan and follows it until the container process ends.
 * posix_spawn (util/spawn.ts), not child_process: Node's fork of the helper
 * was about a third of an exec.
 */
export function startShim(plan: Plan, opts: StartShimOptions): ShimHandle {
  if ((opts.mode === 'exec') !== (plan.joinPid !== undefined)) {
    throw new ShimError(`shim mode ${opts.mode} does not match the plan (joinPid ${plan.joinPid ?? 'unset'})`);
  }
  const encoded = encodePlan(plan);
  const shim = opts.shim ?? shimPath();
  const stdio = ([opts.stdin, opts.stdout, opts.stderr] as ShimStdio[]).map((s, i) => (s === 'pipe' ? 'socket' : s === 'ignore' ? 'null' : s === 'inherit' ? i : s));
  // a session of its own: the shim forwards signals itself, and a
  // terminal's Ctrl-C must not reach it through the helper's process group;
  // watched through a pidfd, since an exec (a shell) may run for hours
  const child = spawnShim(shim, [opts.mode], { stdio, fds: ['socket', 'socket', 'socket'], setsid: true, watch: 'pidfd', ref: true });
  if (child instanceof ShimError) {
    const failed = Promise.reject(child);
    // the caller sees the error through `started`; `exited` repeats it and need not be awaited
    failed.catch(() => undefined);
    return { pid: 0, kill: () => undefined, started: failed, exited: failed, resize: () => undefined, signal: () => undefined, stdin: null, stdout: null, stderr: null };
  }
  const [planFd, statusFd, controlFd] = child.sockets as net.Socket[];
  const [stdinEnd, stdoutEnd, stderrEnd] = child.stdio;
  // one-way ends: shut what we will never use, so each side sees the end it expects
  planFd.resume();
  statusFd.end();
  controlFd.resume();
  stdinEnd?.resume();
  stdoutEnd?.end();
  stderrEnd?.end();

  let ended = false;
  void child.exited.then(() => (ended = true));
  const status = followShimStatus(statusFd, child.exited);
  const started = status.started.then((s) => s.pid);
  // callers that only await `exited` must not see an unhandled rejection
  started.catch(() => undefined);
  // decide once both the process has ended and its status pipe is read to
  // the end (waiting for the other streams too would also wait for the
  // caller to drain stdout, which it may never do)
  const exited = status.ended.then(({ reported, setupError, code, signal }) => {
    if (reported !== undefined) return reported;
    if (setupError) return code ?? 125;
    throw new ShimError(`the shim ended without reporting (${signal !== null ? `signal ${signal}` : `exit status ${code}`})`);
  });
  // a caller that awaits only `started` learns of a shim that never reported there
  exited.catch(() => undefined);

  // EPIPE here means the shim died early, or (stdin) the process closed its
  // input: 'close' and the exit status report that; unhandled, it would end the helper
  for (const s of [planFd, statusFd, controlFd, stdinEnd, stdoutEnd, stderrEnd]) s?.on('error', () => undefined);
  planFd.end(encoded);

  const control = (line: string): void => {
    if (!controlFd.destroyed && controlFd.writable) controlFd.write(line);
  };
  return {
    pid: child.pid,
    kill(signal) {
      // once reaped, the pid may be another process's
      if (!ended) process.kill(child.pid, signal);
    },
    started,
    exited,
    resize(rows, cols) {
      control(`resize ${Math.trunc(rows)} ${Math.trunc(cols)}\n`);
    },
    signal(n) {
      control(`signal ${Math.trunc(n)}\n`);
    },
    stdin: stdinEnd ?? null,
    stdout: stdoutEnd ?? null,
    stderr: stderrEnd ?? null,
  };
}
