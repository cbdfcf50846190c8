import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { promisify } from 'node:util';
import * as tar from 'tar-stream';
import { startRegistry, startFaultProxy } from '../helpers/registry';
import {
  busyboxLayer,
  hostPlatform,
  MediaTypes,
  pushBlob,
  pushImage,
  pushIndex,
  seedBusybox,
  sha256,
  tarLayer,
} from '../helpers/oci';

const execFileP = promisify(execFile);

/** `skopeo inspect` is the oracle: it parses what a real client would. Always async: the token issuer lives in this process. */
async function skopeo(args: string[]): Promise<any> {
  const { stdout } = await execFileP('skopeo', ['inspect', '--tls-verify=false', ...args], { maxBuffer: 16 << 20 });
  return JSON.parse(stdout);
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** False when the connection ended before the whole body arrived. */
  complete: boolean;
}

function get(url: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('close', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete }),
      );
    });
    req.on('error', reject);
  });
}

async function registryPids(dir: string): Promise<string[]> {
  const res = await execFileP('pgrep', ['-f', `${dir}/config.yml`]).catch(() => ({ stdout: '' }));
  return res.stdout.split('\n').filter(Boolean);
}

test('a registry starts on a free loopback port and stop() leaves no process and no directory', async () => {
  const reg = await startRegistry();
  assert.match(reg.host, /^127\.0\.0\.1:\d+$/);
  assert.equal(reg.url, `http://${reg.host}`);
  const res = await get(`${reg.url}/v2/`);
  assert.equal(res.status, 200);
  assert.equal((await registryPids(reg.dir)).length, 1);
  await reg.stop();
  assert.deepEqual(await registryPids(reg.dir), []);
  assert.equal(fs.existsSync(reg.dir), false);
  await assert.rejects(get(`${reg.url}/v2/`));
});

test('two registries run side by side on different ports', async (t) => {
  const [a, b] = await Promise.all([startRegistry(), startRegistry()]);
  t.after(() => Promise.all([a.stop(), b.stop()]));
  assert.notEqual(a.host, b.host);
  assert.notEqual(a.dir, b.dir);
});

test('seedBusybox pushes a schema2 image that skopeo inspects with Cmd sh and the pushed digests', async (t) => {
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const img = await seedBusybox(reg);
  const info = await skopeo([`docker://${reg.host}/library/busybox:latest`]);
  assert.equal(info.Digest, img.manifestDigest);
  assert.deepEqual(info.Layers, [img.layers[0].digest]);
  assert.equal(info.Architecture, hostPlatform().architecture);
  assert.equal(info.Os, 'linux');
  const config = await skopeo(['--config', `docker://${reg.host}/library/busybox:latest`]);
  assert.deepEqual(config.config.Cmd, ['sh']);
  assert.deepEqual(config.rootfs.diff_ids, [sha256(await busyboxLayer())]);
  const raw = await skopeo(['--raw', `docker://${reg.host}/library/busybox@${img.manifestDigest}`]);
  assert.equal(raw.mediaType, MediaTypes.dockerManifest);
  assert.equal(raw.layers[0].mediaType, MediaTypes.dockerLayerGzip);
});

test('the busybox layer holds the static busybox, applet links, users and a sticky /tmp', async () => {
  const layer = await busyboxLayer();
  const headers = new Map<string, tar.Header>();
  const ex = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (h, stream, next) => {
      headers.set(h.name, h);
      stream.on('end', next);
      stream.resume();
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  ex.end(layer);
  await done;
  assert.equal(headers.get('bin/busybox')?.size, fs.statSync('/bin/busybox').size);
  assert.equal(headers.get('bin/sh')?.type, 'symlink');
  assert.equal(headers.get('bin/sh')?.linkname, 'busybox');
  assert.equal(headers.get('tmp/')?.mode, 0o1777);
  assert.equal(headers.get('home/user/')?.uid, 1000);
  assert.ok(headers.has('etc/passwd'));
});

test('an OCI image with a zstd layer and an OCI index over two platforms are what skopeo sees', async (t) => {
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const host = hostPlatform();
  const hello = await tarLayer([{ type: 'file', path: 'hello.txt', content: 'hi\n' }]);
  const mine = await pushImage(reg, 'multi', undefined, { layers: [await busyboxLayer(), hello], compression: 'zstd', format: 'oci' });
  const other = await pushImage(reg, 'multi', undefined, {
    layers: [hello],
    format: 'oci',
    architecture: host.architecture === 'amd64' ? 'arm64' : 'amd64',
  });
  const index = await pushIndex(
    reg,
    'multi',
    'latest',
    [
      { image: mine, platform: mine.platform },
      { image: other, platform: other.platform },
    ],
    'oci',
  );
  const raw = await skopeo(['--raw', `docker://${reg.host}/multi:latest`]);
  assert.equal(raw.mediaType, MediaTypes.ociIndex);
  assert.equal(raw.manifests.length, 2);
  // skopeo resolves the index to this host's platform.
  const info = await skopeo([`docker://${reg.host}/multi:latest`]);
  assert.equal(info.Digest, index.digest);
  assert.deepEqual(info.Layers, mine.layers.map((l) => l.digest));
  const mineRaw = await skopeo(['--raw', `docker://${reg.host}/multi@${mine.manifestDigest}`]);
  assert.deepEqual(mineRaw.layers.map((l: { mediaType: string }) => l.mediaType), [MediaTypes.ociLayerZstd, MediaTypes.ociLayerZstd]);
  const byDigest = await skopeo(['--raw', `docker://${reg.host}/multi@${other.manifestDigest}`]);
  assert.equal(byDigest.mediaType, MediaTypes.ociManifest);
});

test('a docker manifest list is accepted by the registry and by skopeo', async (t) => {
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const layer = await tarLayer([{ type: 'file', path: 'a', content: 'a' }]);
  const amd = await pushImage(reg, 'list', undefined, { layers: [layer], architecture: 'amd64' });
  const arm = await pushImage(reg, 'list', undefined, { layers: [layer], architecture: 'arm', variant: 'v7' });
  await pushIndex(reg, 'list', 'v1', [
    { image: amd, platform: amd.platform },
    { image: arm, platform: arm.platform },
  ], 'docker');
  const raw = await skopeo(['--raw', `docker://${reg.host}/list:v1`]);
  assert.equal(raw.mediaType, MediaTypes.dockerManifestList);
  assert.deepEqual(raw.manifests[1].platform, { architecture: 'arm', os: 'linux', variant: 'v7' });
});

test('tarLayer writes long names as PAX or GNU, xattrs, devices, fifos and links that GNU tar reads back', async (t) => {
  const long = 'd/' + 'x'.repeat(150);
  const layer = await tarLayer([
    { type: 'dir', path: 'd/' },
    { type: 'file', path: long, content: 'pax' },
    { type: 'file', path: 'd/' + 'y'.repeat(150), content: 'gnu', longNames: 'gnu' },
    { type: 'file', path: 'setuid', content: '', mode: 0o4755, uid: 1000, gid: 1000 },
    { type: 'file', path: 'attr', content: 'x', xattrs: { 'user.capsa': 'yes' } },
    { type: 'symlink', path: 'abs', target: '/etc/passwd' },
    { type: 'hardlink', path: 'hard', target: 'attr' },
    { type: 'fifo', path: 'pipe' },
    { type: 'char', path: 'null', major: 1, minor: 3 },
    { type: 'block', path: 'loop', major: 7, minor: 0 },
  ]);
  const file = `/tmp/capsa-tarlayer-${process.pid}.tar`;
  fs.writeFileSync(file, layer);
  t.after(() => fs.rmSync(file, { force: true }));
  const { stdout } = await execFileP('tar', ['--xattrs', '--xattrs-include=*', '-tvvf', file, '--numeric-owner']);
  assert.match(stdout, new RegExp(`${long}$`, 'm'));
  assert.match(stdout, new RegExp(`d/${'y'.repeat(150)}$`, 'm'));
  assert.match(stdout, /^-rwsr-xr-x\s+1000\/1000 .* setuid$/m);
  assert.match(stdout, /user\.capsa/);
  assert.match(stdout, /^l.* abs -> \/etc\/passwd$/m);
  assert.match(stdout, /^h.* hard link to attr$/m);
  assert.match(stdout, /^p.* pipe$/m);
  assert.match(stdout, /^c.* 1,3 .* null$/m);
  assert.match(stdout, /^b.* 7,0 .* loop$/m);
});

test('basic auth rejects wrong credentials and accepts the right ones', async (t) => {
  const reg = await startRegistry({ htpasswd: { user: 'alice', password: 's3cret' } });
  t.after(() => reg.stop());
  const anon = await get(`${reg.url}/v2/`);
  assert.equal(anon.status, 401);
  assert.match(String(anon.headers['www-authenticate']), /^Basic /);
  const layer = await tarLayer([{ type: 'file', path: 'f', content: 'f' }]);
  await assert.rejects(pushImage({ url: reg.url, auth: { user: 'alice', password: 'wrong' } }, 'private', 'v1', { layers: [layer] }), /401/);
  await assert.rejects(pushImage({ url: reg.url }, 'private', 'v1', { layers: [layer] }), /no credentials/);
  const img = await pushImage({ url: reg.url, auth: { user: 'alice', password: 's3cret' } }, 'private', 'v1', { layers: [layer] });
  const info = await skopeo(['--creds', 'alice:s3cret', `docker://${reg.host}/private:v1`]);
  assert.equal(info.Digest, img.manifestDigest);
});

test('token auth: an anonymous token from the realm opens the manifest that a bare request cannot read', async (t) => {
  const reg = await startRegistry({ token: {} });
  t.after(() => reg.stop());
  const img = await seedBusybox(reg);
  const bare = await get(`${reg.url}/v2/library/busybox/manifests/latest`);
  assert.equal(bare.status, 401);
  const challenge = String(bare.headers['www-authenticate']);
  assert.match(challenge, /^Bearer /);
  assert.match(challenge, new RegExp(`realm="${reg.token.realm}"`));
  assert.match(challenge, /scope="repository:library\/busybox:pull"/);

  const tokenUrl = new URL(reg.token.realm);
  tokenUrl.searchParams.set('service', reg.token.service);
  tokenUrl.searchParams.set('scope', 'repository:library/busybox:pull');
  const tokenRes = await get(tokenUrl.toString());
  assert.equal(tokenRes.status, 200);
  const { token } = JSON.parse(tokenRes.body.toString()) as { token: string };
  const res = await get(`${reg.url}/v2/library/busybox/manifests/latest`, {
    authorization: `Bearer ${token}`,
    accept: MediaTypes.dockerManifest,
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers['docker-content-digest'], img.manifestDigest);
  // A pull-only token does not allow a push.
  const post = await new Promise<number>((resolve, reject) => {
    const req = http.request(`${reg.url}/v2/library/busybox/blobs/uploads/`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, agent: false }, (r) => {
      r.resume();
      resolve(r.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(post, 401);
  // skopeo follows the same flow.
  const info = await skopeo([`docker://${reg.host}/library/busybox:latest`]);
  assert.equal(info.Digest, img.manifestDigest);
});

test('token auth with users: wrong credentials get no token and anonymous tokens grant nothing', async (t) => {
  const reg = await startRegistry({ token: { users: [{ user: 'bob', password: 'pw' }], algorithm: 'RS256' } });
  t.after(() => reg.stop());
  const layer = await tarLayer([{ type: 'file', path: 'f', content: 'f' }]);
  await assert.rejects(pushImage({ url: reg.url }, 'team/app', 'v1', { layers: [layer] }), /401/);
  await assert.rejects(pushImage({ url: reg.url, auth: { user: 'bob', password: 'nope' } }, 'team/app', 'v1', { layers: [layer] }), /token request .* 401/);
  const img = await pushImage({ url: reg.url, auth: { user: 'bob', password: 'pw' } }, 'team/app', 'v1', { layers: [layer] });
  const info = await skopeo(['--creds', 'bob:pw', `docker://${reg.host}/team/app:v1`]);
  assert.equal(info.Digest, img.manifestDigest);
  assert.ok(reg.token.requests >= 3);
});

test('the fault proxy cuts a blob after N bytes only the first K times and counts requests per path', async (t) => {
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const blob = Buffer.alloc(256 * 1024, 7);
  const digest = await pushBlob(reg, 'faults', blob);
  const proxy = await startFaultProxy(reg, { cutAfterBytes: 1000, cutTimes: 1 });
  t.after(() => proxy.stop());
  const path = `/v2/faults/blobs/${digest}`;
  const first = await get(`${proxy.url}${path}`);
  assert.equal(first.status, 200);
  assert.equal(first.complete, false);
  assert.equal(first.body.length, 1000);
  const second = await get(`${proxy.url}${path}`);
  assert.equal(second.complete, true);
  assert.ok(second.body.equals(blob));
  // Range requests pass through, as a resuming client needs.
  const rest = await get(`${proxy.url}${path}`, { range: 'bytes=1000-' });
  assert.equal(rest.status, 206);
  assert.ok(rest.body.equals(blob.subarray(1000)));
  assert.equal(proxy.count(`GET ${path}`), 3);
});

test('the fault proxy flips a byte, answers 429 with Retry-After, and throttles', async (t) => {
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const blob = Buffer.from('0123456789'.repeat(800));
  const digest = await pushBlob(reg, 'faults', blob);
  const path = `/v2/faults/blobs/${digest}`;

  const proxy = await startFaultProxy(reg, { flipByteAt: 5 });
  t.after(() => proxy.stop());
  const tampered = await get(`${proxy.url}${path}`);
  assert.equal(tampered.body.length, blob.length);
  assert.notEqual(sha256(tampered.body), digest);
  assert.equal(tampered.body[5], blob[5] ^ 0xff);

  proxy.setFault({ tooManyRequests: 2, retryAfter: 3 });
  const r1 = await get(`${proxy.url}${path}`);
  const r2 = await get(`${proxy.url}${path}`);
  const r3 = await get(`${proxy.url}${path}`);
  assert.deepEqual([r1.status, r2.status, r3.status], [429, 429, 200]);
  assert.equal(r1.headers['retry-after'], '3');
  assert.equal(sha256(r3.body), digest);

  proxy.setFault({ bytesPerSecond: 8000 });
  const started = Date.now();
  const slow = await get(`${proxy.url}${path}`);
  assert.equal(sha256(slow.body), digest);
  assert.ok(Date.now() - started >= 800, `8000 bytes at 8000 B/s took ${Date.now() - started} ms`);
});

test('images push through the fault proxy, each blob uploaded once', async (t) => {
  const reg = await startRegistry({ token: {} });
  t.after(() => reg.stop());
  const proxy = await startFaultProxy(reg);
  t.after(() => proxy.stop());
  const img = await seedBusybox(proxy);
  const info = await skopeo([`docker://${reg.host}/library/busybox:latest`]);
  assert.equal(info.Digest, img.manifestDigest);
  assert.equal(proxy.count(/^PUT \/v2\/library\/busybox\/blobs\/uploads\//), 2);
});
