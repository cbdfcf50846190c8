/**
 * Turns an image's config plus `run` options into a {@link Plan}: the
 * defaults here follow runc's default spec and Docker's behaviour (mounts,
 * devices, masked and read-only paths, environment merging, command
 * resolution). Pure: no I/O, so every decision is unit-testable.
 */
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import { InvalidArgumentError } from '../errors';
import { TooManyLayersError } from '../image/errors';
import { MAX_IMAGE_LAYERS } from '../image/types';
import { envValue, MS, type Plan, type PlanDevice, type PlanMount, type PlanStep, type Namespace } from './plan';
import type { SecuritySettings } from './security';

/** The parts of an OCI image config (`config` object) that a run uses. */
export interface ImageRunConfig {
  Env?: string[] | null;
  Cmd?: string[] | null;
  Entrypoint?: string[] | null;
  WorkingDir?: string;
  User?: string;
}

export interface ContainerPaths {
  /** containers/<id>/ */
  dir: string;
  rootfs: string;
  upper: string;
  work: string;
  hostname: string;
  hosts: string;
  resolvConf: string;
}

/** A mount the user asked for (`-v`, `--mount`, `--tmpfs`). */
export interface BindMount {
  /**
   * Default `bind`. A volume is a bind of its directory under Capsa's root;
   * `helper` a directory the helper itself prepared for the container (a
   * build step's mounts), never one a request named.
   */
  type?: 'bind' | 'volume' | 'tmpfs' | 'helper';
  /** Host path (bind, volume) or `tmpfs`. */
  source: string;
  target: string;
  readOnly: boolean;
  /** The volume's name (type volume). */
  name?: string;
  /** tmpfs mount data, e.g. `mode=1777,size=65536k`. */
  data?: string;
  /** tmpfs: MS_NOEXEC unless `exec` was given (Docker's default for --tmpfs). */
  noexec?: boolean;
}

export interface SpecInput {
  /** Unpacked layer directories, top-most first (overlayfs lowerdir order). */
  layerDirs: string[];
  image: ImageRunConfig;
  paths: ContainerPaths;
  hostname: string;
  cmd?: string[];
  entrypoint?: string[];
  env?: string[];
  workdir?: string;
  user: { uid: number; gid: number; additionalGids: number[]; home?: string };
  tty: boolean;
  winsize?: { rows: number; cols: number };
  binds: BindMount[];
  namespaces?: Namespace[];
  cgroupProcs?: string[];
  /** Capabilities, seccomp, no_new_privs, rlimits; absent: the process keeps root's full rights (tests of the plan only). */
  security?: SecuritySettings;
  /** `--init`: the shim stays as PID 1 and reaps zombies. */
  init?: boolean;
  /** `--read-only`: the root filesystem is remounted read-only once set up. */
  readOnly?: boolean;
  /** `--device` nodes (hostdevices.ts); one at a default device's path takes its place, as with runc. */
  devices?: PlanDevice[];
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Devices every container gets (runc's default set), all 0666 root:root. */
const DEFAULT_DEVICES: Array<[string, number, number]> = [
  ['/dev/null', 1, 3],
  ['/dev/zero', 1, 5],
  ['/dev/full', 1, 7],
  ['/dev/random', 1, 8],
  ['/dev/urandom', 1, 9],
  ['/dev/tty', 5, 0],
];

/** runc's default masked paths: kernel state a container must not read. */
export const MASKED_PATHS = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

/** runc's default read-only paths: kernel knobs a container must not turn. */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export const DEFAULT_NAMESPACES: Namespace[] = ['mount', 'pid', 'uts', 'ipc', 'net', 'cgroup'];

/** The umask a container's process starts with: what runc and Docker give it. */
export const CONTAINER_UMASK = 0o022;

/**
 * Signals the shim passes on to the container's process when it receives
 * them (a `docker kill`'s usual ones, the terminal's, and window changes),
 * by name: the numbers differ between architectures.
 */
export const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];

/**
 * The order of the last steps before exec. Loading a seccomp filter needs
 * either no_new_privs or CAP_SYS_ADMIN: without no_new_privs the filter is
 * loaded while the process still holds every capability, before the user
 * step drops them (the filter must then allow the remaining setup calls, as
 * Docker's does); with it, as late as possible, so that every syscall before
 * exec is the shim's and not subject to the image's filter.
 */
export function processSteps(noNewPrivileges: boolean): PlanStep[] {
  return noNewPrivileges
    ? ['rlimits', 'tty', 'user', 'cwd', 'umask', 'nonewprivs', 'seccomp']
    : ['rlimits', 'tty', 'seccomp', 'user', 'cwd', 'umask', 'nonewprivs'];
}

/**
 * The process-wide decisions every plan carries: the umask, the step
 * order, the forwarded signals, and where the command is looked up (the
 * container's own PATH, as the image or the user set it, else the default).
 */
export function processPolicy(env: string[], noNewPrivileges: boolean): Pick<Plan, 'umask' | 'steps' | 'forwardSignals' | 'searchPath'> {
  return {
    umask: CONTAINER_UMASK,
    steps: processSteps(noNewPrivileges),
    forwardSignals: FORWARDED_SIGNALS.map((name) => osConstants.signals[name]),
    searchPath: envValue(env, 'PATH') ?? DEFAULT_PATH,
  };
}

/**
 * The overlay's mount data. Layer paths go in as given; overlayfs splits
 * lowerdir on ':' and takes ',' as an option separator, and store paths are
 * hex digests under a root the helper controls, so either character in them
 * is a configuration error worth refusing loudly.
 *
 * The string may pass mount(2)'s one-page limit (about 40 store paths fill
 * it): the shim opens each lower directory and hands the kernel short fd
 * names instead (native/src/setup/rootfs.c), so only overlayfs's own bound on the
 * number of lower layers applies, checked here before anything is set up.
 */
export function overlayData(layerDirs: string[], upper: string, work: string): string {
  for (const p of [...layerDirs, upper, work]) {
    if (/[:,\\]/.test(p)) throw new InvalidArgumentError(`overlay path ${JSON.stringify(p)} contains ':', ',' or '\\', which overlayfs cannot take`);
  }
  if (layerDirs.length === 0) throw new InvalidArgumentError('image has no layers');
  if (layerDirs.length > MAX_IMAGE_LAYERS) throw new TooManyLayersError('the image', layerDirs.length, MAX_IMAGE_LAYERS);
  return `lowerdir=${layerDirs.join(':')},upperdir=${upper},workdir=${work}`;
}

/** Docker's rule: Entrypoint + Cmd, where a `run` command replaces Cmd and `--entrypoint` replaces Entrypoint (and clears Cmd). */
export function resolveArgs(image: ImageRunConfig, cmd?: string[], entrypoint?: string[]): string[] {
  const ep = entrypoint ?? image.Entrypoint ?? [];
  const c = cmd && cmd.length > 0 ? cmd : entrypoint !== undefined ? [] : (image.Cmd ?? []);
  const args = [...ep, ...c];
  if (args.length === 0) throw new InvalidArgumentError('no command specified: the image has no Cmd or Entrypoint and none was given');
  return args;
}

/** Merges environments: later entries override earlier ones by key; keeps first-seen order. */
export function mergeEnv(...lists: Array<string[] | undefined>): string[] {
  const map = new Map<string, string>();
  for (const list of lists) {
    for (const entry of list ?? []) {
      const eq = entry.indexOf('=');
      const key = eq < 0 ? entry : entry.slice(0, eq);
      if (key === '') throw new InvalidArgumentError(`invalid environment entry ${JSON.stringify(entry)}: empty name`);
      if (eq < 0) continue; // `-e NAME` without a value: Docker takes it from the client's env; the CLI resolves that
      map.delete(key);
      map.set(key, entry);
    }
  }
  return [...map.values()];
}

export function buildRunPlan(input: SpecInput): Plan {
  const p = input.paths;
  const mounts: PlanMount[] = [
    { source: 'overlay', target: '/', fstype: 'overlay', flags: 0, data: overlayData(input.layerDirs, p.upper, p.work) },
    { source: 'proc', target: '/proc', fstype: 'proc', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: '' },
    { source: 'tmpfs', target: '/dev', fstype: 'tmpfs', flags: MS.NOSUID | MS.STRICTATIME, data: 'mode=755,size=65536k' },
    { source: 'devpts', target: '/dev/pts', fstype: 'devpts', flags: MS.NOSUID | MS.NOEXEC, data: 'newinstance,ptmxmode=0666,mode=0620,gid=5' },
    { source: 'shm', target: '/dev/shm', fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: 'mode=1777,size=65536k' },
    { source: 'mqueue', target: '/dev/mqueue', fstype: 'mqueue', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: '' },
    { source: 'sysfs', target: '/sys', fstype: 'sysfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.RDONLY, data: '' },
    { source: p.hostname, target: '/etc/hostname', fstype: 'none', flags: MS.BIND, data: '' },
    { source: p.hosts, target: '/etc/hosts', fstype: 'none', flags: MS.BIND, data: '' },
    { source: p.resolvConf, target: '/etc/resolv.conf', fstype: 'none', flags: MS.BIND, data: '' },
  ];
  const privileged = !!input.security?.privileged;
  if (privileged) mounts.find((m) => m.target === '/sys')!.flags &= ~MS.RDONLY;
  for (const b of input.binds) {
    if (b.type === 'tmpfs') {
      mounts.push({ source: 'tmpfs', target: b.target, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV | (b.noexec === false ? 0 : MS.NOEXEC) | (b.readOnly ? MS.RDONLY : 0), data: b.data ?? '' });
      continue;
    }
    mounts.push({
      source: b.source,
      target: b.target,
      fstype: 'none',
      flags: MS.BIND | MS.REC | (b.readOnly ? MS.RDONLY : 0),
      data: '',
      // a volume's mountpoint is the helper's own directory; a bind's source is the caller's to reach
      ...(b.type !== 'volume' && b.type !== 'helper' ? { callerSource: true } : {}),
    });
  }
  const env = mergeEnv(
    [`PATH=${DEFAULT_PATH}`],
    input.image.Env ?? undefined,
    [`HOSTNAME=${input.hostname}`],
    input.user.home ? [`HOME=${input.user.home}`] : ['HOME=/root'],
    input.tty ? ['TERM=xterm'] : [],
    input.env,
  );
  const cwd = input.workdir || input.image.WorkingDir || '/';
  if (!path.posix.isAbsolute(cwd)) throw new InvalidArgumentError(`working directory ${JSON.stringify(cwd)} must be an absolute path`);
  return {
    namespaces: input.namespaces ?? DEFAULT_NAMESPACES,
    rootfs: p.rootfs,
    mounts,
    devices: [
      ...DEFAULT_DEVICES.filter(([devPath]) => !input.devices?.some((d) => d.path === devPath)).map(([devPath, major, minor]) => ({ path: devPath, type: 'c' as const, major, minor, mode: 0o666, uid: 0, gid: 0 })),
      ...(input.devices ?? []),
    ],
    symlinks: [
      { target: 'pts/ptmx', path: '/dev/ptmx' },
      { target: '/proc/self/fd', path: '/dev/fd' },
      { target: '/proc/self/fd/0', path: '/dev/stdin' },
      { target: '/proc/self/fd/1', path: '/dev/stdout' },
      { target: '/proc/self/fd/2', path: '/dev/stderr' },
      { target: '/proc/kcore', path: '/dev/core' },
    ],
    maskedPaths: privileged ? [] : MASKED_PATHS,
    // "/" first: the shim remounts the root itself read-only (no bind), then the kernel knobs
    readonlyPaths: [...(input.readOnly ? ['/'] : []), ...(privileged ? [] : READONLY_PATHS)],
    hostname: input.hostname,
    cwd,
    env,
    args: resolveArgs(input.image, input.cmd, input.entrypoint),
    uid: input.user.uid,
    gid: input.user.gid,
    additionalGids: input.user.additionalGids,
    terminal: input.tty,
    winsize: input.tty ? input.winsize ?? { rows: 24, cols: 80 } : undefined,
    loopbackUp: true,
    cgroupProcs: input.cgroupProcs ?? [],
    ...(input.security
      ? {
          capabilities: input.security.capabilities,
          noNewPrivileges: input.security.noNewPrivileges,
          rlimits: input.security.rlimits,
          ...(input.security.seccomp ? { seccomp: input.security.seccomp } : {}),
        }
      : {}),
    ...(input.init ? { init: true } : {}),
    ...processPolicy(env, !!input.security?.noNewPrivileges),
  };
}

/**
 * The namespaces a container gets: all six by default; `--pid host` and
 * `--ipc host` share the host's (as Docker does), and the network namespace
 * is the network manager's call (`newNetns`).
 */
export function runNamespaces(opts: { pid?: string; ipc?: string }, newNetns: boolean): Namespace[] {
  for (const [flag, v] of [['pid', opts.pid], ['ipc', opts.ipc]] as const) {
    if (v !== undefined && v !== 'host' && v !== 'private' && v !== '') throw new InvalidArgumentError(`invalid --${flag} ${JSON.stringify(v)}: expected host`);
  }
  const ns: Namespace[] = ['mount'];
  if (opts.pid !== 'host') ns.push('pid');
  ns.push('uts');
  if (opts.ipc !== 'host') ns.push('ipc');
  ns.push('cgroup');
  if (newNetns) ns.push('net');
  return ns;
}

/** A plan for `exec`: join the running container's namespaces, no mounts. */
export function buildExecPlan(input: {
  pid: number;
  rootfs: string;
  cmd: string[];
  env: string[];
  cwd: string;
  user: { uid: number; gid: number; additionalGids: number[] };
  tty: boolean;
  winsize?: { rows: number; cols: number };
  namespaces?: Namespace[];
  cgroupProcs?: string[];
  /** The container's run plan: an exec'd process joins its cgroup and gets its capabilities, seccomp filter, no_new_privs and rlimits, as with Docker. */
  confinement?: Plan;
}): Plan {
  if (input.cmd.length === 0) throw new InvalidArgumentError('exec needs a command');
  const c = input.confinement;
  return {
    ...(c?.capabilities ? { capabilities: c.capabilities } : {}),
    ...(c?.seccomp ? { seccomp: planBuffer(c.seccomp) } : {}),
    ...(c?.noNewPrivileges !== undefined ? { noNewPrivileges: c.noNewPrivileges } : {}),
    ...(c?.rlimits ? { rlimits: c.rlimits.map((r) => ({ ...r, soft: r.soft ?? Infinity, hard: r.hard ?? Infinity })) } : {}),
    namespaces: input.namespaces ?? DEFAULT_NAMESPACES,
    rootfs: input.rootfs,
    mounts: [],
    devices: [],
    symlinks: [],
    maskedPaths: [],
    readonlyPaths: [],
    cwd: input.cwd,
    env: input.env,
    args: input.cmd,
    uid: input.user.uid,
    gid: input.user.gid,
    additionalGids: input.user.additionalGids,
    terminal: input.tty,
    winsize: input.tty ? input.winsize ?? { rows: 24, cols: 80 } : undefined,
    loopbackUp: false,
    cgroupProcs: input.cgroupProcs ?? c?.cgroupProcs ?? [],
    joinPid: input.pid,
    ...processPolicy(input.env, !!c?.noNewPrivileges),
  };
}

/**
 * A plan read back from config.json: JSON turns a Buffer into
 * `{type: 'Buffer', data: [...]}`, bigints must be stored as strings, and
 * Infinity becomes null.
 */
function planBuffer(v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  const o = v as { type?: string; data?: number[] };
  if (o && o.type === 'Buffer' && Array.isArray(o.data)) return Buffer.from(o.data);
  if (typeof v === 'string') return Buffer.from(v, 'hex');
  throw new InvalidArgumentError('the container record holds a malformed seccomp program');
}
