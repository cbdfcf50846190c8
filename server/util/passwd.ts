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
