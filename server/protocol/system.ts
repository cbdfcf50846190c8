/**
 * The helper itself: its version and protocol revision (`capsa version`) and
 * the disk it uses (`capsa system df`). Re-exported by index.ts; clients
 * import them from there.
 */
import { RequestType0 } from 'vscode-jsonrpc';
import { v } from './validate';

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
