/**
 * One COPY/ADD step's files, written into the step's empty layer directory:
 * its sources from a tree (the context, or a stage's or image's merged
 * root; copy.copyInto), ADD's local archives extracted (addarchive.ts), its
 * URLs fetched (remote.ts; prefetched ones come from the executor, which
 * keyed the step by their content) and its heredocs as files (inline.ts),
 * in that order, all under the destination rules of COPY. `--chown` names
 * are resolved against the stage's own /etc/passwd and /etc/group
 * (owners.ts). Git sources are refused.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { archiveKind, archiveWhat, extractArchive, mergeTree, type ArchiveCompression } from './addarchive';
import { selectSources } from './cachekey';
import type { ContextManifest } from './context';
import { copyInto, mkdirParents, walkTree, type CopySpec, type ExistingDir } from './copy';
import { BuildContextError, BuildRemoteError, type SourceLocation } from './errors';
import { writeInlineSources } from './inline';
import { imageChown } from './owners';
import type { StepAction } from './plan';
import { fetchRemote, isGitSource, isRemoteSource, type FetchOptions, type RemoteFile } from './remote';

export type CopyAction = Extract<StepAction, { kind: 'copy' | 'add' }>;

export interface CopyStepInput {
  action: CopyAction;
  loc: SourceLocation;
  /** The step's layer directory (empty). */
  upper: string;
  /** A directory of the helper's on the same file system as `upper`, for what is staged on the way (removed by the caller). */
  scratch: string;
  /** The stage's image layers, top first (empty for scratch): --chown names, the destination's directories. */
  layerDirs: string[];
  /** Whether the destination is a directory in the image already. */
  destIsDir: boolean;
  existing?: ExistingDir;
  /** The tree local sources are read from, when the step has any. */
  source?: { root: string; manifest: ContextManifest };
  /** URLs the executor fetched before keying (those without --checksum). */
  remotes?: ReadonlyMap<string, RemoteFile>;
  signal: AbortSignal;
  /** For tests: a smaller download limit, a dispatcher. */
  fetch?: Pick<FetchOptions, 'limit' | 'dispatcher' | 'timeoutMs' | 'idleMs'>;
}

/** Writes the step's files; returns how many entries were written or extracted. */
export async function writeCopyStep(i: CopyStepInput): Promise<number> {
  const a = i.action;
  const { loc } = i;
  const where = `${loc.file}:${loc.line}`;
  const urls = a.sources.filter(isRemoteSource);
  const local = a.sources.filter((s) => !isRemoteSource(s));
  const git = urls.find(isGitSource);
  if (git) throw new BuildContextError(`${where}: ADD of a git repository (${git}) is not supported yet`);
  if (a.kind === 'copy' && urls.length > 0) throw new BuildContextError(`${where}: COPY cannot take a URL (${urls[0]}): use ADD`);
  if (a.checksum !== undefined && local.length > 0) throw new BuildContextError(`${where}: ADD --checksum is for http(s) sources only, not ${local[0]}`);
  const owner = await imageChown(a.chown, loc, i.layerDirs);
  const total = a.sources.length + a.inline.length;
  if (total > 1 && !a.dest.endsWith('/') && !i.destIsDir) {
    throw new BuildContextError(`${where}: when using COPY with more than one source file, the destination must be a directory and end with a /`);
  }
  const destIsDir = i.destIsDir || total > 1;
  const destRoot = a.dest.replace(/\/+$/, '') || '/';
  const intoDir = a.dest.endsWith('/') || destIsDir;
  const spec = (sources: string[], over: Partial<CopySpec> = {}): CopySpec => ({
    sources, exclude: a.exclude, dest: a.dest, chown: a.chown, chmod: a.chmod, loc, destIsDir, ...(owner ? { owner } : {}), ...over,
  });
  let n = 0;
  let scratchN = 0;
  const scratchDir = async (): Promise<string> => {
    const d = path.join(i.scratch, `s${scratchN++}`);
    await fs.promises.mkdir(d, { mode: 0o700 });
    return d;
  };
  const extract = async (file: string, kind: ArchiveCompression, what: string): Promise<void> => {
    await mkdirParents(i.upper, destRoot, { owner, existing: i.existing });
    const tmp = await scratchDir();
    n += await extractArchive(file, kind, tmp, { what, owner, signal: i.signal });
    await mergeTree(tmp, path.join(i.upper, destRoot));
  };

  if (local.length > 0) {
    if (!i.source) throw new BuildContextError(`${where}: the step's sources were not made available`);
    const { root, manifest } = i.source;
    const preserveOwner = a.origin.kind !== 'context';
    if (a.kind !== 'add' || a.unpack === false) {
      // one copy of all the sources, as before heredocs and URLs could join them
      n += await copyInto(root, manifest, spec(local, { preserveOwner, destIsDir: total > local.length || i.destIsDir }), i.upper, i.existing);
    } else for (const src of local) {
      // only a file the source names (or its wildcard matches) is extracted, never one inside a directory it names
      const tops = selectSources(manifest, [src], a.exclude, loc).filter((f) => f.top);
      const archives: { path: string; kind: ArchiveCompression }[] = [];
      const plain: string[] = [];
      for (const f of tops) {
        const kind = f.entry.type === 'file' ? await archiveKind(path.join(root, f.entry.path), archiveWhat(loc, f.entry.path)) : undefined;
        if (kind) archives.push({ path: f.entry.path, kind });
        else plain.push(f.entry.path);
      }
      if (archives.length === 0) {
        n += await copyInto(root, manifest, spec([src], { preserveOwner }), i.upper, i.existing);
        continue;
      }
      for (const p of plain) n += await copyInto(root, manifest, spec([p], { preserveOwner, destIsDir: true }), i.upper, i.existing);
      for (const ar of archives) await extract(path.join(root, ar.path), ar.kind, archiveWhat(loc, ar.path));
    }
  }

  for (const url of urls) {
    if (i.signal.aborted) throw new BuildContextError(`${where}: the build was cancelled`);
    let r = i.remotes?.get(url);
    if (r && a.checksum !== undefined && r.digest !== a.checksum) {
      throw new BuildRemoteError(`${where}: ADD ${url}: the content's digest ${r.digest} does not match --checksum=${a.checksum}`, url);
    }
    r ??= await fetchRemote(url, await scratchDir(), { loc, checksum: a.checksum, signal: i.signal, ...i.fetch });
    if (a.unpack === true) {
      const kind = await archiveKind(r.file, `${where}: ADD ${url}`);
      if (kind) {
        await extract(r.file, kind, `${where}: ADD ${url}`);
        continue;
      }
    }
    const dir = path.dirname(r.file);
    n += await copyInto(dir, await walkTree(dir), spec([r.name]), i.upper, i.existing);
    if (r.lastModified) {
      const target = path.join(i.upper, intoDir ? path.posix.join(destRoot, r.name) : destRoot);
      await fs.promises.utimes(target, r.lastModified, r.lastModified);
    }
  }

  if (a.inline.length > 0) {
    const dir = await scratchDir();
    const docs = await writeInlineSources(dir, a.inline, loc);
    n += await copyInto(dir, docs.manifest, spec(docs.names), i.upper, i.existing);
  }
  return n;
}
