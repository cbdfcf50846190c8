/** Network requests: `capsa network create|ls|rm|inspect|prune`. A caller other than root names and sees only its own networks and the built-in `bridge`. */
import { RequestType, RequestType0 } from 'vscode-jsonrpc';
import { v } from './validate';
import type { NetworkInspect, NetworkSummary } from './types';

export namespace NetworkCreateRequest {
  export const method = 'capsa/network/create' as const;
  export const type = new RequestType<NetworkCreateParams, NetworkSummary, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ name: v.string({ min: 1 }), subnet: v.optional(v.string()), gateway: v.optional(v.string()) });
}
export interface NetworkCreateParams {
  /** Name containers use in `--network NAME`; [a-zA-Z0-9][a-zA-Z0-9_.-]*. */
  name: string;
  /** IPv4 CIDR, e.g. `10.90.0.0/24`; default: the next free 10.89.N.0/24. */
  subnet?: string;
  /** Default: the subnet's first address. */
  gateway?: string;
}

export namespace NetworkListRequest {
  export const method = 'capsa/network/list' as const;
  export const type = new RequestType0<NetworkSummary[], void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.none();
}

export namespace NetworkInspectRequest {
  export const method = 'capsa/network/inspect' as const;
  export const type = new RequestType<{ network: string }, NetworkInspect, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ network: v.string({ min: 1 }) });
}

/** Fails while containers are attached. */
export namespace NetworkRemoveRequest {
  export const method = 'capsa/network/remove' as const;
  export const type = new RequestType<{ network: string }, void, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ network: v.string({ min: 1 }) });
}

/** Removes the caller's own user-defined networks that no container is attached to. */
export namespace NetworkPruneRequest {
  export const method = 'capsa/network/prune' as const;
  export const type = new RequestType0<NetworkPruneResult, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.none();
}
export interface NetworkPruneResult {
  /** Names of the networks removed. */
  deleted: string[];
}
