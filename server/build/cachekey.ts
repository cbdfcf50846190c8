/**
 * Cache keys: one deterministic key a step, the sha256 of a canonical JSON
 * of what decides the step's result and nothing else:
 *
 * - the parent: the previous step's key, or for the first step the base
 *   (the image's config digest, `scratch`, or the last key of the stage it
 *   starts from) and the platform;
 * - the step's action after expansion (for RUN its argv, environment with
 *   the ARGs in scope, mounts, user, workdir; proxy variables left out, as
 *   Docker leaves them out);
 * - for COPY/ADD from the context, each selected entry's path below its
 *   source, type, mode, size, content digest or link target, and the owner
 *   the copy gives (`--chown`, else 0:0): never mtimes, so touching a file
 *   or cloning the project elsewhere keeps the key;
 * - for ADD of a URL, the fetched content's digest, the file name and its
 *   Last-Modified (remote.ts prefetches it), or with --checksum the checksum
 *   and name (the content must be that);
 * - for COPY --from and RUN --mount=from, the other stage's last key or the
 *   image's digest; for a bind mount of the context, its files as COPY's.
 *
 * Locations and the Dockerfile's own text are left out: the same
 * instruction with the same inputs in another project has the same key.
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { resolveInContext, subtree, type ContextEntry, type ContextManifest } from './context';
import { PatternMatcher } from './dockerignore';
import { BuildContextError, type SourceLocation } from './errors';
import type { BaseImage, BuildPlan, SourceOrigin, Step } from './plan';
import { isGitSource, isRemoteSource, remoteKeyFacts, remoteName, type RemoteFile } from './remote';

export const KEY_VERSION = 1;

/** JSON with object keys sorted, so equal values give equal text. */
export function canonicalJson(v: unknown): string {
  if (v === undefined) return 'null';
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return '[' + v.map(canonicalJson).join(',') + ']';
  const o = v as Record<string, unknown>;
  return '{' + Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => JSON.stringify(k) + ':' + canonicalJson(o[k])).join(',') + '}';
}

const sha = (s: string): string => 'sha256:' + createHash('sha256').update(s).digest('hex');

const WILDCARD = /[*?[]/;

/** Go's filepath.Match for a whole slash path: `*` and `?` never cross `/`. */
function matchPath(pattern: string, p: string): boolean {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < pattern.length) re += '\\' + pattern[++i];
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) return false;
      re += '[' + pattern.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\') + ']';
      i = end;
    } else re += c.replace(/[.+()|{}$^\]]/g, '\\$&');
  }
  try {
    return new RegExp(re + '$').test(p);
  } catch {
    return false;
  }
}

export interface SelectedFile {
  /** Which source (by position) selected it, and its path below that source (`.` for the source itself). */
  source: number;
  rel: string;
  entry: ContextEntry;
  /** A path the source names or its wildcard matched (not one below a directory it names). */
  top?: boolean;
}

/**
 * The context entries a COPY/ADD (or a bind mount) reads: each source
 * resolved inside the context (its own symlinks followed, never out of the
 * context), a directory with everything under it, wildcards matched per
 * path, `--exclude` patterns applied below each source. A source that
 * selects nothing is an error naming it, as Docker's "not found".
 */
export function selectSources(m: ContextManifest, sources: readonly string[], exclude: readonly string[], loc?: SourceLocation): SelectedFile[] {
  const ex = exclude.length > 0 ? new PatternMatcher(exclude) : undefined;
  const out: SelectedFile[] = [];
  const where = loc ? `${loc.file}:${loc.line}: ` : '';
  sources.forEach((src, source) => {
    // `name`: the path a wildcard matched, before its links were followed (what the copy is called).
    const roots: { path: string; entry?: ContextEntry; name?: string }[] = [];
    if (WILDCARD.test(src)) {
      const depth = src.split('/').length;
      for (const e of m) if (e.path.split('/').length === depth && matchPath(src, e.path)) roots.push({ ...(resolveInContext(m, e.path) ?? { path: e.path, entry: e }), name: e.path });
    } else {
      const r = resolveInContext(m, src);
      if (r) roots.push(r);
    }
    if (roots.length === 0) throw new BuildContextError(`${where}"/${src}": not found in the build context`, src);
    for (const r of roots) {
      if (r.entry && r.entry.type !== 'dir') {
        out.push({ source, rel: WILDCARD.test(src) ? path.posix.basename(r.name ?? r.path) : '.', entry: r.entry, top: true });
        continue;
      }
      // A directory, named or matched by a wildcard, gives its contents (Docker never copies the directory itself).
      if (r.entry) out.push({ source, rel: '.', entry: r.entry, top: true });
      for (const e of subtree(m, r.path)) {
        const below = r.path === '.' ? e.path : e.path.slice(r.path.length + 1);
        if (ex?.matches(below)) continue;
        out.push({ source, rel: below, entry: e });
      }
    }
  });
  return out;
}

/** A `--mount` source as BuildKit reads it (`path.Join("/", source)`): relative to its root, `..` stopping there. */
export function mountSource(source: string | undefined): string {
  return path.posix.normalize('/' + (source ?? '')).replace(/^\/+|\/+$/g, '') || '.';
}

function fileFacts(files: SelectedFile[], owner: string): unknown[] {
  return files.map(({ source, rel, entry }) => [source, rel, entry.type, entry.mode, entry.size, entry.digest ?? entry.linkTarget ?? '', owner]);
}

/** What a step's key covers besides its parent; `lookups` gives other stages' keys and images' digests. */
export function keyInputs(
  step: Step,
  context: ContextManifest | undefined,
  origin: (o: SourceOrigin) => string,
  remotes?: ReadonlyMap<string, RemoteFile>,
): unknown {
  const a = step.action;
  if (a.kind === 'run') {
    const { proxyEnv: _proxy, ...rest } = a;
    void _proxy;
    const mounts = a.mounts.map((mt) => {
      if (mt.origin) return { ...mt, content: origin(mt.origin) };
      if (mt.type !== 'bind') return mt;
      if (!context) throw new BuildContextError('a RUN --mount=type=bind of the context needs the context manifest');
      return { ...mt, files: fileFacts(selectSources(context, [mountSource(mt.source)], []), '') };
    });
    return { ...rest, mounts };
  }
  if (a.kind === 'copy' || a.kind === 'add') {
    const owner = a.chown ?? '0:0';
    let content: unknown;
    if (a.origin.kind === 'context') {
      const local = a.sources.filter((s) => !isRemoteSource(s));
      if (local.length > 0 && !context) throw new BuildContextError(`${step.loc.file}:${step.loc.line}: the step reads the context, but no context manifest was given`);
      content = local.length > 0 && context ? fileFacts(selectSources(context, local, a.exclude, step.loc), owner) : [];
    } else content = origin(a.origin);
    const urls = a.sources.filter(isRemoteSource);
    if (urls.length === 0) return { ...a, content };
    const remote = urls.map((u) => {
      if (isGitSource(u)) return { git: u };
      if (a.checksum !== undefined) return { checksum: a.checksum, name: remoteName(u) };
      const r = remotes?.get(u);
      if (!r) throw new BuildContextError(`${step.loc.file}:${step.loc.line}: ADD ${u}: its content must be fetched before the step is keyed`);
      return remoteKeyFacts(r);
    });
    return { ...a, content, remote };
  }
  return a;
}

/** One step's key. */
export function stepKey(parent: string, inputs: unknown): string {
  return sha(canonicalJson({ v: KEY_VERSION, parent, inputs }));
}

/**
 * Every step's key, stage by stage in the plan's order: `keys.get(index)`
 * lists a stage's step keys; `stageKey` is its last (its base's key when it
 * has no step). `bases` gives the images' digests; `context` the manifest;
 * `remotes` the ADD URLs fetched for keying (remote.prefetchRemotes).
 * `sourceDateEpoch` (SOURCE_DATE_EPOCH) is in every key when set: its
 * layers' mtimes and times differ from another epoch's, or none.
 */
export function planKeys(
  plan: BuildPlan,
  bases: ReadonlyMap<string, BaseImage>,
  context?: ContextManifest,
  remotes?: ReadonlyMap<string, RemoteFile>,
  sourceDateEpoch?: number,
): { steps: Map<number, string[]>; stageKey: Map<number, string> } {
  const steps = new Map<number, string[]>();
  const stageKey = new Map<number, string>();
  const origin = (o: SourceOrigin): string => {
    if (o.kind === 'stage') {
      const k = stageKey.get(o.index);
      if (k === undefined) throw new BuildContextError(`stage ${o.index} has no key yet: the plan is out of order`);
      return k;
    }
    if (o.kind === 'image') {
      const b = bases.get(o.ref);
      if (!b) throw new BuildContextError(`image ${JSON.stringify(o.ref)} was not resolved`);
      return b.digest;
    }
    return 'context';
  };
  for (const st of plan.stages) {
    const b = st.base;
    const root = b.kind === 'stage' ? origin(b) : b.kind === 'scratch' ? 'scratch' : origin({ kind: 'image', ref: b.ref });
    let parent = sha(canonicalJson({ v: KEY_VERSION, base: root, platform: st.platform, ...(sourceDateEpoch !== undefined ? { sourceDateEpoch } : {}) }));
    const keys: string[] = [];
    for (const s of st.steps) {
      parent = stepKey(parent, keyInputs(s, context, origin, remotes));
      keys.push(parent);
    }
    steps.set(st.index, keys);
    stageKey.set(st.index, parent);
  }
  return { steps, stageKey };
}

/**
 * The context files the steps that will run read: each COPY/ADD from the
 * context (and RUN bind mount of it) for which `willRun(key)` holds, its
 * selection as its key covers it. The rest of the context need not be
 * written out at all (context.spoolContextTar).
 */
export async function contextFilesRead(plan: BuildPlan, keys: ReadonlyMap<number, string[]>, context: ContextManifest, willRun: (key: string) => Promise<boolean>): Promise<ContextEntry[]> {
  const out: ContextEntry[] = [];
  for (const st of plan.stages) {
    const stepKeys = keys.get(st.index) ?? [];
    for (const [i, step] of st.steps.entries()) {
      const a = step.action;
      let sources: string[] = [];
      let exclude: readonly string[] = [];
      if ((a.kind === 'copy' || a.kind === 'add') && a.origin.kind === 'context') {
        sources = a.sources.filter((s) => !/^(https?:\/\/|git@|git:\/\/)/.test(s));
        exclude = a.exclude;
      } else if (a.kind === 'run') sources = a.mounts.filter((mt) => mt.type === 'bind' && !mt.origin).map((mt) => mt.source ?? '.');
      if (sources.length === 0 || !(await willRun(stepKeys[i]))) continue;
      for (const f of selectSources(context, sources, exclude, step.loc)) out.push(f.entry);
    }
  }
  return out;
}
