/**
 * Capabilities: Docker's default set, `--cap-add`, `--cap-drop` and
 * `--privileged`, computed as the bit masks the shim applies.
 */
import { InvalidArgumentError } from '../errors';
import type { PlanCapabilities } from './plan';

/** Capability numbers (linux/capability.h). */
export const CAPABILITIES: Record<string, number> = {
  CHOWN: 0,
  DAC_OVERRIDE: 1,
  DAC_READ_SEARCH: 2,
  FOWNER: 3,
  FSETID: 4,
  KILL: 5,
  SETGID: 6,
  SETUID: 7,
  SETPCAP: 8,
  LINUX_IMMUTABLE: 9,
  NET_BIND_SERVICE: 10,
  NET_BROADCAST: 11,
  NET_ADMIN: 12,
  NET_RAW: 13,
  IPC_LOCK: 14,
  IPC_OWNER: 15,
  SYS_MODULE: 16,
  SYS_RAWIO: 17,
  SYS_CHROOT: 18,
  SYS_PTRACE: 19,
  SYS_PACCT: 20,
  SYS_ADMIN: 21,
  SYS_BOOT: 22,
  SYS_NICE: 23,
  SYS_RESOURCE: 24,
  SYS_TIME: 25,
  SYS_TTY_CONFIG: 26,
  MKNOD: 27,
  LEASE: 28,
  AUDIT_WRITE: 29,
  AUDIT_CONTROL: 30,
  SETFCAP: 31,
  MAC_OVERRIDE: 32,
  MAC_ADMIN: 33,
  SYSLOG: 34,
  WAKE_ALARM: 35,
  BLOCK_SUSPEND: 36,
  AUDIT_READ: 37,
  PERFMON: 38,
  BPF: 39,
  CHECKPOINT_RESTORE: 40,
};

/** Docker's (and runc's) default set: CapEff 0x00000000a80425fb. */
export const DEFAULT_CAPABILITIES = [
  'CHOWN',
  'DAC_OVERRIDE',
  'FSETID',
  'FOWNER',
  'MKNOD',
  'NET_RAW',
  'SETGID',
  'SETUID',
  'SETFCAP',
  'SETPCAP',
  'NET_BIND_SERVICE',
  'SYS_CHROOT',
  'KILL',
  'AUDIT_WRITE',
];

/** `net_admin`, `CAP_NET_ADMIN` → `NET_ADMIN`; unknown names are refused. */
export function normalizeCapability(name: string): string {
  if (typeof name !== 'string') throw new InvalidArgumentError('capability names must be strings');
  const n = name.trim().toUpperCase().replace(/^CAP_/, '');
  if (n === 'ALL') return n;
  if (!(n in CAPABILITIES)) throw new InvalidArgumentError(`unknown capability ${JSON.stringify(name)}: expected a name such as NET_ADMIN or CAP_SYS_PTRACE, or ALL`);
  return n;
}

export function maskOf(names: Iterable<string>): bigint {
  let m = 0n;
  for (const n of names) m |= 1n << BigInt(CAPABILITIES[n]);
  return m;
}

/**
 * Every capability the helper can hand on: those this table knows, in the
 * helper's own bounding set when given (a host may withhold some, and no
 * process can grant what it lacks).
 */
export function allCapabilities(bounding?: bigint): string[] {
  return Object.keys(CAPABILITIES).filter((n) => bounding === undefined || (bounding >> BigInt(CAPABILITIES[n])) & 1n);
}

/**
 * The capability names a container gets: Docker's order of operations
 * (`ALL` in add, then drop, else default + add − drop; `--privileged` is ALL).
 */
export function resolveCapabilities(opts: { capAdd?: string[]; capDrop?: string[]; privileged?: boolean }, bounding?: bigint): string[] {
  const add = (opts.capAdd ?? []).map(normalizeCapability);
  const drop = (opts.capDrop ?? []).map(normalizeCapability);
  if (opts.privileged) return allCapabilities(bounding);
  let set: Set<string>;
  if (add.includes('ALL')) set = new Set(allCapabilities(bounding));
  else if (drop.includes('ALL')) set = new Set(add);
  else set = new Set([...DEFAULT_CAPABILITIES, ...add]);
  if (!add.includes('ALL') || !drop.includes('ALL')) for (const d of drop) set.delete(d);
  return allCapabilities(bounding).filter((n) => set.has(n));
}

/**
 * Plan masks: the set in bounding, effective and permitted; inheritable and
 * ambient empty, as Docker has done since inheritable capabilities let
 * non-root processes keep capabilities across exec (CVE-2022-24769). A
 * non-root user loses effective and permitted at exec, as the kernel's rules
 * for a binary without file capabilities say.
 */
export function capabilityMasks(names: string[]): PlanCapabilities {
  const m = maskOf(names);
  const masks: PlanCapabilities = { bounding: m, effective: m, permitted: m, inheritable: 0n, ambient: 0n };
  // JSON has no bigint: a plan saved in a container's config.json keeps the masks as hex strings (encodePlan reads either)
  Object.defineProperty(masks, 'toJSON', {
    enumerable: false,
    value: () => Object.fromEntries(Object.entries(masks).map(([k, v]) => [k, `0x${(v as bigint).toString(16)}`])),
  });
  return masks;
}
