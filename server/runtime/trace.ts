/**
 * A run's phases, with monotonic timestamps (process.hrtime.bigint(), which
 * on Linux is CLOCK_MONOTONIC, the clock the shim stamps its own phases with:
 * both sides' marks share one time line). Asked for per run (`capsa run
 * --debug-timings`, the run request's `debugTimings`) or for every run
 * (CAPSA_TRACE=1 in the helper's environment: each run's table goes to the
 * helper's log, server/protocol/timings.ts formats it). A run that asks for neither gets NO_TRACE, whose mark does
 * nothing: no clock read, no allocation.
 */

/** One phase: its name and when it ended, in ns on the monotonic clock. */
export interface TracePhase {
  phase: string;
  at: bigint;
}

/** A phase as the protocol carries it: ms since the run's first mark. */
export interface TimedPhase {
  phase: string;
  ms: number;
}

export interface RunTrace {
  readonly on: boolean;
  /** Records that `phase` ended now (or at `at`, a time the shim reported). */
  mark(phase: string, at?: bigint): void;
  phases(): TracePhase[];
}

export const NO_TRACE: RunTrace = { on: false, mark: () => undefined, phases: () => [] };

export class PhaseTrace implements RunTrace {
  readonly on = true;
  private readonly marks: TracePhase[] = [];
  mark(phase: string, at: bigint = process.hrtime.bigint()): void {
    this.marks.push({ phase, at });
  }
  phases(): TracePhase[] {
    return this.marks.slice();
  }
}

/** Whether the helper traces every run: CAPSA_TRACE=1 (read per run, so a test may set it). */
export function traceEverything(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.CAPSA_TRACE === '1';
}

/** A trace for one run: a real one when asked for or when the helper traces everything. */
export function traceFor(asked: boolean | undefined): RunTrace {
  return asked || traceEverything() ? new PhaseTrace() : NO_TRACE;
}

/**
 * The phases in time order (the shim's marks arrive as a batch after some of
 * the helper's), each as ms since the first. A stable sort: phases with the
 * same stamp keep the order they were marked in.
 */
export function timedPhases(phases: TracePhase[]): TimedPhase[] {
  if (!phases.length) return [];
  const sorted = phases.map((p, i) => ({ p, i })).sort((a, b) => (a.p.at < b.p.at ? -1 : a.p.at > b.p.at ? 1 : a.i - b.i));
  const t0 = sorted[0].p.at;
  return sorted.map(({ p }) => ({ phase: p.phase, ms: Number(p.at - t0) / 1e6 }));
}
