/**
 * `--device HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]` (root's containers
 * only: unprivileged.ts refuses it to anyone else): the host's node, found
 * as Docker's daemon finds it (`oci.DevicesFromPath`: a symlink is resolved,
 * then the node itself must be a character or block device), becomes
 *
 * - a node in the plan at the container path, of the same type, major and
 *   minor, with the host node's mode, uid and gid (the shim makes it with
 *   mknod, or binds the host's where mknod is refused, setup/devices.c);
 * - a rule of the cgroup device allow-list for its number.
 *
 * The rules differ from Docker's in one way, on purpose: Docker's are added
 * to its defaults, which already grant `c *:* m` and `rwm` on null, zero,
 * full, random, urandom and tty, so there `--device /dev/zero:/dev/z:r`
 * stays writable and no `--device` can withhold mknod. Here a `--device`
 * rule decides its device alone: it comes first in the list (first match
 * decides, devicebpf.ts), followed by a rule that denies any other access
 * to the same number. The permissions are the device's, by number, so the
 * container's default node of the same device gets them too. v1's
 * `devices.allow` cannot take mknod back from one device while `c *:* m`
 * stands (its exceptions are a union), so there only `r` and `w` narrow;
 * the v2 program, which a hybrid host attaches as well, narrows `m` too.
 */
import { promises as fs } from 'node:fs';
import { InvalidArgumentError } from '../errors';
import { parseDeviceSpec, type DeviceMapping } from '../protocol/runoptions';
import type { DeviceRule } from './devicebpf';
import type { PlanDevice } from './plan';

/** One `--device`: as given (what inspect shows), and what the host's node is. */
export interface HostDevice {
  mapping: DeviceMapping;
  /** The node in the container, `hostPath` the resolved host node. */
  node: PlanDevice & { hostPath: string };
}

/** The mapping of one `--device` value, or InvalidArgumentError saying why not. */
export function deviceMapping(spec: unknown): DeviceMapping {
  const m = parseDeviceSpec(spec);
  if (typeof m === 'string') throw new InvalidArgumentError(m);
  return m;
}

/** Linux's dev_t split, as glibc's `gnu_dev_major`/`gnu_dev_minor` (32 bits each, in the kernel's 12+20 layout below bit 32). */
export function splitDev(rdev: number | bigint): { major: number; minor: number } {
  const d = BigInt(rdev);
  return {
    major: Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n)),
    minor: Number((d & 0xffn) | ((d >> 12n) & 0xffffff00n)),
  };
}

/**
 * Resolves each `--device` on the host; fails, naming the value, when its
 * host path is missing or not a character or block device. A directory is
 * refused: Docker would walk it and add every device under it, which here
 * is one `--device` per node.
 */
export async function resolveHostDevices(specs: readonly string[]): Promise<HostDevice[]> {
  const out: HostDevice[] = [];
  for (const spec of specs) {
    const mapping = deviceMapping(spec);
    const what = `--device ${JSON.stringify(spec)}`;
    let resolved = mapping.PathOnHost;
    let st;
    try {
      // as Docker: a symlink (/dev/disk/by-id/…, /dev/stdin) is followed to its node; the node's own path is recorded
      if ((await fs.lstat(resolved)).isSymbolicLink()) resolved = await fs.realpath(resolved);
      st = await fs.lstat(resolved, { bigint: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file or directory' : code === 'ENOTDIR' ? 'a component of it is not a directory' : code === 'ELOOP' ? 'too many levels of symbolic links' : code ?? (err as Error).message;
      throw new InvalidArgumentError(`invalid ${what}: host path ${mapping.PathOnHost}: ${why}`, { cause: err });
    }
    const type = st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : undefined;
    if (!type) {
      const kind = st.isDirectory() ? 'a directory (give each device under it its own --device)' : st.isFile() ? 'a regular file' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : 'not a device node';
      const shown = resolved === mapping.PathOnHost ? mapping.PathOnHost : `${mapping.PathOnHost} (${resolved})`;
      throw new InvalidArgumentError(`invalid ${what}: host path ${shown} is not a character or block device: it is ${kind}`);
    }
    const { major, minor } = splitDev(st.rdev);
    out.push({
      mapping,
      node: {
        path: mapping.PathInContainer,
        type,
        major,
        minor,
        mode: Number(st.mode & BigInt(0o7777)),
        uid: Number(st.uid),
        gid: Number(st.gid),
        hostPath: resolved,
      },
    });
  }
  const seen = new Set<string>();
  for (const d of out) {
    if (seen.has(d.node.path)) throw new InvalidArgumentError(`duplicate --device container path ${d.node.path}`);
    seen.add(d.node.path);
  }
  return out;
}

const ORDER = 'rwm';

/**
 * `base` (the default allow-list) with each device's rule ahead of it: per
 * device number, the union of the permissions its `--device` values give
 * (two container paths of one device share its cgroup rule), then a deny of
 * any other access to it, so no later rule (`c *:* m`, a default
 * `c 1:5 rwm`) grants it after all.
 */
export function withDeviceRules(base: readonly DeviceRule[], devices: readonly HostDevice[]): DeviceRule[] {
  const byNumber = new Map<string, { type: 'b' | 'c'; major: number; minor: number; access: Set<string> }>();
  for (const d of devices) {
    const key = `${d.node.type} ${d.node.major}:${d.node.minor}`;
    const entry = byNumber.get(key) ?? { type: d.node.type, major: d.node.major, minor: d.node.minor, access: new Set<string>() };
    for (const a of d.mapping.CgroupPermissions) entry.access.add(a);
    byNumber.set(key, entry);
  }
  const first: DeviceRule[] = [];
  for (const e of byNumber.values()) {
    const access = [...ORDER].filter((a) => e.access.has(a)).join('');
    first.push({ type: e.type, major: e.major, minor: e.minor, access, allow: true });
    // all of rwm, not just the letters left out: a request for r and w together is not within a deny of w alone
    if (access !== ORDER) first.push({ type: e.type, major: e.major, minor: e.minor, access: ORDER, allow: false });
  }
  return [...first, ...base];
}
