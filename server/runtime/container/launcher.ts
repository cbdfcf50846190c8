/**
 * The container side's only way to the shim: launching a container's
 * monitor (run, start), reconnecting to one (a restarted helper), and
 * launching an exec. The real launcher wraps native.ts and monitor.ts;
 * unit tests give the lifecycle a fake that scripts the shim's answers.
 */
import { MonitorClient, launchMonitor, type ExitInfo } from '../monitor';
import { startShim, type ShimHandle } from '../native';
import type { Plan } from '../plan';
import type { ShimStarted } from '../native';
import type { RunTrace } from '../trace';

/** A connection to a container's monitor (MonitorClient, or a fake). */
export interface MonitorConnection {
  /** `output` (stream, data): every chunk the container writes. */
  on(event: 'output', listener: (stream: 'stdout' | 'stderr', data: Buffer) => void): unknown;
  /** The exit the monitor reported, or undefined when it went away without saying. */
  readonly exited: Promise<ExitInfo | undefined>;
  input(data: Buffer, eof: boolean): void;
  resize(rows: number, cols: number): void;
  signal(n: number): void;
  close(): void;
}

export interface MonitorLaunch {
  /** The launching helper's attach connection: every byte from the first. */
  client: MonitorConnection;
  /**
   * Resolves once the container's command runs; rejects with the shim's
   * ContainerSetupError, or a ShimError when it could not start or report.
   */
  started: Promise<ShimStarted>;
}

/** A process run in a running container (ShimHandle, or a fake). */
/** An exec's process: the shim's handle, as for a foreground run (see ShimHandle in ../native). */
export type ExecProcess = Omit<ShimHandle, 'pid' | 'kill'>;

export interface ShimLauncher {
  /** Launches the monitor of the container in dir, which runs plan; `bindFds` become its fds 6, 7, … (the plan's bindFds). */
  launchMonitor(plan: Plan, dir: string, opts: { stdin: boolean; bindFds?: number[]; trace?: RunTrace }): MonitorLaunch;
  /** The monitor serving dir, if one still listens there. */
  connectMonitor(dir: string): Promise<MonitorConnection | undefined>;
  /** Runs an exec plan; stdin is a pipe when `stdin`, else /dev/null. */
  launchExec(plan: Plan, opts: { stdin: boolean }): ExecProcess;
}

/** The shim itself (native/build/capsa-shim). */
export const nativeShimLauncher: ShimLauncher = {
  launchMonitor: (plan, dir, opts) => launchMonitor(plan, dir, opts),
  connectMonitor: (dir) => MonitorClient.connect(dir),
  launchExec: (plan, opts) => startShim(plan, { mode: 'exec', stdin: opts.stdin ? 'pipe' : 'ignore', stdout: 'pipe', stderr: 'pipe' }),
};
