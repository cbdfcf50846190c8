/**
 * The streams of a run, exec, attach or log-follow session, keyed by the
 * client's attachId: output and exit (helper → client), input, resize and
 * close (client → helper). Re-exported by index.ts; clients import them from
 * there.
 */
import { NotificationType } from 'vscode-jsonrpc';
import { v } from './validate';
import { attachId, terminalSize } from './schemas';

/** Helper → client: bytes the container wrote. */
export namespace StreamOutputNotification {
  export const method = 'capsa/stream/output' as const;
  export const type = new NotificationType<StreamOutputParams>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ attachId: attachId(), stream: v.literal('stdout', 'stderr'), data: v.string(), time: v.optional(v.string()) });
}
export interface StreamOutputParams {
  attachId: string;
  stream: 'stdout' | 'stderr';
  /** Base64 of the bytes. */
  data: string;
  /** When the container's monitor logged the bytes (RFC 3339); set for `logs` follows only. */
  time?: string;
}

/** Client → helper: bytes for the process's stdin (or the pty). */
export namespace StreamInputNotification {
  export const method = 'capsa/stream/input' as const;
  export const type = new NotificationType<StreamInputParams>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ attachId: attachId(), data: v.string(), eof: v.optional(v.boolean()) });
}
export interface StreamInputParams {
  attachId: string;
  /** Base64 of the bytes; may be empty with `eof`. */
  data: string;
  /** Close the process's stdin after these bytes. */
  eof?: boolean;
}

/** Client → helper: the client's terminal changed size. */
export namespace StreamResizeNotification {
  export const method = 'capsa/stream/resize' as const;
  export const type = new NotificationType<StreamResizeParams>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ attachId: attachId(), rows: terminalSize().shape.rows, cols: terminalSize().shape.cols });
}
export interface StreamResizeParams {
  attachId: string;
  rows: number;
  cols: number;
}

/** Helper → client: the attached process ended; no output follows. */
export namespace StreamExitNotification {
  export const method = 'capsa/stream/exit' as const;
  export const type = new NotificationType<StreamExitParams>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ attachId: attachId(), exitCode: v.number({ integer: true }), error: v.optional(v.string()) });
}
export interface StreamExitParams {
  attachId: string;
  /** The process's exit status; 128+N when killed by signal N. */
  exitCode: number;
  /** Set when the process could not be started or the runtime failed. */
  error?: string;
}

/**
 * Helper → client: the phases of a traced run (ContainerRunParams.debugTimings),
 * each with when it ended in ms since the first, on the helper's monotonic
 * clock; sent just before `capsa/stream/exit`. The removal of a --rm
 * container comes after the exit and is not in it.
 */
export namespace StreamTimingsNotification {
  export const method = 'capsa/stream/timings' as const;
  export const type = new NotificationType<StreamTimingsParams>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ attachId: attachId(), phases: v.array(v.object({ phase: v.string(), ms: v.number() })) });
}
export interface StreamTimingsParams {
  attachId: string;
  phases: Array<{ phase: string; ms: number }>;
}

/**
 * Client → helper: the client is done with a session (its terminal closed).
 * An exec session is hung up: SIGHUP to its process, as a closing terminal
 * does, and `capsa/stream/exit` follows when it ends. A log follow or an
 * attach is detached at once: no more output and no `capsa/stream/exit` for
 * it. An unknown attachId is ignored.
 */
export namespace StreamCloseNotification {
  export const method = 'capsa/stream/close' as const;
  export const type = new NotificationType<StreamCloseParams>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ attachId: attachId() });
}
export interface StreamCloseParams {
  attachId: string;
}
