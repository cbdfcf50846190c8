/**
 * SOURCE_DATE_EPOCH makes `capsa build` reproducible: from the environment
 * (as buildx takes it) or `--build-arg SOURCE_DATE_EPOCH=`, the image's and
 * its history's times are the epoch and no file in a layer is newer, so two
 * --no-cache builds at different times, of a context whose files were
 * touched in between, give the same image id. Without it they differ; the
 * epoch is part of the cache key, so a build with it never reuses a step
 * built without it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli, type TestHelper } from '../helpers/capsa';
import { busyboxHelperForFile } from '../helpers/busyboxhelper';

const EPOCH = 1700000000;
let h: TestHelper;
busyboxHelperForFile((helper) => (h = helper));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function build(dir: string, env: Record<string, string>, extra: string[] = []): Promise<string> {
  const r = await runCli(['build', '-q', '--no-cache', ...extra, dir], { ...h.env, ...env }, { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

test('with SOURCE_DATE_EPOCH two --no-cache builds seconds apart, files touched between, give the same image; its times are the epoch; without it they differ', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-repro-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox\nARG SOURCE_DATE_EPOCH\nCOPY a.txt /a.txt\nRUN echo "$SOURCE_DATE_EPOCH" > /epoch && mkdir /made\nWORKDIR /w\nENV A=1\n');
  fs.writeFileSync(path.join(dir, 'a.txt'), 'a\n');
  const first = await build(dir, { SOURCE_DATE_EPOCH: String(EPOCH) });
  await sleep(1100);
  fs.utimesSync(path.join(dir, 'a.txt'), new Date(), new Date());
  const second = await build(dir, { SOURCE_DATE_EPOCH: String(EPOCH) });
  assert.equal(second, first, 'the same image id');
  const byArg = await build(dir, { SOURCE_DATE_EPOCH: '' }, ['--build-arg', `SOURCE_DATE_EPOCH=${EPOCH}`]);
  assert.equal(byArg, first, '--build-arg SOURCE_DATE_EPOCH= is the same as the environment');

  const [img] = JSON.parse((await h.cli(['image', 'inspect', first])).stdout) as Array<Record<string, any>>;
  assert.equal(img.Created, new Date(EPOCH * 1000).toISOString());
  const run = await h.cli(['run', '--rm', '--network', 'none', first, 'sh', '-c', 'cat /epoch; stat -c %Y /a.txt /made /w /epoch']);
  assert.equal(run.code, 0, run.stderr);
  const [epochSeen, ...mtimes] = run.stdout.trim().split('\n');
  assert.equal(epochSeen, String(EPOCH), 'ARG SOURCE_DATE_EPOCH reads it');
  for (const m of mtimes) assert.ok(Number(m) <= EPOCH, `no file newer than the epoch: ${run.stdout}`);

  const plain1 = await build(dir, { SOURCE_DATE_EPOCH: '' });
  await sleep(1100);
  const plain2 = await build(dir, { SOURCE_DATE_EPOCH: '' });
  assert.notEqual(plain1, plain2, 'without an epoch the times differ');
  assert.notEqual(plain1, first);

  const bad = await runCli(['build', '-q', dir], { ...h.env, SOURCE_DATE_EPOCH: 'yesterday' });
  assert.equal(bad.code, 125);
  assert.match(bad.stderr, /SOURCE_DATE_EPOCH "yesterday": expected whole seconds/);
});

test('the epoch is part of the cache key: a build with it reruns the steps a build without it made, and its second build is all cache', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-repro-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox\nRUN echo keyed > /k\n');
  const plain = await runCli(['build', '--progress=plain', dir], { ...h.env, SOURCE_DATE_EPOCH: '' }, { timeoutMs: 120_000 });
  assert.equal(plain.code, 0, plain.stderr);
  const withEpoch = await runCli(['build', '--progress=plain', dir], { ...h.env, SOURCE_DATE_EPOCH: String(EPOCH) }, { timeoutMs: 120_000 });
  assert.equal(withEpoch.code, 0, withEpoch.stderr);
  assert.doesNotMatch(withEpoch.stdout, /Using cache/, 'nothing of the build without the epoch is reused');
  const again = await runCli(['build', '--progress=plain', dir], { ...h.env, SOURCE_DATE_EPOCH: String(EPOCH) }, { timeoutMs: 120_000 });
  assert.match(again.stdout, /Using cache/);
});
