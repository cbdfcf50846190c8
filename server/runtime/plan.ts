/**
 * A plan is everything the native shim needs to create a container process,
 * decided here in TypeScript as plain data (testable without root), and
 * carried out by native/ without further decisions.
 *
 * Wire format (what {@link encodePlan} writes to the shim's fd 3): a sequence
 * of records, each a tag followed by a fixed number of fields; tag and fields
 * are NUL-terminated byte strings. The sequence ends with the tag `end`.
 * NUL-separation needs no escaping, since no path, argument or environment
 * entry can contain NUL (the kernel's own argv/env/path convention).
 *
 *   tag        fields
 *   ns         list            comma separated: mount,pid,uts,ipc,net,cgroup
 *   rootfs     path            host path the container's / is mounted on
 *   mount      src target fstype flags data
 *                              target is inside the container ("/" = rootfs) and
 *                              resolved inside the rootfs (never escaping it);
 *                              flags is a decimal MS_* mask; a missing target is
 *                              created (an empty file when src is a non-directory),
 *                              a dangling symlink's target in its place, inside the
 *                              rootfs; a bind's ro/nosuid/nodev/noexec reach its
 *                              submounts too when flags has MS_REC; an overlay's
 *                              lowerdir list may be of any length (the shim opens
 *                              each directory and passes short fd names)
 *   device     path type major minor mode uid gid     type is c or b
 *   hostdevice path type major minor mode uid gid hostpath
 *                              a device as `device`, where the node the shim binds
 *                              when mknod is refused is the host's hostpath (a
 *                              `--device` whose container path differs)
 *   symlink    target path     creates path -> target inside the container
 *   mask       path            hides path (/dev/null over files, read-only tmpfs over dirs)
 *   readonly   path            bind-remounts path read-only
 *   hostname   name
 *   cwd        path
 *   env        KEY=VALUE       repeated, in order
 *   arg        value           repeated; argv[0] first
 *   user       uid gid
 *   group      gid             supplementary group, repeated
 *   tty        0|1             container gets the pty slave as 0,1,2 and ctty
 *   winsize    rows cols       initial pty size (with tty 1)
 *   lo         0|1             bring loopback up in a new network namespace
 *   cgroup     procsfile       a cgroup.procs file the shim writes its own pid
 *                              into before cloning (repeated: one per v1 hierarchy)
 *   join       pid             exec mode: setns into every namespace listed in
 *                              `ns` of that (host) pid instead of creating new ones
 *   rlimit     resource soft hard
 *                              setrlimit before exec; resource is the Linux number
 *                              (RLIMIT_*), soft/hard decimal or `unlimited`; repeated
 *   caps       bounding effective permitted inheritable ambient
 *                              capability sets as hex masks (bit n = capability n);
 *                              absent: the process keeps what root has
 *   nonewprivs 0|1             PR_SET_NO_NEW_PRIVS before exec
 *   seccomp    hex             a classic BPF program (struct sock_filter array,
 *                              8 bytes per instruction, host byte order) loaded
 *                              as the process's seccomp filter just before exec
 *   init       0|1             run mode: the shim stays as PID 1 (reaps zombies,
 *                              forwards signals) and the command runs as its child
 *   netns      path            run mode: setns into this network namespace (an nsfs
 *                              bind mount the helper prepared, or /proc/<pid>/ns/net)
 *                              before cloning, instead of a new one; `ns` must then
 *                              not list net
 *   idmap      path uid_inside uid_outside gid_inside gid_outside
 *                              run mode, after the mounts: the bind mount at path
 *                              (inside the container) gets an idmapped copy stacked
 *                              on it (mount_setattr MOUNT_ATTR_IDMAP with a user
 *                              namespace mapping inside -> outside, one id each):
 *                              the container's uid_inside writes there as
 *                              uid_outside on disk, and uid_outside's files appear
 *                              as uid_inside's; repeated
 *   userns     uid gid size   run mode, --userns auto: before the clone, a user namespace
 *                              mapping ids 0..size-1 onto host uid.. and gid..; the
 *                              child joins it after the mounts, hostname and lo
 *   idlower    source target   run mode, with userns: before the mounts, an idmapped
 *                              (through that namespace) copy of layer directory source
 *                              is attached at the empty directory target; repeated
 *   umask      octal           the command's umask, set by the `umask` step
 *   steps      list            comma separated, each of rlimits, tty, seccomp, user,
 *                              cwd, umask, nonewprivs exactly once: the order of the
 *                              last steps before exec (user: the bounding set, the
 *                              uid/gid/groups switch keeping capabilities, then the
 *                              capability sets; tty: the pty slave becomes the
 *                              controlling terminal and 0, 1, 2)
 *   signals    list            comma separated signal numbers the shim (its monitor or
 *                              relay) forwards to the container's process; may be empty
 *   searchpath list            colon separated: where a command without a slash is
 *                              looked up (an empty entry is the working directory)
 *   bindfd     n               run mode: an O_PATH descriptor (above 5) the shim
 *                              inherits, a bind source a mount names as
 *                              /proc/self/fd/n; the monitor keeps it across its
 *                              detach, replaces it before the clone by a detached
 *                              copy of its mount tree (open_tree), which the child
 *                              attaches at the mount's target (move_mount); closed
 *                              once mounted; repeated
 *   end
 *
 * Records after `join` were added later; an absent one keeps the behaviour
 * the shim had before it existed, so older plans stay valid. The shim has
 * no defaults of its own for cwd, umask, steps and searchpath and refuses a
 * plan without them; {@link encodePlan} writes, for a plan recorded before
 * those fields existed (a container's config.json), the values the shim then
 * applied itself ({@link RECORDED_BEFORE_POLICY}).
 */

import { constants as osConstants } from 'node:os';

/** Linux mount flags used in plans (uapi/linux/mount.h). */
export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  REMOUNT: 0x20,
  BIND: 0x1000,
  REC: 0x4000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
  STRICTATIME: 0x1000000,
} as const;

/** The last steps before exec, whose order the plan decides (the `steps` record). */
export type PlanStep = 'rlimits' | 'tty' | 'seccomp' | 'user' | 'cwd' | 'umask' | 'nonewprivs';

/**
 * What the shim did on its own before a plan carried these decisions: a
 * plan recorded then (a container created by an older helper) is encoded
 * with them, so it starts as it always did. Not a policy: a record of one.
 */
export const RECORDED_BEFORE_POLICY = {
  umask: 0o022,
  /** seccomp before the capabilities are dropped without no_new_privs (loading needs CAP_SYS_ADMIN then), last with it. */
  steps(noNewPrivileges: boolean | undefined): PlanStep[] {
    return noNewPrivileges
      ? ['rlimits', 'tty', 'user', 'cwd', 'umask', 'nonewprivs', 'seccomp']
      : ['rlimits', 'tty', 'seccomp', 'user', 'cwd', 'umask', 'nonewprivs'];
  },
  /** SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH by name: numbers differ between architectures. */
  signals: ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as NodeJS.Signals[],
  /** the plan's PATH, else this */
  searchPath: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
} as const;

/** `user` only in exec plans: a run plan's user namespace is its `userns` record. */
export type Namespace = 'mount' | 'pid' | 'uts' | 'ipc' | 'net' | 'cgroup' | 'user';

/** Linux resource numbers for `setrlimit` (asm-generic/resource.h). */
export const RLIMIT = {
  CPU: 0,
  FSIZE: 1,
  DATA: 2,
  STACK: 3,
  CORE: 4,
  RSS: 5,
  NPROC: 6,
  NOFILE: 7,
  MEMLOCK: 8,
  AS: 9,
  LOCKS: 10,
  SIGPENDING: 11,
  MSGQUEUE: 12,
  NICE: 13,
  RTPRIO: 14,
  RTTIME: 15,
} as const;

export interface PlanRlimit {
  /** One of {@link RLIMIT}. */
  resource: number;
  /** `Infinity` means RLIM_INFINITY. */
  soft: number;
  hard: number;
}

/** Capability sets as bit masks (bit n = capability number n, linux/capability.h). */
export interface PlanCapabilities {
  bounding: bigint;
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
  ambient: bigint;
}

export interface PlanMount {
  source: string;
  /** Absolute path inside the container. */
  target: string;
  fstype: string;
  flags: number;
  data: string;
  /**
   * A host path the request named (a bind's source): each start opens it
   * with the starting caller's rights and mounts that descriptor
   * (bindsource.ts). Absent: the helper's own file (hosts, a volume).
   */
  callerSource?: boolean;
}

export interface PlanDevice {
  /** Absolute path inside the container, e.g. /dev/null. */
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  mode: number;
  uid: number;
  gid: number;
  /** The host's node of it, when not at `path` (`--device`): what the shim binds when mknod is refused. */
  hostPath?: string;
}

export interface Plan {
  namespaces: Namespace[];
  rootfs: string;
  mounts: PlanMount[];
  devices: PlanDevice[];
  symlinks: Array<{ target: string; path: string }>;
  maskedPaths: string[];
  readonlyPaths: string[];
  hostname?: string;
  cwd: string;
  env: string[];
  args: string[];
  uid: number;
  gid: number;
  additionalGids: number[];
  terminal: boolean;
  winsize?: { rows: number; cols: number };
  loopbackUp: boolean;
  /** cgroup.procs files to join before the container process is created. */
  cgroupProcs: string[];
  /** Exec mode: join the namespaces of this host pid rather than creating them. */
  joinPid?: number;
  rlimits?: PlanRlimit[];
  /** Absent: the process keeps root's full sets. */
  capabilities?: PlanCapabilities;
  noNewPrivileges?: boolean;
  /** A seccomp BPF program: struct sock_filter[] in host byte order. */
  seccomp?: Buffer;
  /** Run mode: the shim is PID 1 and reaps zombies; the command is its child. */
  init?: boolean;
  /** Run mode: join this network namespace file (prepared by the helper) instead of creating one. */
  netnsPath?: string;
  /** Run mode: bind mounts made idmapped after mounting (`idmap` records). */
  idmaps?: PlanIdmap[];
  /** Run mode, `--userns auto`: the container's id range and its idmapped layers (`userns` and `idlower` records). */
  userns?: PlanUserns;
  /** The command's umask. Absent only in plans recorded before it existed. */
  umask?: number;
  /** The order of the last steps before exec, each once. Absent only in plans recorded before it existed. */
  steps?: PlanStep[];
  /** Signal numbers the shim forwards to the container's process. Absent only in plans recorded before it existed. */
  forwardSignals?: number[];
  /** Where a command without a slash is looked up (colon separated). Absent only in plans recorded before it existed. */
  searchPath?: string;
  /** The shim's inherited bind-source descriptors (`bindfd` records), set per start by bindsource.ts; never recorded. */
  bindFds?: number[];
}
export interface PlanUserns {
  /** Host uid and gid that container id 0 maps to, and how many ids are mapped. */
  uid: number;
  gid: number;
  size: number;
  /** Each image layer (source) and the empty directory (target) its idmapped copy is attached at; the overlay's lowerdirs are the targets. */
  lowers: Array<{ source: string; target: string }>;
}
/** An idmapped bind mount: inside ids read and write as outside ids on disk. */
export interface PlanIdmap {
  /** Absolute path inside the container: the target of a bind mount in the plan. */
  path: string;
  /** [inside, outside]. */
  uid: [number, number];
  gid: [number, number];
}

/** The value of the last `KEY=` entry of env (as a shell reading the list would take it), or undefined. */
export function envValue(env: string[], key: string): string | undefined {
  let found: string | undefined;
  for (const e of env) if (e.startsWith(`${key}=`)) found = e.slice(key.length + 1);
  return found;
}

/** Serialises a plan into the shim's wire format. */
export function encodePlan(plan: Plan): Buffer {
  const parts: string[] = [];
  const rec = (tag: string, ...fields: Array<string | number>): void => {
    parts.push(tag, ...fields.map(String));
  };
  rec('ns', plan.namespaces.join(','));
  rec('rootfs', plan.rootfs);
  for (const m of plan.mounts) rec('mount', m.source, m.target, m.fstype, m.flags, m.data);
  for (const d of plan.devices) {
    if (d.hostPath === undefined) rec('device', d.path, d.type, d.major, d.minor, d.mode, d.uid, d.gid);
    else rec('hostdevice', d.path, d.type, d.major, d.minor, d.mode, d.uid, d.gid, d.hostPath);
  }
  for (const s of plan.symlinks) rec('symlink', s.target, s.path);
  for (const p of plan.maskedPaths) rec('mask', p);
  for (const p of plan.readonlyPaths) rec('readonly', p);
  if (plan.hostname !== undefined) rec('hostname', plan.hostname);
  rec('cwd', plan.cwd);
  for (const e of plan.env) rec('env', e);
  for (const a of plan.args) rec('arg', a);
  const before = RECORDED_BEFORE_POLICY;
  const umask = plan.umask ?? before.umask;
  if (!Number.isInteger(umask) || umask < 0 || umask > 0o777) throw new Error(`umask must be an integer from 0 to 0o777, not ${umask}`);
  rec('umask', `0${umask.toString(8)}`);
  rec('steps', (plan.steps ?? before.steps(plan.noNewPrivileges)).join(','));
  const signals = plan.forwardSignals ?? before.signals.map((name) => osConstants.signals[name]);
  rec('signals', signals.join(','));
  rec('searchpath', plan.searchPath ?? envValue(plan.env, 'PATH') ?? before.searchPath);
  for (const fd of plan.bindFds ?? []) rec('bindfd', fd);
  rec('user', plan.uid, plan.gid);
  for (const g of plan.additionalGids) rec('group', g);
  rec('tty', plan.terminal ? 1 : 0);
  if (plan.winsize) rec('winsize', plan.winsize.rows, plan.winsize.cols);
  rec('lo', plan.loopbackUp ? 1 : 0);
  for (const c of plan.cgroupProcs) rec('cgroup', c);
  if (plan.joinPid !== undefined) rec('join', plan.joinPid);
  // A plan may come back from JSON (a container's config.json): Infinity as null, bigints as hex strings, a Buffer as {type, data}.
  const limit = (n: number | null): string => (n === Infinity || n === null ? 'unlimited' : String(n));
  for (const r of plan.rlimits ?? []) rec('rlimit', r.resource, limit(r.soft), limit(r.hard));
  if (plan.capabilities) {
    const c = plan.capabilities;
    const hex = (m: bigint | string): string => `0x${BigInt(m).toString(16)}`;
    rec('caps', hex(c.bounding), hex(c.effective), hex(c.permitted), hex(c.inheritable), hex(c.ambient));
  }
  if (plan.noNewPrivileges !== undefined) rec('nonewprivs', plan.noNewPrivileges ? 1 : 0);
  if (plan.seccomp) {
    const revived = plan.seccomp as unknown as { type?: string; data?: number[] };
    const prog = Buffer.isBuffer(plan.seccomp) ? plan.seccomp : Buffer.from(revived.data ?? []);
    if (prog.length === 0 || prog.length % 8 !== 0) {
      throw new Error(`seccomp program must be a non-empty multiple of 8 bytes, not ${prog.length}`);
    }
    rec('seccomp', prog.toString('hex'));
  }
  if (plan.init !== undefined) rec('init', plan.init ? 1 : 0);
  if (plan.netnsPath !== undefined) {
    if (plan.namespaces.includes('net')) throw new Error('a plan with netnsPath must not also create a net namespace');
    rec('netns', plan.netnsPath);
  }
  for (const m of plan.idmaps ?? []) rec('idmap', m.path, m.uid[0], m.uid[1], m.gid[0], m.gid[1]);
  if (plan.userns) {
    rec('userns', plan.userns.uid, plan.userns.gid, plan.userns.size);
    for (const l of plan.userns.lowers) rec('idlower', l.source, l.target);
  }
  rec('end');
  for (const p of parts) {
    if (p.includes('\0')) throw new Error(`plan field contains a NUL byte: ${JSON.stringify(p)}`);
  }
  return Buffer.from(parts.join('\0') + '\0', 'utf8');
}
