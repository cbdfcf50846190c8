import type { Connection } from 'vscode-languageserver/node';
import { NetworkCreateRequest, NetworkInspectRequest, NetworkListRequest, NetworkRemoveRequest, type NetworkCreateParams, type NetworkSummary } from '../protocol';
import type { NetworkManager, NetworkRecord } from '../runtime/network/manager';
import { handled } from './errors';

function summary(n: NetworkRecord): NetworkSummary {
  return { name: n.name, id: n.id, bridge: n.bridge, subnet: n.subnet, gateway: n.gateway, created: n.created, builtin: n.builtin };
}


export function registerNetworkHandlers(connection: Connection, networks: NetworkManager): void {
  connection.onRequest(
    NetworkCreateRequest.type,
    handled(async (raw: NetworkCreateParams) => {
      return summary(await networks.create({ name: raw.name, subnet: raw.subnet, gateway: raw.gateway }));
    }),
  );
  connection.onRequest(NetworkListRequest.type, handled(() => networks.networks().map(summary)));
  connection.onRequest(
    NetworkInspectRequest.type,
    handled((raw: { network: string }) => {
      const n = networks.network(raw.network);
      return { ...summary(n), containers: networks.members(n.name) };
    }),
  );
  connection.onRequest(
    NetworkRemoveRequest.type,
    handled(async (raw: { network: string }) => {
      await networks.remove(raw.network);
    }),
  );
}
