/**
 * COPY/ADD as files: the sources a step selects (cachekey.selectSources, the
 * same selection its key covers) copied from a source tree into an empty
 * directory that then becomes the layer (capture.commitLayer), as a RUN's
 * upper directory does.
 *
 * A source tree is either the context, unpacked by the helper into its own
 * staging directory from the tar the caller sent (never the caller's own
 * tree), or another stage's or image's root, its layers merged read-only.
 * Nothing is followed: symlinks are copied as links, and selection resolves
 * links only within the manifest (context.resolveInContext).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ContextEntry, ContextManifest } from './context';
import { selectSources } from './cachekey';
import { BuildContextError, type SourceLocation } from './errors';

/** A tree entry, and where a hard link can take its content from instead of a copy. */
export type TreeEntry = ContextEntry & {
  /**
   * The same inode in a layer of the store (immutable once made): a copy with the same owner and
   * mode can be a hard link to it, which the layer's tar then reads (its mtime is the source's, as
   * BuildKit keeps it for COPY --from).
   */
  linkFrom?: string;
  /** The entry's mtime, which the copy keeps (a stage's or image's tree; context entries have none and get the copy's time). */
  mtime?: Date;
};

/** Lets the event loop run between batches of synchronous calls. */
const breathe = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * A manifest of the tree under `root` (no digests: the content is read when copied). With `layers`
 * (the store's layer directories `root` is the overlay of, top first), each entry has its mtime,
 * and each regular file names the layer file overlayfs shows there (the same inode, size and
 * mtime) as its `linkFrom`.
 *
 * Synchronous calls in batches, the event loop let run between them: the tree is the helper's own
 * (a layer or an overlay of layers), and an asynchronous lstat an entry costs several times more.
 */
export async function walkTree(root: string, layers?: readonly string[]): Promise<ContextManifest> {
  const out: TreeEntry[] = [];
  const stack = [''];
  let since = 0;
  while (stack.length > 0) {
    const rel = stack.pop() as string;
    for (const n of fs.readdirSync(path.join(root, rel))) {
      if (++since % 256 === 0) await breathe();
      const p = rel ? `${rel}/${n}` : n;
      const st = fs.lstatSync(path.join(root, p));
      const base = { path: p, mode: st.mode & 0o7777, size: st.size, uid: st.uid, gid: st.gid, ...(layers ? { mtime: st.mtime } : {}) };
      if (st.isDirectory()) {
        out.push({ ...base, type: 'dir' });
        stack.push(p);
      } else if (st.isSymbolicLink()) out.push({ ...base, type: 'symlink', linkTarget: fs.readlinkSync(path.join(root, p)) });
      else if (st.isFile()) {
        const from = layers ? layerFile(layers, p, st) : undefined;
        out.push({ ...base, type: 'file', ...(from ? { linkFrom: from } : {}) });
      }
    }
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The top-most layer's file at `rel` when it is the very file `st` (what the overlay shows); otherwise undefined (a copy then). */
function layerFile(layers: readonly string[], rel: string, st: fs.Stats): string | undefined {
  for (const d of layers) {
    const abs = path.join(d, rel);
    const lst = fs.lstatSync(abs, { throwIfNoEntry: false });
    // overlayfs reports its own device, but a lower file's inode number (all layers on one file system)
    if (lst) return lst.isFile() && lst.ino === st.ino && lst.size === st.size && lst.mtimeMs === st.mtimeMs ? abs : undefined;
  }
  return undefined;
}

export interface CopySpec {
  sources: string[];
  exclude: string[];
  /** Absolute destination; a trailing `/` means into a directory. */
  dest: string;
  chown?: string;
  chmod?: string;
  loc: SourceLocation;
  /** Whether `dest` is a directory in the image already. */
  destIsDir: boolean;
  /** Without --chown, keep each entry's owner (a stage's or image's files, as Docker keeps them) instead of root. */
  preserveOwner?: boolean;
  /** `chown` already resolved (owners.ts: names read from the image); wins over parsing `chown`. */
  owner?: { uid: number; gid: number };
}

/** `--chown` as numbers; names need the image's passwd, not read yet. */
export function parseChown(spec: string | undefined, loc: SourceLocation): { uid: number; gid: number } {
  if (spec === undefined || spec === '') return { uid: 0, gid: 0 };
  const m = /^(\d+)(?::(\d+))?$/.exec(spec);
  if (!m) throw new BuildContextError(`${loc.file}:${loc.line}: --chown=${spec}: only numeric uid[:gid] is supported yet`);
  return { uid: Number(m[1]), gid: Number(m[2] ?? m[1]) };
}

/** Owner and mode of a directory already in the image (a path relative to its root), if there is one. */
export type ExistingDir = (rel: string) => Promise<{ mode: number; uid: number; gid: number } | undefined>;

/**
 * Copies what `spec` selects from `srcRoot` (listed by `manifest`) into `upper`; returns the entries written.
 *
 * As Docker does: a directory source gives its contents, never the directory itself, so the
 * destination keeps the image's owner and mode when it exists and is created 0755 (owned by
 * --chown) when it does not, as are missing parents; a single source (a wildcard matching one
 * file included) copied to a path without a trailing `/` that is no directory is that file's name.
 */
export async function copyInto(srcRoot: string, manifest: ContextManifest, spec: CopySpec, upper: string, existing?: ExistingDir): Promise<number> {
  const files = selectSources(manifest, spec.sources, spec.exclude, spec.loc);
  const owner = spec.owner ?? parseChown(spec.chown, spec.loc);
  const chmod = spec.chmod !== undefined ? parseChmod(spec.chmod, spec.loc) : undefined;
  const tops = files.filter((f) => f.top);
  const intoDir = spec.dest.endsWith('/') || spec.sources.length > 1 || spec.destIsDir || tops.length > 1 || tops.some((f) => f.entry.type === 'dir') || files.some((f) => !f.top);
  const destRoot = spec.dest.replace(/\/+$/, '') || '/';
  if (spec.sources.length > 1 && !spec.dest.endsWith('/') && !spec.destIsDir) {
    throw new BuildContextError(`${spec.loc.file}:${spec.loc.line}: when using COPY with more than one source file, the destination must be a directory and end with a /`);
  }
  const tree = new UpperDirs(upper, { owner, existing });
  await tree.ensure(path.posix.dirname(destRoot));
  const dirTimes: [string, Date][] = [];
  let n = 0;
  for (const f of files) {
    if (++n % 128 === 0) await breathe();
    const srcName = path.posix.basename(spec.sources[f.source]);
    let rel: string;
    if (!intoDir) rel = destRoot;
    else if (f.rel === '.') rel = f.entry.type === 'dir' ? destRoot : path.posix.join(destRoot, srcName);
    else rel = path.posix.join(destRoot, f.rel);
    rel = rel.replace(/^\/+/, '');
    const target = path.join(upper, rel);
    if (f.entry.type === 'dir' && f.rel === '.') {
      // the destination directory itself: the image's if it has one, else a new one
      await tree.ensure(rel);
      if (chmod !== undefined) fs.chmodSync(target, chmod);
      continue;
    }
    await tree.ensure(path.posix.dirname(rel));
    const mode = chmod ?? f.entry.mode;
    const own = spec.preserveOwner && spec.chown === undefined && spec.owner === undefined ? { uid: f.entry.uid, gid: f.entry.gid } : owner;
    if (f.entry.type === 'dir') {
      tree.makeDir(rel);
      // its time once everything in it is written (each entry written into it changes it)
      if (mtimeOf(f.entry)) dirTimes.push([target, mtimeOf(f.entry) as Date]);
      // the owner before the mode: a chown clears set-id bits
      fs.lchownSync(target, own.uid, own.gid);
      fs.chmodSync(target, mode);
    } else if (f.entry.type === 'symlink') {
      tree.replace(rel, () => fs.symlinkSync(f.entry.linkTarget ?? '', target));
      fs.lchownSync(target, own.uid, own.gid);
      const t = mtimeOf(f.entry);
      if (t) fs.lutimesSync(target, t, t);
    } else {
      const from = path.join(srcRoot, f.entry.path);
      const linkFrom = (f.entry as TreeEntry).linkFrom;
      if (linkFrom !== undefined && chmod === undefined && own.uid === f.entry.uid && own.gid === f.entry.gid) {
        // an immutable layer's file with the owner and mode the copy would give: the same inode
        tree.replace(rel, () => fs.linkSync(linkFrom, target));
        continue;
      }
      tree.replace(rel, () => fs.copyFileSync(from, target, fs.constants.COPYFILE_EXCL));
      fs.lchownSync(target, own.uid, own.gid);
      fs.chmodSync(target, mode);
      const t = mtimeOf(f.entry);
      if (t) fs.utimesSync(target, t, t);
    }
  }
  // deepest first: setting a directory's time changes nothing above it
  for (const [target, t] of dirTimes.reverse()) {
    try {
      if (fs.lstatSync(target).isDirectory()) fs.utimesSync(target, t, t);
    } catch (err) {
      // a later source replaced it (or a directory above it) with a file or link
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ENOTDIR') throw err;
    }
  }
  return n;
}

const mtimeOf = (e: ContextEntry): Date | undefined => (e as TreeEntry).mtime;

/**
 * The directories of a copy's `upper`, made as mkdirParents makes them, each checked once. A path
 * a source wrote as a file or link is no directory any more: a later entry below it replaces it
 * with a directory (the later source wins, as for files), so nothing is ever written through a
 * link a source made.
 */
class UpperDirs {
  private readonly dirs = new Set<string>(['']);
  /** Directories the image does not have: nor has it anything below them, so `existing` is not asked about those. */
  private readonly notInImage = new Set<string>();

  constructor(
    private readonly upper: string,
    private readonly o: { owner: { uid: number; gid: number }; existing?: ExistingDir },
  ) {}

  /** `rel` and its parents as directories: missing ones made 0755 (the image's owner and mode where it has them). */
  async ensure(rel: string): Promise<void> {
    const clean = rel.replace(/^\/+|\/+$/g, '');
    if (clean === '' || clean === '.' || this.dirs.has(clean)) return;
    let cur = '';
    for (const c of clean.split('/').filter((x) => x !== '')) {
      cur = cur ? `${cur}/${c}` : c;
      if (this.dirs.has(cur)) continue;
      const abs = path.join(this.upper, cur);
      const st = fs.lstatSync(abs, { throwIfNoEntry: false });
      if (st?.isDirectory()) {
        this.dirs.add(cur);
        continue;
      }
      if (st) fs.rmSync(abs, { force: true });
      fs.mkdirSync(abs, { mode: 0o755 });
      const parent = cur.includes('/') ? cur.slice(0, cur.lastIndexOf('/')) : '';
      const had = this.o.existing && !this.notInImage.has(parent) ? await this.o.existing(cur) : undefined;
      if (!had) this.notInImage.add(cur);
      const meta = had ?? { mode: 0o755, uid: this.o.owner.uid, gid: this.o.owner.gid };
      fs.chmodSync(abs, meta.mode);
      fs.lchownSync(abs, meta.uid, meta.gid);
      this.dirs.add(cur);
    }
  }

  /** A directory entry of the copy at `rel` (its parent made): kept if there is one, else made (a file or link there replaced). */
  makeDir(rel: string): void {
    const abs = path.join(this.upper, rel);
    if (!this.dirs.has(rel)) {
      try {
        fs.mkdirSync(abs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if (!fs.lstatSync(abs).isDirectory()) {
          fs.rmSync(abs, { force: true });
          fs.mkdirSync(abs);
        }
      }
    }
    this.dirs.add(rel);
  }

  /** Creates a non-directory at `rel` with `make` (which fails on anything there): whatever was there is removed first. */
  replace(rel: string, make: () => void): void {
    if (this.dirs.delete(rel)) for (const d of this.dirs) if (d.startsWith(rel + '/')) this.dirs.delete(d);
    try {
      make();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      fs.rmSync(path.join(this.upper, rel), { force: true, recursive: true });
      make();
    }
  }
}

function parseChmod(spec: string, loc: SourceLocation): number {
  if (!/^[0-7]{3,4}$/.test(spec)) throw new BuildContextError(`${loc.file}:${loc.line}: --chmod=${spec}: only an octal mode is supported yet`);
  return parseInt(spec, 8);
}

/**
 * Creates `dir` and its parents in `upper` as Docker does: a directory the image has already
 * keeps its owner and mode (its entry in the layer must not change them), a missing one is
 * created 0755 and owned by `owner` (root by default; COPY --chown's and WORKDIR's USER's
 * owner otherwise, as BuildKit creates them).
 */
export async function mkdirParents(
  upper: string,
  dir: string,
  o: { owner?: { uid: number; gid: number }; existing?: ExistingDir; loc?: SourceLocation; dirs?: Set<string> } = {},
): Promise<void> {
  const parts = dir.split('/').filter((c) => c !== '');
  let cur = upper;
  let rel = '';
  for (const c of parts) {
    cur = path.join(cur, c);
    rel = rel ? `${rel}/${c}` : c;
    // `dirs`: the directories this copy made or checked already (a directory stays one: nothing else writes there)
    if (o.dirs?.has(rel)) continue;
    o.dirs?.add(rel);
    try {
      await fs.promises.mkdir(cur, { mode: 0o755 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // An earlier source of this step may have put a symlink or a file here (`COPY a b /d/`, a/x a link, b/x a
      // directory): going on would write through it, and an absolute link in the staging directory names a host path.
      const st = await fs.promises.lstat(cur);
      if (!st.isDirectory()) {
        const where = o.loc ? `${o.loc.file}:${o.loc.line}: ` : '';
        throw new BuildContextError(`${where}cannot copy into /${rel}: an earlier source of this step made it a ${st.isSymbolicLink() ? 'symlink' : 'file'}, not a directory`);
      }
      continue;
    }
    const had = o.existing ? await o.existing(rel) : undefined;
    const meta = had ?? { mode: 0o755, uid: o.owner?.uid ?? 0, gid: o.owner?.gid ?? 0 };
    await fs.promises.chmod(cur, meta.mode);
    await fs.promises.lchown(cur, meta.uid, meta.gid);
  }
}
