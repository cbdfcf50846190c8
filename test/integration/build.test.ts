/**
 * `capsa build` against a real helper, kernel and registry: a multi-stage
 * Dockerfile with RUN, COPY (context and --from), ENV, WORKDIR, USER, CMD
 * builds and runs; a rebuild takes every step from the cache; editing the
 * file a late COPY reads re-runs from that step; --no-cache re-runs all;
 * the cache survives a helper restart; a failing RUN names its step and
 * code and tags nothing; COPY ../x is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileRegistry, restartHelper, startHelper } from '../helpers/capsa';

const registry = fileRegistry();

const DOCKERFILE = [
  'FROM busybox AS base',
  'ENV GREETING=hello',
  'WORKDIR /app',
  'COPY lib.txt ./',
  'RUN echo "$GREETING $(cat lib.txt)" > built.txt && echo ran-step',
  'FROM busybox',
  'COPY --from=base /app/built.txt /out/',
  'COPY main.txt /out/main.txt',
  'USER 1000',
  'CMD ["cat", "/out/built.txt", "/out/main.txt"]',
].join('\n');

const usingCache = (out: string): number => out.split('\n').filter((l) => l === ' ---> Using cache').length;

test('a multi-stage build runs, rebuilds from the cache, re-runs from an edited COPY, --no-cache, survives a restart', async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-build-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'Dockerfile'), DOCKERFILE);
  fs.writeFileSync(path.join(dir, 'lib.txt'), 'lib\n');
  fs.writeFileSync(path.join(dir, 'main.txt'), 'main one\n');
  { const p = await h.cli(['pull', 'busybox']); assert.equal(p.code, 0, p.stderr); }
  let t0 = Date.now();
  const first = await h.cli(['build', '-t', 'built:one', dir]);
  const cold = Date.now() - t0;
  assert.equal(first.code, 0, first.stdout + first.stderr);
  assert.match(first.stdout, /Step 1\/10 : FROM busybox AS base/);
  assert.match(first.stdout, /^ran-step$/m);
  assert.match(first.stdout, /Successfully tagged docker.io\/library\/built:one/);
  const run = await h.cli(['run', '--rm', '--network', 'none', 'built:one']);
  assert.equal(run.stdout, 'hello lib\nmain one\n', run.stderr);
  t0 = Date.now();
  const again = await h.cli(['build', '-t', 'built:one', dir]);
  const warm = Date.now() - t0;
  assert.equal(again.code, 0, again.stderr);
  assert.equal(usingCache(again.stdout), 8, again.stdout);
  assert.doesNotMatch(again.stdout, /^ran-step$/m);
  fs.writeFileSync(path.join(dir, 'main.txt'), 'main two\n');
  const edited = await h.cli(['build', '-t', 'built:two', dir]);
  assert.equal(usingCache(edited.stdout), 5, edited.stdout);
  assert.match(edited.stdout, /Step 8\/10 : COPY main.txt \/out\/main.txt\n ---> [0-9a-f]{12}\n/, "the edited COPY runs again");
  assert.equal((await h.cli(['run', '--rm', '--network', 'none', 'built:two'])).stdout, 'hello lib\nmain two\n');
  const none = await h.cli(['build', '--no-cache', dir]);
  assert.equal(usingCache(none.stdout), 0);
  assert.match(none.stdout, /^ran-step$/m);
  // the first helper stops (as a service restart does) before the next one starts on the same root
  const exited = new Promise((r) => h.process.once('exit', r));
  h.process.kill('SIGTERM');
  await exited;
  await restartHelper(h);
  const restarted = await h.cli(['build', dir]);
  assert.equal(usingCache(restarted.stdout), 8, restarted.stdout);
  const target = await h.cli(['build', '--target', 'base', '-q', dir]);
  assert.match(target.stdout, /^sha256:[0-9a-f]{64}\n$/);
  process.stdout.write(`# build figures: cold ${cold} ms, cached rebuild ${warm} ms\n`);
  const ps = await h.cli(['ps', '-a', '-q']);
  assert.equal(ps.stdout.trim(), '', 'no build container left');
});

test('a failing RUN names its step and exit code and tags nothing; COPY ../x is refused', async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-build-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  { const p = await h.cli(['pull', 'busybox']); assert.equal(p.code, 0, p.stderr); }
  fs.writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox\nRUN exit 3\n');
  const failed = await h.cli(['build', '-t', 'never:made', dir]);
  assert.notEqual(failed.code, 0);
  assert.match(failed.stderr, /step 2 \(RUN exit 3\) failed: the command returned a non-zero code: 3/);
  assert.notEqual((await h.cli(['image', 'inspect', 'never:made'])).code, 0);
  assert.equal((await h.cli(['ps', '-a', '-q'])).stdout.trim(), '');
  fs.writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox\nCOPY ../x /x\n');
  const outside = await h.cli(['build', dir]);
  assert.notEqual(outside.code, 0);
  assert.match(outside.stderr, /outside the build context: \.\.\/x/);
});

test("identical steps of another project (another directory, other unrelated files, the Dockerfile elsewhere) come from the cache", async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  const one = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-build-one-'));
  const two = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-build-two-'));
  t.after(() => fs.rmSync(one, { recursive: true, force: true }));
  t.after(() => fs.rmSync(two, { recursive: true, force: true }));
  for (const dir of [one, two]) {
    fs.writeFileSync(path.join(dir, 'lib.txt'), 'lib\n');
    fs.writeFileSync(path.join(dir, 'main.txt'), 'main one\n');
  }
  fs.writeFileSync(path.join(one, 'Dockerfile'), DOCKERFILE);
  fs.mkdirSync(path.join(two, 'docker'));
  fs.writeFileSync(path.join(two, 'docker', 'app.Dockerfile'), DOCKERFILE);
  fs.writeFileSync(path.join(two, 'README'), 'a file no step reads\n');
  { const p = await h.cli(['pull', 'busybox']); assert.equal(p.code, 0, p.stderr); }
  const first = await h.cli(['build', '-t', 'proj:one', one]);
  assert.equal(first.code, 0, first.stderr);
  const second = await h.cli(['build', '-f', path.join(two, 'docker', 'app.Dockerfile'), '-t', 'proj:two', two]);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(usingCache(second.stdout), 8, `every step of the second project is a cache hit:\n${second.stdout}`);
  assert.doesNotMatch(second.stdout, /^ran-step$/m);
  const ids = await h.cli(['images', '-q', 'proj']);
  assert.equal(new Set(ids.stdout.trim().split('\n')).size, 1, 'both names are the same image');
});
