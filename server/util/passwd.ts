/**
 * The host's /etc/passwd, read for one field of one uid: the helper finds a
 * container owner's primary group and subuid name there, and the CLI labels
 * another user's rows with a name. Read at each call: users come and go
 * while the helper runs, and the file is small.
 */
import { readFileSync } from 'node:fs';

/** Field `field` (0 name, 3 primary gid, 5 home…) of `uid`'s line, if it has one. */
export function passwdField(uid: number, field: number, passwd = '/etc/passwd'): string | undefined {
  let text: string;
  try {
    text = readFileSync(passwd, 'utf8');
  } catch {
    // no passwd file: the uid has no entry, as an unknown one
    return undefined;
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length >= 4 && f[2] === String(uid)) return f[field];
  }
  return undefined;
}

/** The name /etc/passwd gives `uid`, if any. */
export function userName(uid: number, passwd = '/etc/passwd'): string | undefined {
  return passwdField(uid, 0, passwd);
}

/**
 * The groups a login of `name` gets, as initgroups(3) computes them from
 * /etc/group: `gid` (the primary) and every group that lists the name as a
 * member. The helper uses them for a user whose request it serves later,
 * without a connection to read SO_PEERGROUPS from (a container's start).
 */
export function loginGroups(name: string | undefined, gid: number, groupFile = '/etc/group'): number[] {
  const groups = new Set<number>([gid]);
  if (name === undefined) return [...groups];
  let text: string;
  try {
    text = readFileSync(groupFile, 'utf8');
  } catch {
    // no group file: the primary group alone
    return [...groups];
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || !/^\d+$/.test(f[2])) continue;
    if (f[3].split(',').includes(name)) groups.add(Number(f[2]));
  }
  return [...groups];
}
