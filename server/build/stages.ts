/**
 * Stages: a parsed Dockerfile cut at its FROM lines, and the graph of what
 * the target needs. A stage depends on the stage its FROM names (only a
 * stage defined above it: a later name is an image, as in BuildKit), and on
 * every stage a `COPY --from=` or `RUN --mount=from=` names, by name or by
 * index (those may name any stage; a cycle is an error). What is not a stage
 * there is an image.
 *
 * FROM lines are expanded here, with the global ARGs (before the first
 * FROM, `--build-arg` over their defaults) and the platform arguments;
 * `--from` values with those and the stage's own ARGs above the line.
 */
import { DockerfileError, ExpansionError, type SourceLocation } from './errors';
import { parseDockerfile, type ParseResult } from './dockerfile/parser';
import { parseInstruction, type Instruction } from './dockerfile/instructions';
import { lex, type Env } from './shell/lex';
import { canonicalPlatform, parsePlatform } from '../image/platform';
import type { SourceOrigin, StageBase } from './plan';

type Of<K extends Instruction['kind']> = Extract<Instruction, { kind: K }>;

export interface StageSource {
  index: number;
  name?: string;
  from: Of<'from'>;
  instructions: Instruction[];
}

export interface Dockerfile {
  file: string;
  directives: Record<string, string>;
  escapeToken: string;
  warnings: ParseResult['warnings'];
  /** ARGs before the first FROM. */
  globalArgs: Of<'arg'>[];
  stages: StageSource[];
}

/** Parses and types a Dockerfile and cuts it into stages. */
export function loadDockerfile(input: string | Buffer, file = 'Dockerfile'): Dockerfile {
  const parsed = parseDockerfile(input, file);
  if (parsed.nodes.length === 0) throw new DockerfileError({ file, line: 1 }, 'file with no instructions');
  const globalArgs: Of<'arg'>[] = [];
  const stages: StageSource[] = [];
  for (const node of parsed.nodes) {
    const ins = parseInstruction(node, file);
    if (ins.kind === 'from') {
      const names = new Set(stages.map((s) => s.name));
      if (ins.stageName !== undefined && names.has(ins.stageName)) {
        throw new DockerfileError(ins.loc, `duplicate stage name ${JSON.stringify(ins.stageName)}`);
      }
      stages.push({ index: stages.length, ...(ins.stageName !== undefined ? { name: ins.stageName } : {}), from: ins, instructions: [] });
    } else if (stages.length === 0) {
      if (ins.kind !== 'arg') throw new DockerfileError(ins.loc, `no build stage in current context: ${node.name} before the first FROM`);
      globalArgs.push(ins);
    } else {
      stages[stages.length - 1].instructions.push(ins);
    }
  }
  if (stages.length === 0) throw new DockerfileError({ file, line: 1 }, 'the Dockerfile has no FROM: no build stage');
  return { file, directives: parsed.directives, escapeToken: parsed.escapeToken, warnings: parsed.warnings, globalArgs, stages };
}

/** Expands `word` at `loc`; expansion failures become DockerfileErrors there. */
export function expandAt(loc: SourceLocation, word: string, env: Env, escapeToken: string): string {
  try {
    return lex(word, env, { escapeToken }).word;
  } catch (err) {
    if (err instanceof ExpansionError) throw new DockerfileError(loc, err.message);
    throw err;
  }
}

/** The global scope: each global ARG's value (`--build-arg` over its expanded default) over the platform arguments. */
export function globalScope(df: Dockerfile, buildArgs: ReadonlyMap<string, string>, platform: ReadonlyMap<string, string>): Map<string, string> {
  const scope = new Map(platform);
  for (const a of df.globalArgs) {
    for (const { name, default: def } of a.args) {
      const given = buildArgs.get(name);
      if (given !== undefined) scope.set(name, given);
      else if (def !== undefined) scope.set(name, expandAt(a.loc, def, (n) => scope.get(n), df.escapeToken));
    }
  }
  return scope;
}

export interface StageNode {
  index: number;
  name?: string;
  base: StageBase;
  /** For each instruction (by position) that names another stage or an image: where it reads from. */
  origins: Map<number, SourceOrigin[]>;
  dependsOn: number[];
}

export interface StageGraph {
  stages: StageNode[];
  target: number;
  /** Stages the target needs, each after its dependencies, the target last. */
  order: number[];
  waves: number[][];
  /** Images to resolve before planning: FROM bases and COPY/mount sources of needed stages. */
  images: string[];
  /** The platform (`os/arch[/variant]`) each of `images` is wanted for: its FROM's `--platform`, else the target's. */
  imagePlatforms: Map<string, string>;
}

function findStage(df: Dockerfile, ref: string, loc: SourceLocation, before?: number): number | undefined {
  const lower = ref.toLowerCase();
  const byName = df.stages.find((s) => s.name === lower && (before === undefined || s.index < before));
  if (byName) return byName.index;
  if (before === undefined && /^\d+$/.test(ref)) {
    const i = Number(ref);
    if (i >= df.stages.length) throw new DockerfileError(loc, `invalid stage index ${i}: the Dockerfile has ${df.stages.length} stage${df.stages.length === 1 ? '' : 's'}`);
    return i;
  }
  return undefined;
}

/**
 * The stage graph for `target` (a stage name, or the last stage). `scope`
 * is the global scope (globalScope()); a stage's ARGs above a `--from` add
 * to it (their defaults, or `--build-arg`s).
 */
export function stageGraph(df: Dockerfile, scope: ReadonlyMap<string, string>, buildArgs: ReadonlyMap<string, string>, target?: string): StageGraph {
  const esc = df.escapeToken;
  const nodes: StageNode[] = df.stages.map((s) => {
    const image = expandAt(s.from.loc, s.from.image, (n) => scope.get(n), esc);
    if (image.trim() === '') throw new DockerfileError(s.from.loc, `base name (${s.from.image}) should not be blank`);
    const platform = s.from.platform !== undefined ? expandAt(s.from.loc, s.from.platform, (n) => scope.get(n), esc) : undefined;
    const prev = findStage(df, image, s.from.loc, s.index);
    const base: StageBase =
      prev !== undefined ? { kind: 'stage', index: prev } : image.toLowerCase() === 'scratch' ? { kind: 'scratch' } : { kind: 'image', ref: image, ...(platform ? { platform } : {}) };
    const local = new Map<string, string>();
    const env: Env = (n) => local.get(n) ?? undefined;
    const origins = new Map<number, SourceOrigin[]>();
    const deps = new Set<number>(base.kind === 'stage' ? [base.index] : []);
    const originOf = (ref: string, loc: SourceLocation): SourceOrigin => {
      const word = expandAt(loc, ref, env, esc);
      if (word === '') throw new DockerfileError(loc, `--from of ${JSON.stringify(ref)} is empty after expansion`);
      const i = findStage(df, word, loc);
      if (i !== undefined) {
        deps.add(i);
        return { kind: 'stage', index: i };
      }
      return { kind: 'image', ref: word };
    };
    s.instructions.forEach((ins, pos) => {
      if (ins.kind === 'arg') {
        for (const { name, default: def } of ins.args) {
          const v = buildArgs.get(name) ?? (def !== undefined ? expandAt(ins.loc, def, env, esc) : scope.get(name));
          if (v !== undefined) local.set(name, v);
        }
      } else if (ins.kind === 'copy' && ins.from !== undefined) {
        origins.set(pos, [originOf(ins.from, ins.loc)]);
      } else if (ins.kind === 'run') {
        const list = ins.mounts.filter((m) => m.from !== undefined && (m.type === 'bind' || m.type === 'cache')).map((m) => originOf(m.from as string, ins.loc));
        if (list.length > 0) origins.set(pos, list);
      }
    });
    return { index: s.index, ...(s.name !== undefined ? { name: s.name } : {}), base, origins, dependsOn: [...deps].sort((a, b) => a - b) };
  });

  let targetIndex = nodes.length - 1;
  if (target !== undefined) {
    const t = df.stages.find((s) => s.name === target.toLowerCase());
    if (!t) throw new DockerfileError(undefined, `target stage ${JSON.stringify(target)} could not be found in ${df.file}`);
    targetIndex = t.index;
  }

  // Depth-first from the target: the order, and a cycle named by its stages.
  const order: number[] = [];
  const state = new Map<number, 'visiting' | 'done'>();
  const label = (i: number): string => nodes[i].name ?? String(i);
  const visit = (i: number, path: number[]): void => {
    const st = state.get(i);
    if (st === 'done') return;
    if (st === 'visiting') {
      const cycle = [...path.slice(path.indexOf(i)), i].map(label).join(' -> ');
      throw new DockerfileError(df.stages[i].from.loc, `circular dependency detected on stage: ${label(i)} (${cycle})`);
    }
    state.set(i, 'visiting');
    for (const d of nodes[i].dependsOn) visit(d, [...path, i]);
    state.set(i, 'done');
    order.push(i);
  };
  visit(targetIndex, []);

  const level = new Map<number, number>();
  for (const i of order) level.set(i, Math.max(-1, ...nodes[i].dependsOn.map((d) => level.get(d) as number)) + 1);
  const waves: number[][] = [];
  for (const i of order) (waves[level.get(i) as number] ??= []).push(i);
  for (const w of waves) w.sort((a, b) => a - b);

  const images = new Set<string>();
  const imagePlatforms = new Map<string, string>();
  const wanted = new Map<string, { platform: string; loc: SourceLocation }>();
  const targetPlatform = scope.get('TARGETPLATFORM') ?? '';
  const want = (ref: string, platform: string | undefined, loc: SourceLocation): void => {
    images.add(ref);
    let p = targetPlatform;
    if (platform !== undefined) {
      try {
        p = canonicalPlatform(parsePlatform(platform));
      } catch (err) {
        throw new DockerfileError(loc, `FROM --platform=${platform}: ${(err as Error).message}`);
      }
    }
    const seen = wanted.get(ref);
    // bases are resolved once by name, so one name cannot stand for two platforms' images in a build
    if (seen && seen.platform !== p) throw new DockerfileError(loc, `${ref} is wanted for ${seen.platform} (line ${seen.loc.line}) and for ${p}: one image name for two platforms in a build is not supported yet`);
    wanted.set(ref, { platform: p, loc });
    imagePlatforms.set(ref, p);
  };
  for (const i of order) {
    const b = nodes[i].base;
    if (b.kind === 'image') want(b.ref, b.platform, df.stages[i].from.loc);
    for (const [pos, list] of nodes[i].origins) for (const o of list) if (o.kind === 'image') want(o.ref, undefined, df.stages[i].instructions[pos].loc);
  }
  return { stages: nodes, target: targetIndex, order, waves, images: [...images], imagePlatforms };
}
