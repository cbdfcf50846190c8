/**
 * The image verbs of the real `capsa` CLI against a real helper and a real
 * local registry: images, rmi (and its refusal while a container uses the
 * image), image prune, system df, pull progress and Ctrl-C, the hiding of
 * intermediate build images, and image inspect.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLI, startHelper, type TestHelper, ok, until } from '../helpers/capsa';
import { startFaultProxy, startRegistry, type TestRegistry } from '../helpers/registry';
import { busyboxLayer, pushImage, seedBusybox, tarLayer, type PushedImage } from '../helpers/oci';
import * as os from 'node:os';
import { cliAs, createUser } from '../helpers/users';

let registry: TestRegistry;
let busybox: PushedImage;
let big: PushedImage;

before(async () => {
  registry = await startRegistry();
  busybox = await seedBusybox(registry);
  // Two layers, the base shared with busybox, the second ~2 MB of incompressible bytes.
  const noise = Buffer.alloc(2 * 1024 * 1024);
  for (let i = 0; i < noise.length; i += 4) noise.writeUInt32LE((Math.random() * 0x100000000) >>> 0, i);
  big = await pushImage(registry, 'library/big', 'latest', {
    layers: [await busyboxLayer(), await tarLayer([{ type: 'file', path: 'noise', content: noise }])],
    compression: 'gzip',
    config: { Cmd: ['sh'] },
  });
});
after(async () => {
  await registry?.stop();
});

interface Ctx {
  after: (fn: () => unknown) => void;
}

async function helper(t: Ctx): Promise<TestHelper> {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  return h;
}

function rows(out: string): string[][] {
  return out
    .trimEnd()
    .split('\n')
    .map((l) => l.split(/\s{3,}/));
}

test('capsa images prints repository, tag, image id, created and size; pull output is plain when stdout is not a terminal', async (t) => {
  const h = await helper(t);
  const pulled = await ok(h, ['pull', 'busybox']);
  assert.doesNotMatch(pulled, /\x1b\[/, 'no terminal escapes in a pipe');
  assert.match(pulled, /^Status: Downloaded newer image for docker\.io\/library\/busybox:latest$/m);
  await ok(h, ['pull', 'library/big']);
  const [header, ...list] = rows(await ok(h, ['images']));
  assert.deepEqual(header, ['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE']);
  const byRepo = new Map(list.map((r) => [r[0], r]));
  const bb = byRepo.get('busybox');
  assert.ok(bb, 'busybox listed');
  assert.equal(bb[1], 'latest');
  assert.equal(bb[2], busybox.configDigest.slice(7, 19));
  assert.match(bb[3], /years? ago|months? ago|weeks? ago/, 'created from the config (2024-01-01)');
  assert.match(bb[4], /^[0-9.]+ ?[kM]B$/);
  const b = byRepo.get('big');
  assert.ok(b && b[2] === big.configDigest.slice(7, 19));
  assert.match(b[4], /^[0-9.]+ ?MB$/);
  assert.deepEqual((await ok(h, ['images', '-q'])).trim().split('\n').sort(), [busybox.configDigest.slice(7, 19), big.configDigest.slice(7, 19)].sort());
});

test('rmi is refused while a container uses the image, -f only untags; prune and df count what containers use', async (t) => {
  const h = await helper(t);
  await ok(h, ['pull', 'busybox']);
  await ok(h, ['pull', 'library/big']);
  const run = await h.cli(['run', '--name', 'user-of-busybox', 'busybox', 'true']);
  assert.equal(run.code, 0, `run: ${run.stderr}`);

  const refused = await h.cli(['rmi', 'busybox']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /unable to remove repository reference "busybox" \(must force\): a container is using image [0-9a-f]{12}/);

  const df = rows(await ok(h, ['system', 'df']));
  assert.deepEqual(df[0], ['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE']);
  const images = df.find((r) => r[0] === 'Images')!;
  assert.deepEqual(images.slice(1, 3), ['2', '1'], 'two images, one in use');
  assert.match(images[4], /^[0-9.]+ ?MB \(\d+%\)$/, 'the big layer is reclaimable');
  const containers = df.find((r) => r[0] === 'Containers')!;
  assert.deepEqual(containers.slice(1, 3), ['1', '0']);
  assert.ok(df.find((r) => r[0].startsWith('Layers'))![1] === '2', 'busybox base shared: two layers');

  // prune without -a keeps tagged images; with -a it deletes big but not busybox (in use).
  assert.match(await ok(h, ['image', 'prune', '-f']), /Total reclaimed space: 0 ?B/);
  const pruned = await ok(h, ['image', 'prune', '-a', '-f']);
  assert.match(pruned, new RegExp(`deleted: ${big.configDigest}`));
  assert.doesNotMatch(pruned, new RegExp(busybox.configDigest));
  assert.match(pruned, /Total reclaimed space: [1-9][0-9.]* ?MB/);
  assert.deepEqual(rows(await ok(h, ['images'])).slice(1).map((r) => r[0]), ['busybox']);

  const forced = await ok(h, ['rmi', '-f', 'busybox']);
  assert.match(forced, /^Untagged: docker\.io\/library\/busybox:latest$/m);
  assert.doesNotMatch(forced, /^Deleted:/m, 'the image stays while the container needs it');
  await ok(h, ['rm', 'user-of-busybox']);
  const gone = await ok(h, ['image', 'prune', '-f']);
  assert.match(gone, new RegExp(`deleted: ${busybox.configDigest}`), 'now dangling and unused, it goes');
  assert.deepEqual(fs.readdirSync(path.join(h.root, 'layers', 'sha256')), []);
  assert.deepEqual(fs.readdirSync(path.join(h.root, 'blobs', 'sha256')), []);
});

test('on a slow registry the progress keeps moving on a terminal, and Ctrl-C cancels the pull leaving the store consistent', async (t) => {
  const h = await helper(t);
  const proxy = await startFaultProxy(registry, { bytesPerSecond: 300_000 });
  t.after(() => proxy.stop());
  const ref = `${proxy.host}/library/big:latest`;
  // script(1) gives the CLI a real terminal; ^C written to it is a real Ctrl-C.
  const child = spawn('script', ['-qfec', `${process.execPath} ${CLI} pull ${ref}`, '/dev/null'], { env: h.env, stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  // 'close', not 'exit': the last output (the cancel message) can still be in the pipe when the process has exited.
  const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));

  const seen = new Set<string>();
  const deadline = Date.now() + 30_000;
  while (seen.size < 3 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    for (const m of out.matchAll(/Downloading \[[=> ]+\] ([0-9.]+ ?[kM]?B)\//g)) seen.add(m[1]);
  }
  assert.ok(seen.size >= 3, `progress moved through several byte counts: ${[...seen].join(', ')}\n${out}`);
  assert.match(out, /\x1b\[\d+A/, 'lines redrawn in place');

  child.stdin.write('\x03');
  const code = await exited;
  assert.equal(code, 130, `exit status after Ctrl-C: ${out}`);
  assert.match(out, /pull of .* cancelled/);

  // The helper stopped the pull: nothing recorded, nothing half-made visible.
  assert.deepEqual(rows(await ok(h, ['images'])).slice(1), []);
  const tempLayers = () => fs.readdirSync(path.join(h.root, 'layers')).filter((n) => n !== 'sha256');
  await until('the temporary layer directories to go', async () => tempLayers().length === 0).catch(() => undefined);
  assert.deepEqual(tempLayers(), [], 'no temporary layer directories');
  for (const f of fs.readdirSync(path.join(h.root, 'tmp'))) assert.match(f, /^[0-9a-f]{64}\.partial$/, 'only resumable partial downloads');
  // Watch for a continuing download only from a quiet start: a loaded machine can keep the cancelled
  // connections' last bytes moving for a while (the proxy's throttled pump sends every 100 ms).
  const blobBytes = () => [...proxy.bytesSent].reduce((n, [key, b]) => (/blobs/.test(key) ? n + b : n), 0);
  let last = -1;
  await until('the blob bytes to stop', async () => {
    const now = blobBytes();
    const still = now === last;
    last = now;
    await new Promise((r) => setTimeout(r, 300));
    return still;
  });
  const before = proxy.count(/blobs/);
  const bytesBefore = blobBytes();
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(proxy.count(/blobs/), before, 'no download continues after the cancel');
  assert.equal(blobBytes(), bytesBefore, 'no download continues after the cancel');

  // And the next pull completes it.
  proxy.setFault({});
  const again = await h.cli(['pull', ref], { timeoutMs: 60_000 });
  assert.equal(again.code, 0, again.stderr);
  assert.equal(rows(await ok(h, ['images'])).slice(1).length, 1);
});

test("images hides a build's intermediate images (-a shows them), filters by REPOSITORY; image inspect and inspect show Docker's fields; another user's image is not found", async (t) => {
  const user = createUser(t);
  const h = await startHelper({ mirror: registry.url, env: { CAPSA_SOCKET_MODE: '0666' } });
  t.after(() => h.stop());
  // the test's directory (0700 from mkdtemp) opened for the user to traverse, as /run/capsa is
  fs.chmodSync(h.dir, 0o711);
  await ok(h, ['pull', 'busybox']);
  const ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-images-'));
  t.after(() => fs.rmSync(ctx, { recursive: true, force: true }));
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo a > /a\nENV A=1\nCMD ["cat", "/a"]\n');
  const id = (await ok(h, ['build', '-q', '-t', 'app:1', ctx])).trim();
  const shown = rows(await ok(h, ['images'])).slice(1);
  assert.deepEqual(shown.map((r) => r[0]).sort(), ['app', 'busybox'], 'the RUN and ENV steps\' untagged images are hidden');
  const all = rows(await ok(h, ['images', '-a'])).slice(1);
  assert.equal(all.filter((r) => r[0] === '<none>').length, 2, 'images -a shows the two intermediate images');
  assert.deepEqual(rows(await ok(h, ['images', 'app'])).slice(1).map((r) => r[0]), ['app']);
  assert.deepEqual(rows(await ok(h, ['images', 'docker.io/library/busybox:latest'])).slice(1).map((r) => r[0]), ['busybox']);

  const [img] = JSON.parse(await ok(h, ['image', 'inspect', 'app:1'])) as Array<Record<string, any>>;
  assert.equal(img.Id, id);
  assert.deepEqual(img.RepoTags, ['app:1']);
  assert.deepEqual(img.Config.Cmd, ['cat', '/a']);
  assert.ok(img.Config.Env.includes('A=1'));
  assert.equal(img.RootFS.Type, 'layers');
  assert.equal(img.RootFS.Layers.length, 2, 'busybox\'s layer and the RUN step\'s');
  assert.match(img.Parent, /^sha256:[0-9a-f]{64}$/, 'a built image names the step it was built on');
  assert.ok(all.some((r) => img.Parent.slice(7, 19) === r[2]), 'and that parent is one of the intermediate images');
  const [pulled] = JSON.parse(await ok(h, ['inspect', 'busybox'])) as Array<Record<string, any>>;
  assert.equal(pulled.Id, busybox.configDigest);
  assert.equal(pulled.Parent, '', 'a pulled image has no parent');

  const cid = (await ok(h, ['create', '--name', 'insp', 'busybox', 'true'])).trim();
  const both = JSON.parse(await ok(h, ['inspect', 'insp', 'app:1'])) as Array<Record<string, any>>;
  assert.equal(both.length, 2, 'inspect looks a name up as a container, then as an image');
  assert.equal(both[0].Id ?? both[0].id, cid);
  assert.equal(both[1].Id, id);
  const typed = await h.cli(['inspect', '--type', 'image', 'insp']);
  assert.equal(typed.code, 1);
  assert.match(typed.stderr, /^Error: No such image: insp$/m);
  const missing = await h.cli(['inspect', 'nosuch:thing']);
  assert.equal(missing.code, 1);
  assert.equal(missing.stdout.trim(), '[]');
  assert.match(missing.stderr, /^Error: No such object: nosuch:thing$/m);
  assert.equal((await h.cli(['container', 'inspect', 'app:1'])).code, 1, 'container inspect does not look at images');

  const theirs = await cliAs(h, user, '/', ['image', 'inspect', 'app:1']);
  assert.equal(theirs.code, 1, `root's image is not in another user's namespace: ${theirs.stderr}`);
  assert.match(theirs.stderr, /No such image: app:1/);
  assert.doesNotMatch(theirs.stdout + theirs.stderr, new RegExp(id.slice(7, 19)), 'nothing of it leaks');
  await ok(h, ['rm', 'insp']);
});
