/**
 * Planning: each needed stage's instructions expanded, in order, into the
 * steps of the build plan. Expansion follows Docker: ADD COPY ENV EXPOSE
 * FROM LABEL STOPSIGNAL USER VOLUME WORKDIR (and RUN --mount values) are
 * expanded with the stage's ENV over its ARGs; RUN, CMD, ENTRYPOINT,
 * HEALTHCHECK and SHELL are not (the shell does it when they run); an
 * ONBUILD trigger is stored as written and expanded in the build that runs
 * it. The whole of one ENV or LABEL line sees the values before that line.
 *
 * Planning needs each base image's config (its ENV feeds expansion, its
 * ONBUILD triggers run first): the executor resolves `graph.images` and
 * passes them in.
 */
import * as path from 'node:path';
import { checkBuildArgs, platformArgs, PLATFORM_ARGS, PROXY_ARGS } from './args';
import { BuildContextError, DockerfileError, type SourceLocation } from './errors';
import { parseInstruction, type Instruction, type KeyValue } from './dockerfile/instructions';
import { parseMount, type RunMount } from './dockerfile/mounts';
import { parseDockerfile, parseHeredoc } from './dockerfile/parser';
import { lex } from './shell/lex';
import { expandAt, globalScope, stageGraph, type Dockerfile, type StageGraph } from './stages';
import type { BaseImage, BuildPlan, BuildWarning, PlannedStage, SourceOrigin, StageConfig, Step, StepAction } from './plan';
import type { PlatformSpec } from '../image/platform';
import { formatPlatform } from '../image/platform';
import { LIMITS, checkStringMap } from '../limits';

export interface PlanOptions {
  target?: string;
  buildArgs?: Readonly<Record<string, string>>;
  platform: PlatformSpec;
  buildPlatform: PlatformSpec;
}

/** The stage graph for these options (what images planning will need). */
export function graphFor(df: Dockerfile, opts: PlanOptions): StageGraph {
  const buildArgs = checkBuildArgs(opts.buildArgs ?? {});
  return stageGraph(df, globalScope(df, buildArgs, platformArgs(opts.platform, opts.buildPlatform)), buildArgs, opts.target);
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** A stage FROM scratch starts as BuildKit's empty image: PATH set, WORKDIR `/`. */
export function emptyConfig(): StageConfig {
  return { env: [`PATH=${DEFAULT_PATH}`], workdir: '/', user: '', shell: ['/bin/sh', '-c'], labels: {}, exposedPorts: [], volumes: [], onBuild: [] };
}

export function configOf(base: BaseImage): StageConfig {
  const c = base.config;
  return {
    env: [...(c.Env ?? [])],
    workdir: c.WorkingDir || '/',
    user: c.User ?? '',
    shell: c.Shell && c.Shell.length > 0 ? [...c.Shell] : ['/bin/sh', '-c'],
    ...(c.Cmd ? { cmd: [...c.Cmd] } : {}),
    ...(c.Entrypoint ? { entrypoint: [...c.Entrypoint] } : {}),
    labels: { ...(c.Labels ?? {}) },
    exposedPorts: Object.keys(c.ExposedPorts ?? {}),
    volumes: Object.keys(c.Volumes ?? {}),
    ...(c.StopSignal ? { stopSignal: c.StopSignal } : {}),
    ...(healthcheckOf(c.Healthcheck) ? { healthcheck: healthcheckOf(c.Healthcheck) } : {}),
    onBuild: [],
  };
}

type Healthcheck = NonNullable<StageConfig['healthcheck']>;
const NS_PER_MS = 1e6;
const HC_DURATIONS = [['intervalMs', 'Interval'], ['timeoutMs', 'Timeout'], ['startPeriodMs', 'StartPeriod'], ['startIntervalMs', 'StartInterval']] as const;

/** An image config's Healthcheck (Docker's names, durations in ns) as the plan keeps it. */
function healthcheckOf(h: unknown): Healthcheck | undefined {
  if (!h || typeof h !== 'object' || !Array.isArray((h as { Test?: unknown }).Test)) return undefined;
  const d = h as Record<string, unknown>;
  const out: Healthcheck = { test: [...(d.Test as string[])] };
  for (const [ours, theirs] of HC_DURATIONS) if (typeof d[theirs] === 'number' && d[theirs] !== 0) out[ours] = (d[theirs] as number) / NS_PER_MS;
  if (typeof d.Retries === 'number' && d.Retries !== 0) out.retries = d.Retries;
  return out;
}

/** The plan's healthcheck as an image config's Healthcheck: Docker's names, durations in ns, unset ones left out. */
export function dockerHealthcheck(h: Healthcheck): Record<string, unknown> {
  const out: Record<string, unknown> = { Test: h.test };
  for (const [ours, theirs] of HC_DURATIONS) if (h[ours] !== undefined) out[theirs] = Math.round((h[ours] as number) * NS_PER_MS);
  if (h.retries !== undefined) out.Retries = h.retries;
  return out;
}

const envGet = (env: string[], name: string): string | undefined => {
  for (let i = env.length - 1; i >= 0; i--) {
    const eq = env[i].indexOf('=');
    if ((eq < 0 ? env[i] : env[i].slice(0, eq)) === name) return eq < 0 ? '' : env[i].slice(eq + 1);
  }
  return undefined;
};
/** Sets `name`: in place when it is there already (Docker keeps its position), else at the end. */
const envSet = (env: string[], name: string, value: string): string[] => {
  const at = env.findIndex((e) => e.startsWith(name + '=') || e === name);
  if (at < 0) return [...env, `${name}=${value}`];
  return env.map((e, i) => (i === at ? `${name}=${value}` : e)).filter((e, i) => i <= at || !(e.startsWith(name + '=') || e === name));
};

/** `8080`, `80/udp`, `8000-8010/tcp` as Docker keys them (`80/tcp`). */
function exposePort(loc: SourceLocation, p: string): string {
  const m = /^(\d+)(?:-(\d+))?(?:\/(\w+))?$/.exec(p);
  const proto = (m?.[3] ?? 'tcp').toLowerCase();
  const lo = m ? Number(m[1]) : NaN;
  const hi = m?.[2] !== undefined ? Number(m[2]) : lo;
  if (!m || lo > 65535 || hi > 65535 || hi < lo || !['tcp', 'udp', 'sctp'].includes(proto)) {
    throw new DockerfileError(loc, `EXPOSE: invalid port ${JSON.stringify(p)}: expected PORT[-PORT][/tcp|udp|sctp]`);
  }
  return m[2] !== undefined ? `${lo}-${hi}/${proto}` : `${lo}/${proto}`;
}

const isUrl = (s: string): boolean => /^(https?:\/\/|git@|git:\/\/)/.test(s);

/**
 * A COPY/ADD source of the context, cleaned as filepath.Clean would, the
 * leading `/` dropped (Docker reads `/x` as the context's `x`). One that
 * climbs out (`../x`, `a/../../x`) is refused as Docker refuses it.
 */
export function contextSource(loc: SourceLocation, src: string): string {
  const clean = path.posix.normalize(src.startsWith('/') ? src : './' + src);
  const rel = clean.startsWith('/') ? path.posix.normalize('.' + clean) : clean;
  if (rel === '..' || rel.startsWith('../')) {
    throw new BuildContextError(`${loc.file}:${loc.line}: forbidden path outside the build context: ${src}`, src);
  }
  const out = rel.replace(/^\.\//, '').replace(/\/$/, '');
  return out === '' ? '.' : out;
}

interface StageState {
  config: StageConfig;
  args: Map<string, string>;
  steps: Step[];
}

/**
 * The plan: the graph's stages in build order, each instruction expanded.
 * `bases` gives each image of `graph.images` (and stage FROM lines) as
 * resolved; a missing one is an error naming it.
 */
export function planBuild(df: Dockerfile, opts: PlanOptions, graph: StageGraph, bases: ReadonlyMap<string, BaseImage>): BuildPlan {
  const buildArgs = checkBuildArgs(opts.buildArgs ?? {});
  const scope = globalScope(df, buildArgs, platformArgs(opts.platform, opts.buildPlatform));
  const consumed = new Set<string>(df.globalArgs.flatMap((a) => a.args.map((x) => x.name)));
  const esc = df.escapeToken;
  const warnings: BuildWarning[] = df.warnings.map((w) => ({ loc: { file: df.file, line: w.line }, message: w.message }));
  const planned = new Map<number, PlannedStage>();
  const syntax = df.directives.syntax;
  // Docker would run the frontend image a syntax directive names; the builder here is its own frontend, so only docker/dockerfile is honoured (as the version it implements).
  if (syntax !== undefined && !/^(docker\.io\/)?docker\/dockerfile(-upstream)?(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$/.test(syntax)) {
    warnings.push({ loc: { file: df.file, line: 1 }, message: `the syntax directive names another frontend (${syntax}); this Dockerfile is built with Capsa's own Dockerfile frontend` });
  }

  for (const index of graph.order) {
    const src = df.stages[index];
    const node = graph.stages[index];
    let config: StageConfig;
    let triggers: string[] = [];
    if (node.base.kind === 'stage') config = structuredClone((planned.get(node.base.index) as PlannedStage).config);
    else if (node.base.kind === 'scratch') config = emptyConfig();
    else {
      const b = bases.get(node.base.ref);
      if (!b) throw new DockerfileError(src.from.loc, `base image ${JSON.stringify(node.base.ref)} was not resolved`);
      config = configOf(b);
      triggers = [...(b.config.OnBuild ?? [])];
    }
    if (node.base.kind === 'stage') triggers = [];
    config.onBuild = [];
    const st: StageState = { config, args: new Map(), steps: [] };
    const lookup = (n: string): string | undefined => envGet(st.config.env, n) ?? st.args.get(n);
    const expand = (loc: SourceLocation, w: string): string => expandAt(loc, w, lookup, esc);

    const step = (ins: Instruction, action: StepAction, createdBy: string, needs: Partial<Step['needs']> = {}, fromOnBuild = false): void => {
      const layer = action.kind !== 'config';
      const args: KeyValue[] = action.kind === 'run' ? [...st.args].filter(([k]) => !PROXY_ARGS.has(k)).map(([key, value]) => ({ key, value })) : [];
      st.steps.push({
        loc: ins.loc, original: ins.original, createdBy, action, layer,
        needs: { context: needs.context ?? false, stages: needs.stages ?? [], images: needs.images ?? [] }, args,
        ...(fromOnBuild ? { fromOnBuild } : {}),
      });
    };
    const configStep = (ins: Instruction, set: Partial<StageConfig>, createdBy: string, fromOnBuild: boolean): void => {
      Object.assign(st.config, set);
      step(ins, { kind: 'config', instruction: ins.kind.toUpperCase(), set }, createdBy, {}, fromOnBuild);
    };
    const needsOf = (origins: SourceOrigin[]): Partial<Step['needs']> => ({
      context: origins.some((o) => o.kind === 'context'),
      stages: origins.filter((o): o is { kind: 'stage'; index: number } => o.kind === 'stage').map((o) => o.index),
      images: origins.filter((o): o is { kind: 'image'; ref: string } => o.kind === 'image').map((o) => o.ref),
    });

    // A bind mount without `from` binds the build context.
    const runNeeds = (mounts: RunMount[], origins: SourceOrigin[]): Partial<Step['needs']> => {
      const n = needsOf(origins);
      if (mounts.some((m) => m.type === 'bind' && m.from === undefined)) n.context = true;
      return n;
    };
    const apply = (ins: Instruction, origins: SourceOrigin[] | undefined, fromOnBuild: boolean): void => {
      const loc = ins.loc;
      switch (ins.kind) {
        case 'arg':
          for (const { name, default: def } of ins.args) {
            consumed.add(name);
            const v = buildArgs.get(name) ?? (def !== undefined ? expand(loc, def) : scope.get(name));
            if (v !== undefined) st.args.set(name, v);
            else st.args.delete(name);
          }
          return;
        case 'env': {
          const pairs = ins.pairs.map((p) => ({ key: expand(loc, p.key), value: expand(loc, p.value) }));
          let env = st.config.env;
          for (const p of pairs) env = envSet(env, p.key, p.value);
          configStep(ins, { env }, `ENV ${pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`, fromOnBuild);
          return;
        }
        case 'label': {
          const labels = { ...st.config.labels };
          for (const p of ins.pairs) labels[expand(loc, p.key)] = expand(loc, p.value);
          checkStringMap(LIMITS.labels, `${loc.file}:${loc.line}: LABEL`, labels);
          configStep(ins, { labels }, `LABEL ${ins.pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`, fromOnBuild);
          return;
        }
        case 'maintainer':
          configStep(ins, { maintainer: ins.maintainer }, `MAINTAINER ${ins.maintainer}`, fromOnBuild);
          return;
        case 'expose': {
          const ports = ins.ports.flatMap((p) => lex(p, lookup, { escapeToken: esc }).words).map((p) => exposePort(loc, p));
          configStep(ins, { exposedPorts: [...new Set([...st.config.exposedPorts, ...ports])] }, `EXPOSE ${ports.join(' ')}`, fromOnBuild);
          return;
        }
        case 'volume': {
          const vols = ins.paths.map((p) => expand(loc, p));
          if (vols.some((v) => v.trim() === '')) throw new DockerfileError(loc, 'VOLUME specified can not be an empty string');
          configStep(ins, { volumes: [...new Set([...st.config.volumes, ...vols])] }, `VOLUME [${vols.join(' ')}]`, fromOnBuild);
          return;
        }
        case 'user': {
          const user = expand(loc, ins.user);
          configStep(ins, { user }, `USER ${user}`, fromOnBuild);
          return;
        }
        case 'stopsignal': {
          const sig = expand(loc, ins.signal);
          if (!/^(SIG)?[A-Z0-9+-]+$|^\d+$/i.test(sig)) throw new DockerfileError(loc, `STOPSIGNAL: invalid signal ${JSON.stringify(sig)}`);
          configStep(ins, { stopSignal: sig }, `STOPSIGNAL ${sig}`, fromOnBuild);
          return;
        }
        case 'workdir': {
          const p = expand(loc, ins.path);
          const abs = path.posix.join('/', p.startsWith('/') ? '' : st.config.workdir, p);
          st.config.workdir = abs;
          step(ins, { kind: 'workdir', path: abs, user: st.config.user }, `WORKDIR ${abs}`, {}, fromOnBuild);
          return;
        }
        case 'cmd':
        case 'entrypoint': {
          const argv = ins.shell ? [...st.config.shell, ...ins.cmd] : ins.cmd;
          const set: Partial<StageConfig> = ins.kind === 'cmd' ? { cmd: argv } : { entrypoint: argv };
          // An ENTRYPOINT resets a CMD this Dockerfile did not set (Docker's rule for an inherited CMD).
          if (ins.kind === 'entrypoint' && !st.steps.some((s) => s.action.kind === 'config' && s.action.instruction === 'CMD')) set.cmd = undefined;
          configStep(ins, set, `${ins.kind.toUpperCase()} ${JSON.stringify(argv)}`, fromOnBuild);
          return;
        }
        case 'shell':
          configStep(ins, { shell: ins.shell }, `SHELL ${JSON.stringify(ins.shell)}`, fromOnBuild);
          return;
        case 'healthcheck': {
          if (ins.none) {
            configStep(ins, { healthcheck: { test: ['NONE'] } }, 'HEALTHCHECK NONE', fromOnBuild);
            return;
          }
          const { intervalMs, timeoutMs, startPeriodMs, startIntervalMs, retries } = ins;
          const test = ins.shell ? ['CMD-SHELL', ...ins.cmd] : ['CMD', ...ins.cmd];
          const hc = Object.fromEntries(Object.entries({ test, intervalMs, timeoutMs, startPeriodMs, startIntervalMs, retries }).filter(([, v]) => v !== undefined));
          configStep(ins, { healthcheck: hc as StageConfig['healthcheck'] }, `HEALTHCHECK ${JSON.stringify(test)}`, fromOnBuild);
          return;
        }
        case 'onbuild':
          configStep(ins, { onBuild: [...st.config.onBuild, ins.trigger] }, `ONBUILD ${ins.trigger}`, fromOnBuild);
          return;
        case 'run': {
          let argv: string[];
          let script: { name: string; data: string } | undefined;
          if (!ins.shell) argv = ins.cmd;
          else if (ins.heredocs.length > 0) {
            const only = ins.cmd.length === 1 && parseHeredoc(ins.cmd[0].trim()) !== undefined;
            // One heredoc alone is the script; otherwise the shell reads the heredocs as written.
            // (the quoted-delimiter form too: BuildKit ignores `expand` for RUN, the shell decides)
            if (only && ins.heredocs[0].data.startsWith('#!')) {
              script = { name: ins.heredocs[0].name, data: ins.heredocs[0].data };
              argv = [...st.config.shell, path.posix.join('/dev/pipes', script.name)];
            } else argv = only ? [...st.config.shell, ins.heredocs[0].data] : [...st.config.shell, ins.cmd[0] + ins.heredocs.map((h) => `\n${h.data}${h.name}`).join('')];
          } else argv = [...st.config.shell, ...ins.cmd];
          let ssh = 0;
          let oi = 0;
          const mounts = ins.mountTexts.map((t): RunMount & { origin?: SourceOrigin } => {
            try {
              const m = parseMount(expand(loc, t), ssh);
              if (m.type === 'ssh') ssh++;
              // The graph resolved `from` of bind and cache mounts, in the same order.
              if (m.from !== undefined && (m.type === 'bind' || m.type === 'cache')) return { ...m, origin: origins?.[oi++] ?? { kind: 'image', ref: m.from } };
              return m;
            } catch (err) {
              if (err instanceof DockerfileError) throw err;
              throw new DockerfileError(loc, `RUN --mount=${t}: ${(err as Error).message}`);
            }
          });
          const env = [...st.config.env];
          for (const [k, v] of st.args) if (!PROXY_ARGS.has(k) && envGet(env, k) === undefined) env.push(`${k}=${v}`);
          if (envGet(env, 'PATH') === undefined) env.unshift(`PATH=${DEFAULT_PATH}`);
          const proxyEnv = [...buildArgs].filter(([k]) => PROXY_ARGS.has(k)).map(([k, v]) => `${k}=${v}`);
          for (const [k] of buildArgs) if (PROXY_ARGS.has(k)) consumed.add(k);
          step(ins, {
            kind: 'run', argv, heredocs: ins.heredocs, ...(script ? { script } : {}), mounts,
            network: (ins.network ?? 'default') as 'default', security: (ins.security ?? 'sandbox') as 'sandbox',
            env, proxyEnv, workdir: st.config.workdir, user: st.config.user,
          }, `RUN ${argv.join(' ')}`, runNeeds(mounts, origins ?? []), fromOnBuild);
          return;
        }
        case 'copy':
        case 'add': {
          const origin: SourceOrigin = origins?.[0] ?? { kind: 'context' };
          const sources = ins.sources.map((s) => {
            const e = expand(loc, s);
            if (ins.kind === 'add' && isUrl(e)) return e;
            return origin.kind === 'context' ? contextSource(loc, e) : path.posix.normalize('/' + e).slice(1) || '.';
          });
          const inline = ins.inline.map((h) => ({ ...h, data: h.expand ? expand(loc, h.data) : h.data }));
          const rawDest = expand(loc, ins.dest);
          let dest = path.posix.join('/', rawDest.startsWith('/') ? '' : st.config.workdir, rawDest);
          if ((rawDest.endsWith('/') || rawDest === '.' || rawDest.endsWith('/.')) && !dest.endsWith('/')) dest += '/';
          const o = <T>(k: string, v: T | undefined): Record<string, T> => (v !== undefined ? { [k]: v } : {});
          const chown = ins.chown !== undefined ? expand(loc, ins.chown) : undefined;
          const chmod = ins.chmod !== undefined ? expand(loc, ins.chmod) : undefined;
          if (chmod !== undefined && !/^[0-7]{3,4}$/.test(chmod) && !/^[ugoa]*[+=-][rwxXst]*(,[ugoa]*[+=-][rwxXst]*)*$/.test(chmod)) {
            throw new DockerfileError(loc, `${ins.kind.toUpperCase()} --chmod: invalid mode ${JSON.stringify(chmod)}`);
          }
          const urls = sources.some(isUrl);
          const needs = needsOf([origin]);
          if (origin.kind === 'context' && !sources.length) needs.context = false;
          if (urls && sources.every(isUrl)) needs.context = false;
          step(ins, {
            kind: ins.kind, origin, sources, inline, dest, ...o('chown', chown), ...o('chmod', chmod), link: ins.link, parents: ins.parents,
            exclude: ins.exclude.map((e) => expand(loc, e)), ...o('checksum', ins.checksum), ...o('keepGitDir', ins.keepGitDir), ...o('unpack', ins.unpack),
            user: st.config.user,
          }, `${ins.kind.toUpperCase()} ${[...sources, ...inline.map((h) => `<<${h.name}`)].join(' ')} ${dest}`, needs, fromOnBuild);
          return;
        }
        case 'from':
          throw new DockerfileError(loc, 'FROM inside a stage');
      }
    };

    for (const t of triggers) {
      const parsed = parseDockerfile(t, `${df.file} (ONBUILD of ${node.base.kind === 'image' ? node.base.ref : 'base'})`);
      for (const n of parsed.nodes) {
        const ins = parseInstruction(n, df.file);
        if (ins.kind === 'from' || ins.kind === 'onbuild' || ins.kind === 'maintainer') {
          throw new DockerfileError(src.from.loc, `${ins.kind.toUpperCase()} isn't allowed as an ONBUILD trigger`);
        }
        if (ins.kind === 'copy' && ins.from !== undefined) throw new DockerfileError(src.from.loc, 'an ONBUILD trigger of the base image uses COPY --from, which is not supported');
        apply({ ...ins, loc: src.from.loc }, undefined, true);
      }
    }
    src.instructions.forEach((ins, pos) => apply(ins, node.origins.get(pos), false));

    planned.set(index, {
      index, ...(src.name !== undefined ? { name: src.name } : {}), base: node.base,
      platform: node.base.kind === 'image' && node.base.platform ? node.base.platform : formatPlatform(opts.platform),
      steps: st.steps, dependsOn: node.dependsOn, config: st.config,
    });
  }

  // SOURCE_DATE_EPOCH is BuildKit's too: the client passes it whether or not an ARG reads it
  const builtin = new Set<string>([...PROXY_ARGS, ...PLATFORM_ARGS, 'SOURCE_DATE_EPOCH']);
  const unused = [...buildArgs.keys()].filter((k) => !consumed.has(k) && !builtin.has(k)).sort();
  if (unused.length > 0) warnings.push({ message: `[Warning] One or more build-args [${unused.join(' ')}] were not consumed` });
  return { stages: graph.order.map((i) => planned.get(i) as PlannedStage), waves: graph.waves, target: graph.target, warnings };
}
