/**
 * `--chown` of COPY/ADD as BuildKit reads it (dockerfile2llb's chown flag,
 * the file op's readUser): `user[:group]`, each part a number or a name.
 * A number stands for itself (a user alone gives the same number as its
 * group); a user name is looked up in the stage's own /etc/passwd (its
 * primary group comes with it), a group name in its /etc/group, both read
 * from the image's layers as overlayfs would show them (runtime/users.ts).
 * An unknown name is an error naming the Dockerfile's line, as are a
 * missing passwd or group file and an id out of range.
 */
import { parseGroup, parsePasswd, readImageFile } from '../runtime/users';
import { BuildContextError, type SourceLocation } from './errors';

export interface Owner {
  uid: number;
  gid: number;
}

const MAX_ID = 0xfffffffe;

/** The image's account files (undefined when absent). */
export interface AccountFiles {
  passwd?: string;
  group?: string;
}

/** Whether `spec` names a user or group (so the image's files must be read). */
export function chownNeedsNames(spec: string | undefined): boolean {
  if (spec === undefined || spec === '') return false;
  return spec.split(':', 2).some((p) => p !== '' && !/^\d+$/.test(p));
}

/** `spec` resolved against `files`; undefined for no --chown (the default owner applies). */
export function resolveChown(spec: string | undefined, loc: SourceLocation, files: AccountFiles = {}): Owner | undefined {
  if (spec === undefined || spec === '') return undefined;
  const where = `${loc.file}:${loc.line}: --chown=${spec}`;
  const colon = spec.indexOf(':');
  const userPart = colon < 0 ? spec : spec.slice(0, colon);
  const groupPart = colon < 0 ? undefined : spec.slice(colon + 1);
  const num = (s: string, what: string): number | undefined => {
    if (!/^\d+$/.test(s)) return undefined;
    const n = Number(s);
    if (n > MAX_ID) throw new BuildContextError(`${where}: ${what} id ${s} is out of range`);
    return n;
  };
  const owner: Owner = { uid: 0, gid: 0 };
  if (userPart !== '') {
    const n = num(userPart, 'user');
    if (n !== undefined) owner.uid = owner.gid = n;
    else {
      const entry = parsePasswd(files.passwd ?? '').find((e) => e.name === userPart);
      if (entry) {
        owner.uid = entry.uid;
        owner.gid = entry.gid;
      } else if (userPart !== 'root' || files.passwd !== undefined) {
        const why = files.passwd === undefined ? "the image has no /etc/passwd" : "no matching entries in the image's /etc/passwd";
        throw new BuildContextError(`${where}: unable to find user ${userPart}: ${why}`);
      }
    }
  }
  if (groupPart !== undefined && groupPart !== '') {
    const n = num(groupPart, 'group');
    if (n !== undefined) owner.gid = n;
    else {
      const entry = parseGroup(files.group ?? '').find((e) => e.name === groupPart);
      if (entry) owner.gid = entry.gid;
      else if (groupPart !== 'root' || files.group !== undefined) {
        const why = files.group === undefined ? 'the image has no /etc/group' : "no matching entries in the image's /etc/group";
        throw new BuildContextError(`${where}: unable to find group ${groupPart}: ${why}`);
      }
    }
  }
  return owner;
}

/** `spec` resolved in the stage whose layers are `layerDirs` (top first): the files are read only when a name needs them. */
export async function imageChown(spec: string | undefined, loc: SourceLocation, layerDirs: string[]): Promise<Owner | undefined> {
  if (!chownNeedsNames(spec)) return resolveChown(spec, loc);
  const [passwd, group] = await Promise.all([readImageFile(layerDirs, 'etc/passwd'), readImageFile(layerDirs, 'etc/group')]);
  return resolveChown(spec, loc, { passwd, group });
}
