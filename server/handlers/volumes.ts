import { randomBytes } from 'node:crypto';
import type { Connection } from 'vscode-languageserver/node';
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
import type { VolumeInfo, VolumeStore } from '../runtime/volumes';
import { checkStringMap, LIMITS } from '../limits';
import { handled } from './errors';

/** Volume name → names of the containers (any state) that mount it. */
function usage(containers: ContainerService): Map<string, string[]> {
  const users = new Map<string, string[]>();
  for (const { record } of containers.list(true)) {
    for (const m of record.binds) {
      if (m.type !== 'volume') continue;
      const name = m.source.split('/').at(-2) ?? ''; // <root>/volumes/<name>/_data
      users.set(name, [...(users.get(name) ?? []), record.name]);
    }
  }
  return users;
}

function summary(v: VolumeInfo, users: Map<string, string[]>): VolumeSummary {
  return { name: v.name, driver: 'local', mountpoint: v.mountpoint, created: v.created, ...(v.labels ? { labels: v.labels } : {}), usedBy: users.get(v.name) ?? [] };
}


export function registerVolumeHandlers(connection: Connection, volumes: VolumeStore, containers: ContainerService): void {
  connection.onRequest(
    VolumeCreateRequest.type,
    handled(async (raw: VolumeCreateParams) => {
      checkStringMap(LIMITS.labels, 'labels', raw.labels);
      const v = await volumes.create(raw.name ?? randomBytes(32).toString('hex'), raw.labels);
      return summary(v, usage(containers));
    }),
  );
  connection.onRequest(
    VolumeListRequest.type,
    handled(async () => {
      const users = usage(containers);
      return (await volumes.list()).map((v) => summary(v, users));
    }),
  );
  connection.onRequest(
    VolumeInspectRequest.type,
    handled(async (raw: VolumeRefParams) => summary(await volumes.read(raw.volume), usage(containers))),
  );
  connection.onRequest(
    VolumeRemoveRequest.type,
    handled(async (raw: VolumeRemoveParams) => {
      const name = raw.volume;
      await volumes.remove(name, usage(containers).get(name) ?? [], raw.force === true);
    }),
  );
  connection.onRequest(
    VolumePruneRequest.type,
    handled(() => volumes.prune(new Set(usage(containers).keys()))),
  );
}
