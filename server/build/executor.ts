/**
 * The build executor: carries out a plan (plan.ts), its stages as a graph
 * (schedule.ts: a stage starts when the stages it needs are done, several
 * side by side) and each stage's steps in order, telling each step's start,
 * output and end as events (progress.ts). Each step's result is an image in
 * the owner's namespace (untagged, like the classic builder's intermediate
 * images), so
 * the next step, a RUN's container and `COPY --from` all start from an image;
 * the cache (cache.ts) maps each step's key (cachekey.ts) to that image.
 *
 * - config steps (ENV, CMD, LABEL, …): a new config and an empty_layer
 *   history entry; no layer.
 * - RUN: `deps.run` runs the argv in a container of the caller's (the
 *   container service's own rules: a user's is unprivileged, in a user
 *   namespace) with its --mount, heredoc script and --network (runmounts.ts);
 *   its upper directory becomes the layer (capture.commitLayer).
 * - COPY/ADD, WORKDIR: the files are written into an empty staging directory
 *   that becomes the layer the same way (copystep.ts: sources, ADD's
 *   archives and URLs, heredocs; ADD URLs without --checksum are fetched
 *   before the steps are keyed, since their keys cover the content).
 *
 * Everything it writes is under one store lease until the final image's
 * record exists; a cancelled build leaves the intermediate images of steps
 * that finished (they are the cache) and nothing else: no tag, no container.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { commitLayer, type IdShift } from '../image/layer/capture';
import { writeImage } from '../image/commit/assemble';
import type { ImageRecord, ImageStore, Lease } from '../image/store';
import type { ContainerConfig, ImageConfig } from '../image/types';
import { BuildCache } from './cache';
import { contextFilesRead, planKeys } from './cachekey';
import { spoolContextTar, type ContextManifest } from './context';
import { mkdirParents, parseChown, walkTree, type ExistingDir } from './copy';
import { writeCopyStep } from './copystep';
import { isRemoteSource, prefetchRemotes, type RemoteFile } from './remote';
import { BuildContextError } from './errors';
import { configOf, dockerHealthcheck, emptyConfig } from './expand';
import type { BaseImage, BuildPlan, PlannedStage, SourceOrigin, StageConfig, Step, StepAction } from './plan';
import type { BuildStepEvent } from './progress';
import { DEFAULT_PARALLEL_STAGES, scheduleStages } from './schedule';
import { prepareRunMounts, type StepMounts } from './runmounts';
import type { CacheMounts } from './cachemounts';
import { BuildStepError } from './steperror';

export type RunAction = Extract<StepAction, { kind: 'run' }>;

/** A RUN's container after its process ended: what commit needs, and its removal. */
export interface RanStep {
  exitCode: number;
  upper: string;
  view: { lowers: string[]; mountPoints: string[] };
  idShift?: IdShift;
  /** Removes the container (always called). */
  remove(): Promise<void>;
}

export interface ExecutorDeps {
  store: ImageStore;
  owner: number;
  cache: BuildCache;
  /** Runs `action` in a container from image `imageId` with `mounts` (runmounts.ts); `onStart` gets its id before the process runs. */
  run(imageId: string, action: RunAction, out: (text: string) => void, onStart: (id: string) => void, signal: AbortSignal, mounts: StepMounts): Promise<RanStep>;
  /** The owner's cache mounts, and the ids its containers' root has on disk (runmounts.ts). */
  caches: CacheMounts;
  diskRoot: { uid: number; gid: number };
  /** `--secret` contents by id. */
  secrets?: ReadonlyMap<string, Buffer>;
  /** Mounts the merged root of `layerDirs` read-only somewhere; returns the path and its unmount. */
  mergedRoot(layerDirs: string[]): Promise<{ root: string; release(): Promise<void> }>;
}

export interface ExecuteOptions {
  plan: BuildPlan;
  bases: ReadonlyMap<string, BaseImage & { record: ImageRecord }>;
  /** The context tar as the caller sent it. */
  context: AsyncIterable<Uint8Array>;
  noCache: boolean;
  labels?: Record<string, string>;
  /**
   * SOURCE_DATE_EPOCH (seconds): every image's `created`, its history's
   * times and no file's mtime in a layer later than it, for images that are
   * the same bytes on every machine (reproducible-builds.org).
   */
  sourceDateEpoch?: number;
  /** Text outside any step (RUN's and COPY's own output goes to `progress`, per step). */
  out(text: string): void;
  /** Each step's start, output, cache hit and end. */
  progress(event: BuildStepEvent): void;
  /** Stages built side by side at most (DEFAULT_PARALLEL_STAGES). */
  parallel?: number;
  signal: AbortSignal;
}

export interface BuildOutcome {
  record: ImageRecord;
  ran: number;
  cached: number;
}

const short = (id: string): string => id.replace(/^sha256:/, '').slice(0, 12);

export function containerConfig(c: StageConfig): ContainerConfig {
  return {
    Env: c.env,
    ...(c.cmd ? { Cmd: c.cmd } : {}),
    ...(c.entrypoint ? { Entrypoint: c.entrypoint } : {}),
    ...(c.workdir && c.workdir !== '/' ? { WorkingDir: c.workdir } : {}),
    ...(c.user ? { User: c.user } : {}),
    ...(Object.keys(c.labels).length ? { Labels: c.labels } : {}),
    ...(c.exposedPorts.length ? { ExposedPorts: Object.fromEntries(c.exposedPorts.map((p) => [p, {}])) } : {}),
    ...(c.volumes.length ? { Volumes: Object.fromEntries(c.volumes.map((p) => [p, {}])) } : {}),
    ...(c.stopSignal ? { StopSignal: c.stopSignal } : {}),
    ...(c.healthcheck ? { Healthcheck: dockerHealthcheck(c.healthcheck) } : {}),
    ...(c.shell.join('\0') !== '/bin/sh\0-c' ? { Shell: c.shell } : {}),
    ...(c.onBuild.length ? { OnBuild: c.onBuild } : {}),
  } as ContainerConfig;
}

export async function executePlan(deps: ExecutorDeps, o: ExecuteOptions): Promise<BuildOutcome> {
  const { store } = deps;
  return store.withLease('build', async (lease) => {
    // the context's copy goes with the build, however it ends (the lease alone would leave it to a later gc)
    const staging = await store.stagingDir(lease);
    const ctxRoot = path.join(staging, 'context');
    try {
      const { manifest, keys, remotes } = await unpackContext(deps, { ...o, context: untilAborted(o.context, o.signal) }, ctxRoot, path.join(staging, 'remote'));
      // Step numbers are fixed by plan order, whatever order the stages run in.
      const first = new Map<number, number>();
      let total = 0;
      for (const st of o.plan.stages) {
        first.set(st.index, total + 1);
        total += 1 + st.steps.length;
      }
      const results = new Map<number, ImageRecord | undefined>();
      const tally = { ran: 0, cached: 0 };
      // Aborted by the caller's signal or by the first failing stage: either way every running step ends.
      const stop = new AbortController();
      const onAbort = (): void => stop.abort();
      if (o.signal.aborted) stop.abort();
      o.signal.addEventListener('abort', onAbort);
      try {
        await scheduleStages(o.plan.stages, o.parallel ?? DEFAULT_PARALLEL_STAGES, stop, async (st) => {
          results.set(st.index, await buildStage(deps, lease, st, { o, keys, total, first: first.get(st.index) as number, ctxRoot, manifest, remotes, results, tally, signal: stop.signal }));
        });
      } finally {
        o.signal.removeEventListener('abort', onAbort);
      }
      let last = results.get(o.plan.stages[o.plan.stages.length - 1]?.index ?? -1);
      if (!last) throw new BuildContextError('the build has no stage');
      if (o.labels && Object.keys(o.labels).length > 0) {
        const c = await store.config(last);
        const cc = { ...(c.config ?? {}), Labels: { ...(c.config?.Labels ?? {}), ...o.labels } };
        last = await writeImage(store, lease, { parent: { record: last, config: c }, layers: [], config: cc, history: [], created: createdAt(o) }, deps.owner);
      }
      return { record: last, ...tally };
    } finally {
      await fs.promises.rm(staging, { recursive: true, force: true });
    }
  });
}

interface StageRun {
  o: ExecuteOptions;
  keys: ReturnType<typeof planKeys>;
  total: number;
  /** The number of the stage's FROM step. */
  first: number;
  ctxRoot: string;
  manifest: ContextManifest;
  remotes: ReadonlyMap<string, RemoteFile>;
  results: Map<number, ImageRecord | undefined>;
  tally: { ran: number; cached: number };
  /** The scheduler's: aborted when the build is cancelled or another stage failed. */
  signal: AbortSignal;
}

/** One stage, its FROM then its steps in order; each step's events name its number. */
async function buildStage(deps: ExecutorDeps, lease: Lease, st: PlannedStage, r: StageRun): Promise<ImageRecord> {
  const { store } = deps;
  const { o } = r;
  const stage = stageLabel(st, o.plan);
  const count = st.steps.length + 1;
  const begin = (n: number, pos: number, instruction: string): number => {
    o.progress({ kind: 'start', step: n, total: r.total, stage, pos, count, instruction });
    return Date.now();
  };
  let n = r.first;
  let t0 = begin(n, 1, `FROM ${fromText(st)}`);
  let image: ImageRecord | undefined = st.base.kind === 'stage' ? r.results.get(st.base.index) : st.base.kind === 'image' ? o.bases.get(st.base.ref)?.record : undefined;
  let config: StageConfig = st.base.kind === 'stage' ? stageConfigOf(await imageConfigOf(store, r.results.get(st.base.index))) : st.base.kind === 'image' ? configOf(o.bases.get(st.base.ref) as BaseImage) : emptyConfig();
  o.progress({ kind: 'done', step: n, ...(image ? { id: image.id } : {}), ms: Date.now() - t0 });
  const stepKeys = r.keys.steps.get(st.index) ?? [];
  for (const [i, step] of st.steps.entries()) {
    if (r.signal.aborted) throw new BuildStepError('the build was cancelled');
    const num = ++n;
    t0 = begin(num, i + 2, step.original);
    // runStep reads the options: its output is this step's, its signal the scheduler's
    const so: ExecuteOptions = { ...o, out: (text) => o.progress({ kind: 'output', step: num, text }), signal: r.signal };
    try {
      const key = stepKeys[i];
      const hit = o.noCache ? undefined : deps.cache.get(key);
      const hitRecord = hit ? await store.resolve(hit, deps.owner) : undefined;
      config = nextConfig(config, step);
      if (hitRecord) {
        o.progress({ kind: 'cached', step: num });
        image = hitRecord;
        r.tally.cached++;
      } else {
        image = await runStep(deps, lease, { step, image, config, ctxRoot: r.ctxRoot, manifest: r.manifest, results: r.results, o: so, n: num, remotes: r.remotes });
        deps.cache.set(key, image.id);
        r.tally.ran++;
      }
    } catch (err) {
      const ms = Date.now() - t0;
      o.progress(r.signal.aborted ? { kind: 'cancelled', step: num, ms } : { kind: 'failed', step: num, message: err instanceof Error ? err.message : String(err), ms });
      throw r.signal.aborted && !(err instanceof BuildStepError) ? new BuildStepError('the build was cancelled') : err;
    }
    o.progress({ kind: 'done', step: num, id: image.id, ms: Date.now() - t0 });
  }
  return image ?? (await writeStep(store, lease, deps.owner, undefined, config, [], { created_by: 'FROM scratch', empty_layer: true }, o));
}

/** The stage as BuildKit's progress names it: its name, else `stage-N`, and nothing for an unnamed target. */
function stageLabel(st: PlannedStage, plan: BuildPlan): string {
  return st.name ?? (st.index === plan.target ? '' : `stage-${st.index}`);
}

/** The context's bytes until `signal` aborts: a cancel during a large context stops the unpacking. */
async function* untilAborted(source: AsyncIterable<Uint8Array>, signal: AbortSignal): AsyncIterable<Uint8Array> {
  for await (const chunk of source) {
    if (signal.aborted) throw new BuildStepError('the build was cancelled');
    yield chunk;
  }
}

interface StepCtx {
  step: Step;
  image: ImageRecord | undefined;
  config: StageConfig;
  ctxRoot: string;
  manifest: ContextManifest;
  results: Map<number, ImageRecord | undefined>;
  o: ExecuteOptions;
  n: number;
  /** ADD URLs fetched before keying. */
  remotes: ReadonlyMap<string, RemoteFile>;
}

async function runStep(deps: ExecutorDeps, lease: Lease, s: StepCtx): Promise<ImageRecord> {
  const { store, owner } = deps;
  const a = s.step.action;
  const loc = s.step.loc;
  const history = { created_by: s.step.createdBy };
  if (a.kind === 'config') return writeStep(store, lease, owner, s.image, s.config, [], { ...history, empty_layer: true }, s.o);
  if (a.kind === 'run') {
    const base = s.image ?? (await writeStep(store, lease, owner, undefined, s.config, [], { created_by: 'FROM scratch', empty_layer: true }, s.o));
    const imageOf = (x: SourceOrigin): ImageRecord | undefined => (x.kind === 'stage' ? s.results.get(x.index) : x.kind === 'image' ? s.o.bases.get(x.ref)?.record : undefined);
    const mounts = await prepareRunMounts({ store, lease, owner, diskRoot: deps.diskRoot, caches: deps.caches, ctxRoot: s.ctxRoot, manifest: s.manifest, imageOf, mergedRoot: deps.mergedRoot, signal: s.o.signal, secrets: deps.secrets }, a, loc);
    let ctr = '';
    let r: RanStep;
    try {
      r = await deps.run(base.id, a, s.o.out, (id) => {
        ctr = id;
        s.o.out(` ---> Running in ${short(id)}\n`);
      }, s.o.signal, mounts);
    } catch (err) {
      await mounts.release();
      throw err;
    }
    try {
      if (s.o.signal.aborted) throw new BuildStepError('the build was cancelled');
      if (r.exitCode !== 0) {
        throw new BuildStepError(`${loc.file}:${loc.line}: step ${s.n} (${s.step.original}) failed: the command returned a non-zero code: ${r.exitCode}`, r.exitCode);
      }
      const layer = await commitLayer(store, lease, r.upper, { view: r.view, idShift: r.idShift, signal: s.o.signal, sourceDateEpoch: s.o.sourceDateEpoch });
      return await writeStep(store, lease, owner, base, s.config, [layer], history, s.o);
    } finally {
      await r.remove();
      await mounts.release();
      if (ctr) s.o.out(`Removing intermediate container ${short(ctr)}\n`);
    }
  }
  const upper = await store.stagingDir(lease);
  try {
    if (a.kind === 'workdir') {
      const own = parseChown(/^\d+(:\d+)?$/.test(a.user) ? a.user : '', loc);
      await mkdirParents(upper, a.path, { owner: own, existing: existingDirIn(s.image ? await store.layerDirs(s.image) : []) });
    } else {
      const layerDirs = s.image ? await store.layerDirs(s.image) : [];
      const scratch = await store.stagingDir(lease);
      const input = { action: a, loc, upper, scratch, layerDirs, destIsDir: await isDirIn(layerDirs, a.dest), existing: existingDirIn(layerDirs), remotes: s.remotes, signal: s.o.signal };
      try {
        const local = a.sources.some((x) => !isRemoteSource(x));
        if (a.origin.kind === 'context' || !local) await writeCopyStep({ ...input, ...(local ? { source: { root: s.ctxRoot, manifest: s.manifest } } : {}) });
        else {
          const from = a.origin.kind === 'stage' ? s.results.get(a.origin.index) : s.o.bases.get(a.origin.ref)?.record;
          if (!from) throw new BuildContextError(`${loc.file}:${loc.line}: the source of --from was not built`);
          const layers = await store.layerDirs(from);
          const merged = await deps.mergedRoot(layers);
          try {
            await writeCopyStep({ ...input, source: { root: merged.root, manifest: await walkTree(merged.root, layers) } });
          } finally {
            await merged.release();
          }
        }
      } finally {
        await fs.promises.rm(scratch, { recursive: true, force: true });
      }
    }
    const layer = await commitLayer(store, lease, upper, { signal: s.o.signal, adopt: true, sourceDateEpoch: s.o.sourceDateEpoch });
    return await writeStep(store, lease, owner, s.image, s.config, [layer], history, s.o);
  } finally {
    await fs.promises.rm(upper, { recursive: true, force: true });
  }
}

/** An image's `created`: SOURCE_DATE_EPOCH when set, else now. */
function createdAt(o: Pick<ExecuteOptions, 'sourceDateEpoch'>): string {
  return new Date(o.sourceDateEpoch !== undefined ? o.sourceDateEpoch * 1000 : Date.now()).toISOString();
}

async function writeStep(
  store: ImageStore,
  lease: Lease,
  owner: number,
  parent: ImageRecord | undefined,
  c: StageConfig,
  layers: Awaited<ReturnType<typeof commitLayer>>[],
  history: { created_by: string; empty_layer?: boolean },
  o: Pick<ExecuteOptions, 'sourceDateEpoch'>,
): Promise<ImageRecord> {
  const created = createdAt(o);
  const p = parent ? { record: parent, config: await store.config(parent) } : undefined;
  return writeImage(store, lease, { parent: p, layers, config: containerConfig(c), history: [{ created, ...history }], created }, owner);
}

/** The config after `step`: a config step's changes; WORKDIR's directory. */
function nextConfig(c: StageConfig, step: Step): StageConfig {
  const a = step.action;
  if (a.kind === 'config') return { ...c, ...a.set };
  if (a.kind === 'workdir') return { ...c, workdir: a.path };
  return c;
}

async function imageConfigOf(store: ImageStore, r: ImageRecord | undefined): Promise<ImageConfig | undefined> {
  return r ? store.config(r) : undefined;
}

function stageConfigOf(c: ImageConfig | undefined): StageConfig {
  if (!c) return emptyConfig();
  return configOf({ digest: '', config: c.config ?? {} });
}

function fromText(st: PlannedStage): string {
  const b = st.base;
  const what = b.kind === 'scratch' ? 'scratch' : b.kind === 'image' ? b.ref : `stage ${b.index}`;
  return st.name ? `${what} AS ${st.name}` : what;
}

/** Whether `p` is a directory in the image whose layers are `dirs` (top first), a whiteout ending the search. */
async function isDirIn(dirs: string[], p: string): Promise<boolean> {
  const rel = p.replace(/^\/+|\/+$/g, '');
  if (rel === '') return true;
  for (const d of dirs) {
    try {
      const st = await fs.promises.lstat(path.join(d, rel));
      return st.isDirectory();
    } catch {
      try {
        await fs.promises.lstat(path.join(d, path.dirname(rel), '.wh.' + path.basename(rel)));
        return false;
      } catch {
        /* not in this layer */
      }
    }
  }
  return false;
}

/** Owner and mode of a directory of the image whose layers are `dirs` (top first), for the layer's copy of it. */
function existingDirIn(dirs: string[]): ExistingDir {
  return async (rel) => {
    if (!(await isDirIn(dirs, rel))) return undefined;
    for (const d of dirs) {
      const st = await fs.promises.lstat(path.join(d, rel)).catch(() => undefined);
      if (st) return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    }
    return undefined;
  };
}

/**
 * Reads the caller's context tar (its manifest and digests) and writes out
 * under `root` (a staging directory of the helper's) only the files of the
 * steps that will run: those with no usable cache entry, or all with
 * --no-cache. A rebuild where nothing changed writes none. Returns the
 * manifest and the steps' keys (the build's, computed once), and the ADD
 * URLs without --checksum, fetched first since their keys cover their content.
 */
async function unpackContext(deps: ExecutorDeps, o: ExecuteOptions, root: string, remoteDir: string): Promise<{ manifest: ContextManifest; keys: ReturnType<typeof planKeys>; remotes: Map<string, RemoteFile> }> {
  const ctx = await spoolContextTar(o.context, root);
  const remotes = await prefetchRemotes(o.plan, remoteDir, o.signal);
  const keys = planKeys(o.plan, o.bases, ctx.manifest, remotes, o.sourceDateEpoch);
  const willRun = async (key: string): Promise<boolean> => {
    if (o.noCache) return true;
    const hit = deps.cache.get(key);
    return !hit || !(await deps.store.resolve(hit, deps.owner));
  };
  await ctx.stage(await contextFilesRead(o.plan, keys.steps, ctx.manifest, willRun));
  return { manifest: ctx.manifest, keys, remotes };
}
