/**
 * RUN mounts without a container: target and source paths as BuildKit reads
 * them, the stub paths a commit may drop, the refusals naming file:line, a
 * shebang heredoc planned as /dev/pipes/NAME, cache keys covering mounts and
 * bound files (not cache contents), and cache-directory sharing
 * (shared, locked, private) on a real directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadDockerfile } from '../../server/build/stages';
import { graphFor, planBuild, type PlanOptions } from '../../server/build/expand';
import { readContextDir } from '../../server/build/context';
import { planKeys } from '../../server/build/cachekey';
import { CacheMounts } from '../../server/build/cachemounts';
import { mountSource, mountTarget, stubPaths, unsupportedRun } from '../../server/build/runmounts';
import type { BaseImage, BuildPlan, Step } from '../../server/build/plan';
import { readSecrets } from '../../server/cli/build';

const AMD64 = { os: 'linux', architecture: 'amd64' };
const LOC = { file: 'Dockerfile', line: 4 };

function plan(src: string): { plan: BuildPlan; bases: Map<string, BaseImage> } {
  const df = loadDockerfile(src);
  const o: PlanOptions = { platform: AMD64, buildPlatform: AMD64 };
  const g = graphFor(df, o);
  const bases = new Map(g.images.map((r) => [r, { digest: 'sha256:' + createHash('sha256').update(r).digest('hex'), config: {} }]));
  return { plan: planBuild(df, o, g, bases), bases };
}

type RunAction = Extract<Step['action'], { kind: 'run' }>;
const runOf = (p: BuildPlan): RunAction => p.stages[p.stages.length - 1].steps.find((s) => s.action.kind === 'run')!.action as RunAction;

function tmp(t: { after: (fn: () => void) => void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-runmounts-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

test('mount targets: relative ones are below WORKDIR, cleaned; / is refused naming file:line', () => {
  assert.equal(mountTarget('cache', '/app', LOC), '/app/cache');
  assert.equal(mountTarget('/a/../b/', '/app', LOC), '/b');
  assert.throws(() => mountTarget('/', '/', LOC), /^Error: Dockerfile:4: invalid mount target "\/"|Dockerfile:4: invalid mount target "\/"/);
  assert.throws(() => mountTarget('..', '/', LOC), /Dockerfile:4: invalid mount target/);
});

test('mount sources are relative to their root and `..` stops there', () => {
  assert.equal(mountSource(undefined), '.');
  assert.equal(mountSource('/'), '.');
  assert.equal(mountSource('../../etc/passwd'), 'etc/passwd');
  assert.equal(mountSource('./a/b/'), 'a/b');
});

test('stub paths are each target and its parents, once', () => {
  assert.deepEqual(stubPaths(['/opt/d', '/opt/e', '/x']).sort(), ['opt', 'opt/d', 'opt/e', 'x']);
});

test('ssh mounts, secrets as environment variables, and --network=host for a user, are refused naming file:line and the flag', () => {
  const r = (src: string): RunAction => runOf(plan(src).plan);
  assert.equal(unsupportedRun(r('FROM a\nRUN --mount=type=secret,id=t true'), LOC, 0), undefined);
  assert.match(unsupportedRun(r('FROM a\nRUN --mount=type=secret,id=t,env=T true'), LOC, 0) ?? '', /^Dockerfile:4: RUN --mount=type=secret,env=T is not supported yet/);
  assert.match(unsupportedRun(r('FROM a\nRUN --mount=type=ssh true'), LOC, 0) ?? '', /type=ssh/);
  assert.equal(unsupportedRun(r('FROM a\nRUN --network=host true'), LOC, 0), undefined, 'root may');
  assert.match(unsupportedRun(r('FROM a\nRUN --network=host true'), LOC, 1000) ?? '', /^Dockerfile:4: RUN --network=host refused for uid 1000/);
  assert.equal(unsupportedRun(r('FROM a\nRUN --network=none --mount=type=cache,target=/c --mount=type=tmpfs,target=/t true'), LOC, 1000), undefined);
});

test('a lone heredoc starting with #! runs as /dev/pipes/NAME; one without runs as the shell script; several go to the shell as written', () => {
  const shebang = runOf(plan('FROM a\nRUN <<-EOT\n\t#!/bin/sh\n\techo hi\n\tEOT\n').plan);
  assert.deepEqual(shebang.argv, ['/bin/sh', '-c', '/dev/pipes/EOT']);
  assert.deepEqual(shebang.script, { name: 'EOT', data: '#!/bin/sh\necho hi\n' });
  const plain = runOf(plan("FROM a\nRUN <<'EOF'\necho $HOME\nEOF\n").plan);
  assert.deepEqual(plain.argv, ['/bin/sh', '-c', 'echo $HOME\n'], 'BuildKit ignores the quoting of a lone RUN heredoc');
  assert.equal(plain.script, undefined);
  const two = runOf(plan('FROM a\nRUN cat <<A > /a && cat <<B > /b\n1\nA\n2\nB\n').plan);
  assert.deepEqual(two.argv, ['/bin/sh', '-c', 'cat <<A > /a && cat <<B > /b\n1\nA\n2\nB']);
});

test('cache keys cover the mount specs and the bound context files, not the cache mounts\' contents', async (t) => {
  const dir = tmp(t);
  fs.writeFileSync(path.join(dir, 'in.txt'), 'one');
  fs.writeFileSync(path.join(dir, 'other.txt'), 'x');
  const keyOf = async (src: string): Promise<string> => {
    const { plan: p, bases } = plan(src);
    const k = planKeys(p, bases, await readContextDir(dir, {}));
    return k.stageKey.get(p.target)!;
  };
  const bind = 'FROM a\nRUN --mount=type=bind,source=in.txt,target=/i cat /i\n';
  const a = await keyOf(bind);
  fs.writeFileSync(path.join(dir, 'other.txt'), 'y');
  assert.equal(await keyOf(bind), a, 'a file the bind does not read');
  fs.writeFileSync(path.join(dir, 'in.txt'), 'two');
  assert.notEqual(await keyOf(bind), a, 'the bound file edited');
  assert.notEqual(await keyOf(bind.replace('target=/i', 'target=/i,rw')), await keyOf(bind), 'rw is part of the spec');
  await keyOf(bind.replace('source=in.txt', 'source=../../in.txt')); // `..` stops at the context's root, as the mount reads it
  const cache = 'FROM a\nRUN --mount=type=cache,target=/c true\n';
  const c = await keyOf(cache);
  fs.writeFileSync(path.join(dir, 'in.txt'), 'three');
  assert.equal(await keyOf(cache), c);
  assert.notEqual(await keyOf(cache.replace('target=/c', 'target=/c,sharing=locked')), c);
  const script = 'FROM a\nRUN <<EOF\n#!/bin/sh\necho 1\nEOF\n';
  assert.notEqual(await keyOf(script), await keyOf(script.replace('echo 1', 'echo 2')), 'a shebang heredoc\'s body');
});

test('cache directories: shared holders use one directory; locked waits for the holder; private gets a fresh one; prune removes the free ones', async (t) => {
  const root = tmp(t);
  const caches = CacheMounts.forRoot(root);
  assert.equal(CacheMounts.forRoot(root), caches, 'one instance per root');
  const spec = (id: string, sharing: 'shared' | 'locked' | 'private') => ({ id, sharing, uid: 0, gid: 0, mode: 0o750 });
  const scratch = async (): Promise<string> => fs.mkdtempSync(path.join(root, 'scratch-'));
  let inits = 0;
  const init = async (d: string): Promise<void> => {
    inits++;
    fs.writeFileSync(path.join(d, 'seed'), 's');
  };
  const a = await caches.acquire(5, spec('s', 'shared'), init, scratch);
  const b = await caches.acquire(5, spec('s', 'shared'), init, scratch);
  assert.equal(a.dir, b.dir);
  assert.equal(inits, 1, 'filled once, when new');
  assert.equal(fs.statSync(a.dir).mode & 0o777, 0o750);
  assert.ok(fs.existsSync(path.join(a.dir, 'seed')));
  assert.ok(a.dir.startsWith(path.join(root, 'build', 'cachemounts', '5') + path.sep));
  const p = await caches.acquire(5, spec('s', 'private'), init, scratch);
  assert.notEqual(p.dir, a.dir, 'private while held: a fresh directory');
  await p.release();
  assert.ok(!fs.existsSync(p.dir));
  await a.release();
  await b.release();

  const first = await caches.acquire(5, spec('l', 'locked'), init, scratch);
  let second: { dir: string; release(): Promise<void> } | undefined;
  const waiting = caches.acquire(5, spec('l', 'locked'), init, scratch).then((h) => (second = h));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(second, undefined, 'the second locked user waits');
  assert.equal(await caches.prune(5), 1, 'the held one stays, the free one goes');
  await first.release();
  await waiting;
  assert.equal(second!.dir, first.dir);
  await second!.release();
  assert.equal(await caches.prune(5), 1);
  assert.deepEqual(fs.readdirSync(caches.ownerDir(5)), []);

  // a cancelled waiter stops waiting, and the one after it still waits for the holder
  const holder = await caches.acquire(5, spec('c', 'locked'), init, scratch);
  const abort = new AbortController();
  const cancelled = caches.acquire(5, spec('c', 'locked'), init, scratch, abort.signal);
  let third: { dir: string; release(): Promise<void> } | undefined;
  const after = caches.acquire(5, spec('c', 'locked'), init, scratch).then((h) => (third = h));
  abort.abort();
  await assert.rejects(cancelled, /cancelled while waiting for cache mount "c"/);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(third, undefined);
  await holder.release();
  await after;
  await third!.release();
});

test('capsa build --secret reads a file or an environment variable, base64 by id, and says what is wrong', (t) => {
  const dir = tmp(t);
  fs.writeFileSync(path.join(dir, 'f'), 'from-file');
  const b64 = (x: string): string => Buffer.from(x).toString('base64');
  assert.deepEqual(readSecrets([`id=a,src=${path.join(dir, 'f')}`, 'id=b,env=TOKEN', 'id=TOKEN'], { TOKEN: 'from-env' }), { a: b64('from-file'), b: b64('from-env'), TOKEN: b64('from-env') });
  assert.throws(() => readSecrets(['id=b,env=MISSING'], {}), /environment variable MISSING is not set/);
  assert.throws(() => readSecrets(['id=b,color=red'], {}), /unexpected key "color"/);
  assert.throws(() => readSecrets(['nonsense'], {}), /expected id=ID/);
});
