/**
 * Everything about a `run` that can be checked before the image is pulled:
 * mounts and volumes, resource limits, capabilities, seccomp, rlimits,
 * namespaces and the user. A bad flag fails here, before any side effect.
 */
import { closeSync, promises as fs } from 'node:fs';
import { cpus } from 'node:os';
import { InvalidArgumentError, PermissionDeniedError } from '../errors';
import { usernsProblem } from '../protocol/runoptions';
import { CallerOpenError, openAsCaller } from '../util/opener';
import type { Caller } from '../util/peercred';
import type { RunOptions } from '../protocol/types';
import { validateLimits, type ResourceLimits } from './cgroups';
import { securitySettings } from './security';
import { runNamespaces, type BindMount, type SpecInput } from './spec';
import type { Namespace } from './plan';
import { resolveImageUser, readImageFile, parseGroup, type ResolvedUser } from './users';
import { parseMountSpec, parseTmpfs, parseVolume, VolumeStore, type VolumeOwner } from './volumes';
import { ifMissing } from '../util/missing';

export interface RunSetup {
  binds: BindMount[];
  limits: ResourceLimits;
  /** Plan inputs decided here (security, init, read-only root). */
  spec: Pick<SpecInput, 'security' | 'init' | 'readOnly'>;
  namespaces(newNetns: boolean): Namespace[];
  /** Resolves the user against the image, adding `--group-add` groups. */
  resolveUser(spec: string | undefined, layerDirs: string[]): Promise<ResolvedUser>;
}

function list(name: string, v: unknown): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || s.includes('\0'))) throw new InvalidArgumentError(`${name} must be a list of strings without NUL bytes`);
  return v as string[];
}

/**
 * A bind source as `caller` (not root) may reach it: opened with the
 * caller's own uid and groups (capsa-open), once as O_PATH and once for
 * reading, so a path the caller could not read is refused, and one it
 * cannot see is reported as missing, as to that caller it is. The shim
 * still mounts the path itself (by name: a later step opens it as the
 * caller and mounts what was opened).
 */
async function checkBindAsCaller(caller: Caller, source: string, target: string): Promise<void> {
  const fds: number[] = [];
  try {
    // reached along its path as the caller (a missing or hidden path is missing to it), then readable by it:
    // O_PATH alone needs no permission on the source itself
    fds.push(await openAsCaller(caller, source, { how: 'path' }));
    fds.push(await openAsCaller(caller, source, { how: 'read' }));
  } catch (err) {
    if (err instanceof CallerOpenError && err.errno === 'ENOENT') {
      throw new InvalidArgumentError(`invalid volume ${JSON.stringify(`${source}:${target}`)}: bind source path ${source} does not exist`);
    }
    if (err instanceof CallerOpenError && err.code === 'E_PERMISSION_DENIED') {
      throw new PermissionDeniedError(`invalid volume ${JSON.stringify(`${source}:${target}`)}: uid ${caller.uid} may not open bind source path ${source}`);
    }
    throw err;
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/**
 * `caller`: who asked, when it is not root: its binds are checked with its
 * rights (root's as the helper), and its named volumes are the ones
 * `-v NAME:` mounts (root's when not given).
 */
export async function prepareRun(opts: RunOptions, root: string, caller?: Caller): Promise<RunSetup> {
  const volumeOwner: VolumeOwner = caller ?? { uid: 0, gid: 0 };
  const binds = [
    ...list('volumes', opts.volumes).map(parseVolume),
    ...list('mounts', opts.mounts).map(parseMountSpec),
    ...list('tmpfs', opts.tmpfs).map(parseTmpfs),
  ];
  const targets = new Set<string>();
  for (const b of binds) {
    if (targets.has(b.target)) throw new InvalidArgumentError(`duplicate mount point: ${b.target}`);
    targets.add(b.target);
  }
  const limits: ResourceLimits = { memory: opts.memory, memorySwap: opts.memorySwap, cpus: opts.cpus, cpuShares: opts.cpuShares, pidsLimit: opts.pidsLimit };
  validateLimits(limits, cpus().length);
  // as Docker: every device for --privileged, the default allow-list otherwise
  if (opts.privileged) limits.devices = 'all';
  const security = securitySettings({
    capAdd: list('capAdd', opts.capAdd),
    capDrop: list('capDrop', opts.capDrop),
    privileged: opts.privileged,
    securityOpt: list('securityOpt', opts.securityOpt),
    ulimits: list('ulimits', opts.ulimits),
  });
  const groupAdd = list('groupAdd', opts.groupAdd);
  const usernsRefused = opts.userns === undefined ? undefined : usernsProblem(opts.userns);
  if (usernsRefused !== undefined) throw new InvalidArgumentError(usernsRefused);
  // as Docker: a privileged container is root on the host by definition
  if (opts.userns === 'auto' && opts.privileged) throw new InvalidArgumentError('--privileged cannot be combined with --userns auto');
  runNamespaces(opts, false); // checks --pid and --ipc
  // Binds are checked now (a missing source is an error, never a created directory); volumes are created.
  const volumes = new VolumeStore(root);
  for (const b of binds) {
    if (b.type === 'volume') {
      b.source = (await volumes.resolveForRun(volumeOwner, b.name!)).mountpoint;
    } else if (b.type !== 'tmpfs' && caller && caller.uid !== 0) {
      await checkBindAsCaller(caller, b.source, b.target);
    } else if (b.type !== 'tmpfs') {
      const st = await fs.stat(b.source).catch(ifMissing(undefined));
      if (!st) throw new InvalidArgumentError(`invalid volume ${JSON.stringify(`${b.source}:${b.target}`)}: bind source path ${b.source} does not exist`);
    }
  }
  return {
    binds,
    limits,
    spec: { security, init: !!opts.init, readOnly: !!opts.readOnly },
    namespaces: (newNetns) => runNamespaces(opts, newNetns),
    async resolveUser(spec, layerDirs) {
      const resolved = await resolveImageUser(spec, layerDirs);
      // the primary group is in the group list too, as after a login's initgroups (and as `id` shows under Docker)
      const user = { ...resolved, additionalGids: [...new Set([resolved.gid, ...resolved.additionalGids])] };
      if (groupAdd.length === 0) return user;
      const groups = parseGroup((await readImageFile(layerDirs, 'etc/group')) ?? '');
      const extra = groupAdd.map((g) => {
        if (/^\d+$/.test(g)) return Number(g);
        const entry = groups.find((e) => e.name === g);
        if (!entry) throw new InvalidArgumentError(`unable to find group ${g}: no matching entries in the image's /etc/group`);
        return entry.gid;
      });
      return { ...user, additionalGids: [...new Set([...user.additionalGids, ...extra])] };
    },
  };
}
