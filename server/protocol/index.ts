/**
 * The Capsa protocol: every request and notification between the helper and
 * its clients (the VS Code extension, the `capsa` CLI), declared once.
 *
 * Transport: JSON-RPC 2.0 with Content-Length framing (vscode-jsonrpc), over
 * the helper's stdio or its unix socket. This folder is the only part of
 * server/ that extension/ and server/cli/ may import.
 */
import { NotificationType, RequestType, RequestType0 } from 'vscode-jsonrpc';
import { v } from './validate';
import { attachId, containerRef, execOptionFields, platform, progressToken, runOptionFields, terminalSize } from './schemas';

export * from './types';
export * from './errors';
import type {
  ContainerEvent,
  ContainerSummary,
  ImageSummary,
  ImageEvent,
  PullResult,
  RunOptions,
  ExecOptions,
  ContainerInspect,
} from './types';

/** Protocol revision; bumped when a message changes incompatibly. */
export const PROTOCOL_VERSION = 1;

export namespace VersionRequest {
  export const method = 'capsa/version' as const;
  export const type = new RequestType0<VersionResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.none();
}
export interface VersionResult {
  /** The helper's package version. */
  version: string;
  /** {@link PROTOCOL_VERSION} of the helper. */
  protocol: number;
  /** Capsa root on disk (e.g. /var/lib/capsa). */
  root: string;
  /** Host pid of the helper. */
  pid: number;
}

export namespace ImagePullRequest {
  export const method = 'capsa/image/pull' as const;
  export const type = new RequestType<ImagePullParams, PullResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ reference: v.string({ max: 4096, expected: 'an image reference' }), platform: v.optional(platform()), workDoneToken: v.optional(progressToken()) });
}
export interface ImagePullParams {
  /** Image reference as a user typed it: `busybox`, `ghcr.io/o/r:tag`, `r@sha256:…`. */
  reference: string;
  /** `os/arch[/variant]`; default: the host's platform. */
  platform?: string;
  /** LSP work-done token; when set, the helper reports per-layer progress under it. */
  workDoneToken?: string | number;
}

export namespace ImageListRequest {
  export const method = 'capsa/image/list' as const;
  export const type = new RequestType0<ImageSummary[], void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.none();
}

export namespace ImageRemoveRequest {
  export const method = 'capsa/image/remove' as const;
  export const type = new RequestType<ImageRemoveParams, ImageRemoveResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ image: v.string({ min: 1, max: 4096, expected: 'an image reference or id' }), force: v.optional(v.boolean()) });
}
export interface ImageRemoveParams {
  /** A reference (`busybox:latest`), an image id or a unique id prefix. */
  image: string;
  /** Remove even if containers use the image. */
  force?: boolean;
}
export interface ImageRemoveResult {
  /** References untagged. */
  untagged: string[];
  /** Digests of blobs and layers deleted because nothing else uses them. */
  deleted: string[];
}

export namespace ContainerRunRequest {
  export const method = 'capsa/container/run' as const;
  export const type = new RequestType<ContainerRunParams, ContainerRunResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ ...runOptionFields, attachId: v.optional(attachId()), workDoneToken: v.optional(progressToken()) });
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

// ---- streams of a run or exec session -------------------------------------

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

// ---- state changes, broadcast to every connection --------------------------

export namespace ContainerEventNotification {
  export const method = 'capsa/event/container' as const;
  export const type = new NotificationType<ContainerEvent>(method);
}

export namespace ImageEventNotification {
  export const method = 'capsa/event/image' as const;
  export const type = new NotificationType<ImageEvent>(method);
}

// ---- appended: container lifecycle used by the extension's Containers view --

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
export * from './network';
export * from './lifecycle';

// ---- appended: image archives, pruning and disk usage -----------------------

/** Loads the images of a `docker save` or OCI image layout archive (`capsa load`). */
export namespace ImageLoadRequest {
  export const method = 'capsa/image/load' as const;
  export const type = new RequestType<ImageLoadParams, ImageLoadResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ input: v.string({ min: 1, max: 4096, expected: 'an absolute path' }), workDoneToken: v.optional(progressToken()) });
}
export interface ImageLoadParams {
  /** Absolute, normalised path of the archive on the helper's host; read by the helper (as root). */
  input: string;
  /** LSP work-done token; when set, the helper reports how much of the archive it has read. */
  workDoneToken?: string | number;
}
export interface ImageLoadResult {
  images: Array<{
    /** Image id (config digest). */
    id: string;
    /** Normalised tag references the archive gave it; empty for an untagged image. */
    references: string[];
  }>;
}

/** Writes images to a `docker save` archive (`capsa save -o FILE IMAGE…`). */
export namespace ImageSaveRequest {
  export const method = 'capsa/image/save' as const;
  export const type = new RequestType<ImageSaveParams, ImageSaveResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ images: v.array(v.string({ min: 1, max: 4096 }), { min: 1 }), output: v.string({ min: 1, max: 4096, expected: 'an absolute path' }) });
}
export interface ImageSaveParams {
  /** References or ids; a reference puts its tag in the archive, an id saves the image untagged. */
  images: string[];
  /** Absolute, normalised path to write; replaced atomically if it is a regular file. */
  output: string;
}
export interface ImageSaveResult {
  /** Bytes written. */
  size: number;
  /** Ids of the images written. */
  ids: string[];
}

/** Removes unused images (`capsa image prune [-a]`). */
export namespace ImagePruneRequest {
  export const method = 'capsa/image/prune' as const;
  export const type = new RequestType<ImagePruneParams, ImagePruneResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.optional(v.object({ all: v.optional(v.boolean()) }));
}
export interface ImagePruneParams {
  /** Every image no container uses, not only untagged ones. */
  all?: boolean;
}
export interface ImagePruneResult {
  /** Image ids, then blob and layer digests, that were deleted. */
  deleted: string[];
  /** Bytes freed on disk (unpacked layers and blobs). */
  reclaimed: number;
}

/** Disk used by images, layers, blobs and containers (`capsa system df`). */
export namespace SystemDfRequest {
  export const method = 'capsa/system/df' as const;
  export const type = new RequestType0<SystemDfResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.none();
}
export interface SystemDfResult {
  images: {
    count: number;
    /** Images some container uses. */
    active: number;
    /** Bytes of the unpacked layers all images use (shared layers counted once). */
    size: number;
    /** Bytes of unpacked layers no container's image uses. */
    reclaimable: number;
  };
  /** Unpacked layers (overlay lower directories). */
  layers: { count: number; size: number };
  /** Compressed blobs: layers as downloaded, manifests, configs. */
  blobs: { count: number; size: number };
  /**
   * Root's answer only: each namespace's images (count, and bytes of the
   * unpacked layers they use, shared layers counted in each). A user's
   * answer counts only their own images and what those reference.
   */
  owners?: Array<{ owner: number; images: number; size: number }>;
  containers: {
    count: number;
    running: number;
    /** Bytes written by containers (their upper directories). */
    size: number;
    /** Bytes of containers that are not running. */
    reclaimable: number;
  };
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

/** A named volume: a directory under Capsa's root that containers mount with `-v NAME:/path` or `--mount type=volume`. */
export interface VolumeSummary {
  /** Docker's character set, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 characters. */
  name: string;
  /** Always `local`: the data lives on this host under Capsa's root. */
  driver: 'local';
  /** The host directory containers see: `<root>/volumes/<name>/_data` for root's, `<root>/volumes/.uid-<uid>/<name>/_data` for another owner's. */
  mountpoint: string;
  /** ISO 8601 time the volume was created. */
  created: string;
  labels?: Record<string, string>;
  /** Names of the containers (in any state) that mount it. */
  usedBy: string[];
  /** The uid that created it (root's for volumes older than owners). A caller other than root sees only its own. */
  owner?: number;
}

/** Creates a named volume, or returns the one of that name (`capsa volume create`). */
export namespace VolumeCreateRequest {
  export const method = 'capsa/volume/create' as const;
  export const type = new RequestType<VolumeCreateParams, VolumeSummary, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ name: v.optional(v.string()), labels: v.optional(v.record(v.string())) });
}
export interface VolumeCreateParams {
  /** The volume's name; a random 64-hex-digit name when omitted, as Docker does. */
  name?: string;
  /** `--label KEY=VALUE` pairs, kept with the volume. */
  labels?: Record<string, string>;
}

/** Every named volume the caller owns (root: every owner's), sorted by name (`capsa volume ls`). */
export namespace VolumeListRequest {
  export const method = 'capsa/volume/list' as const;
  export const type = new RequestType0<VolumeSummary[], void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.none();
}

/** One volume (`capsa volume inspect`). */
export namespace VolumeInspectRequest {
  export const method = 'capsa/volume/inspect' as const;
  export const type = new RequestType<VolumeRefParams, VolumeSummary, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ volume: v.string({ min: 1 }) });
}
export interface VolumeRefParams {
  /** The volume's name. */
  volume: string;
}

/** Removes a volume and its data (`capsa volume rm [-f]`). */
export namespace VolumeRemoveRequest {
  export const method = 'capsa/volume/remove' as const;
  export const type = new RequestType<VolumeRemoveParams, void, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ volume: v.string({ min: 1 }), force: v.optional(v.boolean()) });
}
export interface VolumeRemoveParams {
  /** The volume's name. */
  volume: string;
  /** Remove it even while containers mount it (their data goes with it). */
  force?: boolean;
}

/** Removes every volume no container mounts (`capsa volume prune`). */
export namespace VolumePruneRequest {
  export const method = 'capsa/volume/prune' as const;
  export const type = new RequestType0<VolumePruneResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.none();
}
export interface VolumePruneResult {
  /** Names of the volumes removed. */
  deleted: string[];
  /** Bytes freed on disk. */
  reclaimed: number;
}

// ---- checking params, and printing what others wrote ---------------------
export { v, ParamsError, describe, type Schema, type Infer } from './validate';
export { PULL_POLICIES, USERNS_MODES, pullPolicyProblem, usernsProblem } from './runoptions';
export { OS_VALUES, ARCH_VALUES, platformProblem, normalizePlatform as normalizePlatformParts, type PlatformParts } from './platform';
export { printable, printableLines, listed, clip } from '../util/text';
