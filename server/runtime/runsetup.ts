/**
 * Everything about a `run` that can be checked before the image is pulled:
 * mounts and volumes, resource limits, capabilities, seccomp, rlimits,
 * namespaces and the user. A bad flag fails here, before any side effect.
 */
import { cpus } from 'node:os';
import { InvalidArgumentError, PermissionDeniedError } from '../errors';
import { usernsProblem } from '../protocol/runoptions';
import type { RunOptions } from '../protocol/types';
import { DEFAULT_DEVICE_RULES, validateLimits, type ResourceLimits } from './cgroups';
import { resolveHostDevices, withDeviceRules } from './hostdevices';
import { securitySettings } from './security';
import { runNamespaces, type BindMount, type SpecInput } from './spec';
import type { Namespace } from './plan';
import { resolveImageUser, readImageFile, parseGroup, type ResolvedUser } from './users';
import { parseMountSpec, parseTmpfs, parseVolume, VolumeStore, type VolumeOwner } from './volumes';
import type { Caller } from '../util/peercred';
import { closeFd } from '../util/seqpacket';
import { openBindSource, ROOT_CALLER } from './bindsource';

export interface RunSetup {
  binds: BindMount[];
  limits: ResourceLimits;
  /** Plan inputs decided here (security, init, read-only root, `--device` nodes). */
  spec: Pick<SpecInput, 'security' | 'init' | 'readOnly' | 'devices'>;
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
 * A bind source must exist and be the caller's to reach: opened (and closed)
 * here to fail early with the volume named; each start opens it again and
 * mounts that descriptor (bindsource.ts), so this look proves nothing later.
 */
async function checkBindSource(caller: Caller, b: BindMount): Promise<void> {
  try {
    closeFd(await openBindSource(caller, b.source, { readOnly: b.readOnly }));
  } catch (err) {
    const volume = JSON.stringify(`${b.source}:${b.target}`);
    if (err instanceof InvalidArgumentError) throw new InvalidArgumentError(`invalid volume ${volume}: ${err.message}`, { cause: err });
    if (err instanceof PermissionDeniedError) {
      throw new PermissionDeniedError(`invalid volume ${volume}: uid ${caller.uid} may not open bind source path ${b.source} (${err.message.replace(/^bind source path [^:]*: /, '')})`);
    }
    throw err;
  }
}

/** Whose rights bind sources are checked with: the caller's own, groups included when known (fewer groups is the safe side). */
function binder(caller: VolumeOwner & Partial<Caller>): Caller {
  if (caller.uid === 0) return ROOT_CALLER;
  return { uid: caller.uid, gid: caller.gid, groups: caller.groups ?? [caller.gid], pid: caller.pid ?? process.pid };
}

/**
 * `caller`: whose container it is; its named volumes are the ones `-v NAME:`
 * mounts (root's when not given), and bind sources are checked with its rights.
 */
export async function prepareRun(opts: RunOptions, root: string, caller: VolumeOwner & Partial<Caller> = { uid: 0, gid: 0 }): Promise<RunSetup> {
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
  // resolved now, so a path that is no device fails the run before anything is made
  const devices = await resolveHostDevices(list('devices', opts.devices));
  for (const d of devices) {
    if (targets.has(d.node.path)) throw new InvalidArgumentError(`--device ${JSON.stringify(d.mapping.PathOnHost)}: container path ${d.node.path} is also a mount point`);
  }
  // as Docker: every device for --privileged (its --device nodes are made all the same), the default allow-list otherwise
  if (opts.privileged) limits.devices = 'all';
  else if (devices.length) limits.devices = withDeviceRules(DEFAULT_DEVICE_RULES, devices);
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
      b.source = (await volumes.resolveForRun(caller, b.name!)).mountpoint;
    } else if (b.type !== 'tmpfs') {
      await checkBindSource(binder(caller), b);
    }
  }
  return {
    binds,
    limits,
    spec: { security, init: !!opts.init, readOnly: !!opts.readOnly, devices: devices.map((d) => d.node) },
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
