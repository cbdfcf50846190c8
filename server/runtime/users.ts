/**
 * Resolves Docker's `--user` forms (`name`, `uid`, `name:group`, `uid:gid`)
 * against the image's own /etc/passwd and /etc/group, read from the unpacked
 * layers the way overlayfs would show them.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CapsaError, InvalidArgumentError } from '../errors';
import { ifMissing } from '../util/missing';

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home?: string;
}

export class UserNotFoundError extends CapsaError {
  constructor(message: string) {
    super('E_USER_NOT_FOUND', message);
  }
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}
interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

const MAX_ID = 0xfffffffe;

export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || line.startsWith('#')) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) continue;
    out.push({ name: f[0], uid, gid, home: f[5] });
  }
  return out;
}

export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || line.startsWith('#')) continue;
    const gid = Number(f[2]);
    if (!Number.isInteger(gid)) continue;
    out.push({ name: f[0], gid, members: f[3] ? f[3].split(',') : [] });
  }
  return out;
}

function numericId(s: string): number | undefined {
  if (!/^\d+$/.test(s)) return undefined;
  const n = Number(s);
  if (n > MAX_ID) throw new InvalidArgumentError(`user or group id ${s} is out of range`);
  return n;
}

/** Resolves a user spec given the image's passwd and group contents (undefined when the file is absent). */
export function resolveUser(spec: string | undefined, passwdText?: string, groupText?: string): ResolvedUser {
  const s = spec && spec.length > 0 ? spec : 'root';
  if (/[\s\0]/.test(s) || s.split(':').length > 2) throw new InvalidArgumentError(`invalid user ${JSON.stringify(s)}: expected name, uid, name:group or uid:gid`);
  const [userPart, groupPart] = s.split(':');
  const passwd = parsePasswd(passwdText ?? '');
  const groups = parseGroup(groupText ?? '');
  let uid: number;
  let gid: number;
  let home: string | undefined;
  let name: string | undefined;
  const n = numericId(userPart);
  if (n !== undefined) {
    uid = n;
    const entry = passwd.find((e) => e.uid === n);
    gid = entry?.gid ?? 0;
    home = entry?.home;
    name = entry?.name;
  } else {
    const entry = passwd.find((e) => e.name === userPart);
    if (!entry) {
      if (userPart === 'root') {
        uid = 0;
        gid = 0;
        home = '/root';
        name = 'root';
      } else {
        throw new UserNotFoundError(`unable to find user ${userPart}: no matching entries in the image's /etc/passwd`);
      }
    } else {
      uid = entry.uid;
      gid = entry.gid;
      home = entry.home;
      name = entry.name;
    }
  }
  if (groupPart !== undefined) {
    if (groupPart === '') throw new InvalidArgumentError(`invalid user ${JSON.stringify(s)}: empty group`);
    const g = numericId(groupPart);
    if (g !== undefined) gid = g;
    else {
      const entry = groups.find((e) => e.name === groupPart);
      if (!entry) throw new UserNotFoundError(`unable to find group ${groupPart}: no matching entries in the image's /etc/group`);
      gid = entry.gid;
    }
  }
  // Supplementary groups come from /etc/group membership, as with Docker;
  // an explicit group in the spec does not drop them.
  const additionalGids = name ? groups.filter((e) => e.members.includes(name!) && e.gid !== gid).map((e) => e.gid) : [];
  return { uid, gid, additionalGids: [...new Set(additionalGids)], home };
}

/**
 * Reads a small file as the container would see it through overlayfs: the
 * top-most layer that has the entry wins; a whiteout (0/0 char device) hides
 * it. Symlinks are not followed: a hostile image could point etc/passwd at
 * a host file, and the helper must never read host files on an image's word.
 */
export async function readImageFile(layerDirs: string[], rel: string): Promise<string | undefined> {
  const parts = rel.split('/').filter(Boolean);
  for (const layer of layerDirs) {
    let dir = layer;
    let blocked = false;
    for (const part of parts.slice(0, -1)) {
      dir = path.join(dir, part);
      const st = await fs.lstat(dir).catch(ifMissing(undefined));
      if (!st) {
        blocked = true;
        break;
      }
      if (!st.isDirectory()) return undefined; // replaced by a file or symlink in this layer: hidden below
    }
    if (blocked) continue;
    const file = path.join(dir, parts[parts.length - 1]);
    const st = await fs.lstat(file).catch(ifMissing(undefined));
    if (!st) continue;
    if (st.isCharacterDevice() && st.rdev === 0) return undefined; // whiteout
    if (!st.isFile() || st.size > 4 * 1024 * 1024) return undefined;
    return fs.readFile(file, 'utf8');
  }
  return undefined;
}

export async function resolveImageUser(spec: string | undefined, layerDirs: string[]): Promise<ResolvedUser> {
  const [passwd, group] = await Promise.all([readImageFile(layerDirs, 'etc/passwd'), readImageFile(layerDirs, 'etc/group')]);
  return resolveUser(spec, passwd, group);
}
