/**
 * What a RUN step's container gets besides its image, as BuildKit's
 * Dockerfile frontend defines it (frontend/dockerfile/dockerfile2llb
 * convert_runmount.go and dispatchRun):
 *
 * - `--mount=type=cache`: a persistent directory of the owner's
 *   (cachemounts.ts), optionally first filled from `from`/`source`; a new one
 *   is `mode` (0755) and owned by `uid`:`gid` (0:0) as the container sees it.
 * - `--mount=type=bind`: `source` of the context (default), a stage or an
 *   image, read-only unless `rw`; the files are copied into a staging
 *   directory of the build first, so a source resolves inside its root only
 *   (the selection COPY uses: `..` and symlinks never leave it), `rw` writes
 *   land in that copy and are discarded with it, and the step's key covers
 *   the bound files (cachekey.ts).
 * - `--mount=type=tmpfs`: a tmpfs of `size` (unbounded by default).
 * - a heredoc whose body starts with `#!`: the body as the executable file
 *   `/dev/pipes/NAME`, which the shell runs.
 * - `--network=none|host`.
 *
 * Files the helper stages for a container are owned, on disk, by the ids
 * the container's root has there: root's 0:0, or a user's own uid:gid, which
 * the user's container sees as its root through the idmapped binds
 * (runtime/container/unprivileged.ts ownerIdmaps). A cache mount of another
 * `uid`/`gid` in a user's container is idmapped to that container user.
 *
 * Mount targets the image lacked are made by the runtime as empty stubs in
 * the container's upper directory; `stubs` lists each target and its
 * parents so the commit leaves them out when nothing else was written there
 * (image/layer/changes.ts collectUpper), as BuildKit removes its stubs.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ImageRecord, ImageStore, Lease } from '../image/store';
import type { CacheMounts, HeldCacheDir } from './cachemounts';
import { mountSource } from './cachekey';
import type { ContextManifest } from './context';
import { copyInto, walkTree } from './copy';
import { BuildContextError, type SourceLocation } from './errors';
import type { RunMount } from './dockerfile/mounts';
import type { SourceOrigin, StepAction } from './plan';

type RunAction = Extract<StepAction, { kind: 'run' }>;

/** One mount of a step's container: a directory (or file) of the helper's, or a tmpfs. */
export interface StepMount {
  kind: 'dir' | 'tmpfs';
  /** kind dir: the host path. */
  source?: string;
  target: string;
  readOnly: boolean;
  /** kind tmpfs: its size in bytes. */
  size?: number;
  /** The container ids that own what is on disk as the container root's ids (a cache of another `uid`/`gid`); default root. */
  containerIds?: { uid: number; gid: number };
}

export interface StepMounts {
  mounts: StepMount[];
  network?: 'none' | 'host';
  /** Relative paths where the runtime may have made mount stubs: each target and its parents. */
  stubs: string[];
  release(): Promise<void>;
}

/** What preparing a step's mounts needs from the build and its caller. */
export interface RunMountEnv {
  store: ImageStore;
  lease: Lease;
  /** The caller's uid (whose caches these are; only root may have `--network=host`). */
  owner: number;
  /** The ids the container's root has on disk: 0:0 for root's, the user's own for a user's. */
  diskRoot: { uid: number; gid: number };
  caches: CacheMounts;
  ctxRoot: string;
  manifest: ContextManifest;
  /** The image a stage or image origin names, once built or resolved. */
  imageOf(o: SourceOrigin): ImageRecord | undefined;
  mergedRoot(layerDirs: string[]): Promise<{ root: string; release(): Promise<void> }>;
  /** The build's cancel: a wait for a locked cache ends with it. */
  signal?: AbortSignal;
  /** `--secret` contents by id. */
  secrets?: ReadonlyMap<string, Buffer>;
}

export const PIPES_DIR = '/dev/pipes';

/** A mount's target as an absolute, clean path: a relative one is below the step's WORKDIR. */
export function mountTarget(target: string, workdir: string, loc: SourceLocation): string {
  const t = path.posix.normalize(path.posix.isAbsolute(target) ? target : path.posix.join('/', workdir || '/', target)).replace(/(.)\/+$/, '$1');
  if (t === '/') throw new BuildContextError(`${loc.file}:${loc.line}: invalid mount target ${JSON.stringify(target)}`);
  return t;
}

export { mountSource };

/** Each target and its parents, relative (what the commit may find as stubs). */
export function stubPaths(targets: string[]): string[] {
  const out = new Set<string>();
  for (const t of targets) {
    for (let p = t; p !== '/' && p !== '.'; p = path.posix.dirname(p)) out.add(p.replace(/^\/+/, ''));
  }
  return [...out];
}

/** The first thing of `a` this builder does not carry out, as an error naming the place, or undefined. */
export function unsupportedRun(a: RunAction, loc: SourceLocation, owner: number): string | undefined {
  const at = `${loc.file}:${loc.line}`;
  for (const m of a.mounts) {
    if (m.type === 'ssh') return `${at}: RUN --mount=type=ssh is not supported yet (bind, cache, tmpfs and secret are)`;
    // as an environment variable the value would be in the container's record on disk
    if (m.type === 'secret' && m.env !== undefined) return `${at}: RUN --mount=type=secret,env=${m.env} is not supported yet (mount it as a file)`;
  }
  if (a.network === 'host' && owner !== 0) return `${at}: RUN --network=host refused for uid ${owner}: it shares the host's network namespace; only root may use it`;
  if (a.security === 'insecure') return `${at}: RUN --security=insecure is not supported`;
  return undefined;
}

/** Prepares the mounts of RUN step `a`; the caller releases them once the container is gone. */
export async function prepareRunMounts(env: RunMountEnv, a: RunAction, loc: SourceLocation): Promise<StepMounts> {
  const problem = unsupportedRun(a, loc, env.owner);
  if (problem) throw new BuildContextError(problem);
  const mounts: StepMount[] = [];
  const held: HeldCacheDir[] = [];
  const staged: string[] = [];
  const release = async (): Promise<void> => {
    for (const h of held.splice(0)) await h.release().catch(() => undefined);
    for (const d of staged.splice(0)) await fs.promises.rm(d, { recursive: true, force: true }).catch(() => undefined);
  };
  const stage = async (): Promise<string> => {
    const d = await env.store.stagingDir(env.lease);
    staged.push(d);
    return d;
  };
  try {
    const targets = new Set<string>();
    for (const m of a.mounts) {
      const target = mountTarget(m.target, a.workdir, loc);
      if (targets.has(target)) throw new BuildContextError(`${loc.file}:${loc.line}: two mounts at ${target}`);
      targets.add(target);
      if (m.type === 'tmpfs') {
        mounts.push({ kind: 'tmpfs', target, readOnly: false, ...(m.size !== undefined ? { size: m.size } : {}) });
      } else if (m.type === 'bind') {
        const dir = path.join(await stage(), 'm');
        await fillFrom(env, m, dir, loc);
        mounts.push({ kind: 'dir', source: dir, target, readOnly: m.readOnly });
      } else if (m.type === 'cache') {
        const inside = { uid: m.uid ?? 0, gid: m.gid ?? 0 };
        const user = env.diskRoot.uid !== 0;
        const disk = user ? env.diskRoot : inside;
        const h = await env.caches.acquire(
          env.owner,
          { id: m.id ?? target, sharing: m.sharing, uid: disk.uid, gid: disk.gid, mode: m.mode ?? 0o755 },
          (dir) => (m.origin ? fillFrom(env, m, dir, loc, true) : Promise.resolve()),
          stage,
          env.signal,
        );
        held.push(h);
        // without `from`, `source` is a directory inside the cache
        let dir = h.dir;
        if (!m.origin && mountSource(m.source) !== '.') {
          dir = path.join(h.dir, mountSource(m.source));
          await fs.promises.mkdir(dir, { recursive: true, mode: 0o755 });
        }
        const mapped = user && (inside.uid !== 0 || inside.gid !== 0) ? { containerIds: inside } : {};
        mounts.push({ kind: 'dir', source: dir, target, readOnly: m.readOnly, ...mapped });
      } else if (m.type === 'secret') {
        const data = env.secrets?.get(m.id ?? '');
        if (data === undefined) {
          // BuildKit's rule: a secret not given is simply not mounted, unless it is required
          if (m.required) throw new BuildContextError(`${loc.file}:${loc.line}: secret ${m.id} is required but was not given (capsa build --secret id=${m.id},src=FILE)`);
          targets.delete(target);
          continue;
        }
        const inside = { uid: m.uid ?? 0, gid: m.gid ?? 0 };
        const user = env.diskRoot.uid !== 0;
        const disk = user ? env.diskRoot : inside;
        const dir = await secretDir();
        staged.push(dir);
        const file = path.join(dir, 'secret');
        await fs.promises.writeFile(file, data, { mode: 0o600 });
        await fs.promises.chown(file, disk.uid, disk.gid);
        await fs.promises.chmod(file, m.mode ?? 0o400);
        const mapped = user && (inside.uid !== 0 || inside.gid !== 0) ? { containerIds: inside } : {};
        mounts.push({ kind: 'dir', source: file, target, readOnly: true, ...mapped });
      }
    }
    if (a.script) {
      if (a.script.name.includes('/') || a.script.name === '.' || a.script.name === '..') throw new BuildContextError(`${loc.file}:${loc.line}: heredoc name ${JSON.stringify(a.script.name)} cannot be a file name`);
      const dir = await stage();
      const file = path.join(dir, a.script.name);
      await fs.promises.writeFile(file, a.script.data, { mode: 0o755 });
      await fs.promises.chmod(file, 0o755);
      await fs.promises.lchown(file, env.diskRoot.uid, env.diskRoot.gid);
      await fs.promises.chmod(dir, 0o755);
      mounts.push({ kind: 'dir', source: dir, target: PIPES_DIR, readOnly: true });
    }
    const network = a.network === 'default' ? undefined : a.network;
    return { mounts, ...(network ? { network } : {}), stubs: stubPaths([...targets]), release };
  } catch (err) {
    await release();
    throw err;
  }
}

/** A directory for one secret's file: in /dev/shm (memory) where there is one, so a secret never reaches a disk. */
async function secretDir(): Promise<string> {
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const dir = await fs.promises.mkdtemp(path.join(base, 'capsa-secret-'));
  await fs.promises.chmod(dir, 0o700);
  return dir;
}

/**
 * Copies `source` of the mount's origin (the context when it has none)
 * into `dir`: a directory's content into it, a file as it. `into`: `dir`
 * exists already (a new cache) and gets a directory's content.
 */
async function fillFrom(env: RunMountEnv, m: RunMount & { origin?: SourceOrigin }, dir: string, loc: SourceLocation, into = false): Promise<void> {
  const source = mountSource(m.source);
  const owner = `${env.diskRoot.uid}:${env.diskRoot.gid}`;
  const copy = async (root: string, manifest: ContextManifest): Promise<void> => {
    const dest = into ? '/' : '/' + path.basename(dir);
    await copyInto(root, manifest, { sources: [source], exclude: [], dest, chown: owner, loc, destIsDir: into }, into ? dir : path.dirname(dir));
  };
  if (!m.origin || m.origin.kind === 'context') await copy(env.ctxRoot, env.manifest);
  else {
    const record = env.imageOf(m.origin);
    if (!record) throw new BuildContextError(`${loc.file}:${loc.line}: the source of --mount from=${m.from ?? ''} was not built`);
    const merged = await env.mergedRoot(await env.store.layerDirs(record));
    try {
      await copy(merged.root, await walkTree(merged.root));
    } finally {
      await merged.release();
    }
  }
  // an empty source directory (or the context's root) made nothing
  if (!fs.existsSync(dir)) {
    await fs.promises.mkdir(dir, { mode: 0o755 });
    await fs.promises.lchown(dir, env.diskRoot.uid, env.diskRoot.gid);
  }
}
