/**
 * Mounts a user asks for — Docker's `-v`, `--mount` and `--tmpfs` syntaxes —
 * and named volumes, kept under `<root>/volumes/<name>/_data` with their
 * metadata beside (`volume.json`).
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ConflictError, InvalidArgumentError, NotFoundError } from '../errors';
import { writeFileAtomic } from '../util/atomic';
import type { BindMount } from './spec';
import { ifMissing } from '../util/missing';
import { AmbiguousOwnerError, pickOwned, ROOT_UID, type Asker } from '../util/owners';

const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

/** A volume name becomes a directory name: no `/`, no `.` or `..`, Docker's character set. */
export function checkVolumeName(name: string): string {
  if (typeof name !== 'string' || !VOLUME_NAME.test(name)) {
    throw new InvalidArgumentError(`invalid volume name ${JSON.stringify(name)}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 128 characters)`);
  }
  return name;
}

function containerPath(spec: string, target: string): string {
  if (!path.posix.isAbsolute(target)) throw new InvalidArgumentError(`invalid volume ${JSON.stringify(spec)}: container path ${JSON.stringify(target)} must be absolute`);
  const clean = path.posix.normalize(target);
  if (clean === '/') throw new InvalidArgumentError(`invalid volume ${JSON.stringify(spec)}: cannot mount over the container's /`);
  return clean;
}

/**
 * Parses Docker's `-v SOURCE:CTR[:OPTS]`: an absolute SOURCE is a bind of
 * that host path, anything else names a volume (created on first use, as
 * Docker does). The container path may not be `/` (it would hide the rootfs).
 */
export function parseVolume(spec: string): BindMount {
  if (typeof spec !== 'string' || spec.length === 0 || spec.includes('\0')) {
    throw new InvalidArgumentError(`invalid volume ${JSON.stringify(spec)}: expected HOST:CONTAINER[:ro|rw]`);
  }
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3) throw new InvalidArgumentError(`invalid volume ${JSON.stringify(spec)}: expected HOST:CONTAINER[:ro|rw]`);
  const [source, target, mode = 'rw'] = parts;
  const cleanTarget = containerPath(spec, target);
  const opts = mode.split(',');
  for (const o of opts) {
    if (!['ro', 'rw', 'z', 'Z'].includes(o)) throw new InvalidArgumentError(`invalid volume ${JSON.stringify(spec)}: unknown option ${JSON.stringify(o)}`);
  }
  const readOnly = opts.includes('ro');
  if (path.posix.isAbsolute(source)) return { source: path.posix.normalize(source), target: cleanTarget, readOnly };
  if (source.startsWith('.') || source.includes('/')) {
    throw new InvalidArgumentError(`invalid volume ${JSON.stringify(spec)}: host path ${JSON.stringify(source)} must be absolute, or a volume name without '/'`);
  }
  return { type: 'volume', name: checkVolumeName(source), source: '', target: cleanTarget, readOnly };
}

const SIZE = /^(\d+)([kmg]?)$/i;

/** tmpfs options Docker takes, turned into mount data; `exec`/`noexec`, `ro`/`rw` are flags. */
function tmpfsOptions(spec: string, options: string[]): { data: string; noexec: boolean; readOnly: boolean } {
  const data: string[] = [];
  let noexec = true;
  let readOnly = false;
  for (const o of options.filter(Boolean)) {
    const [k, v] = o.split('=', 2);
    if (k === 'exec' || k === 'noexec') noexec = k === 'noexec';
    else if (k === 'ro' || k === 'rw') readOnly = k === 'ro';
    else if (k === 'nosuid' || k === 'nodev' || k === 'suid' || k === 'dev') continue; // always nosuid,nodev
    else if ((k === 'size' || k === 'tmpfs-size') && v !== undefined && SIZE.test(v)) data.push(`size=${v}`);
    else if ((k === 'mode' || k === 'tmpfs-mode') && v !== undefined && /^[0-7]{1,4}$/.test(v)) data.push(`mode=${v}`);
    else if ((k === 'uid' || k === 'gid') && v !== undefined && /^\d+$/.test(v)) data.push(`${k}=${v}`);
    else throw new InvalidArgumentError(`invalid tmpfs ${JSON.stringify(spec)}: unknown or malformed option ${JSON.stringify(o)}`);
  }
  return { data: data.join(','), noexec, readOnly };
}

/** `--tmpfs PATH[:OPTIONS]`, e.g. `/run:rw,size=64m,mode=755`. */
export function parseTmpfs(spec: string): BindMount {
  if (typeof spec !== 'string' || spec === '' || spec.includes('\0')) throw new InvalidArgumentError(`invalid tmpfs ${JSON.stringify(spec)}: expected PATH[:OPTIONS]`);
  const colon = spec.indexOf(':');
  const target = colon < 0 ? spec : spec.slice(0, colon);
  const o = tmpfsOptions(spec, colon < 0 ? [] : spec.slice(colon + 1).split(','));
  return { type: 'tmpfs', source: 'tmpfs', target: containerPath(spec, target), readOnly: o.readOnly, data: o.data, noexec: o.noexec };
}

/** `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…]`. */
export function parseMountSpec(spec: string): BindMount {
  if (typeof spec !== 'string' || spec === '' || spec.includes('\0')) throw new InvalidArgumentError(`invalid mount ${JSON.stringify(spec)}: expected type=…,source=…,target=…`);
  const fields = new Map<string, string | undefined>();
  for (const item of spec.split(',')) {
    const eq = item.indexOf('=');
    const key = (eq < 0 ? item : item.slice(0, eq)).trim().toLowerCase();
    if (key === '') throw new InvalidArgumentError(`invalid mount ${JSON.stringify(spec)}: empty field`);
    if (fields.has(key)) throw new InvalidArgumentError(`invalid mount ${JSON.stringify(spec)}: ${key} given twice`);
    fields.set(key, eq < 0 ? undefined : item.slice(eq + 1));
  }
  const get = (...names: string[]): string | undefined => names.map((n) => fields.get(n)).find((v) => v !== undefined);
  const type = get('type') ?? 'volume';
  const target = get('target', 'destination', 'dst');
  if (!target) throw new InvalidArgumentError(`invalid mount ${JSON.stringify(spec)}: target is required`);
  const source = get('source', 'src');
  const roField = [...fields.keys()].find((k) => k === 'readonly' || k === 'ro');
  const roValue = roField !== undefined ? fields.get(roField) : undefined;
  if (roValue !== undefined && !['true', 'false', '1', '0'].includes(roValue)) throw new InvalidArgumentError(`invalid mount ${JSON.stringify(spec)}: readonly takes true or false`);
  const readOnly = roField !== undefined && roValue !== 'false' && roValue !== '0';
  const known = new Set(['type', 'target', 'destination', 'dst', 'source', 'src', 'readonly', 'ro']);
  const extra = [...fields.keys()].filter((k) => !known.has(k));
  switch (type) {
    case 'bind': {
      if (extra.some((k) => k !== 'bind-propagation')) throw new InvalidArgumentError(`invalid mount ${JSON.stringify(spec)}: unknown option ${extra[0]} for a bind`);
      if (!source || !path.posix.isAbsolute(source)) throw new InvalidArgumentError(`invalid mount ${JSON.stringify(spec)}: a bind needs an absolute source path`);
      return { type: 'bind', source: path.posix.normalize(source), target: containerPath(spec, target), readOnly };
    }
    case 'volume': {
      if (extra.length) throw new InvalidArgumentError(`invalid mount ${JSON.stringify(spec)}: unknown option ${extra[0]} for a volume`);
      if (!source) throw new InvalidArgumentError(`invalid mount ${JSON.stringify(spec)}: a volume needs a source (its name)`);
      return { type: 'volume', name: checkVolumeName(source), source: '', target: containerPath(spec, target), readOnly };
    }
    case 'tmpfs': {
      if (source) throw new InvalidArgumentError(`invalid mount ${JSON.stringify(spec)}: a tmpfs takes no source`);
      const bad = extra.find((k) => k !== 'tmpfs-size' && k !== 'tmpfs-mode');
      if (bad) throw new InvalidArgumentError(`invalid mount ${JSON.stringify(spec)}: unknown option ${bad} for a tmpfs`);
      const o = tmpfsOptions(spec, extra.map((k) => `${k}=${fields.get(k) ?? ''}`));
      return { type: 'tmpfs', source: 'tmpfs', target: containerPath(spec, target), readOnly, data: o.data, noexec: true };
    }
    default:
      throw new InvalidArgumentError(`invalid mount ${JSON.stringify(spec)}: type must be bind, volume or tmpfs, not ${JSON.stringify(type)}`);
  }
}

export class VolumeNotFoundError extends NotFoundError {
  constructor(name: string, options?: { cause?: unknown }) {
    super('E_VOLUME_NOT_FOUND', `no such volume: ${name}`, { ...options, fields: { volume: name } });
  }
}

export interface VolumeInfo {
  name: string;
  /** The directory containers see: `<root>/volumes/<name>/_data` for root's, `<root>/volumes/.uid-<uid>/<name>/_data` for another owner's. */
  mountpoint: string;
  created: string;
  labels?: Record<string, string>;
  /** The uid that created it; absent in records written before owners existed, which are root's. */
  owner?: number;
}

/** Whom a volume's data belongs to on the host, for the containers of an owner. */
export type DataOwner = (owner: VolumeOwner) => { uid: number; gid: number };

/** The creator of a volume: its uid and, for its data's group, its gid. */
export interface VolumeOwner extends Asker {
  readonly gid: number;
}

const ROOT: VolumeOwner = { uid: ROOT_UID, gid: 0 };

/** A volume's owner: root for records older than owners. */
export function ownerOf(v: VolumeInfo): number {
  return v.owner ?? ROOT_UID;
}

/** Per-owner folders beside root's volumes: a dot name is no volume name, so root's listing never mistakes one for a volume. */
const OWNER_DIR = /^\.uid-(\d+)$/;

/**
 * Named volumes: a directory each under Capsa's root, names per owner
 * (server/util/owners.ts). Root's live where they always have; another
 * owner's in a folder of that uid's, so two users' `data` never meet.
 *
 * The data of a non-root owner's volume belongs on the host to `dataOwner`
 * (by default the owner's own uid and gid): its containers run in a user
 * namespace, and their root reaches it through the idmapped mount that maps
 * the owner's uid to the container's root, as a bind-mounted workspace is.
 */
export class VolumeStore {
  private readonly dir: string;
  private readonly dataOwner: DataOwner;

  constructor(root: string, opts: { dataOwner?: DataOwner } = {}) {
    this.dir = path.join(root, 'volumes');
    this.dataOwner = opts.dataOwner ?? ((o) => ({ uid: o.uid, gid: o.gid }));
    // what a removal interrupted by a crash left (removeTree); its name is no volume's, so one that
    // cannot be removed now harms nothing and waits for the next start's sweep
    void this.sweepRemoved().catch(() => undefined);
  }

  /**
   * Removes a volume's directory so that no crash leaves half of it under
   * its name: it is renamed out of the namespace first (one atomic step),
   * then deleted. A volume created again under that name starts empty.
   */
  private async removeTree(dir: string): Promise<void> {
    const doomed = path.join(this.dir, `.removing-${randomBytes(8).toString('hex')}`);
    await fs.rename(dir, doomed);
    await fs.rm(doomed, { recursive: true, force: true });
  }

  private async sweepRemoved(): Promise<void> {
    for (const n of await fs.readdir(this.dir).catch(ifMissing([] as string[]))) {
      if (n.startsWith('.removing-')) await fs.rm(path.join(this.dir, n), { recursive: true, force: true });
    }
  }

  /** The folder holding `uid`'s volumes. */
  private ownerDir(uid: number): string {
    if (!Number.isSafeInteger(uid) || uid < 0) throw new InvalidArgumentError(`invalid volume owner uid ${uid}`);
    return uid === ROOT_UID ? this.dir : path.join(this.dir, `.uid-${uid}`);
  }

  private paths(name: string, uid: number): { dir: string; data: string; meta: string } {
    const dir = path.join(this.ownerDir(uid), checkVolumeName(name));
    return { dir, data: path.join(dir, '_data'), meta: path.join(dir, 'volume.json') };
  }

  /**
   * Creates `owner`'s volume `name`, or returns its existing one of that
   * name (Docker's behaviour for `volume create` and `-v name:…`). Another
   * owner's volume of the same name is another volume.
   */
  async create(name: string, labels?: Record<string, string>, owner: VolumeOwner = ROOT): Promise<VolumeInfo> {
    const p = this.paths(name, owner.uid);
    const existing = await this.read(name, owner).catch((err: unknown) => {
      if (err instanceof VolumeNotFoundError) return undefined; // not there yet: created below
      throw err;
    });
    if (existing) return existing;
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await fs.mkdir(this.ownerDir(owner.uid), { recursive: true, mode: 0o700 });
    await fs.mkdir(p.dir, { recursive: true, mode: 0o700 });
    await fs.mkdir(p.data, { recursive: true, mode: 0o755 });
    if (owner.uid !== ROOT_UID) {
      const to = this.dataOwner(owner);
      await fs.chown(p.data, to.uid, to.gid);
    }
    const info: VolumeInfo = { name, mountpoint: p.data, created: new Date().toISOString(), ...(labels ? { labels } : {}), ...(owner.uid !== ROOT_UID ? { owner: owner.uid } : {}) };
    await writeFileAtomic(p.meta, JSON.stringify(info));
    return info;
  }

  /** `owner`'s volume `name` (root's by default). */
  async read(name: string, owner: Asker = ROOT): Promise<VolumeInfo> {
    const p = this.paths(name, owner.uid);
    try {
      const info = JSON.parse(await fs.readFile(p.meta, 'utf8')) as VolumeInfo;
      // the record's place says whose it is, whatever it says of itself
      return { ...info, name, mountpoint: p.data, ...(owner.uid !== ROOT_UID ? { owner: owner.uid } : { owner: undefined }) };
    } catch (err) {
      // no record, or one a crash cut short: either way there is no usable volume of that name
      throw new VolumeNotFoundError(name, { cause: err });
    }
  }

  /**
   * The volume `ref` names for `asker`: its own for a non-root asker
   * (another owner's is not found, with the message a missing one gets);
   * for root, its own, else the only owner's of that name.
   */
  async find(asker: Asker, ref: string): Promise<VolumeInfo> {
    checkVolumeName(ref);
    const own = await this.read(ref, asker).catch((err: unknown) => {
      if (err instanceof VolumeNotFoundError) return undefined; // none of its own: root looks at the others' below
      throw err;
    });
    if (own || asker.uid !== ROOT_UID) {
      if (!own) throw new VolumeNotFoundError(ref);
      return own;
    }
    const candidates = await this.list(asker);
    const hit = pickOwned(asker, candidates, ownerOf, (v) => v.name === ref, (owners) =>
      new AmbiguousOwnerError('E_VOLUME_AMBIGUOUS', 'volume', ref, owners, 'root names its own volumes by name; remove or rename the others as their owners'),
    );
    if (!hit) throw new VolumeNotFoundError(ref);
    return hit;
  }

  /**
   * The volume `-v NAME:/path` or `--mount type=volume,source=NAME` of a
   * container run by `caller` mounts: the caller's own of that name, created
   * (owned by the caller) when it has none, as Docker creates a missing named
   * volume. Never another owner's, root's runs included.
   */
  resolveForRun(caller: VolumeOwner, name: string): Promise<VolumeInfo> {
    return this.create(name, undefined, caller);
  }

  /** The volumes `asker` sees, sorted by name (then owner): its own, or every owner's for root. */
  async list(asker: Asker = ROOT): Promise<VolumeInfo[]> {
    const uids = asker.uid === ROOT_UID ? [ROOT_UID, ...(await this.owners())] : [asker.uid];
    const out: VolumeInfo[] = [];
    for (const uid of uids) {
      for (const n of await fs.readdir(this.ownerDir(uid)).catch(ifMissing([] as string[]))) {
        if (!VOLUME_NAME.test(n)) continue;
        // a directory without a readable record is no volume (a removal or creation a crash cut short)
        const v = await this.read(n, { uid }).catch(() => undefined);
        if (v) out.push(v);
      }
    }
    return out.sort((a, b) => a.name.localeCompare(b.name) || ownerOf(a) - ownerOf(b));
  }

  /** Uids other than root's that have a folder of volumes. */
  private async owners(): Promise<number[]> {
    const uids: number[] = [];
    for (const n of await fs.readdir(this.dir).catch(ifMissing([] as string[]))) {
      const m = OWNER_DIR.exec(n);
      if (m && Number.isSafeInteger(Number(m[1])) && Number(m[1]) !== ROOT_UID) uids.push(Number(m[1]));
    }
    return uids.sort((a, b) => a - b);
  }

  /** Removes a volume (as find() returned it) and its data; refused while `usedBy` names containers (unless force). */
  async remove(v: VolumeInfo, usedBy: string[], force = false): Promise<void> {
    await this.read(v.name, { uid: ownerOf(v) });
    if (usedBy.length && !force) throw new ConflictError(`volume ${v.name} is in use by container ${usedBy.join(', ')}`);
    await this.removeTree(this.paths(v.name, ownerOf(v)).dir);
  }

  /**
   * Removes every volume `asker` owns whose mountpoint `inUse` does not
   * hold; returns their names and the bytes their data took. Root's prune
   * too removes only root's own: another user's data is that user's to
   * throw away (root can still `volume rm` it by name).
   */
  async prune(asker: Asker, inUse: Set<string>): Promise<{ deleted: string[]; reclaimed: number }> {
    const deleted: string[] = [];
    let reclaimed = 0;
    for (const v of await this.list(asker)) {
      if (ownerOf(v) !== asker.uid || inUse.has(v.mountpoint)) continue;
      const dir = this.paths(v.name, ownerOf(v)).dir;
      reclaimed += await diskBytes(dir);
      await this.removeTree(dir);
      deleted.push(v.name);
    }
    return { deleted, reclaimed };
  }
}

/** Bytes a tree takes on disk (allocated blocks), never following symlinks. */
async function diskBytes(p: string): Promise<number> {
  // a file removed while we count takes no space
  const st = await fs.lstat(p).catch(ifMissing(undefined));
  if (!st) return 0;
  let total = st.blocks * 512;
  if (st.isDirectory()) {
    for (const n of await fs.readdir(p).catch(ifMissing([] as string[]))) total += await diskBytes(path.join(p, n));
  }
  return total;
}
