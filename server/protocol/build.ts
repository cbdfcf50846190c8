/**
 * Building images from a Dockerfile (`capsa build`) and freeing the build
 * cache (`capsa builder prune`). Re-exported by index.ts.
 */
import { NotificationType, RequestType } from 'vscode-jsonrpc';
import { v } from './validate';
import { platform, progressToken } from './schemas';

/** Builds an image from a Dockerfile and a context the client packed. */
export namespace ImageBuildRequest {
  export const method = 'capsa/image/build' as const;
  export const type = new RequestType<ImageBuildParams, ImageBuildResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({
    context: v.string({ min: 1, max: 4096, expected: 'an absolute path' }),
    // the Dockerfile, build arg and label limits (server/limits.ts) are checked in bytes, naming themselves (the protocol message limit bounds the maps)
    dockerfile: v.string({ max: 4 << 20, expected: 'the Dockerfile text' }),
    dockerfileName: v.optional(v.string({ max: 4096 })),
    tags: v.optional(v.array(v.string({ min: 1, max: 4096, expected: 'REPOSITORY[:TAG]' }), { max: 64 })),
    buildArgs: v.optional(v.record(v.string())),
    labels: v.optional(v.record(v.string())),
    target: v.optional(v.string({ min: 1, max: 256 })),
    noCache: v.optional(v.boolean()),
    pull: v.optional(v.boolean()),
    platform: v.optional(platform()),
    sourceDateEpoch: v.optional(v.number({ integer: true, min: 0, max: 253402300799 })),
    secrets: v.optional(v.record(v.string({ max: 1 << 20, expected: 'base64' }))),
    token: progressToken(),
  });
}
export interface ImageBuildParams {
  /**
   * Absolute path of the context tar, a file the client wrote as the caller;
   * the helper opens it with the caller's rights (hostfile.openRegularFileAs).
   */
  context: string;
  /** The Dockerfile's text, read by the client. */
  dockerfile: string;
  /** Its name, for messages (`Dockerfile`). */
  dockerfileName?: string;
  tags?: string[];
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  target?: string;
  noCache?: boolean;
  /** Pull every base image even when present (`--pull`). */
  pull?: boolean;
  /**
   * `--platform os/arch[/variant]`: the target platform (TARGETPLATFORM and
   * the default of every FROM); default: the host's.
   */
  platform?: string;
  /**
   * SOURCE_DATE_EPOCH (seconds; the client takes it from `--build-arg
   * SOURCE_DATE_EPOCH=` or its environment, as buildx does): each image's
   * and history entry's time, and no layer file's mtime later than it.
   */
  sourceDateEpoch?: number;
  /**
   * `--secret id=…`: each secret's content (base64) by id, read by the
   * client as the caller; `RUN --mount=type=secret` mounts it as a file,
   * never in a layer, a cache key or a record on disk.
   */
  secrets?: Record<string, string>;
  /** Names this build's output notifications. */
  token: string | number;
}
export interface ImageBuildResult {
  /** The image id (config digest). */
  id: string;
  /** Normalised references tagged. */
  tags: string[];
  /** Steps run and steps taken from the cache. */
  ran: number;
  cached: number;
}

/** The build's text outside any step (warnings). */
export namespace ImageBuildOutputNotification {
  export const method = 'capsa/image/buildOutput' as const;
  export const type = new NotificationType<ImageBuildOutputParams>(method);
}
export interface ImageBuildOutputParams {
  token: string | number;
  text: string;
}

/**
 * A step's progress: its start (`Step N/TOTAL`, its stage and place there),
 * its output as it comes, a cache hit, its end. Steps are numbered in plan
 * order; stages that do not depend on each other run side by side, so the
 * events of several steps interleave and each names its step. The client
 * draws them (the classic builder's lines, or BuildKit's in-place view).
 */
export namespace ImageBuildStepNotification {
  export const method = 'capsa/image/buildStep' as const;
  export const type = new NotificationType<ImageBuildStepParams>(method);
}
export interface ImageBuildStepParams {
  token: string | number;
  event: BuildStepEvent;
}
export type BuildStepEvent =
  | {
      kind: 'start';
      /** The step's number, 1-based, in plan order, of `total`. */
      step: number;
      total: number;
      /** The stage as BuildKit names it: its name, `stage-N`, or '' for an unnamed target. */
      stage: string;
      /** The step's place in its stage (FROM is 1) and the stage's step count. */
      pos: number;
      count: number;
      /** The instruction as written (`RUN make`). */
      instruction: string;
    }
  /** Text the step printed (a RUN's output, its container's id), as it came. */
  | { kind: 'output'; step: number; text: string }
  /** The step's result came from the cache. */
  | { kind: 'cached'; step: number }
  /** The step ended after `ms`; `id` is the image it left (none for FROM scratch). */
  | { kind: 'done'; step: number; id?: string; ms: number }
  /** The step failed with `message`. */
  | { kind: 'failed'; step: number; message: string; ms: number }
  /** The step was stopped: the build was cancelled, or another step failed. */
  | { kind: 'cancelled'; step: number; ms: number };

/** Frees the caller's build cache (`capsa builder prune`). */
export namespace BuilderPruneRequest {
  export const method = 'capsa/builder/prune' as const;
  export const type = new RequestType<Record<string, never>, BuilderPruneResult, void>(method);
  export const params = v.object({});
}
export interface BuilderPruneResult {
  /** Cache entries dropped. */
  entries: number;
  /** Images deleted with them. */
  deleted: string[];
  /** `RUN --mount=type=cache` directories removed. */
  cacheMounts?: number;
}
