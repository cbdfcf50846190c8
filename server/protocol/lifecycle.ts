/**
 * Container lifecycle requests beyond run/stop/rm: create, attach, top and
 * prune (`capsa create`, `capsa attach`, `capsa top`, `capsa container prune`).
 * Re-exported by index.ts; clients import them from there.
 */
import { RequestType } from 'vscode-jsonrpc';
import { v } from './validate';
import { attachId, containerRef, progressToken, runOptionFields } from './schemas';
import type { RunOptions } from './types';
import { registryAuth, type RegistryAuth } from './images';

/** Creates a container without starting it (`capsa create`); start it with `capsa/container/start`. */
export namespace ContainerCreateRequest {
  export const method = 'capsa/container/create' as const;
  export const type = new RequestType<ContainerCreateParams, ContainerCreateResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ ...runOptionFields, workDoneToken: v.optional(progressToken()), auth: v.optional(registryAuth()) });
}
export interface ContainerCreateParams extends RunOptions {
  /** LSP work-done token for an implicit pull. */
  workDoneToken?: string | number;
  /** Credentials for an implicit pull (the caller's own, as `capsa/image/pull` takes them); used for that pull alone, never recorded. */
  auth?: RegistryAuth;
}
export interface ContainerCreateResult {
  id: string;
  name: string;
}

/**
 * Attaches this connection to a running container's streams (`capsa attach`):
 * its output arrives as `capsa/stream/output` notifications with attachId,
 * input and resizes go back under the same attachId, and
 * `capsa/stream/exit` ends the session when the container ends.
 */
export namespace ContainerAttachRequest {
  export const method = 'capsa/container/attach' as const;
  export const type = new RequestType<ContainerAttachParams, void, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef(), attachId: attachId() });
}
export interface ContainerAttachParams {
  /** Id, unique id prefix or name. */
  container: string;
  /** Chosen by the client, unique on its connection. */
  attachId: string;
}

/** The processes of a running container (`capsa top`). */
export namespace ContainerTopRequest {
  export const method = 'capsa/container/top' as const;
  export const type = new RequestType<{ container: string }, ContainerTopResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef() });
}
export interface ContainerTopResult {
  /** Column names, as `ps -ef` prints them: UID, PID, PPID, C, STIME, TTY, TIME, CMD. */
  titles: string[];
  /** One row per process, host pids, in pid order. */
  processes: string[][];
}

/** Removes every container that is not running (`capsa container prune`). */
export namespace ContainerPruneRequest {
  export const method = 'capsa/container/prune' as const;
  export const type = new RequestType<Record<string, never> | undefined, ContainerPruneResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.none();
}
export interface ContainerPruneResult {
  /** Ids of the removed containers. */
  deleted: string[];
}
