/**
 * Everything about a `run` that can be checked before the image is pulled:
 * mounts and volumes, resource limits, capabilities, seccomp, rlimits,
 * namespaces and the user. A bad flag fails here, before any side effect.
 */
import { promises as fs } from 'node:fs';
import { cpus } from 'node:os';
import { InvalidArgumentError } from '../errors';
import { usernsProblem } from '../protocol/runoptions';
import type { RunOptions } from '../protocol/types';
import { validateLimits, type ResourceLimits } from './cgroups';
import { securitySettings } from './security';
import { runNamespaces, type BindMount, type SpecInput } from './spec';
import type { Namespace } from './plan';
import { resolveImageUser, readImageFile, parseGroup, type ResolvedUser } from './users';
import { parseMountSpec, parseTmpfs, parseVolume, VolumeStore } from './volumes';
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

export async function prepareRun(opts: RunOptions, root: string): Promise<RunSetup> {
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
      b.source = (await volumes.create(b.name!)).mountpoint;
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
