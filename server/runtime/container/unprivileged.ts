/**
 * What a container of a caller other than root is: unprivileged by
 * construction. It always has a user namespace (its ids 0..65535 on a host
 * block of that user's, userns.ts), so even its root holds no capability
 * over the host; and every option that would reach past that namespace is
 * refused here, before anything is pulled or created, naming the flag:
 *
 * - `--privileged`, `--userns host`, `--pid host`, `--ipc host`,
 *   `--network host`: each shares or drops a host boundary;
 * - `--security-opt seccomp=unconfined`: the filter is what keeps the
 *   kernel's rarely-used, exploit-prone calls out of reach;
 * - `--cap-add` of anything outside Docker's default set
 *   ({@link UNPRIVILEGED_CAPABILITIES}): those are harmless inside a user
 *   namespace (they act on what the namespace owns: its files by its ids,
 *   its own processes, its own network namespace's low ports). Every other
 *   capability (SYS_ADMIN, NET_ADMIN, SYS_PTRACE, SYS_MODULE …) either means
 *   nothing there or opens kernel surface (mounts, netfilter, ptrace) that
 *   the classic user-namespace escapes went through, so it is refused, not
 *   silently dropped;
 * - `idmapMounts` naming host ids other than the caller's own uid and one
 *   of its groups: which host ids a container writes as only root may pick.
 *   The caller's binds are idmapped to the caller itself anyway
 *   ({@link ownerIdmaps}); an idmapMount of its own picks which container
 *   user that is (e.g. a dev container's non-root user);
 * - a published host port below `net.ipv4.ip_unprivileged_port_start`,
 *   which the user could not bind themselves;
 * - `--device`: a host device node, and a cgroup rule allowing it, given
 *   past the host's own permissions on it (the helper opens nothing as the
 *   caller there, and a node's mode is no boundary once it is in another
 *   user namespace's /dev).
 *
 * Capsa has no `--cgroup-parent` option at all, so there is nothing of
 * theirs to refuse.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { PermissionDeniedError } from '../../errors';
import { loginGroups, passwdField } from '../../util/passwd';
import type { Caller } from '../../util/peercred';
import { ROOT_CALLER } from '../bindsource';
import type { RunOptions } from './options';
import { DEFAULT_CAPABILITIES, normalizeCapability } from '../capabilities';
import { parsePublish } from '../network/ports';
import type { PlanIdmap } from '../plan';
import { parseSecurityOpts } from '../security';
import type { BindMount } from '../spec';
import { idmapsInBlock, USERNS_SIZE, type IdRange } from '../userns';

/** What `--cap-add` may name for a caller other than root: Docker's default set, which such a container has already. */
export const UNPRIVILEGED_CAPABILITIES: ReadonlySet<string> = new Set(DEFAULT_CAPABILITIES);

/** `net.ipv4.ip_unprivileged_port_start` (1024 where it cannot be read: the kernel's default). */
export function unprivilegedPortStart(file = '/proc/sys/net/ipv4/ip_unprivileged_port_start'): number {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n >= 0 ? n : 1024;
  } catch {
    // no procfs entry (an old kernel): the kernel's own fixed boundary then is 1024
    return 1024;
  }
}

function refused(flag: string, uid: number, why: string): PermissionDeniedError {
  return new PermissionDeniedError(`${flag} refused for uid ${uid}: ${why}; only root may use it`);
}

/**
 * Throws PermissionDeniedError, naming the flag, for the first option of
 * `opts` that a container of `caller` (not root) may not have.
 */
export function refuseUnprivileged(opts: RunOptions, caller: { uid: number; gid: number; groups: readonly number[] }, portStart = unprivilegedPortStart()): void {
  const uid = caller.uid;
  const groups = [caller.gid, ...caller.groups];
  if (opts.privileged) throw refused('--privileged', uid, 'a privileged container is root on the host');
  if (opts.userns === 'host') throw refused('--userns host', uid, "a container of a user other than root always has its own user namespace");
  if (opts.pid === 'host') throw refused('--pid host', uid, "it shares the host's processes");
  if (opts.ipc === 'host') throw refused('--ipc host', uid, "it shares the host's IPC namespace");
  if (opts.network === 'host') throw refused('--network host', uid, "it shares the host's network namespace");
  if (Array.isArray(opts.devices) && opts.devices.length > 0) throw refused(`--device ${JSON.stringify(String(opts.devices[0]).slice(0, 200))}`, uid, "it gives the container a host device and the cgroup's leave to open it");
  for (const m of Array.isArray(opts.idmapMounts) ? opts.idmapMounts : []) {
    if (m?.uid !== uid || !groups.includes(m?.gid)) {
      throw refused(`idmapMounts ${m?.uid}:${m?.gid}`, uid, 'a container of yours writes your binds as you only (your uid, one of your groups)');
    }
    for (const [what, id] of [['containerUid', m.containerUid], ['containerGid', m.containerGid]] as const) {
      if (id !== undefined && (!Number.isInteger(id) || id < 0 || id >= USERNS_SIZE)) {
        throw refused(`idmapMounts ${what} ${id}`, uid, `your container's ids are 0 to ${USERNS_SIZE - 1}`);
      }
    }
  }
  if (Array.isArray(opts.securityOpt) && parseSecurityOpts(opts.securityOpt).seccomp === 'unconfined') {
    throw refused('--security-opt seccomp=unconfined', uid, 'the seccomp filter stays on');
  }
  for (const name of Array.isArray(opts.capAdd) ? opts.capAdd : []) {
    const cap = normalizeCapability(name);
    if (!UNPRIVILEGED_CAPABILITIES.has(cap)) {
      throw refused(`--cap-add ${cap}`, uid, `only capabilities harmless inside a user namespace may be added (${[...UNPRIVILEGED_CAPABILITIES].join(', ')})`);
    }
  }
  for (const spec of Array.isArray(opts.publish) ? opts.publish : []) {
    const p = parsePublish(spec);
    if (p.hostPort !== 0 && p.hostPort < portStart) {
      throw refused(`--publish ${spec}`, uid, `host port ${p.hostPort} is below net.ipv4.ip_unprivileged_port_start (${portStart})`);
    }
  }
}

/**
 * Idmaps for a caller's host binds: what the container's root (host id
 * `range.uid`/`range.gid`) writes there belongs on disk to the caller, and
 * the caller's own files appear as the container root's; files of other
 * owners appear as the overflow id (nobody). A bind of `requested` (the
 * checked idmapMounts, by container ids) maps that container user instead.
 * The user's named volumes likewise (their data is the user's,
 * runtime/volumes.ts); tmpfs is the container's own.
 */
export function ownerIdmaps(binds: BindMount[], range: IdRange, caller: { uid: number; gid: number }, requested: PlanIdmap[] = []): PlanIdmap[] {
  // a requested idmap names a container id: in the user namespace, its host (kernel) id is the block's start plus it
  const explicit = idmapsInBlock(requested, range) ?? [];
  const covered = new Set(explicit.map((m) => norm(m.path)));
  const rest: PlanIdmap[] = binds
    .filter((b) => b.type !== 'tmpfs' && !covered.has(norm(b.target)))
    .map((b) => ({ path: b.target, uid: [range.uid, caller.uid], gid: [range.gid, caller.gid] }));
  return [...explicit, ...rest];
}

function norm(p: string): string {
  return path.posix.normalize(p).replace(/(.)\/$/, '$1');
}

/** A user's ceilings (server/config.ts `userLimits`), as the runtime takes them. */
export interface UserCeilings {
  containers?: number;
  memory?: number;
  pidsLimit?: number;
}

/**
 * `opts` within a user's ceilings: a container that asks for no memory or
 * pids limit gets the ceiling; one that asks for more is refused, naming
 * the flag. (The count of containers is checked where they are made,
 * lifecycle.ts, so two runs at once cannot both take the last place.)
 */
export function withinCeilings(opts: RunOptions, uid: number, c: UserCeilings): RunOptions {
  const out = { ...opts };
  if (c.memory !== undefined) {
    if (opts.memory === undefined) out.memory = c.memory;
    else if (opts.memory > c.memory) throw new PermissionDeniedError(`--memory ${opts.memory} refused for uid ${uid}: above this helper's ceiling for users (${c.memory} bytes)`);
  }
  if (c.pidsLimit !== undefined) {
    if (opts.pidsLimit === undefined || opts.pidsLimit <= 0) out.pidsLimit = c.pidsLimit;
    else if (opts.pidsLimit > c.pidsLimit) throw new PermissionDeniedError(`--pids-limit ${opts.pidsLimit} refused for uid ${uid}: above this helper's ceiling for users (${c.pidsLimit})`);
  }
  return out;
}

/**
 * Whose rights a container's bind sources are opened with at each start:
 * its owner's uid, with the primary gid /etc/passwd gives (nobody's when it
 * gives none) and the groups a login of that user gets from /etc/group, as
 * the owner's own `capsa` process (its warm CLI process, made with
 * initgroups) has them. Read at each start: a user removed from a group
 * since the container was made no longer reaches that group's files.
 */
export function ownerCaller(uid: number, passwd = '/etc/passwd', groupFile = '/etc/group'): Caller {
  if (uid === 0) return ROOT_CALLER;
  const gid = passwdField(uid, 3, passwd);
  const g = gid !== undefined && /^\d+$/.test(gid) ? Number(gid) : 65534;
  return { uid, gid: g, groups: loginGroups(passwdField(uid, 0, passwd), g, groupFile), pid: process.pid };
}
