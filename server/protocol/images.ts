/**
 * Image requests: pull, list, remove, load, save and prune (`capsa pull`,
 * `capsa images`, `capsa rmi`, `capsa load`, `capsa save`, `capsa image
 * prune`). Re-exported by index.ts; clients import them from there.
 */
import { RequestType, RequestType0 } from 'vscode-jsonrpc';
import { v } from './validate';
import { platform, progressToken } from './schemas';
import type { ImageInspect, ImageSummary, PullResult } from './types';

/** A username and password (or identity token as password) for one registry. */
export interface RegistryAuth {
  username: string;
  password: string;
}
/** Bounded so a Basic header or token request stays well inside what servers accept (a 1 MiB password is refused here). */
export const registryAuth = () => v.object({ username: v.string({ min: 1, max: 1024, expected: 'a registry username' }), password: v.string({ max: 16384, expected: 'a registry password' }) });

export namespace ImagePullRequest {
  export const method = 'capsa/image/pull' as const;
  export const type = new RequestType<ImagePullParams, PullResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ reference: v.string({ max: 4096, expected: 'an image reference' }), platform: v.optional(platform()), workDoneToken: v.optional(progressToken()), auth: v.optional(registryAuth()) });
}
export interface ImagePullParams {
  /**
   * Credentials for the reference's registry, read by the client from its
   * user's own Docker config (as Docker's X-Registry-Auth); used for this
   * request alone, never stored or logged. Without them root's pulls use the
   * helper's configured credentials and anyone else's go anonymous.
   */
  auth?: RegistryAuth;
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

/** One image of the caller's namespace as `docker image inspect` shows it (`capsa image inspect`, `capsa inspect`). */
export namespace ImageInspectRequest {
  export const method = 'capsa/image/inspect' as const;
  export const type = new RequestType<{ image: string }, ImageInspect, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ image: v.string({ min: 1, max: 4096, expected: 'an image reference or id' }) });
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

/** Pushes one of the caller's images to the registry its name names (`capsa push NAME[:TAG]`). */
export namespace ImagePushRequest {
  export const method = 'capsa/image/push' as const;
  export const type = new RequestType<ImagePushParams, ImagePushResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ reference: v.string({ min: 1, max: 4096, expected: 'an image reference' }), workDoneToken: v.optional(progressToken()), auth: v.optional(registryAuth()) });
}
export interface ImagePushParams {
  /** `NAME[:TAG]` of the caller's image; `latest` when no tag is given. */
  reference: string;
  /** LSP work-done token: per-blob progress (`PushProgress`) is reported under it. */
  workDoneToken?: string | number;
  /** As for pull: the client's user's credentials for this registry. */
  auth?: RegistryAuth;
}
/** Per-blob push progress, the config last. */
export interface PushProgress {
  layers: Array<{ digest: string; size: number; done: number; status: 'waiting' | 'pushing' | 'pushed' | 'exists' | 'mounted'; from?: string }>;
}
export interface ImagePushResult {
  reference: string;
  tag: string;
  /** Manifest digest as the registry has it. */
  digest: string;
  /** Manifest size in bytes. */
  size: number;
  layers: PushProgress['layers'];
}

/** Checks credentials against a registry (`capsa login`): its `/v2/` with Basic or a Bearer token. Nothing is stored. */
export namespace ImageLoginRequest {
  export const method = 'capsa/image/login' as const;
  export const type = new RequestType<ImageLoginParams, ImageLoginResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ registry: v.string({ min: 1, max: 512, expected: 'a registry host[:port]' }), auth: registryAuth() });
}
export interface ImageLoginParams {
  /** `host[:port]`, or `docker.io` for Docker Hub. */
  registry: string;
  auth: RegistryAuth;
}
export interface ImageLoginResult {
  /** The registry host as normalised (`docker.io`, `127.0.0.1:5000`). */
  registry: string;
}
