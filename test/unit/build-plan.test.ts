/**
 * From Dockerfile to plan: typed instructions and their checks, ARG scoping
 * and expansion as Docker does it, the stage graph (target, dependencies,
 * waves, cycles), ONBUILD, heredocs, and the limits on build args and labels.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { loadDockerfile } from '../../server/build/stages';
import { dockerHealthcheck, graphFor, planBuild, type PlanOptions } from '../../server/build/expand';
import type { BaseImage, BuildPlan, Step } from '../../server/build/plan';
import { parseMount } from '../../server/build/dockerfile/mounts';

const AMD64 = { os: 'linux', architecture: 'amd64' };

function fakeBase(ref: string, config: BaseImage['config'] = {}): BaseImage {
  return { digest: 'sha256:' + createHash('sha256').update(ref).digest('hex'), config };
}

function plan(src: string, opts: Partial<PlanOptions> = {}, configs: Record<string, BaseImage['config']> = {}): BuildPlan {
  const df = loadDockerfile(src);
  const o: PlanOptions = { platform: AMD64, buildPlatform: AMD64, ...opts };
  const g = graphFor(df, o);
  return planBuild(df, o, g, new Map(g.images.map((r) => [r, fakeBase(r, configs[r])])));
}

const last = (p: BuildPlan): Step[] => p.stages[p.stages.length - 1].steps;
const runs = (p: BuildPlan): Extract<Step['action'], { kind: 'run' }>[] =>
  last(p).flatMap((s) => (s.action.kind === 'run' ? [s.action] : []));
const fail = (src: string, re: RegExp, opts: Partial<PlanOptions> = {}): void => {
  assert.throws(() => plan(src, opts), (err: unknown) => re.test((err as Error).message) || assert.fail(`got: ${(err as Error).message}`));
};

test('a global ARG is usable in FROM only, unless the stage declares it again', () => {
  const p = plan('ARG TAG=3.19\nARG OTHER=o\nFROM alpine:$TAG\nARG TAG\nRUN echo\nLABEL t=$TAG o=x$OTHER');
  assert.deepEqual(p.stages[0].base, { kind: 'image', ref: 'alpine:3.19' });
  assert.deepEqual(p.stages[0].config.labels, { t: '3.19', o: 'x' });
});

test('--build-arg overrides defaults, globally and in a stage', () => {
  const p = plan('ARG TAG=1\nFROM a:$TAG\nARG V=d\nENV E=$V', { buildArgs: { TAG: '2', V: 'given' } });
  assert.deepEqual(p.stages[0].base, { kind: 'image', ref: 'a:2' });
  assert.ok(p.stages[0].config.env.includes('E=given'));
});

test('ENV overrides an ARG of the same name, the base image\'s ENV too', () => {
  const p = plan('FROM a\nARG V=arg\nARG HOME=argh\nENV V=env\nLABEL v=$V h=$HOME', {}, { a: { Env: ['HOME=/root'] } });
  assert.deepEqual(p.stages[0].config.labels, { v: 'env', h: '/root' });
});

test('an ENV line sees the values from before the line, the next line the new ones', () => {
  const p = plan('FROM a\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc');
  const env = p.stages[0].config.env;
  assert.ok(env.includes('def=hello') && env.includes('ghi=bye') && env.includes('abc=bye'));
});

test('platform arguments: global in FROM without declaring, in a stage once declared', () => {
  const p = plan('FROM --platform=$BUILDPLATFORM golang AS b\nLABEL before=x$TARGETARCH\nARG TARGETARCH\nARG TARGETPLATFORM\nLABEL arch=$TARGETARCH p=$TARGETPLATFORM', {
    platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
  });
  assert.deepEqual(p.stages[0].base, { kind: 'image', ref: 'golang', platform: 'linux/amd64' });
  // containerd's Normalize, which BuildKit formats TARGETPLATFORM with, drops arm64's default variant v8
  assert.deepEqual(p.stages[0].config.labels, { before: 'x', arch: 'arm64', p: 'linux/arm64' });
});

test('RUN, CMD and ENTRYPOINT are not expanded; RUN gets the ARGs in scope as environment', () => {
  const p = plan('FROM a\nARG V=1\nRUN echo $V $HOME\nCMD echo $V\nENTRYPOINT ["x", "$V"]');
  const [r] = runs(p);
  assert.deepEqual(r.argv, ['/bin/sh', '-c', 'echo $V $HOME']);
  assert.ok(r.env.includes('V=1'));
  assert.ok(r.env.some((e) => e.startsWith('PATH=')));
  assert.deepEqual(p.stages[0].config.cmd, ['/bin/sh', '-c', 'echo $V'], 'ENTRYPOINT after CMD in the same Dockerfile keeps the CMD');
  assert.deepEqual(p.stages[0].config.entrypoint, ['x', '$V']);
});

test('ENTRYPOINT keeps a CMD set in the Dockerfile and resets one inherited', () => {
  assert.deepEqual(plan('FROM a\nCMD ["c"]\nENTRYPOINT ["e"]').stages[0].config.cmd, ['c']);
  assert.equal(plan('FROM a\nENTRYPOINT ["e"]', {}, { a: { Cmd: ['inherited'] } }).stages[0].config.cmd, undefined);
});

test('SHELL changes the shell of later shell-form RUN and CMD', () => {
  const p = plan('FROM a\nSHELL ["/bin/bash", "-eu", "-c"]\nRUN x\nCMD y');
  assert.deepEqual(runs(p)[0].argv, ['/bin/bash', '-eu', '-c', 'x']);
  assert.deepEqual(p.stages[0].config.cmd, ['/bin/bash', '-eu', '-c', 'y']);
});

test('proxy build args reach RUN without an ARG, stay out of env (and keys), and are never "unused"', () => {
  const p = plan('FROM a\nRUN x', { buildArgs: { HTTP_PROXY: 'http://p:3128', no_proxy: 'x' } });
  const [r] = runs(p);
  assert.deepEqual(r.proxyEnv, ['HTTP_PROXY=http://p:3128', 'no_proxy=x']);
  assert.ok(!r.env.some((e) => e.startsWith('HTTP_PROXY')));
  assert.deepEqual(p.warnings, []);
});

test('a syntax directive naming another frontend is warned about; docker/dockerfile is not', () => {
  assert.deepEqual(plan('# syntax=docker/dockerfile:1.7\nFROM a').warnings, []);
  assert.match(plan('# syntax=example.com/custom:1\nFROM a').warnings[0].message, /names another frontend \(example.com\/custom:1\)/);
});

test('a build arg no ARG declares is warned about as Docker words it', () => {
  const p = plan('ARG G\nFROM a\nARG USED\nRUN x', { buildArgs: { USED: '1', G: '2', NOPE: '3', ALSO: '4' } });
  assert.deepEqual(p.warnings.map((w) => w.message), ['[Warning] One or more build-args [ALSO NOPE] were not consumed']);
});

test('WORKDIR resolves against the previous WORKDIR; COPY destinations against WORKDIR', () => {
  const p = plan('FROM a\nENV D=app\nWORKDIR /srv\nWORKDIR $D\nCOPY x ./\nCOPY y z');
  const acts = last(p).map((s) => s.action);
  assert.deepEqual(acts.filter((a) => a.kind === 'workdir').map((a) => (a as { path: string }).path), ['/srv', '/srv/app']);
  const copies = acts.filter((a) => a.kind === 'copy') as Extract<Step['action'], { kind: 'copy' | 'add' }>[];
  assert.deepEqual(copies.map((c) => c.dest), ['/srv/app/', '/srv/app/z']);
});

test('COPY sources that leave the context are refused; absolute ones are the context\'s', () => {
  fail('FROM a\nCOPY ../x /y', /Dockerfile:2: forbidden path outside the build context: \.\.\/x/);
  fail('FROM a\nARG P=../../etc\nCOPY $P/passwd /y', /forbidden path outside the build context: \.\.\/\.\.\/etc\/passwd/);
  fail('FROM a\nCOPY a/../../x /y', /forbidden path outside/);
  const c = last(plan('FROM a\nCOPY /etc/passwd ./a/../b/ /d/')).map((s) => s.action)[0] as Extract<Step['action'], { kind: 'copy' | 'add' }>;
  assert.deepEqual(c.sources, ['etc/passwd', 'b']);
});

test('EXPOSE expands to several ports and normalises them', () => {
  const p = plan('FROM a\nENV PORTS="80 53/udp"\nEXPOSE $PORTS 8000-8010/TCP');
  assert.deepEqual(p.stages[0].config.exposedPorts, ['80/tcp', '53/udp', '8000-8010/tcp']);
  fail('FROM a\nEXPOSE 70000', /EXPOSE: invalid port "70000"/);
  fail('FROM a\nEXPOSE 80/foo', /invalid port "80\/foo"/);
});

test('LABEL and USER, STOPSIGNAL, VOLUME expand', () => {
  const p = plan('FROM a\nARG U=app\nUSER $U:$U\nSTOPSIGNAL SIG${S:-TERM}\nVOLUME ["/data/$U"]\nLABEL "k $U"="v\\"q"');
  const c = p.stages[0].config;
  assert.equal(c.user, 'app:app');
  assert.equal(c.stopSignal, 'SIGTERM');
  assert.deepEqual(c.volumes, ['/data/app']);
  assert.deepEqual(c.labels, { 'k app': 'v"q' });
});

test('heredocs: one alone is the script; inline COPY files are expanded unless quoted, <<- strips tabs', () => {
  const p = plan('FROM a\nARG N=world\nRUN <<EOF\necho $N\nEOF\nCOPY <<-A <<\'B\' /d/\n\thello $N\n\tA\n$N\nB\nRUN cat <<X > f\nx\nX');
  const [r1, r2] = runs(p);
  assert.deepEqual(r1.argv, ['/bin/sh', '-c', 'echo $N\n']);
  assert.deepEqual(r2.argv, ['/bin/sh', '-c', 'cat <<X > f\nx\nX']);
  const c = last(p).find((s) => s.action.kind === 'copy')!.action as Extract<Step['action'], { kind: 'copy' | 'add' }>;
  assert.deepEqual(c.inline.map((i) => [i.name, i.data]), [['A', 'hello world\n'], ['B', '$N\n']]);
  assert.equal(c.dest, '/d/');
});

test('RUN --mount values are typed, expanded, and checked', () => {
  const p = plan('FROM a\nARG C=/root/.cache\nRUN --mount=type=cache,target=$C,sharing=locked --mount=type=secret,id=tok,required --mount=type=ssh --mount=type=tmpfs,target=/t,size=64m --mount=target=/src,rw make');
  const [r] = runs(p);
  assert.deepEqual(r.mounts, [
    { type: 'cache', target: '/root/.cache', readOnly: false, sharing: 'locked', required: false, id: '/root/.cache' },
    { type: 'secret', target: '/run/secrets/tok', readOnly: true, sharing: 'shared', required: true, id: 'tok' },
    { type: 'ssh', target: '/run/buildkit/ssh_agent.0', readOnly: true, sharing: 'shared', required: false, id: 'default' },
    { type: 'tmpfs', target: '/t', readOnly: false, sharing: 'shared', required: false, size: 64 * 1024 * 1024 },
    { type: 'bind', target: '/src', readOnly: false, sharing: 'shared', required: false },
  ]);
  assert.equal(last(p)[0].needs.context, true, 'a bind mount without from binds the context');
  assert.throws(() => parseMount('type=nfs,target=/x'), /unsupported mount type "nfs"/);
  assert.throws(() => parseMount('type=bind,target=/x,mode=0700'), /mode not allowed for "bind" type mounts/);
  assert.throws(() => parseMount('type=bind,target=/x,sharing=locked'), /invalid cache sharing set for bind mount/);
  assert.throws(() => parseMount('type=cache,target=/x,foo=bar'), /unexpected key 'foo' in 'foo=bar'/);
  assert.throws(() => parseMount('type=cache'), /requires a target/);
  assert.throws(() => parseMount('type=secret,from=x,id=a'), /secret mount should not have a from/);
  assert.deepEqual(parseMount('"type=bind","target=/a,b"'), { type: 'bind', target: '/a,b', readOnly: true, sharing: 'shared', required: false });
});

const INSTRUCTION_ERRORS: [string, RegExp][] = [
  ['FROM a b', /Dockerfile:1: FROM requires either one or three arguments/],
  ['FROM a AS 1x', /invalid name for build stage: "1x"/],
  ['FROM a AS x\nFROM b AS X', /Dockerfile:2: duplicate stage name "x"/],
  ['RUN x', /Dockerfile:1: no build stage in current context: RUN before the first FROM/],
  ['ARG A', /has no FROM/],
  ['# only a comment\n\n', /Dockerfile:1: file with no instructions/],
  ['FROM a\nCOPY --foo=1 a b', /Dockerfile:2: COPY: unknown flag: foo/],
  ['FROM a\nCOPY --from a b', /COPY: missing a value on flag: from/],
  ['FROM a\nCOPY --link=maybe a b', /expecting boolean value for flag link, not: maybe/],
  ['FROM a\nCOPY --from=a --from=b x y', /duplicate flag specified: from/],
  ['FROM a\nCOPY onlyone', /COPY requires at least two arguments/],
  ['FROM a\nWORKDIR --x=1 /a', /WORKDIR: unknown flag: x/],
  ['FROM a\nSHELL /bin/bash -c', /SHELL requires the arguments to be in JSON form/],
  ['FROM a\nUSER', /USER requires exactly one argument/],
  ['FROM a\nONBUILD ONBUILD RUN x', /Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed/],
  ['FROM a\nONBUILD FROM b', /FROM isn't allowed as an ONBUILD trigger/],
  ['FROM a\nONBUILD MAINTAINER me', /MAINTAINER isn't allowed as an ONBUILD trigger/],
  ['FROM a\nHEALTHCHECK NONE x', /HEALTHCHECK NONE takes no arguments/],
  ['FROM a\nHEALTHCHECK WHAT x', /Unknown type "WHAT" in HEALTHCHECK \(try CMD\)/],
  ['FROM a\nHEALTHCHECK --interval=5 CMD x', /time: invalid duration "5"/],
  ['FROM a\nHEALTHCHECK --retries=-1 CMD x', /--retries cannot be negative \(-1\)/],
  ['FROM a\nRUN --network=bridge x', /unsupported network mode "bridge"/],
  ['FROM a\nLABEL a="${X:?label X is required}"', /Dockerfile:2: X: label X is required/],
  ['FROM $NOPE', /base name \(\$NOPE\) should not be blank/],
  ['FROM a\nCOPY --chmod=abc x y', /--chmod: invalid mode "abc"/],
  ['FROM a\nRUN --mount=type=cache x', /Dockerfile:2: RUN --mount=type=cache: mount of type cache requires a target/],
];

for (const [src, re] of INSTRUCTION_ERRORS) {
  test(`refused: ${JSON.stringify(src)}`, () => fail(src, re));
}

test('HEALTHCHECK options become the config\'s healthcheck', () => {
  const p = plan('FROM a\nHEALTHCHECK --interval=1m30s --timeout=3s --start-period=0 --retries=3 CMD curl -f http://x/');
  assert.deepEqual(p.stages[0].config.healthcheck, { test: ['CMD-SHELL', 'curl -f http://x/'], intervalMs: 90000, timeoutMs: 3000, startPeriodMs: 0, retries: 3 });
});

test('ONBUILD is recorded as written; a base image\'s triggers run first, at the FROM line', () => {
  const p = plan('FROM a\nONBUILD RUN echo $X\nONBUILD COPY . /app', {}, {});
  assert.deepEqual(p.stages[0].config.onBuild, ['RUN echo $X', 'COPY . /app']);
  const q = plan('FROM parent\nRUN mine', {}, { parent: { OnBuild: ['ENV FROM_PARENT=1', 'COPY . /app'] } });
  const steps = last(q);
  assert.deepEqual(steps.map((s) => [s.createdBy, s.fromOnBuild ?? false, s.loc.line]), [
    ['ENV FROM_PARENT=1', true, 1],
    ['COPY . /app', true, 1],
    ['RUN /bin/sh -c mine', false, 2],
  ]);
});

test('ONBUILD with a heredoc keeps it in the trigger, and a base\'s such trigger runs as the heredoc', () => {
  assert.deepEqual(plan('FROM a\nONBUILD RUN <<EOF\nmake\nEOF').stages[0].config.onBuild, ['RUN <<EOF\nmake\nEOF']);
  const q = plan('FROM parent', {}, { parent: { OnBuild: ['RUN <<EOF\nmake\nEOF'] } });
  assert.deepEqual(runs(q)[0].argv, ['/bin/sh', '-c', 'make\n']);
});

test('stage graph: the target needs only its dependencies; independent stages share a wave', () => {
  const src = [
    'FROM alpine AS base', 'RUN base',
    'FROM base AS deps', 'RUN deps',
    'FROM golang AS tools', 'RUN tools',
    'FROM scratch AS unused', 'COPY --from=tools /x /x',
    'FROM base AS final', 'COPY --from=deps /d /d', 'COPY --from=2 /t /t', 'RUN --mount=type=bind,from=docs,target=/docs true',
    'FROM busybox AS docs',
  ].join('\n');
  const df = loadDockerfile(src);
  const g = graphFor(df, { platform: AMD64, buildPlatform: AMD64, target: 'final' });
  assert.equal(g.target, 4);
  assert.deepEqual(g.order.sort(), [0, 1, 2, 4, 5]);
  assert.deepEqual(g.waves, [[0, 2, 5], [1], [4]]);
  assert.deepEqual(g.stages[4].dependsOn, [0, 1, 2, 5]);
  assert.deepEqual(g.images.sort(), ['alpine', 'busybox', 'golang']);
  const p = plan(src, { target: 'final' });
  assert.equal(p.stages[p.stages.length - 1].index, 4);
  assert.deepEqual(last(p).map((s) => s.needs.stages), [[1], [2], [5]]);
});

test('stage graph: a FROM naming a later stage is an image; COPY --from of an unknown name is an image', () => {
  const df = loadDockerfile('FROM later\nCOPY --from=nginx:1 /etc/nginx /n\nFROM alpine AS later');
  const g = graphFor(df, { platform: AMD64, buildPlatform: AMD64, target: undefined });
  assert.equal(g.target, 1);
  const g0 = graphFor(df, { platform: AMD64, buildPlatform: AMD64 });
  assert.deepEqual(g0.order, [1]);
  const all = loadDockerfile('FROM later AS first\nCOPY --from=nginx:1 /etc/nginx /n\nFROM alpine AS later');
  const g1 = graphFor(all, { platform: AMD64, buildPlatform: AMD64, target: 'first' });
  assert.deepEqual(g1.stages[0].base, { kind: 'image', ref: 'later' });
  assert.deepEqual(g1.images.sort(), ['later', 'nginx:1']);
});

test('stage graph: cycles, unknown targets and bad indices are errors naming them', () => {
  fail('FROM a AS x\nCOPY --from=y /a /a\nFROM b AS y\nCOPY --from=x /b /b', /Dockerfile:3: circular dependency detected on stage: y \(y -> x -> y\)/, { target: 'y' });
  fail('FROM a AS x\nCOPY --from=x /a /a', /circular dependency detected on stage: x/);
  fail('FROM a AS x', /target stage "nope" could not be found in Dockerfile/, { target: 'nope' });
  fail('FROM a\nCOPY --from=3 /a /a', /Dockerfile:2: invalid stage index 3: the Dockerfile has 1 stage/);
});

test('a stage FROM another inherits its config', () => {
  const p = plan('FROM a AS one\nENV X=1\nWORKDIR /w\nFROM one\nRUN pwd');
  const [r] = runs(p);
  assert.equal(r.workdir, '/w');
  assert.ok(r.env.includes('X=1'));
});

test('hostile: a 1 MiB build arg and a 1 MiB label are refused with their limits', () => {
  const big = 'x'.repeat(1024 * 1024);
  fail('FROM a', /--build-arg BIG is larger than the build arg limit \(128 KiB\)/, { buildArgs: { BIG: big } });
  assert.throws(() => plan(`FROM a\nLABEL big="${big}"`), /expanded word limit \(256 KiB\)|labels limit/);
  assert.throws(() => plan('FROM a\nARG V\nLABEL a=$V b=$V c=$V', { buildArgs: { V: 'y'.repeat(100 * 1024) } }), /LABEL is larger than the labels limit \(256 KiB\)/);
  fail('FROM a', /invalid --build-arg name/, { buildArgs: { 'A=B': '1' } });
});

test('hostile: ENV doubling itself is stopped by the expanded-word limit', () => {
  const src = 'FROM a\nENV a=x\n' + 'ENV a=$a$a\n'.repeat(40);
  assert.throws(() => plan(src), /Dockerfile:\d+: .*|expanded word limit/);
});

test('ENV of a variable already set replaces it where it is, as Docker does', () => {
  const p = plan('FROM a\nENV FIRST=1 SECOND=2\nENV FIRST=again HOME=/h', {}, { a: { Env: ['PATH=/bin', 'HOME=/root'] } });
  assert.deepEqual(p.stages[0].config.env, ['PATH=/bin', 'HOME=/h', 'FIRST=again', 'SECOND=2']);
});

test("a base image's Healthcheck carries over, and is written back in Docker's names and nanoseconds", () => {
  const hc = { Test: ['CMD', '/bin/true'], Interval: 30e9, Retries: 2 };
  const p = plan('FROM a\nENV X=1', {}, { a: { Healthcheck: hc } });
  assert.deepEqual(p.stages[0].config.healthcheck, { test: ['CMD', '/bin/true'], intervalMs: 30000, retries: 2 });
  assert.deepEqual(dockerHealthcheck(p.stages[0].config.healthcheck!), hc);
  const own = plan('FROM a\nHEALTHCHECK --timeout=3s --start-period=1500ms CMD x');
  assert.deepEqual(dockerHealthcheck(own.stages[0].config.healthcheck!), { Test: ['CMD-SHELL', 'x'], Timeout: 3e9, StartPeriod: 1.5e9 });
});
