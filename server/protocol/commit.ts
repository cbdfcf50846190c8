/**
 * Making images from containers and reading them back: commit, diff,
 * history and tag (`capsa commit`, `capsa diff`, `capsa history`,
 * `capsa tag`). Re-exported by index.ts; clients import them from there.
 */
import { RequestType } from 'vscode-jsonrpc';
import { v } from './validate';
import { containerRef } from './schemas';

/** A new image from a container's changes (`capsa commit`). */
export namespace ContainerCommitRequest {
  export const method = 'capsa/container/commit' as const;
  export const type = new RequestType<ContainerCommitParams, ContainerCommitResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({
    container: containerRef(),
    reference: v.optional(v.string({ min: 1, max: 4096, expected: 'REPOSITORY[:TAG]' })),
    author: v.optional(v.string({ max: 4096 })),
    message: v.optional(v.string({ max: 65536 })),
    changes: v.optional(v.array(v.string({ min: 1, max: 65536, expected: 'a Dockerfile instruction' }), { max: 256 })),
    pause: v.optional(v.boolean()),
    sourceDateEpoch: v.optional(v.number({ integer: true, min: 0, max: 253402300799 })),
  });
}
export interface ContainerCommitParams {
  container: string;
  /** `REPOSITORY[:TAG]` to tag the new image with, in the caller's namespace; absent: untagged. */
  reference?: string;
  /** The image's `author` (`-a`). */
  author?: string;
  /** The history entry's comment (`-m`). */
  message?: string;
  /** Dockerfile instructions applied to the config (`-c`): CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL. */
  changes?: string[];
  /** Freeze the container while its changes are read; default true. */
  pause?: boolean;
  /** SOURCE_DATE_EPOCH: the image's `created` and the layer's mtimes are at most this (seconds). */
  sourceDateEpoch?: number;
}
export interface ContainerCommitResult {
  /** The new image's id (`sha256:…`). */
  id: string;
  /** The layer's diff-id. */
  diffId: string;
}

/** What a container changed in its file system (`capsa diff`). */
export namespace ContainerDiffRequest {
  export const method = 'capsa/container/diff' as const;
  export const type = new RequestType<ContainerDiffParams, ContainerDiffResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef() });
}
export interface ContainerDiffParams {
  container: string;
}
export interface ContainerDiffResult {
  /** Sorted by path, as Docker prints them: `A` added, `C` changed, `D` deleted. */
  changes: Array<{ path: string; kind: 'A' | 'C' | 'D' }>;
}

/** An image's history, newest first (`capsa history`). */
export namespace ImageHistoryRequest {
  export const method = 'capsa/image/history' as const;
  export const type = new RequestType<ImageHistoryParams, ImageHistoryEntry[], void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ image: v.string({ min: 1, max: 4096, expected: 'an image reference or id' }) });
}
export interface ImageHistoryParams {
  image: string;
}
export interface ImageHistoryEntry {
  /** The image's id on the newest entry; `<missing>` on the others, as Docker shows a pulled image's. */
  id: string;
  created?: string;
  createdBy: string;
  /** Bytes of the entry's layer (its files' sizes); 0 for an empty_layer entry. */
  size: number;
  comment: string;
  emptyLayer: boolean;
  /** Tags of the image, on the newest entry. */
  tags: string[];
}

/** Another name for an image, in the caller's namespace (`capsa tag`). */
export namespace ImageTagRequest {
  export const method = 'capsa/image/tag' as const;
  export const type = new RequestType<ImageTagParams, ImageTagResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({
    source: v.string({ min: 1, max: 4096, expected: 'an image reference or id' }),
    target: v.string({ min: 1, max: 4096, expected: 'REPOSITORY[:TAG]' }),
  });
}
export interface ImageTagParams {
  source: string;
  target: string;
}
export interface ImageTagResult {
  id: string;
  /** The normalised reference now pointing at it. */
  reference: string;
}
