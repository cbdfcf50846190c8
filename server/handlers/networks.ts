import type { Connection } from 'vscode-languageserver/node';
import { NetworkCreateRequest, NetworkInspectRequest, NetworkListRequest, NetworkRemoveRequest, type NetworkCreateParams, type NetworkSummary } from '../protocol';
import { InvalidArgumentError } from '../errors';
import type { NetworkManager, NetworkRecord } from '../runtime/network/manager';
import { handled, objectParams } from './errors';

function summary(n: NetworkRecord): NetworkSummary {
  return { name: n.name, id: n.id, bridge: n.bridge, subnet: n.subnet, gateway: n.gateway, created: n.created, builtin: n.builtin };
}

function ref(params: unknown, method: string): string {
  const p = objectParams<{ network?: unknown }>(params, method);
  if (typeof p.network !== 'string' || p.network === '') throw new InvalidArgumentError(`${method}: network must be a non-empty string`);
  return p.network;
}

export function registerNetworkHandlers(connection: Connection, networks: NetworkManager): void {
  connection.onRequest(
    NetworkCreateRequest.type,
    handled(async (raw: NetworkCreateParams) => {
      const p = objectParams<NetworkCreateParams>(raw, NetworkCreateRequest.method);
      for (const k of ['name', 'subnet', 'gateway'] as const) {
        if (p[k] !== undefined && typeof p[k] !== 'string') throw new InvalidArgumentError(`${NetworkCreateRequest.method}: ${k} must be a string`);
      }
      return summary(await networks.create({ name: p.name, subnet: p.subnet, gateway: p.gateway }));
    }),
  );
  connection.onRequest(NetworkListRequest.type, handled(() => networks.networks().map(summary)));
  connection.onRequest(
    NetworkInspectRequest.type,
    handled((raw: { network: string }) => {
      const n = networks.network(ref(raw, NetworkInspectRequest.method));
      return { ...summary(n), containers: networks.members(n.name) };
    }),
  );
  connection.onRequest(
    NetworkRemoveRequest.type,
    handled(async (raw: { network: string }) => {
      await networks.remove(ref(raw, NetworkRemoveRequest.method));
    }),
  );
}
