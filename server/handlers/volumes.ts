import { randomBytes } from 'node:crypto';
import {
  VolumeCreateRequest,
  VolumeInspectRequest,
  VolumeListRequest,
  VolumePruneRequest,
  VolumeRemoveRequest,
  type VolumeCreateParams,
  type VolumeRefParams,
  type VolumeRemoveParams,
  type VolumeSummary,
} from '../protocol';
import type { ContainerService } from '../runtime/container';
import { ownerOf, type VolumeInfo, type VolumeStore } from '../runtime/volumes';
import { checkStringMap, LIMITS } from '../limits';
import type { ClientConnection } from './access';
import { handled } from './errors';

/**
 * Volume mountpoint → names of the containers (any state) that mount it.
 * Keyed by mountpoint, not name: two owners' volumes may share a name, never a directory.
 */
function usage(containers: ContainerService): Map<string, string[]> {
  const users = new Map<string, string[]>();
  for (const { record } of containers.list(true)) {
    for (const m of record.binds) {
      if (m.type !== 'volume') continue;
      users.set(m.source, [...(users.get(m.source) ?? []), record.name]);
    }
  }
  return users;
}

function summary(v: VolumeInfo, users: Map<string, string[]>): VolumeSummary {
  return { name: v.name, driver: 'local', mountpoint: v.mountpoint, created: v.created, ...(v.labels ? { labels: v.labels } : {}), usedBy: users.get(v.mountpoint) ?? [], owner: ownerOf(v) };
}

/**
 * Volumes as the connection's caller sees them (server/util/owners.ts):
 * its own, by name; root every owner's, each with its owner.
 */
export function registerVolumeHandlers(connection: ClientConnection, volumes: VolumeStore, containers: ContainerService): void {
  const caller = connection.caller;
  connection.onRequest(
    VolumeCreateRequest.type,
    handled(async (raw: VolumeCreateParams) => {
      checkStringMap(LIMITS.labels, 'labels', raw.labels);
      const v = await volumes.create(raw.name ?? randomBytes(32).toString('hex'), raw.labels, caller);
      return summary(v, usage(containers));
    }),
  );
  connection.onRequest(
    VolumeListRequest.type,
    handled(async () => {
      const users = usage(containers);
      return (await volumes.list(caller)).map((v) => summary(v, users));
    }),
  );
  connection.onRequest(
    VolumeInspectRequest.type,
    handled(async (raw: VolumeRefParams) => summary(await volumes.find(caller, raw.volume), usage(containers))),
  );
  connection.onRequest(
    VolumeRemoveRequest.type,
    handled(async (raw: VolumeRemoveParams) => {
      const v = await volumes.find(caller, raw.volume);
      await volumes.remove(v, usage(containers).get(v.mountpoint) ?? [], raw.force === true);
    }),
  );
  connection.onRequest(
    VolumePruneRequest.type,
    handled(() => volumes.prune(caller, new Set(usage(containers).keys()))),
  );
}
