/**
 * Crash consistency: the helper SIGKILLed in the middle of long work — a
 * pull, right after a create, an `rm -f` of a running container, a
 * `volume rm`, an `image prune -a`, a `load` — then restarted on the same
 * root. The store holds only what it proved (every blob under a digest name
 * hashes to it, no half-unpacked layer, images listed only with all their
 * blobs and layers, and a re-pull or re-load works), containers are listed
 * with truthful states, a removed volume or container never comes back
 * half-deleted, nothing leaks (processes, mounts), and a second
 * crash/restart cycle is fine too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CLI, fileRegistry, ok, processesOf, restartHelper, testHelper, until, type TestHelper } from '../helpers/capsa';
import { startFaultProxy } from '../helpers/registry';
import { busyboxLayer, pushImage, tarLayer } from '../helpers/oci';

const root = process.getuid?.() === 0;
const skip = !root && 'the helper needs root';
const registry = fileRegistry();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** The store holds only what it proved, and every image it lists has all its blobs and layers. */
async function storeConsistent(h: TestHelper): Promise<void> {
  const blobs = path.join(h.root, 'blobs', 'sha256');
  for (const hex of await fs.readdir(blobs).catch(() => [] as string[])) {
    assert.equal(await sha256File(path.join(blobs, hex)), hex, `blob ${hex} holds what its name says`);
  }
  const layers = await fs.readdir(path.join(h.root, 'layers')).catch(() => [] as string[]);
  assert.deepEqual(layers.filter((n) => n.startsWith('tmp-')), [], 'no half-unpacked or half-deleted layer');
  const index = JSON.parse(await fs.readFile(path.join(h.root, 'images.json'), 'utf8').catch(() => '{"images":{}}')) as {
    images: Record<string, { id: string; diffIds: string[]; layers: Array<{ digest: string }> }>;
  };
  for (const r of Object.values(index.images ?? {})) {
    for (const l of r.layers) assert.ok(await fs.stat(path.join(blobs, l.digest.slice(7))).catch(() => undefined), `image ${r.id} has its layer blob ${l.digest}`);
    for (const d of r.diffIds) assert.ok(await fs.stat(path.join(h.root, 'layers', 'sha256', d.slice(7))).catch(() => undefined), `image ${r.id} has its layer ${d}`);
    assert.ok(await fs.stat(path.join(blobs, r.id.slice(7))).catch(() => undefined), `image ${r.id} has its config`);
  }
  await ok(h, ['system', 'df']);
}

/** Crash, restart, and check the helper answers as a new process. */
async function crashAndRestart(h: TestHelper): Promise<void> {
  const old = h.process.pid;
  await h.crash();
  await restartHelper(h);
  assert.notEqual(h.process.pid, old);
  assert.match(await ok(h, ['version']), new RegExp(`pid ${h.process.pid}\\n`));
}

/** Polls `check` as fast as the loop allows (a removal is caught in its first milliseconds), for at most `ms`. */
async function soon(check: () => Promise<boolean>, ms = 20_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setImmediate(r));
  }
  return false;
}

const exists = (p: string) => fs.access(p).then(() => true, () => false);
const count = (dir: string) => fs.readdir(dir).then((l) => l.length, () => -1);

/** `capsa ARGV…` started and left running (the helper is killed under it). */
function background(h: TestHelper, argv: string[]): { done: Promise<number> } {
  const child = spawn(process.execPath, [CLI, ...argv], { env: h.env, stdio: 'ignore' });
  return { done: new Promise((r) => child.once('close', (code) => r(code ?? 137))) };
}

test('a helper killed mid-pull keeps no image and no unproven blob; the re-pull works, twice over', { skip, timeout: 240_000 }, async (t) => {
  const h = await testHelper(t, registry.url, { checkMounts: false });
  const big = await tarLayer([{ type: 'file', path: 'big.bin', content: randomBytes(3 << 20).toString('latin1') }]);
  const repo = `crash/${randomBytes(4).toString('hex')}`;
  await pushImage(registry, repo, 'latest', { layers: [await busyboxLayer(), big], compression: 'gzip' });
  const proxy = await startFaultProxy(registry, { bytesPerSecond: 512 << 10 });
  t.after(() => proxy.stop());
  const ref = `${proxy.host}/${repo}:latest`;
  for (let cycle = 0; cycle < 2; cycle++) {
    const pull = background(h, ['pull', '-q', ref]);
    await until('the pull to be under way', async () => (await fs.readdir(path.join(h.root, 'tmp'))).length > 0, 20_000);
    await sleep(300);
    await crashAndRestart(h);
    // (its exit status when the helper is lost is the lost-helper work's; here only the store matters)
    await pull.done;
    assert.doesNotMatch(await ok(h, ['images']), new RegExp(repo), 'a pull cut short lists no image');
    await storeConsistent(h);
  }
  proxy.setFault({});
  assert.match(await ok(h, ['pull', '-q', ref]), new RegExp(repo));
  assert.match(await ok(h, ['run', '--rm', '--network', 'none', ref, 'sh', '-c', 'test -s /big.bin && echo whole']), /whole/);
  await storeConsistent(h);
});

test('a container created before the crash is listed as created and starts after the restart', { skip, timeout: 120_000 }, async (t) => {
  const h = await testHelper(t, registry.url);
  await ok(h, ['pull', '-q', 'busybox']);
  await ok(h, ['create', '--name', 'made', '--network', 'none', 'busybox', 'sh', '-c', 'echo started']);
  for (let cycle = 0; cycle < 2; cycle++) {
    await crashAndRestart(h);
    const [info] = JSON.parse(await ok(h, ['inspect', 'made'])) as Array<{ state: string }>;
    assert.equal(info.state, 'created', 'a container never started is not shown as run or exited');
    assert.deepEqual(await processesOf(h), [], 'nothing of it runs');
  }
  assert.equal(await ok(h, ['start', '-a', 'made']), 'started\n');
  await storeConsistent(h);
});

test('a helper killed during rm -f of a running container leaves it either gone or exited, never half-removed, with nothing running', { skip, timeout: 240_000 }, async (t) => {
  const h = await testHelper(t, registry.url);
  await ok(h, ['pull', '-q', 'busybox']);
  for (const delay of [0, 1, 3, 10]) {
    const name = `victim${delay}`;
    // a large upper layer makes the removal take long enough to be cut
    await ok(h, ['run', '-d', '--name', name, '--network', 'none', 'busybox', 'sh', '-c', 'mkdir /d && cd /d && i=0; while [ $i -lt 3000 ]; do echo x > f$i; i=$((i+1)); done; touch /ready; sleep 1000']);
    await until('the container to fill its upper layer', async () => (await h.cli(['exec', name, 'test', '-e', '/ready'])).code === 0, 60_000);
    const id = (await ok(h, ['ps', '-q'])).trim();
    const cdir = (await fs.readdir(path.join(h.root, 'containers'))).find((d) => d.startsWith(id))!;
    const files = path.join(h.root, 'containers', cdir, 'upper', 'd');
    const rm = background(h, ['rm', '-f', name]);
    // the crash comes once the removal of its files has begun (or the directory has gone at once)
    await soon(async () => (await count(files)) < 3000);
    await sleep(delay);
    await crashAndRestart(h);
    await rm.done;
    const ps = await ok(h, ['ps', '-a', '--quiet']);
    const dirs = await fs.readdir(path.join(h.root, 'containers'));
    assert.deepEqual(dirs.filter((d) => d.startsWith('.')), [], 'an interrupted removal is finished at restart');
    if (ps.trim() !== '') {
      const [info] = JSON.parse(await ok(h, ['inspect', name])) as Array<{ state: string; rootfs: string }>;
      assert.ok(['exited', 'running'].includes(info.state), `state ${info.state}`);
      // whatever is listed is whole: its record and its directories are all there
      for (const d of dirs) for (const f of ['config.json', 'state.json', 'upper']) assert.ok(await fs.stat(path.join(h.root, 'containers', d, f)).catch(() => undefined), `${d}/${f} is there`);
      assert.equal(await count(files), 3000, 'a container still listed has all of its files');
      await ok(h, ['rm', '-f', name]);
    }
    assert.equal(await ok(h, ['ps', '-a', '--quiet']), '');
    await until('nothing of the container to run', async () => (await processesOf(h)).length === 0, 10_000);
  }
  await storeConsistent(h);
});

test('a helper killed during volume rm never leaves half a volume, nor its old files in a new one of that name', { skip, timeout: 240_000 }, async (t) => {
  const h = await testHelper(t, registry.url);
  for (const delay of [0, 1, 3, 10]) {
    const name = `vol${delay}`;
    await ok(h, ['volume', 'create', name]);
    const data = path.join(h.root, 'volumes', name, '_data');
    for (let d = 0; d < 40; d++) {
      await fs.mkdir(path.join(data, `d${d}`));
      await Promise.all(Array.from({ length: 250 }, (_, i) => fs.writeFile(path.join(data, `d${d}`, `f${i}`), 'x')));
    }
    const rm = background(h, ['volume', 'rm', name]);
    // the crash comes once the removal has begun: a file of it gone, or the whole directory
    await soon(async () => !(await exists(path.join(data, 'd0', 'f0'))) || !(await exists(path.join(h.root, 'volumes', name, 'volume.json'))) || (await count(path.join(data, 'd39'))) < 250);
    await sleep(delay);
    await crashAndRestart(h);
    await rm.done;
    const listed = (await ok(h, ['volume', 'ls', '-q'])).split('\n').includes(name);
    if (listed) {
      let files = 0;
      for (const d of await fs.readdir(data)) files += (await fs.readdir(path.join(data, d))).length;
      assert.equal(files, 40 * 250, 'a volume still listed holds all its files');
    }
    await ok(h, ['volume', 'create', name]);
    if (!listed) assert.deepEqual(await fs.readdir(data), [], 'a volume made again under a removed name starts empty');
    await ok(h, ['volume', 'rm', name]);
    await until('the interrupted removal to be swept', async () => (await fs.readdir(path.join(h.root, 'volumes'))).length === 0, 20_000);
  }
});

test('a helper killed mid image prune -a or mid load keeps a consistent store; the re-load works, twice over', { skip, timeout: 240_000 }, async (t) => {
  const h = await testHelper(t, registry.url, { checkMounts: false });
  await ok(h, ['pull', '-q', 'busybox']);
  const archive = path.join(h.dir, 'busybox.tar');
  await ok(h, ['save', '-o', archive, 'busybox']);
  for (const delay of [0, 30, 100]) {
    const prune = background(h, ['image', 'prune', '-a', '-f']);
    await sleep(delay);
    await crashAndRestart(h);
    await prune.done;
    await storeConsistent(h);
    const load = background(h, ['load', '-i', archive]);
    await sleep(delay);
    await crashAndRestart(h);
    await load.done;
    await storeConsistent(h);
    await ok(h, ['load', '-i', archive]);
    assert.match(await ok(h, ['run', '--rm', '--network', 'none', 'busybox', 'echo', 'ran']), /ran/);
    await storeConsistent(h);
  }
});
