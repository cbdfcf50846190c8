import { NetworkCreateRequest, NetworkInspectRequest, NetworkListRequest, NetworkPruneRequest, NetworkRemoveRequest, type NetworkCreateParams, type NetworkSummary } from '../protocol';
import { networkOwner, type NetworkManager, type NetworkRecord } from '../runtime/network/manager';
import type { ClientConnection } from './access';
import { handled } from './errors';

function summary(n: NetworkRecord): NetworkSummary {
  return { name: n.name, id: n.id, bridge: n.bridge, subnet: n.subnet, gateway: n.gateway, created: n.created, builtin: n.builtin, ...(n.builtin ? {} : { owner: networkOwner(n) }) };
}

/**
 * Networks as the connection's caller sees them (server/util/owners.ts): the
 * built-in `bridge` and its own; root every owner's, each with its owner.
 */
export function registerNetworkHandlers(connection: ClientConnection, networks: NetworkManager): void {
  const caller = connection.caller;
  connection.onRequest(
    NetworkCreateRequest.type,
    handled(async (raw: NetworkCreateParams) => {
      return summary(await networks.create({ name: raw.name, subnet: raw.subnet, gateway: raw.gateway }, caller));
    }),
  );
  connection.onRequest(NetworkListRequest.type, handled(() => networks.networks(caller).map(summary)));
  connection.onRequest(
    NetworkInspectRequest.type,
    handled((raw: { network: string }) => {
      const n = networks.network(raw.network, caller);
      return { ...summary(n), containers: networks.members(n, caller) };
    }),
  );
  connection.onRequest(
    NetworkRemoveRequest.type,
    handled(async (raw: { network: string }) => {
      await networks.remove(raw.network, caller);
    }),
  );
  connection.onRequest(
    NetworkPruneRequest.type,
    handled(async () => ({ deleted: await networks.prune(caller) })),
  );
}
