/**
 * Where a container's output goes while it runs: the sinks of the clients
 * that ran, started or attached to it, and input and terminal size from them.
 */
import { ConflictError } from '../../errors';
import type { Entry } from './entry';
import { checkSize } from './options';
import type { TimedPhase } from '../trace';

/** Where a run or exec session's streams go: one client connection. */
export interface StreamSink {
  /** `time`: when the monitor logged the bytes (log follows only). */
  output(stream: 'stdout' | 'stderr', data: Buffer, time?: string): void;
  /** `timings`: the run's phases so far, when it was traced (../trace.ts). */
  exit(exitCode: number, error?: string, timings?: TimedPhase[]): void;
}

/** Adds a sink to a running container's output; returns its removal. */
export function attachSink(e: Entry, sink: StreamSink): () => void {
  if (!e.live) throw new ConflictError(`container ${e.record.name} is not running`);
  e.live.sinks.add(sink);
  return () => e.live?.sinks.delete(sink);
}

/** Stops sending a container's output to `sink`, whose client went away; the container goes on. */
export function detachSink(e: Entry | undefined, sink: StreamSink): void {
  e?.live?.sinks.delete(sink);
}

/** Input for the container's stdin; nothing once it has ended. */
export function sendInput(e: Entry, data: Buffer, eof: boolean): void {
  e.live?.monitor.input(data, eof);
}

export function resizeTerminal(e: Entry, rows: number, cols: number): void {
  checkSize(rows, cols);
  e.live?.monitor.resize(rows, cols);
}

/** Settles when s has ended, closed or failed (or at once, when there is none). */
export function streamEnd(s: NodeJS.ReadableStream | null | undefined): Promise<void> {
  if (!s) return Promise.resolve();
  return new Promise((resolve) => {
    s.once('end', resolve);
    s.once('close', resolve);
    s.once('error', () => resolve());
  });
}
