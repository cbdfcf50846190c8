/**
 * What a container changed, read from its overlay upper directory: every
 * entry there is an addition or a change, a 0/0 character device is
 * overlayfs's whiteout (a deletion) and `trusted.overlay.opaque=y` on a
 * directory hides everything the lower layers had in it
 * (Documentation/filesystems/overlayfs.rst). The lower layers are the
 * image's unpacked layers, top-most first, in the same form (whiteout.ts).
 *
 * `walkUpper` is what a layer tar is made of (capture.ts), `changesOf` is
 * `docker diff`: `A`dded, `C`hanged, `D`eleted, sorted by path as Docker
 * sorts them.
 */
import { closeSync, constants, lstatSync, openSync, promises as fs, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import * as path from 'node:path';
import { CapsaError } from '../../errors';
import { O_PATH, openBeneath } from '../../util/openat2';
import { lgetxattr, llistxattr } from '../libc';
import { OVERLAY_OPAQUE_XATTR } from '../whiteout';

/** An upper directory overlayfs wrote in a form a layer cannot express (a renamed directory's redirect, a metadata-only copy-up). */
export class LayerCaptureError extends CapsaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_LAYER_CAPTURE', message, options);
  }
}

export interface UpperEntry {
  /** Path relative to the root, `/`-separated, no leading slash. */
  rel: string;
  /** Host path of the entry in the upper directory, for messages: a running container may change what it names (open beneath the upper directory instead). */
  abs: string;
  stat: BigIntStats;
  /** A 0/0 character device: overlayfs's mark that `rel` was deleted. */
  whiteout: boolean;
  /** A directory marked opaque: lower layers' content of it is hidden. */
  opaque: boolean;
  /** A symlink's target, read in the walk. */
  linkTarget?: string;
  /** Extended attributes to keep (overlayfs's own left out), sorted by name. */
  xattrs: Array<[string, Buffer]>;
}

/** overlayfs's own attributes: bookkeeping of the mount, never part of the image. */
const OVERLAY_XATTR = /^(trusted|user)\.overlay\./;

export function isWhiteout(st: BigIntStats | import('node:fs').Stats): boolean {
  return st.isCharacterDevice() && Number(st.rdev) === 0;
}

function byName(a: string, b: string): number {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return Buffer.compare(x, y);
}

/**
 * The entries of the upper directory open as `upperFd`, depth first (each
 * directory followed by its whole subtree), each directory's names in byte
 * order (so the same tree always comes out the same), the root left out.
 *
 * A running container writes this tree: every directory is opened beneath
 * `upperFd` with no symlink allowed anywhere on the way (openat2
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), and its entries are looked at
 * through that descriptor without following them, so a directory swapped
 * for a symlink to a host path mid-walk fails the walk instead of reading
 * the host.
 */
export async function* walkUpper(upperFd: number, upper: string, dirRel = '', walked = { n: 0 }): AsyncGenerator<UpperEntry> {
  const dfd = openBeneath(upperFd, dirRel, constants.O_RDONLY | constants.O_DIRECTORY);
  const entries: UpperEntry[] = [];
  try {
    const base = `/proc/self/fd/${dfd}`;
    // synchronous calls (the kernel answers from its caches), the event loop let run between batches: an asynchronous lstat and readlink an entry cost several times more
    for (const name of readdirSync(base).sort(byName)) {
      if (++walked.n % 256 === 0) await new Promise((r) => setImmediate(r));
      const rel = dirRel ? `${dirRel}/${name}` : name;
      const at = `${base}/${name}`;
      let stat: BigIntStats;
      try {
        stat = lstatSync(at, { bigint: true });
      } catch (err) {
        // a running container removed it between readdir and lstat: it is not a change any more
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      const entry: UpperEntry = { rel, abs: path.join(upper, rel), stat, whiteout: isWhiteout(stat), opaque: false, xattrs: [] };
      if (stat.isSymbolicLink()) entry.linkTarget = readlinkSync(at);
      if (!entry.whiteout) {
        for (const x of llistxattr(at).sort(byName)) {
          if (x === 'trusted.overlay.redirect' || x === 'trusted.overlay.metacopy') {
            throw new LayerCaptureError(`cannot capture ${JSON.stringify('/' + rel)}: overlayfs marked it ${x} (a renamed directory or a metadata-only copy); mount with redirect_dir=off and metacopy=off`);
          }
          if (x === OVERLAY_OPAQUE_XATTR) entry.opaque = stat.isDirectory() && lgetxattr(at, x)?.toString() === 'y';
          if (OVERLAY_XATTR.test(x)) continue;
          const value = lgetxattr(at, x);
          if (value !== undefined) entry.xattrs.push([x, value]);
        }
      }
      entries.push(entry);
    }
  } finally {
    // closed before the subtrees are walked: a deep tree holds one descriptor at a time
    closeSync(dfd);
  }
  for (const entry of entries) {
    yield entry;
    if (entry.stat.isDirectory()) yield* walkUpper(upperFd, upper, entry.rel, walked);
  }
}

/** The upper directory `upper` (the helper's own path) held open for a walk. */
export function openUpper(upper: string): number {
  return openSync(upper, O_PATH | constants.O_DIRECTORY);
}

/** The names in `rel`, a directory of the upper directory, read as walkUpper reads them. */
async function upperNames(upperFd: number, rel: string): Promise<string[]> {
  const dfd = openBeneath(upperFd, rel, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    return await fs.readdir(`/proc/self/fd/${dfd}`);
  } finally {
    closeSync(dfd);
  }
}

/** What `collectUpper` needs besides the upper directory. */
export interface UpperView {
  /** The image's layer directories, top-most first. */
  lowers: string[];
  /**
   * Paths (relative, no leading slash) the runtime mounts over: where the
   * image lacks one, overlayfs got an empty file or directory made there as
   * the mount point (/etc/hosts, /proc, a bind's target). Docker keeps those
   * in a layer of their own below the container's (the init layer); here
   * they are left out of diff and commit, and so is a directory that was
   * copied up only to hold them.
   */
  mountPoints?: readonly string[];
}

/**
 * The entries of `upper` (walkUpper's order) less the runtime's mount
 * points: the changes a diff reports and a commit records. Metadata only;
 * a file's data is read later, when a tar is written.
 */
export async function collectUpper(upper: string, view: UpperView): Promise<UpperEntry[]> {
  const stubs = new Set(view.mountPoints ?? []);
  const all: UpperEntry[] = [];
  const fd = openUpper(upper);
  try {
    for await (const e of walkUpper(fd, upper)) all.push(e);
  } finally {
    closeSync(fd);
  }
  if (stubs.size === 0) return all;
  const dropped = new Set<string>();
  // children come after their parent: decide the deepest first
  for (let i = all.length - 1; i >= 0; i--) {
    const e = all[i];
    if (e.whiteout) continue;
    const isStub = stubs.has(e.rel) && ((e.stat.isFile() && e.stat.size === 0n) || e.stat.isDirectory()) && !(await existsInLower(view.lowers, e.rel));
    if (isStub && (!e.stat.isDirectory() || onlyDropped(all, i, dropped))) {
      dropped.add(e.rel);
      continue;
    }
    // a directory overlayfs copied up only to make mount points in: unchanged otherwise
    if (e.stat.isDirectory() && !e.opaque && hasChildren(all, i) && onlyDropped(all, i, dropped) && (await sameAsLower(view.lowers, e))) dropped.add(e.rel);
  }
  return all.filter((e) => !dropped.has(e.rel));
}

/** The entries under all[i] (the walk puts them right after it, before the next entry outside it). */
function descendants(all: UpperEntry[], i: number): UpperEntry[] {
  const prefix = all[i].rel + '/';
  const out: UpperEntry[] = [];
  for (let j = i + 1; j < all.length && all[j].rel.startsWith(prefix); j++) out.push(all[j]);
  return out;
}

function hasChildren(all: UpperEntry[], i: number): boolean {
  return descendants(all, i).length > 0;
}

function onlyDropped(all: UpperEntry[], i: number, dropped: Set<string>): boolean {
  return descendants(all, i).every((d) => dropped.has(d.rel));
}

/** The directory's owner and mode are the lower layers' (its mtime changed with the mount points made in it). */
async function sameAsLower(lowers: string[], e: UpperEntry): Promise<boolean> {
  if (e.xattrs.length) return false;
  for (const layer of lowers) {
    const st = await lstatOrUndefined(path.join(layer, e.rel));
    if (st) return st.isDirectory() && st.mode === e.stat.mode && st.uid === e.stat.uid && st.gid === e.stat.gid;
  }
  return false;
}

async function lstatOrUndefined(p: string): Promise<BigIntStats | undefined> {
  try {
    return await fs.lstat(p, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/**
 * Whether `rel` exists in the union of `lowers` (top-most first): the first
 * layer that has it, or hides it (a whiteout of it or of a parent, an
 * opaque parent, a parent that is not a directory), decides.
 */
export async function existsInLower(lowers: string[], rel: string): Promise<boolean> {
  for (const layer of lowers) {
    const st = await lstatOrUndefined(path.join(layer, rel));
    if (st) return !isWhiteout(st);
    if (await hides(layer, rel)) return false;
  }
  return false;
}

/** Whether `layer`, which lacks `rel`, hides what layers below have there: a parent is a whiteout, not a directory, or opaque. */
async function hides(layer: string, rel: string): Promise<boolean> {
  const parts = rel.split('/');
  for (let i = 1; i < parts.length; i++) {
    const a = path.join(layer, ...parts.slice(0, i));
    const st = await lstatOrUndefined(a);
    if (!st) continue;
    if (!st.isDirectory()) return true;
    if (lgetxattr(a, OVERLAY_OPAQUE_XATTR)?.toString() === 'y') return true;
  }
  return false;
}

/** The names the union of `lowers` has directly in directory `rel`. */
export async function lowerNames(lowers: string[], rel: string): Promise<string[]> {
  const names = new Set<string>();
  const hidden = new Set<string>();
  for (const layer of lowers) {
    const dir = path.join(layer, rel);
    const st = await lstatOrUndefined(dir);
    if (!st) {
      if (await hides(layer, rel)) break;
      continue;
    }
    if (!st.isDirectory()) break;
    for (const name of await fs.readdir(dir)) {
      if (names.has(name) || hidden.has(name)) continue;
      const cst = await lstatOrUndefined(path.join(dir, name));
      if (cst && isWhiteout(cst)) hidden.add(name);
      else names.add(name);
    }
    if (lgetxattr(dir, OVERLAY_OPAQUE_XATTR)?.toString() === 'y') break;
  }
  return [...names];
}

export type ChangeKind = 'A' | 'C' | 'D';

export interface Change {
  /** Absolute path in the container. */
  path: string;
  kind: ChangeKind;
}

/** Docker's order: by path, byte-wise. */
export function sortChanges(changes: Change[]): Change[] {
  return changes.sort((a, b) => byName(a.path, b.path));
}

/**
 * `docker diff` of an upper directory over `lowers`: a whiteout is `D`, an
 * entry the lower layers have is `C` (the parents overlayfs copied up for a
 * change below them among them), any other `A`. An opaque directory the
 * lower layers had is `C`, and each name they had in it that the upper
 * directory does not have again is `D` (what a full-tree comparison, Docker's
 * naive diff, reports for `rm -rf /etc && mkdir /etc`).
 */
export async function changesOf(upper: string, view: UpperView): Promise<Change[]> {
  const { lowers } = view;
  const out: Change[] = [];
  const upperFd = openUpper(upper);
  try {
    for (const e of await collectUpper(upper, view)) {
      const p = '/' + e.rel;
      if (e.whiteout) {
        out.push({ path: p, kind: 'D' });
        continue;
      }
      const inLower = await existsInLower(lowers, e.rel);
      out.push({ path: p, kind: inLower ? 'C' : 'A' });
      if (e.opaque && inLower) {
        const present = new Set(await upperNames(upperFd, e.rel));
        for (const name of await lowerNames(lowers, e.rel)) if (!present.has(name)) out.push({ path: `${p}/${name}`, kind: 'D' });
      }
    }
  } finally {
    closeSync(upperFd);
  }
  return sortChanges(out);
}
