/**
 * Idmapped bind mounts (RunOptions.idmapMounts → the plan's `idmap` records):
 * the files a container writes in a bind-mounted folder belong to a chosen
 * host user, with nothing chowned. Validated here; the shim carries it out
 * with mount_setattr(MOUNT_ATTR_IDMAP) (native/src/setup/idmap.c).
 */
import * as path from 'node:path';
import { InvalidArgumentError } from '../errors';
import type { IdmapMount } from '../protocol/types';
import { MS, type PlanIdmap, type PlanMount } from './plan';

/** Largest id a user namespace can map ((uid_t)-1 means "no id"). */
const MAX_ID = 0xfffffffe;

function checkId(what: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_ID) {
    throw new InvalidArgumentError(`idmap ${what} must be a whole number from 0 to ${MAX_ID}, not ${JSON.stringify(v)}`);
  }
  return v;
}

/** The plan's idmap records for `requested`, each the target of one of the plan's bind mounts. */
export function idmapsFor(requested: IdmapMount[] | undefined, mounts: PlanMount[]): PlanIdmap[] | undefined {
  if (requested === undefined) return undefined;
  if (!Array.isArray(requested)) throw new InvalidArgumentError('idmapMounts must be a list');
  const seen = new Set<string>();
  return requested.map((m) => {
    if (typeof m !== 'object' || m === null || typeof m.target !== 'string' || !path.isAbsolute(m.target)) {
      throw new InvalidArgumentError(`idmap target must be an absolute container path, not ${JSON.stringify(m?.target)}`);
    }
    const target = path.posix.normalize(m.target).replace(/(.)\/$/, '$1');
    if (!mounts.some((p) => (p.flags & MS.BIND) !== 0 && path.posix.normalize(p.target).replace(/(.)\/$/, '$1') === target)) {
      throw new InvalidArgumentError(`idmap target ${target} is not a bind mount of this container (add it to the volumes)`);
    }
    if (seen.has(target)) throw new InvalidArgumentError(`idmap target ${target} is given twice`);
    seen.add(target);
    return {
      path: target,
      uid: [checkId('containerUid', m.containerUid ?? 0), checkId('uid', m.uid)],
      gid: [checkId('containerGid', m.containerGid ?? 0), checkId('gid', m.gid)],
    };
  });
}
