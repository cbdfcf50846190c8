/**
 * Named volumes: create, list, inspect, remove and prune (`capsa volume …`).
 * A caller other than root sees and names only its own. Re-exported by
 * index.ts; clients import them from there.
 */
import { RequestType, RequestType0 } from 'vscode-jsonrpc';
import { v } from './validate';

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
