/**
 * Hostile root filesystems, through the real CLI, helper, shim and kernel:
 * images with as many layers as overlayfs can stack run (and one more is
 * refused, naming the limit, before anything is fetched); /etc/resolv.conf,
 * hosts and hostname shipped as symlinks (dangling, absolute, escaping with
 * `..`, or under an /etc that is itself a link) get Capsa's content without
 * anything outside the container being read or written; and a read-only bind
 * is read-only in its submounts too. Each case ends with the same helper
 * (same pid) still answering.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fs, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { type TestHelper, ok, testHelper, fileRegistry } from '../helpers/capsa';
import { busyboxLayer, pushBlob, pushImage, pushManifest, sha256, tarLayer, gzip, MediaTypes, type TarEntrySpec } from '../helpers/oci';

const registry = fileRegistry();

async function helperFor(t: { after: (fn: () => Promise<void>) => void }): Promise<TestHelper> {
  return testHelper(t, registry.url);
}

/** The helper that started the test is the one answering now. */
async function assertSameHelper(h: TestHelper, pid: number | undefined): Promise<void> {
  assert.equal(h.process.exitCode, null, 'the helper is still running');
  assert.equal(h.process.pid, pid);
  const r = await h.cli(['ps', '-a']);
  assert.equal(r.code, 0, `the helper still answers: ${r.stderr}`);
}

/** The helper's resident memory (KiB) and open fds: a hostile input must leave neither grown. */
async function usage(h: TestHelper): Promise<{ rssKiB: number; fds: number }> {
  const status = await fs.readFile(`/proc/${h.process.pid}/status`, 'utf8');
  return { rssKiB: Number(/VmRSS:\s+(\d+)/.exec(status)![1]), fds: (await fs.readdir(`/proc/${h.process.pid}/fd`)).length };
}

/** One small layer per index: /layers/NNN holding NNN. */
async function numberedLayers(n: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const name = String(i).padStart(3, '0');
    out.push(await tarLayer([{ type: 'dir', path: 'layers/' }, { type: 'file', path: `layers/${name}`, content: name }]));
  }
  return out;
}

async function blobCount(h: TestHelper): Promise<number> {
  return (await fs.readdir(path.join(h.root, 'blobs', 'sha256')).catch(() => [])).length;
}

test('an image with 125 distinct layers runs and its container sees every layer', async (t) => {
  const h = await helperFor(t);
  const pid = h.process.pid;
  await pushImage(registry, 'library/layers125', 'latest', { layers: [await busyboxLayer(), ...(await numberedLayers(124))] });
  const out = await ok(h, ['run', '--rm', 'layers125', 'sh', '-c', 'cd /layers && for f in *; do printf "%s=%s\\n" "$f" "$(cat $f)"; done']);
  const want = Array.from({ length: 124 }, (_, i) => `${String(i).padStart(3, '0')}=${String(i).padStart(3, '0')}\n`).join('');
  assert.equal(out, want);
  // with --userns auto each layer is an idmapped mount first, and the overlay stacks those
  assert.equal(await ok(h, ['run', '--rm', '--userns', 'auto', 'layers125', 'sh', '-c', 'ls /layers | wc -l; stat -c %u /layers/123']), '124\n0\n');
  await assertSameHelper(h, pid);
});

test("an image with 500 layers, overlayfs's most, runs; one with 501 is refused at pull with the limit named", async (t) => {
  const h = await helperFor(t);
  const pid = h.process.pid;
  const layers = [await busyboxLayer(), ...(await numberedLayers(499))];
  await pushImage(registry, 'library/layers500', 'latest', { layers });
  const out = await ok(h, ['run', '--rm', 'layers500', 'sh', '-c', 'ls /layers | wc -l; cat /layers/000 /layers/498']);
  assert.equal(out, '499\n000498', 'cat of two files without newlines');

  const extra = await tarLayer([{ type: 'file', path: 'one-too-many', content: 'x' }]);
  await pushImage(registry, 'library/layers501', 'latest', { layers: [...layers, extra] });
  const blobsBefore = await blobCount(h);
  const r = await h.cli(['pull', 'layers501']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /has 501 layers, more than the 500 Capsa can stack \(the overlay filesystem's limit\)/);
  assert.equal(await blobCount(h), blobsBefore, 'nothing of the refused image was fetched');
  await assertSameHelper(h, pid);
});

test('a manifest of 20,000 entries of one repeated blob is refused at once, before any blob is fetched', async (t) => {
  const h = await helperFor(t);
  const pid = h.process.pid;
  const repo = 'library/repeated';
  const tar = await tarLayer([{ type: 'file', path: 'f', content: 'x' }]);
  const blob = gzip(tar);
  const layerDigest = await pushBlob(registry, repo, blob);
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: Array(20_000).fill(sha256(tar)) } }),
  );
  const configDigest = await pushBlob(registry, repo, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.dockerManifest,
      config: { mediaType: MediaTypes.dockerConfig, digest: configDigest, size: config.length },
      layers: Array(20_000).fill({ mediaType: MediaTypes.dockerLayerGzip, digest: layerDigest, size: blob.length }),
    }),
  );
  await pushManifest(registry, repo, 'latest', manifest, MediaTypes.dockerManifest);

  await ok(h, ['pull', 'busybox']); // the helper's registry client is warm, so what follows is the manifest's own cost
  const blobsBefore = await blobCount(h);
  const before = await usage(h);
  const started = Date.now();
  const r = await h.cli(['pull', 'repeated']);
  const took = Date.now() - started;
  const after = await usage(h);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /has 20000 layers, more than the 500 Capsa can stack/);
  assert.ok(took < 5_000, `refused in ${took} ms`);
  assert.equal(await blobCount(h), blobsBefore, 'neither the config nor a layer was fetched');
  assert.ok(after.rssKiB - before.rssKiB < 64 * 1024, `helper RSS grew from ${before.rssKiB} to ${after.rssKiB} KiB`);
  assert.ok(after.fds <= before.fds + 2, `helper fds went from ${before.fds} to ${after.fds}`);
  await assertSameHelper(h, pid);
});

/** Host files an image's links aim at: their bytes and mtime must not change. */
async function snapshot(files: string[]): Promise<Array<[string, string, number]>> {
  return Promise.all(files.map(async (f) => [f, (await fs.readFile(f)).toString('base64'), (await fs.stat(f)).mtimeMs] as [string, string, number]));
}

test('resolv.conf, hosts and hostname shipped as symlinks get Capsa content, and nothing outside the container is touched', async (t) => {
  const h = await helperFor(t);
  const pid = h.process.pid;
  // a host file at a path no image has: a link that followed host paths would land on it
  const bait = mkdtempSync(path.join(tmpdir(), 'capsa-bait-'));
  t.after(() => fs.rm(bait, { recursive: true, force: true }));
  const baitFile = path.join(bait, 'secret');
  await fs.writeFile(baitFile, 'host secret\n');
  const ups = '../'.repeat(12);
  const cases: Array<{ name: string; etc: TarEntrySpec[]; host: string[] }> = [
    {
      name: 'systemd-style dangling relative links',
      etc: [
        { type: 'symlink', path: 'etc/resolv.conf', target: '../run/systemd/resolve/stub-resolv.conf' },
        { type: 'symlink', path: 'etc/hosts', target: '../run/missing/hosts' },
        { type: 'symlink', path: 'etc/hostname', target: 'nowhere/hostname' },
      ],
      host: ['/etc/resolv.conf', '/etc/hosts', '/etc/hostname'].filter((f) => existsSync(f)),
    },
    {
      name: 'absolute links to host files',
      etc: [
        { type: 'symlink', path: 'etc/hosts', target: '/etc/shadow' },
        { type: 'symlink', path: 'etc/resolv.conf', target: baitFile },
        { type: 'symlink', path: 'etc/hostname', target: '/etc/passwd' },
      ],
      host: ['/etc/shadow', '/etc/passwd', baitFile],
    },
    {
      name: 'links escaping with ..',
      etc: [
        { type: 'symlink', path: 'etc/hostname', target: `${ups}etc/passwd` },
        { type: 'symlink', path: 'etc/hosts', target: `${ups}${baitFile.slice(1)}` },
        { type: 'symlink', path: 'etc/resolv.conf', target: `../${ups}etc/shadow` },
      ],
      host: ['/etc/shadow', '/etc/passwd', baitFile],
    },
    {
      name: 'an /etc that is itself a dangling link out of the root',
      etc: [{ type: 'symlink', path: 'etc', target: `${ups}${bait.slice(1)}/etc` }],
      host: [baitFile],
    },
  ];
  for (const [i, c] of cases.entries()) {
    await t.test(c.name, async () => {
      const repo = `library/links${i}`;
      // an /etc that is a link needs a base without an etc/ directory
      const base = c.etc.some((e) => 'path' in e && e.path === 'etc') ? await busyboxNoEtc() : await busyboxLayer();
      const layers = [base, await tarLayer(c.etc)];
      await pushImage(registry, repo, 'latest', { layers });
      const before = await snapshot(c.host);
      const baitListing = await fs.readdir(bait);
      const out = await ok(h, ['run', '--rm', '--network', 'none', '--hostname', 'linked', '--dns', '192.0.2.53', `links${i}`, 'sh', '-c', 'cat /etc/hostname; grep -c linked /etc/hosts; cat /etc/resolv.conf']);
      const lines = out.split('\n');
      assert.equal(lines[0], 'linked', out);
      assert.notEqual(lines[1], '0', out);
      assert.match(out, /nameserver 192\.0\.2\.53/);
      assert.deepEqual(await snapshot(c.host), before, 'host files keep their bytes and mtime');
      assert.deepEqual(await fs.readdir(bait), baitListing, 'nothing was created beside the bait');
    });
  }
  await assertSameHelper(h, pid);
});

/** busybox's layer without its etc/ entries: a later layer makes /etc a link. */
async function busyboxNoEtc(): Promise<Buffer> {
  const binary = await fs.readFile('/bin/busybox');
  return tarLayer([
    { type: 'dir', path: 'bin/' },
    { type: 'file', path: 'bin/busybox', content: binary, mode: 0o755 },
    ...['sh', 'cat', 'grep'].map((a): TarEntrySpec => ({ type: 'symlink', path: `bin/${a}`, target: 'busybox' })),
    { type: 'dir', path: 'dev/' },
    { type: 'dir', path: 'proc/' },
    { type: 'dir', path: 'sys/' },
    { type: 'dir', path: 'tmp/', mode: 0o1777 },
  ]);
}

test('an /etc/hosts that links to itself fails the run with the loop named, and the helper carries on', async (t) => {
  const h = await helperFor(t);
  const pid = h.process.pid;
  await pushImage(registry, 'library/linkloop', 'latest', {
    layers: [await busyboxLayer(), await tarLayer([{ type: 'symlink', path: 'etc/hosts', target: '/etc/hosts' }])],
  });
  const r = await h.cli(['run', '--rm', '--network', 'none', 'linkloop', 'true']);
  assert.equal(r.code, 125, r.stderr);
  assert.match(r.stderr, /container setup failed at mount "\/etc\/hosts": too many levels of symbolic links \(ELOOP\)/);
  assert.equal(await ok(h, ['run', '--rm', '--network', 'none', 'busybox', 'echo', 'fine']), 'fine\n');
  await assertSameHelper(h, pid);
});

test('a read-only bind is read-only in its submounts too (-v :ro and --mount readonly)', async (t) => {
  const h = await helperFor(t);
  const pid = h.process.pid;
  const src = mkdtempSync(path.join(tmpdir(), 'capsa-robind-'));
  const sub = path.join(src, 'sub');
  await fs.mkdir(sub);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', sub]);
  t.after(async () => {
    execFileSync('umount', [sub]);
    await fs.rm(src, { recursive: true, force: true });
  });
  await fs.writeFile(path.join(sub, 'kept'), 'host\n');
  const write = 'for f in /ro/top /ro/sub/kept /ro/sub/new; do if echo x > $f; then echo "$f written"; else echo "$f refused"; fi; done 2>&1';
  for (const flag of [['-v', `${src}:/ro:ro`], ['--mount', `type=bind,source=${src},target=/ro,readonly`]]) {
    const out = await ok(h, ['run', '--rm', ...flag, 'busybox', 'sh', '-c', write]);
    assert.match(out, /\/ro\/top refused/);
    assert.match(out, /\/ro\/sub\/kept: Read-only file system/, out);
    assert.match(out, /\/ro\/sub\/new: Read-only file system/, out);
    assert.doesNotMatch(out, /written/);
  }
  // a read-write bind of the same tree stays writable all the way down
  assert.equal(await ok(h, ['run', '--rm', '-v', `${src}:/rw`, 'busybox', 'sh', '-c', 'echo x > /rw/sub/new && echo ok']), 'ok\n');
  assert.equal(await fs.readFile(path.join(sub, 'kept'), 'utf8'), 'host\n');
  assert.deepEqual((await fs.readdir(src)).sort(), ['sub']);
  await fs.rm(path.join(sub, 'new'));
  await assertSameHelper(h, pid);
});
