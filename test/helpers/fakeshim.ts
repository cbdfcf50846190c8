/**
 * A ShimLauncher that records every call and answers as a test scripts it,
 * so the container lifecycle runs without root, a kernel or the shim.
 */
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import type { ExecProcess, MonitorConnection, MonitorLaunch, ShimLauncher } from '../../server/runtime/container';
import type { ExitInfo } from '../../server/runtime/monitor';
import { ContainerSetupError, ShimError } from '../../server/runtime/native';
import type { Plan } from '../../server/runtime/plan';

/** How a launch goes: `pending` never reports (a start a helper dies in). */
export type Outcome =
  | { kind: 'started'; pid?: number; monitorPid?: number }
  | { kind: 'setup-error'; step: string; errno: number; path?: string; message?: string }
  | { kind: 'shim-error'; message?: string }
  | { kind: 'pending' };

/** A monitor connection whose container ends when the test says (or at a signal, with exitOnSignal). */
export class FakeMonitor extends EventEmitter implements MonitorConnection {
  readonly exited: Promise<ExitInfo | undefined>;
  readonly signals: number[] = [];
  readonly inputs: Array<{ data: string; eof: boolean }> = [];
  readonly resizes: Array<[number, number]> = [];
  closed = false;
  private settle!: (info: ExitInfo | undefined) => void;

  constructor(
    private readonly pid: number,
    /** Signals that end the container at once, with 128 + the signal. */
    private readonly exitOnSignal: Set<number>,
  ) {
    super();
    this.exited = new Promise((r) => (this.settle = r));
  }

  /** The container's PID 1 exits with code. */
  exit(code: number, signal = 0): void {
    this.settle({ exitCode: code, signal, pid: this.pid, finishedAt: new Date().toISOString() });
  }

  /** The monitor goes away without reporting an exit. */
  lose(): void {
    this.settle(undefined);
  }

  output(stream: 'stdout' | 'stderr', text: string): void {
    this.emit('output', stream, Buffer.from(text));
  }

  input(data: Buffer, eof: boolean): void {
    this.inputs.push({ data: data.toString(), eof });
  }

  resize(rows: number, cols: number): void {
    this.resizes.push([rows, cols]);
  }

  signal(n: number): void {
    this.signals.push(n);
    if (this.exitOnSignal.has(n)) this.exit(128 + n, n);
  }

  close(): void {
    this.closed = true;
    this.lose();
  }
}

export type LauncherCall =
  | { kind: 'monitor'; plan: Plan; dir: string; stdin: boolean }
  | { kind: 'connect'; dir: string }
  | { kind: 'exec'; plan: Plan; stdin: boolean };

export class FakeLauncher implements ShimLauncher {
  readonly calls: LauncherCall[] = [];
  readonly monitors: FakeMonitor[] = [];
  /** Outcomes of the next launches, in order; a launch with none left starts. */
  readonly script: Outcome[] = [];
  /** Monitors that connectMonitor finds, by directory. */
  readonly listening = new Map<string, FakeMonitor>();
  /** Which signals end a fake container at once (TERM and KILL unless a test says otherwise). */
  exitOnSignal = new Set([9, 15]);
  private nextPid = 1000;

  launchMonitor(plan: Plan, dir: string, opts: { stdin: boolean }): MonitorLaunch {
    this.calls.push({ kind: 'monitor', plan, dir, stdin: opts.stdin });
    const outcome = this.script.shift() ?? { kind: 'started' };
    const pid = outcome.kind === 'started' && outcome.pid !== undefined ? outcome.pid : this.nextPid++;
    const client = new FakeMonitor(pid, this.exitOnSignal);
    this.monitors.push(client);
    const started = this.started(outcome, pid);
    // as the real launcher: a start that failed closes the attach connection
    started.catch(() => client.close());
    return { client, started: started.then((s) => ({ pid: s, monitorPid: outcome.kind === 'started' ? outcome.monitorPid ?? s + 1 : 0 })) };
  }

  async connectMonitor(dir: string): Promise<MonitorConnection | undefined> {
    this.calls.push({ kind: 'connect', dir });
    return this.listening.get(dir);
  }

  launchExec(plan: Plan, opts: { stdin: boolean }): ExecProcess & { exit(code: number): void; signals: number[] } {
    this.calls.push({ kind: 'exec', plan, stdin: opts.stdin });
    const outcome = this.script.shift() ?? { kind: 'started' };
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const signals: number[] = [];
    let exit!: (code: number) => void;
    const exited = new Promise<number>((r) => (exit = r));
    const started = this.started(outcome, this.nextPid++);
    // a failed exec ends its streams, as the shim's do when it exits
    started.catch(() => {
      stdout.end();
      stderr.end();
    });
    return {
      started,
      exited,
      resize: () => undefined,
      signal: (n) => signals.push(n),
      stdin: opts.stdin ? new PassThrough() : null,
      stdout,
      stderr,
      signals,
      exit: (code) => {
        stdout.end();
        stderr.end();
        exit(code);
      },
    };
  }

  private started(outcome: Outcome, pid: number): Promise<number> {
    switch (outcome.kind) {
      case 'started':
        return Promise.resolve(pid);
      case 'pending':
        return new Promise<number>(() => undefined);
      case 'setup-error':
        return Promise.reject(new ContainerSetupError({ step: outcome.step, path: outcome.path ?? '', errno: outcome.errno, message: outcome.message ?? `${outcome.step} failed` }));
      case 'shim-error':
        return Promise.reject(new ShimError(outcome.message ?? 'the shim ended without reporting (exit status 1)'));
    }
  }
}
