/**
 * Container requests: run, exec, list, inspect, stop, kill, remove, logs,
 * wait, start and restart. The rest of the lifecycle (create, attach, top,
 * prune) is in lifecycle.ts; the streams of a session are in streams.ts.
 * Re-exported by index.ts; clients import them from there.
 */
import { RequestType } from 'vscode-jsonrpc';
import { v } from './validate';
import { attachId, containerRef, execOptionFields, progressToken, runOptionFields } from './schemas';
import type { ContainerInspect, ContainerSummary, ExecOptions, RunOptions } from './types';
import { registryAuth, type RegistryAuth } from './images';

export namespace ContainerRunRequest {
  export const method = 'capsa/container/run' as const;
  export const type = new RequestType<ContainerRunParams, ContainerRunResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({
    ...runOptionFields,
    attachId: v.optional(attachId()),
    workDoneToken: v.optional(progressToken()),
    auth: v.optional(registryAuth()),
    debugTimings: v.optional(v.boolean()),
  });
}
export interface ContainerRunParams extends RunOptions {
  /**
   * Chosen by the client before sending: output and exit notifications for
   * this container carry it, so none is missed while the response is in flight.
   * Omit it to run detached (no streams are sent to this connection).
   */
  attachId?: string;
  /** LSP work-done token for an implicit pull. */
  workDoneToken?: string | number;
  /** Credentials for an implicit pull (the caller's own, as `capsa/image/pull` takes them); used for that pull alone, never recorded. */
  auth?: RegistryAuth;
  /** With an attachId: `capsa/stream/timings` (the run's phases) comes just before `capsa/stream/exit` (`capsa run --debug-timings`). */
  debugTimings?: boolean;
}
export interface ContainerRunResult {
  id: string;
  name: string;
}

export namespace ContainerExecRequest {
  export const method = 'capsa/container/exec' as const;
  export const type = new RequestType<ContainerExecParams, ContainerExecResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ ...execOptionFields, attachId: v.optional(attachId()) });
}
export interface ContainerExecParams extends ExecOptions {
  /** See {@link ContainerRunParams.attachId}. */
  attachId?: string;
}
export interface ContainerExecResult {
  /** Identifies the exec session in stream notifications (equals attachId when given). */
  execId: string;
}

export namespace ContainerListRequest {
  export const method = 'capsa/container/list' as const;
  export const type = new RequestType<ContainerListParams, ContainerSummary[], void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.optional(v.object({ all: v.optional(v.boolean()) }));
}
export interface ContainerListParams {
  /** Include containers that are not running (`ps -a`). */
  all?: boolean;
}

export namespace ContainerInspectRequest {
  export const method = 'capsa/container/inspect' as const;
  export const type = new RequestType<{ container: string }, ContainerInspect, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef() });
}

export namespace ContainerStopRequest {
  export const method = 'capsa/container/stop' as const;
  export const type = new RequestType<ContainerStopParams, void, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef(), timeout: v.optional(v.number({ min: 0 })) });
}
export interface ContainerStopParams {
  container: string;
  /** Seconds to wait after SIGTERM before SIGKILL; default 10. */
  timeout?: number;
}

export namespace ContainerKillRequest {
  export const method = 'capsa/container/kill' as const;
  export const type = new RequestType<{ container: string; signal?: string }, void, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef(), signal: v.optional(v.string({ min: 1, max: 32 })) });
}

export namespace ContainerRemoveRequest {
  export const method = 'capsa/container/remove' as const;
  export const type = new RequestType<ContainerRemoveParams, void, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef(), force: v.optional(v.boolean()) });
}
export interface ContainerRemoveParams {
  /** Id, unique id prefix or name. */
  container: string;
  /** Kill a running container first. */
  force?: boolean;
}

export namespace ContainerLogsRequest {
  export const method = 'capsa/container/logs' as const;
  export const type = new RequestType<ContainerLogsParams, ContainerLogsResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef(), followAttachId: v.optional(attachId()), tail: v.optional(v.number({ integer: true, min: 0 })) });
}
export interface ContainerLogsParams {
  container: string;
  /** Keep streaming new output as `capsa/stream/output` notifications with this attachId. */
  followAttachId?: string;
  /** Only the last N lines. */
  tail?: number;
}
export interface ContainerLogsResult {
  /** Log records so far, in order. */
  entries: Array<{ stream: 'stdout' | 'stderr'; time: string; data: string }>;
}

export namespace ContainerWaitRequest {
  export const method = 'capsa/container/wait' as const;
  export const type = new RequestType<{ container: string }, { exitCode: number }, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef() });
}

/** Starts a created or exited container again with its original command (`capsa start`). */
export namespace ContainerStartRequest {
  export const method = 'capsa/container/start' as const;
  export const type = new RequestType<ContainerStartParams, void, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef(), attachId: v.optional(attachId()) });
}
export interface ContainerStartParams {
  /** Id, unique id prefix or name. */
  container: string;
  /** Attach this connection to the container's streams from its first byte (`capsa start -a`); see {@link ContainerRunParams.attachId}. */
  attachId?: string;
}

/** Stops (as {@link ContainerStopRequest}) then starts a container (`capsa restart`). */
export namespace ContainerRestartRequest {
  export const method = 'capsa/container/restart' as const;
  export const type = new RequestType<ContainerRestartParams, void, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef(), timeout: v.optional(v.number({ min: 0 })) });
}
export interface ContainerRestartParams {
  /** Id, unique id prefix or name. */
  container: string;
  /** Seconds to wait after SIGTERM before SIGKILL; default 10. */
  timeout?: number;
}
