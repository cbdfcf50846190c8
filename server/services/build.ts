/**
 * `capsa build` and `capsa builder prune` for a caller: the Dockerfile
 * planned (build/expand.ts), base images resolved in the caller's namespace
 * (pulled when missing, or always with `--pull`), the plan carried out
 * (build/executor.ts) with RUN steps in the caller's own containers through
 * the container service (so a user's RUN is unprivileged, in a user
 * namespace, under that user's ceilings), the result tagged in the caller's
 * namespace. The context tar is opened with the caller's rights.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BuilderPruneResult, ImageBuildParams, ImageBuildResult, ImageEvent } from '../protocol';
import { BuildCache } from '../build/cache';
import { CacheMounts } from '../build/cachemounts';
import type { StepMounts } from '../build/runmounts';
import { executePlan, type RanStep, type RunAction } from '../build/executor';
import { graphFor, planBuild } from '../build/expand';
import type { BaseImage } from '../build/plan';
import type { BuildStepEvent } from '../build/progress';
import { loadDockerfile } from '../build/stages';
import { BuildStepError } from '../build/steperror';
import { formatPlatform, hostPlatform, matchRank, parsePlatform } from '../image/platform';
import { checkStringMap, LIMITS } from '../limits';
import { normalizeReference } from '../image/reference';
import type { ImageRecord } from '../image/store';
import type { ContainerService } from '../runtime/container';
import type { BindMount } from '../runtime/spec';
import type { RunOptions } from '../runtime/container/options';
import { errno, errnoName, libcFunctions, type LibcFn } from '../util/libc';
import { openRegularFileAs } from '../util/hostfile';
import type { Caller } from '../util/peercred';
import { summary, type ImageService } from './images';

const MS_RDONLY = 1;
let mounts: { mount: LibcFn; umount2: LibcFn } | undefined;
const libc = () =>
  (mounts ??= libcFunctions({
    mount: 'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)',
    umount2: 'int umount2(const char *target, int flags)',
  }));

export class BuildService {
  /** `RUN --mount=type=cache` directories, shared by every build of the helper (their holders are counted in memory). */
  private readonly caches: CacheMounts;

  constructor(
    private readonly images: ImageService,
    private readonly containers: ContainerService,
    private readonly root: string,
  ) {
    this.caches = CacheMounts.forRoot(root);
  }

  async build(caller: Caller, p: ImageBuildParams, out: (text: string) => void, progress: (event: BuildStepEvent) => void, signal: AbortSignal): Promise<ImageBuildResult> {
    const owner = caller.uid;
    const tags = (p.tags ?? []).map((t) => normalizeReference(t)); // a bad name fails before any work
    checkStringMap(LIMITS.labels, '--label', p.labels);
    const df = loadDockerfile(p.dockerfile, p.dockerfileName ?? 'Dockerfile');
    const host = hostPlatform();
    const opts = { target: p.target, buildArgs: p.buildArgs, platform: p.platform ? parsePlatform(p.platform) : host, buildPlatform: host };
    const graph = graphFor(df, opts);
    const bases = new Map<string, BaseImage & { record: ImageRecord }>();
    for (const ref of graph.images) {
      const platform = graph.imagePlatforms.get(ref) || formatPlatform(opts.platform);
      // a local image of another platform under the name is not the one wanted: pull the wanted one, as `docker build --platform` does
      const local = p.pull ? undefined : await this.images.store.resolve(ref, owner);
      const fits = local !== undefined && matchRank(parsePlatform(platform), { os: local.os, architecture: local.architecture, ...(local.variant ? { variant: local.variant } : {}) }) !== undefined;
      const r = await this.images.resolveForRun(ref, { pull: p.pull || (local && !fits) ? 'always' : 'missing', platform, caller, signal });
      const record = await this.images.store.get(r.id, owner);
      const config = await this.images.store.config(record);
      bases.set(ref, { digest: record.id, config: config.config ?? {}, record });
    }
    const plan = planBuild(df, opts, graph, bases);
    for (const w of plan.warnings) out(`[WARNING] ${w.loc ? `${w.loc.file}:${w.loc.line}: ` : ''}${w.message}\n`);
    const { fh } = await openRegularFileAs(caller, p.context, `build context ${p.context}`);
    let outcome;
    try {
      outcome = await executePlan(
        {
          store: this.images.store,
          owner,
          cache: BuildCache.forOwner(this.root, owner),
          run: (imageId, a, o, onStart, sig, mounts) => this.runStep(caller, imageId, a, o, onStart, sig, mounts),
          caches: this.caches,
          secrets: new Map(Object.entries(p.secrets ?? {}).map(([k, b64]) => [k, Buffer.from(b64, 'base64')])),
          // a user's container root is the user on disk, through its idmapped binds
          diskRoot: caller.uid === 0 ? { uid: 0, gid: 0 } : { uid: caller.uid, gid: caller.gid },
          mergedRoot: (dirs) => this.mergedRoot(dirs),
        },
        { plan, bases, context: fh.createReadStream({ autoClose: false }), noCache: !!p.noCache, labels: p.labels, sourceDateEpoch: p.sourceDateEpoch, out, progress, signal },
      );
    } finally {
      await fh.close();
    }
    let record = outcome.record;
    for (const t of tags) record = await this.images.store.tag(record.id, t, owner);
    this.images.emit('event', { action: 'tag', id: record.id, image: summary(record), owner } satisfies ImageEvent);
    return { id: record.id, tags, ran: outcome.ran, cached: outcome.cached };
  }

  /** Drops the caller's cache entries and the untagged images only they kept. */
  async prune(caller: Caller): Promise<BuilderPruneResult> {
    const cache = BuildCache.forOwner(this.root, caller.uid);
    const ids = cache.images();
    const entries = cache.clear();
    const inUse = this.containers.imagesInUse();
    const deleted: string[] = [];
    for (const id of ids) {
      const r = await this.images.store.resolve(id, caller.uid);
      if (!r || r.references.length > 0 || inUse.has(id)) continue;
      const res = await this.images.store.remove(id, { inUse: (x) => inUse.has(x) }, caller.uid);
      deleted.push(...res.deleted.filter((d) => d === id));
    }
    await this.images.store.collectGarbage();
    const cacheMounts = await this.caches.prune(caller.uid);
    return { entries, deleted, cacheMounts };
  }

  /** A RUN in a container of the caller's, its output to `out` as it comes. */
  private async runStep(caller: Caller, imageId: string, a: RunAction, out: (t: string) => void, onStart: (id: string) => void, signal: AbortSignal, mounts: StepMounts): Promise<RanStep> {
    const binds: BindMount[] = mounts.mounts.map((m) =>
      m.kind === 'tmpfs'
        ? { type: 'tmpfs', source: 'tmpfs', target: m.target, readOnly: false, data: m.size !== undefined ? `size=${m.size}` : '', noexec: false }
        : { type: 'helper', source: m.source as string, target: m.target, readOnly: m.readOnly },
    );
    const idmapMounts: NonNullable<RunOptions['idmapMounts']> = mounts.mounts
      .filter((m) => m.containerIds)
      .map((m) => ({ target: m.target, uid: caller.uid, gid: caller.gid, containerUid: m.containerIds!.uid, containerGid: m.containerIds!.gid }));
    const { id } = await this.containers.createContainer(
      {
        image: imageId, cmd: a.argv, entrypoint: [], env: [...a.env, ...a.proxyEnv], workdir: a.workdir, user: a.user || undefined, pull: 'never', labels: { 'capsa.build': 'step' },
        ...(mounts.network ? { network: mounts.network } : {}),
        ...(idmapMounts.length ? { idmapMounts } : {}),
      },
      undefined,
      caller,
      undefined,
      binds,
    );
    const remove = async (): Promise<void> => {
      await this.containers.remove(id, true).catch(() => undefined);
    };
    onStart(id);
    const onAbort = (): void => void this.containers.kill(id, 'KILL').catch(() => undefined);
    signal.addEventListener('abort', onAbort);
    try {
      // cancelled while the container was made: no 'abort' event comes any more, and the step must not start
      if (signal.aborted) throw new BuildStepError('the build was cancelled');
      let exit: (code: number) => void = () => undefined;
      const exited = new Promise<number>((resolve) => (exit = resolve));
      await this.containers.startContainer(id, { output: (_s, data) => out(data.toString('utf8')), exit: (code) => exit(code) });
      // a cancel while it started found nothing running to kill
      if (signal.aborted) onAbort();
      const exitCode = await Promise.race([exited, this.containers.wait(id)]);
      if (signal.aborted) throw new BuildStepError('the build was cancelled');
      const fsv = this.containers.filesystem(id);
      // the parents of mount targets the runtime made are stubs too when nothing else is in them
      const mountPoints = [...new Set([...fsv.mountPoints, ...mounts.stubs])];
      return { exitCode, upper: fsv.upper, view: { lowers: fsv.lowers, mountPoints }, idShift: fsv.idShift, remove };
    } catch (err) {
      await remove();
      throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** The merged, read-only root of an image's layers (top first), for COPY --from. */
  private async mergedRoot(dirs: string[]): Promise<{ root: string; release(): Promise<void> }> {
    if (dirs.length === 1) return { root: dirs[0], release: async () => undefined };
    const base = path.join(this.root, 'build', 'mnt');
    await fs.promises.mkdir(base, { recursive: true, mode: 0o700 });
    const dir = await fs.promises.mkdtemp(path.join(base, 'from-'));
    if (dirs.length === 0) return { root: dir, release: () => fs.promises.rmdir(dir) };
    // mount(2) itself: a mount(8) and umount(8) process a COPY --from cost tens of milliseconds on a busy machine
    const { mount, umount2 } = libc();
    if (mount('capsa-build', dir, 'overlay', MS_RDONLY, Buffer.from(`lowerdir=${dirs.join(':')}\0`)) !== 0) {
      const code = errnoName(errno()) ?? 'an error';
      await fs.promises.rmdir(dir).catch(() => undefined);
      throw new BuildStepError(`cannot mount the layers of the --from source read-only at ${dir}: mount(2) failed with ${code}`);
    }
    return {
      root: dir,
      release: async () => {
        if (umount2(dir, 0) !== 0) throw new BuildStepError(`cannot unmount the --from source at ${dir}: umount2(2) failed with ${errnoName(errno()) ?? 'an error'}`);
        await fs.promises.rmdir(dir);
      },
    };
  }
}
