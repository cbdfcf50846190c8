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

/** A manifest of the tree under `root` (no digests: the content is read when copied). */
export async function walkTree(root: string): Promise<ContextManifest> {
  const out: ContextEntry[] = [];
  const walk = async (rel: string): Promise<void> => {
    const names = await fs.promises.readdir(path.join(root, rel));
    for (const n of names) {
      const p = rel ? `${rel}/${n}` : n;
      const st = await fs.promises.lstat(path.join(root, p));
      const base = { path: p, mode: st.mode & 0o7777, size: st.size, uid: st.uid, gid: st.gid };
      if (st.isDirectory()) {
        out.push({ ...base, type: 'dir' });
        await walk(p);
      } else if (st.isSymbolicLink()) out.push({ ...base, type: 'symlink', linkTarget: await fs.promises.readlink(path.join(root, p)) });
      else if (st.isFile()) out.push({ ...base, type: 'file' });
    }
  };
  await walk('');
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
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
  const owner = parseChown(spec.chown, spec.loc);
  const chmod = spec.chmod !== undefined ? parseChmod(spec.chmod, spec.loc) : undefined;
  const tops = files.filter((f) => f.top);
  const intoDir = spec.dest.endsWith('/') || spec.sources.length > 1 || spec.destIsDir || tops.length > 1 || tops.some((f) => f.entry.type === 'dir') || files.some((f) => !f.top);
  const destRoot = spec.dest.replace(/\/+$/, '') || '/';
  if (spec.sources.length > 1 && !spec.dest.endsWith('/') && !spec.destIsDir) {
    throw new BuildContextError(`${spec.loc.file}:${spec.loc.line}: when using COPY with more than one source file, the destination must be a directory and end with a /`);
  }
  const parents = { owner, existing, loc: spec.loc, dirs: new Set<string>() };
  await mkdirParents(upper, path.posix.dirname(destRoot), parents);
  let n = 0;
  for (const f of files) {
    const srcName = path.posix.basename(spec.sources[f.source]);
    let rel: string;
    if (!intoDir) rel = destRoot;
    else if (f.rel === '.') rel = f.entry.type === 'dir' ? destRoot : path.posix.join(destRoot, srcName);
    else rel = path.posix.join(destRoot, f.rel);
    const target = path.join(upper, rel);
    await mkdirParents(upper, path.posix.dirname(rel), parents);
    const from = path.join(srcRoot, f.entry.path);
    const mode = chmod ?? f.entry.mode;
    if (f.entry.type === 'dir' && f.rel === '.') {
      // the destination directory itself: the image's if it has one, else a new one
      await mkdirParents(upper, rel, parents);
      if (chmod !== undefined) await fs.promises.chmod(target, chmod);
      n++;
      continue;
    }
    if (f.entry.type === 'dir') {
      // never mkdir -p: an earlier source's symlink at `rel` would be followed (and chmod with it)
      await mkdirParents(upper, rel, parents);
      await fs.promises.chmod(target, mode);
    } else if (f.entry.type === 'symlink') {
      forgetDirs(parents.dirs, rel);
      await fs.promises.rm(target, { force: true, recursive: true });
      await fs.promises.symlink(f.entry.linkTarget ?? '', target);
    } else {
      forgetDirs(parents.dirs, rel);
      await fs.promises.rm(target, { force: true, recursive: true });
      await fs.promises.copyFile(from, target);
      await fs.promises.chmod(target, mode);
    }
    const own = spec.preserveOwner && spec.chown === undefined ? { uid: f.entry.uid, gid: f.entry.gid } : owner;
    await fs.promises.lchown(target, own.uid, own.gid);
    n++;
  }
  return n;
}

/** A directory replaced by a link or a file is no longer one the copy may write into unchecked. */
function forgetDirs(dirs: Set<string>, rel: string): void {
  const key = rel.replace(/^\/+/, '');
  if (!dirs.has(key)) return;
  for (const d of dirs) if (d === key || d.startsWith(`${key}/`)) dirs.delete(d);
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
