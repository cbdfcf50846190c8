/**
 * Where a host's cgroups are: the hierarchies from /proc/self/mountinfo and
 * the helper's own place in each from /proc/self/cgroup (pure, for tests).
 * v1 has a hierarchy per controller (or co-mounted group), v2 one unified
 * tree; a hybrid v1 host (systemd's) also mounts a controller-less cgroup2,
 * which is where a container's device program goes there.
 */
import * as path from 'node:path';
import { CapsaError } from '../errors';

export class CgroupError extends CapsaError {
  constructor(
    message: string,
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super('E_CGROUP', message, { ...options, fields: { path } });
  }
}

/** v1 controllers a container joins (each a hierarchy of its own or co-mounted). */
const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'devices', 'freezer', 'blkio', 'cpuset'];

export interface Hierarchy {
  /** Controllers of this hierarchy that Capsa uses (v1), or `unified` (v2). */
  controllers: string[];
  /** The helper's own cgroup directory in this hierarchy. */
  own: string;
  /** Where container cgroups go. */
  base: string;
}

export interface CgroupLayout {
  version: 1 | 2;
  /** The hierarchies whose controllers carry the limits. */
  hierarchies: Hierarchy[];
  /**
   * The cgroup2 hierarchy the device program is attached in: v2's own
   * (`hierarchies[0]`), or on v1 a controller-less cgroup2 mounted beside
   * the controllers; undefined on a v1 host without one.
   */
  unified?: Hierarchy;
  /** A v1 devices controller is mounted, so `devices.allow` confines devices even where no BPF program can be attached. */
  v1Devices: boolean;
}

interface MountEntry {
  root: string;
  mountPoint: string;
  fstype: string;
  superOptions: string[];
}

function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [left, right] = line.split(' - ');
    if (!right) continue;
    const f = left.split(' ');
    const r = right.split(' ');
    out.push({ root: unescape(f[3]), mountPoint: unescape(f[4]), fstype: r[0], superOptions: (r[2] ?? '').split(',') });
  }
  return out;
}

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Finds the hierarchies from /proc/self/mountinfo and /proc/self/cgroup (pure, for tests). */
export function detectLayout(mountinfo: string, selfCgroup: string, parent: string): CgroupLayout {
  const mounts = parseMountinfo(mountinfo);
  const own = new Map<string, string>(); // controller list (as in /proc/self/cgroup) → path
  for (const line of selfCgroup.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (m) own.set(m[2], m[3]);
  }
  const dirIn = (mount: MountEntry, cgPath: string): string => {
    // a mount may show only part of the hierarchy (its root field)
    const rel = path.posix.relative(mount.root, cgPath);
    if (rel.startsWith('..')) throw new CgroupError(`the helper's cgroup ${cgPath} is outside the mounted part ${mount.root} of ${mount.mountPoint}`, mount.mountPoint);
    return path.posix.join(mount.mountPoint, rel);
  };
  const v1 = mounts.filter((m) => m.fstype === 'cgroup');
  const hasV1Memory = v1.some((m) => m.superOptions.includes('memory'));
  if (hasV1Memory) {
    const hierarchies: Hierarchy[] = [];
    const seen = new Set<string>();
    for (const m of v1) {
      const controllers = V1_CONTROLLERS.filter((c) => m.superOptions.includes(c));
      if (controllers.length === 0) continue;
      const key = controllers.join(',');
      if (seen.has(key)) continue; // the same hierarchy mounted twice
      seen.add(key);
      const entry = [...own.entries()].find(([k]) => k.split(',').some((c) => controllers.includes(c)));
      const ownDir = dirIn(m, entry?.[1] ?? '/');
      hierarchies.push({ controllers, own: ownDir, base: path.posix.join(ownDir, parent) });
    }
    const v1Devices = hierarchies.some((h) => h.controllers.includes('devices'));
    const hybrid = mounts.find((m) => m.fstype === 'cgroup2');
    let unified: Hierarchy | undefined;
    if (hybrid) {
      // no controllers there, so no "no internal processes" rule: the parent goes inside the helper's cgroup, as on v1
      const ownDir = dirIn(hybrid, own.get('') ?? '/');
      unified = { controllers: [], own: ownDir, base: path.posix.join(ownDir, parent) };
    }
    return { version: 1, hierarchies, unified, v1Devices };
  }
  const v2 = mounts.find((m) => m.fstype === 'cgroup2');
  if (!v2) throw new CgroupError('no cgroup hierarchy is mounted: neither v1 controllers nor cgroup2', '/sys/fs/cgroup');
  const ownDir = dirIn(v2, own.get('') ?? '/');
  const mountRoot = v2.mountPoint;
  const baseParent = ownDir === mountRoot ? mountRoot : path.posix.dirname(ownDir);
  const h: Hierarchy = { controllers: ['unified'], own: ownDir, base: path.posix.join(baseParent, parent) };
  return { version: 2, hierarchies: [h], unified: h, v1Devices: false };
}

/** Every hierarchy a container has a directory in: the controllers', and a hybrid host's controller-less cgroup2. */
export function joined(layout: CgroupLayout): Hierarchy[] {
  return layout.unified && !layout.hierarchies.includes(layout.unified) ? [...layout.hierarchies, layout.unified] : layout.hierarchies;
}
