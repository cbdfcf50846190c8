/**
 * Per-container cgroups: `--memory`, `--cpus`, `--pids-limit` and the device
 * allow-list, on cgroup v1 (one directory per controller hierarchy) or v2
 * (one unified directory), behind one interface.
 *
 * Where: under the helper's own cgroup, in a parent directory (`capsa` by
 * default, env `CAPSA_CGROUP_PARENT`), so whatever limits the host put on the
 * helper also bound its containers, as for any service's children. On v2 a
 * cgroup with processes cannot also delegate controllers to children (the
 * "no internal processes" rule), so there the parent sits next to the
 * helper's cgroup instead of inside it.
 *
 * Devices: v1 writes the allow-list to `devices.allow`; the unified (v2)
 * hierarchy has no such file, so there the same list becomes a cgroup device
 * BPF program (`devicebpf.ts`) attached to the container's v2 directory
 * before any process joins it. On a v1 host that also mounts a controller-less
 * cgroup2 (systemd's hybrid `/sys/fs/cgroup/unified`) the container joins a
 * directory there too and gets the program as well: the kernel checks both.
 *
 * The shim writes itself into the container's `cgroup.procs` files before it
 * clones (so the container's first process starts inside, and its cgroup
 * namespace is rooted there); once the container runs, the helper moves the
 * shim, which stays as the container's monitor, back to the helper's own
 * cgroups ({@link CgroupManager.release}), so it counts against neither the
 * memory nor the pids limit.
 */
import { existsSync, mkdirSync, promises as fs, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError } from '../errors';
import { ifMissing } from '../util/missing';
import { CgroupError, detectLayout, joined, type CgroupLayout, type Hierarchy } from './cgrouplayout';
import { attachDeviceFilter, formatDeviceRule, parseDeviceRule, type DeviceRule } from './devicebpf';

export { CgroupError, detectLayout, type CgroupLayout } from './cgrouplayout';

export interface ResourceLimits {
  /** Memory limit in bytes (`--memory`). */
  memory?: number;
  /** Memory plus swap in bytes (`--memory-swap`); -1: unlimited swap. Default with `memory`: twice `memory`, as Docker does. */
  memorySwap?: number;
  /** CPUs, fractional (`--cpus 0.5`): a CFS quota of cpus × period. */
  cpus?: number;
  /** Relative CPU weight (`--cpu-shares`, 2–262144). */
  cpuShares?: number;
  /** Maximum number of tasks (`--pids-limit`); 0 or -1: unlimited. */
  pidsLimit?: number;
  /**
   * The device allow-list, decided by the helper (never taken from a
   * client): undefined is {@link DEFAULT_DEVICE_RULES}; `all` (`--privileged`)
   * restricts no device, as Docker's `a *:* rwm`.
   */
  devices?: DeviceRule[] | 'all';
}

/** CFS period the quota is expressed in: Docker's and the kernel's default, 100 ms. */
export const CPU_PERIOD_US = 100_000;

/** Smallest memory limit accepted, as Docker's (6 MiB): below it the container cannot even start its command. */
export const MIN_MEMORY = 6 * 1024 * 1024;

/** Checks limits that came over the protocol (the CLI parses flags into these numbers). */
export function validateLimits(l: ResourceLimits, onlineCpus: number): void {
  const int = (name: string, v: unknown): v is number => {
    if (v === undefined) return false;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidArgumentError(`${name} must be a number`);
    return true;
  };
  if (int('memory', l.memory) && (!Number.isSafeInteger(l.memory) || l.memory < MIN_MEMORY)) {
    throw new InvalidArgumentError(`invalid memory limit ${l.memory}: the minimum is 6m (${MIN_MEMORY} bytes)`);
  }
  if (int('memorySwap', l.memorySwap)) {
    if (l.memorySwap !== -1 && (!Number.isSafeInteger(l.memorySwap) || l.memorySwap < 0)) throw new InvalidArgumentError(`invalid memory-swap ${l.memorySwap}`);
    if (l.memory === undefined) throw new InvalidArgumentError('memory-swap needs a memory limit as well');
    if (l.memorySwap !== -1 && l.memorySwap < l.memory) throw new InvalidArgumentError('memory-swap must be at least the memory limit');
  }
  if (int('cpus', l.cpus)) {
    if (l.cpus <= 0) throw new InvalidArgumentError(`invalid cpus ${l.cpus}: must be more than 0`);
    if (l.cpus > onlineCpus) throw new InvalidArgumentError(`invalid cpus ${l.cpus}: only ${onlineCpus} CPUs are available`);
    if (Math.round(l.cpus * CPU_PERIOD_US) < 1000) throw new InvalidArgumentError(`invalid cpus ${l.cpus}: the minimum is 0.01`);
  }
  if (int('cpuShares', l.cpuShares) && (!Number.isInteger(l.cpuShares) || l.cpuShares < 2 || l.cpuShares > 262144)) {
    throw new InvalidArgumentError(`invalid cpu-shares ${l.cpuShares}: expected an integer from 2 to 262144`);
  }
  if (int('pidsLimit', l.pidsLimit) && (!Number.isSafeInteger(l.pidsLimit) || l.pidsLimit < -1)) {
    throw new InvalidArgumentError(`invalid pids-limit ${l.pidsLimit}: expected a positive integer, or 0 or -1 for unlimited`);
  }
}

/**
 * The device allow-list (v1 `devices.allow` syntax), as runc's default: mknod
 * of any node is allowed, opening one only for the devices a container gets.
 * Without it CAP_MKNOD (in the default set) would let a container make and
 * read the host's disks.
 */
export const DEVICE_RULES = [
  'c *:* m',
  'b *:* m',
  'c 1:3 rwm', // null
  'c 1:5 rwm', // zero
  'c 1:7 rwm', // full
  'c 1:8 rwm', // random
  'c 1:9 rwm', // urandom
  'c 5:0 rwm', // tty
  'c 5:1 rwm', // console
  'c 5:2 rwm', // ptmx
  'c 136:* rwm', // pts
  'c 10:200 rwm', // tun
];

/** {@link DEVICE_RULES} as data: what v1 writes and the v2 device program is generated from. */
export const DEFAULT_DEVICE_RULES: readonly DeviceRule[] = DEVICE_RULES.map((r) => parseDeviceRule(r));

export function checkCgroupParent(parent: string): string {
  const parts = parent.split('/').filter(Boolean);
  if (parts.length === 0 || parts.some((p) => p === '.' || p === '..' || !/^[A-Za-z0-9_.-]+$/.test(p))) {
    throw new InvalidArgumentError(`invalid cgroup parent ${JSON.stringify(parent)}: relative path of names made of letters, digits, '_', '.' and '-'`);
  }
  return parts.join('/');
}

/** What a container's cgroup is, recorded in its directory (`cgroup.json`) so removal never depends on the helper's current layout. */
export interface ContainerCgroup {
  version: 1 | 2;
  dirs: string[];
}

export class CgroupManager {
  private layoutCache?: CgroupLayout;

  constructor(
    private readonly opts: {
      parent?: string;
      mountinfo?: () => string;
      selfCgroup?: () => string;
      /** The device program's loader (tests replace it to see a kernel that refuses). */
      attachDeviceFilter?: (cgroupDir: string, rules: DeviceRule[]) => void;
    } = {},
  ) {}

  /** The helper's configuration: `CAPSA_CGROUP_PARENT` (default `capsa`). */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): CgroupManager {
    return new CgroupManager({ parent: checkCgroupParent(env.CAPSA_CGROUP_PARENT || 'capsa') });
  }

  layout(): CgroupLayout {
    this.layoutCache ??= detectLayout(
      this.opts.mountinfo?.() ?? readFileSync('/proc/self/mountinfo', 'utf8'),
      this.opts.selfCgroup?.() ?? readFileSync('/proc/self/cgroup', 'utf8'),
      this.opts.parent ?? 'capsa',
    );
    return this.layoutCache;
  }

  /**
   * Creates the container's cgroup with its limits and records it in
   * `<containerDir>/cgroup.json`; returns the `cgroup.procs` files the shim
   * joins. On failure nothing is left behind and the error names the file.
   */
  async create(id: string, containerDir: string, limits: ResourceLimits): Promise<string[]> {
    if (!/^[0-9a-f]{64}$/.test(id)) throw new InvalidArgumentError(`invalid container id ${JSON.stringify(id)}`);
    const layout = this.layout();
    const made: string[] = [];
    try {
      const dirs: string[] = [];
      for (const h of joined(layout)) {
        const dir = path.posix.join(h.base, id);
        try {
          await this.mkdirs(h === layout.unified ? 2 : layout.version, h, dir, made);
        } catch (err) {
          // a hybrid host's cgroup2 the helper cannot write is no reason to refuse a run that v1's devices.allow confines
          if (h === layout.unified && layout.version === 1 && layout.v1Devices) continue;
          throw err;
        }
        if (h === layout.unified) this.confineDevices(layout, dir, limits.devices);
        if (layout.version === 1) await applyV1(h.controllers, dir, limits);
        else await applyV2(dir, limits);
        dirs.push(dir);
      }
      const record: ContainerCgroup = { version: layout.version, dirs };
      // not fsynced: after a power loss, reconcile() finds a container's cgroups by name
      writeFileSync(path.join(containerDir, 'cgroup.json'), JSON.stringify(record), { mode: 0o600 });
      return record.dirs.map((d) => path.posix.join(d, 'cgroup.procs'));
    } catch (err) {
      await removeDirs(made.filter((d) => d.endsWith(id)));
      throw err;
    }
  }

  /**
   * Attaches the device program to the container's fresh v2 directory, before
   * the shim puts the container's first process in it. A kernel that refuses
   * fails the run, unless a v1 devices controller confines devices anyway.
   */
  private confineDevices(layout: CgroupLayout, dir: string, devices: ResourceLimits['devices']): void {
    if (devices === 'all') return;
    try {
      (this.opts.attachDeviceFilter ?? attachDeviceFilter)(dir, [...(devices ?? DEFAULT_DEVICE_RULES)]);
    } catch (err) {
      // the v1 devices.allow written next is the confinement there; the program was a second line
      if (layout.v1Devices) return;
      throw new CgroupError(
        `cannot confine the container's devices: ${(err as Error).message}; this host has no v1 devices controller either, so a container could open any device it makes with mknod, and the run is refused`,
        dir,
        { cause: err },
      );
    }
  }

  /** mkdir -p of the container's cgroup, preparing each new level (cpuset needs cpus/mems copied, v2 needs controllers delegated). */
  private async mkdirs(version: 1 | 2, h: Hierarchy, dir: string, made: string[]): Promise<void> {
    const levels: string[] = [];
    for (let d = dir; d !== h.own && d.startsWith(h.own + '/'); d = path.posix.dirname(d)) levels.unshift(d);
    for (const level of levels) {
      if (version === 2) await enableV2Controllers(path.posix.dirname(level));
      try {
        mkdirSync(level);
        made.push(level);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || level === dir) throw cgroupFsError('create', level, err);
      }
      if (version === 1 && h.controllers.includes('cpuset')) {
        for (const f of ['cpuset.cpus', 'cpuset.mems']) {
          const mine = readCg(path.posix.join(level, f)).trim();
          if (mine === '') await writeCg(path.posix.join(level, f), readCg(path.posix.join(path.posix.dirname(level), f)).trim());
        }
      }
    }
  }

  /** Removes the container's cgroup (its processes must be gone; stragglers get SIGKILL). */
  async remove(containerDir: string): Promise<void> {
    const record = await readRecord(containerDir);
    if (record) await removeDirs(record.dirs);
  }

  /**
   * Freezes (or thaws) every process of the container's cgroup: v2's
   * `cgroup.freeze`, v1's freezer controller, whichever its directories
   * have, waiting until the kernel reports it frozen (at most a second).
   * False when neither is there (nothing was frozen).
   */
  async freeze(containerDir: string, frozen: boolean): Promise<boolean> {
    const record = await readRecord(containerDir);
    let done = false;
    for (const dir of record?.dirs ?? []) {
      const v2 = path.posix.join(dir, 'cgroup.freeze');
      const v1 = path.posix.join(dir, 'freezer.state');
      if (existsSync(v2)) {
        await writeCg(v2, frozen ? '1' : '0');
        if (frozen) await settle(() => /^frozen 1$/m.test(readCg(path.posix.join(dir, 'cgroup.events'))));
        done = true;
      } else if (existsSync(v1)) {
        await writeCg(v1, frozen ? 'FROZEN' : 'THAWED');
        if (frozen) await settle(() => readCg(v1).trim() === 'FROZEN');
        done = true;
      }
    }
    return done;
  }

  /** True when the kernel's OOM killer killed a process of this container's cgroup. */
  async oomKilled(containerDir: string): Promise<boolean> {
    const record = await readRecord(containerDir);
    if (!record) return false;
    for (const dir of record.dirs) {
      const file = record.version === 1 ? 'memory.oom_control' : 'memory.events';
      const text = readCg(path.posix.join(dir, file));
      const m = /^oom_kill (\d+)$/m.exec(text);
      if (m && Number(m[1]) > 0) return true;
    }
    return false;
  }

  /** Moves a process (the container's monitor) back into the helper's own cgroups. */
  async release(pid: number): Promise<void> {
    for (const h of joined(this.layout())) {
      await writeCg(path.posix.join(h.own, 'cgroup.procs'), String(pid)).catch(() => undefined); // gone already: nothing to move
    }
  }

  /**
   * After a crash: removes the cgroups of `ownIds` (containers this helper's
   * root has a directory for) that are not in `knownIds` (containers it
   * loaded). Only its own: the parent is shared by every helper under the
   * same cgroup (another root, a test's), and removing a cgroup that is not
   * ours would kill that helper's running containers or make its starting
   * ones fail to join theirs.
   */
  async reconcile(knownIds: Set<string>, ownIds: Set<string>): Promise<void> {
    for (const h of joined(this.layout())) {
      const names = await fs.readdir(h.base).catch(ifMissing([] as string[]));
      const stale = names.filter((n) => ownIds.has(n) && !knownIds.has(n)).map((n) => path.posix.join(h.base, n));
      // best effort after a crash: a cgroup still busy stays, and the next start tries again
      await removeDirs(stale).catch(() => undefined);
    }
  }

  /** Container cgroup directories under this helper's parent (what tests count). */
  async list(): Promise<string[]> {
    const out: string[] = [];
    for (const h of joined(this.layout())) {
      for (const n of await fs.readdir(h.base).catch(ifMissing([] as string[]))) if (/^[0-9a-f]{64}$/.test(n)) out.push(path.posix.join(h.base, n));
    }
    return out;
  }
}

/** Polls `ready` every 10 ms for at most a second. */
async function settle(ready: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !ready(); i++) await new Promise((r) => setTimeout(r, 10));
}

async function readRecord(containerDir: string): Promise<ContainerCgroup | undefined> {
  try {
    return JSON.parse(readFileSync(path.join(containerDir, 'cgroup.json'), 'utf8')) as ContainerCgroup;
  } catch {
    // no record (the container never got a cgroup) or one cut short: there is nothing of ours to act on
    return undefined;
  }
}

/** A cgroupfs file's content, or '' when it cannot be read. */
function readCg(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    // the cgroup went away or the controller lacks the file: nothing to report
    return '';
  }
}

function cgroupFsError(step: string, file: string, err: unknown): CgroupError {
  const e = err as NodeJS.ErrnoException;
  return new CgroupError(`cgroup ${step} failed at ${file}: ${(e.message ?? String(err)).replace(/^\w+: /, '').toLowerCase()}`, file, { cause: err });
}

/*
 * cgroupfs calls are synchronous on purpose: the kernel answers them from
 * memory in microseconds, where a round trip through libuv's thread pool
 * costs a few hundred; a container's cgroups take some thirty of them, all
 * on the path from `run` to a running process.
 */
async function writeCg(file: string, value: string): Promise<void> {
  try {
    writeFileSync(file, value);
  } catch (err) {
    throw cgroupFsError('write', file, err);
  }
}

async function applyV1(controllers: string[], dir: string, l: ResourceLimits): Promise<void> {
  const set = (f: string, v: string | number) => writeCg(path.posix.join(dir, f), String(v));
  if (controllers.includes('memory') && l.memory !== undefined) {
    await set('memory.limit_in_bytes', l.memory);
    const swapFile = path.posix.join(dir, 'memory.memsw.limit_in_bytes');
    const swap = l.memorySwap ?? l.memory * 2;
    if (await exists(swapFile)) await set('memory.memsw.limit_in_bytes', swap);
  }
  if (controllers.includes('cpu')) {
    if (l.cpus !== undefined) {
      await set('cpu.cfs_period_us', CPU_PERIOD_US);
      await set('cpu.cfs_quota_us', Math.round(l.cpus * CPU_PERIOD_US));
    }
    if (l.cpuShares !== undefined) await set('cpu.shares', l.cpuShares);
  }
  if (controllers.includes('pids') && l.pidsLimit !== undefined && l.pidsLimit > 0) await set('pids.max', l.pidsLimit);
  if (controllers.includes('devices') && l.devices !== 'all') {
    await set('devices.deny', 'a');
    // the list is read first match first (as the v2 program runs it); each v1 write edits the kernel's list, so a
    // later write overrides an earlier one: written last rule first, the first rule has the last word
    for (const rule of [...(l.devices ?? DEFAULT_DEVICE_RULES)].reverse()) await set(rule.allow ? 'devices.allow' : 'devices.deny', formatDeviceRule(rule));
  }
}

async function applyV2(dir: string, l: ResourceLimits): Promise<void> {
  const set = (f: string, v: string | number) => writeCg(path.posix.join(dir, f), String(v));
  if (l.memory !== undefined) {
    await set('memory.max', l.memory);
    const swap = l.memorySwap ?? l.memory * 2;
    if (await exists(path.posix.join(dir, 'memory.swap.max'))) await set('memory.swap.max', swap === -1 ? 'max' : swap - l.memory);
  }
  if (l.cpus !== undefined) await set('cpu.max', `${Math.round(l.cpus * CPU_PERIOD_US)} ${CPU_PERIOD_US}`);
  // v1 shares 2..262144 onto v2 weights 1..10000, the mapping runc uses
  if (l.cpuShares !== undefined) await set('cpu.weight', 1 + Math.floor(((l.cpuShares - 2) * 9999) / 262142));
  if (l.pidsLimit !== undefined && l.pidsLimit > 0) await set('pids.max', l.pidsLimit);
  // v2 has no devices files: the device allow-list is the BPF program attached before (confineDevices)
}

async function enableV2Controllers(parentDir: string): Promise<void> {
  const available = readCg(path.posix.join(parentDir, 'cgroup.controllers')).split(/\s+/);
  const wanted = ['memory', 'cpu', 'pids'].filter((c) => available.includes(c));
  if (wanted.length) await writeCg(path.posix.join(parentDir, 'cgroup.subtree_control'), wanted.map((c) => `+${c}`).join(' '));
}

async function exists(p: string): Promise<boolean> {
  return existsSync(p);
}

/**
 * rmdir of each cgroup, after its last process is gone: a container's
 * processes die with its PID 1, but the kernel lets go of the cgroup a
 * moment later, so EBUSY is retried; processes still there get SIGKILL.
 */
async function removeDirs(dirs: string[]): Promise<void> {
  const errors: string[] = [];
  for (const dir of dirs) {
    for (let attempt = 0; ; attempt++) {
      try {
        rmdirSync(dir);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code !== 'EBUSY' || attempt >= 100) {
          errors.push(`${dir}: ${(err as Error).message}`);
          break;
        }
        if (attempt % 20 === 10) {
          const procs = readCg(path.posix.join(dir, 'cgroup.procs')).split('\n').filter(Boolean);
          for (const p of procs) {
            try {
              process.kill(Number(p), 'SIGKILL');
            } catch {
              /* already gone */
            }
          }
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
  if (errors.length) throw new CgroupError(`cgroup removal failed: ${errors.join('; ')}`, dirs[0]);
}
