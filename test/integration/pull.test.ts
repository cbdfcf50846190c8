/**
 * Pulls against Debian's docker-registry on 127.0.0.1: formats, platforms,
 * digests, mirrors, auth, faults, concurrency. Every test has its own store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pullImage, resolveOrPull } from '../../server/image/pull';
import { ImageStore } from '../../server/image/store';
import { RegistryClient } from '../../server/image/registry';
import { DigestMismatchError, ImageNotFoundError, RegistryAuthError, CancelledError } from '../../server/image/errors';
import type { CapsaConfig } from '../../server/config';
import type { PullProgress } from '../../server/protocol/types';
import { startRegistry, startFaultProxy } from '../helpers/registry';
import { fileRegistry } from '../helpers/capsa';
import { pushImage, pushIndex, seedBusybox, tarLayer, hostPlatform } from '../helpers/oci';

const registry = fileRegistry();

interface Ctx {
  after: (fn: () => unknown) => void;
}

function setup(t: Ctx, registries: Partial<CapsaConfig['registries']> = {}): { store: ImageStore; config: CapsaConfig; root: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const config: CapsaConfig = {
    root,
    socket: path.join(root, 'sock'),
    registries: { mirrors: registries.mirrors ?? {}, insecure: registries.insecure ?? [] },
    maxConcurrentDownloads: 3,
  };
  return { store: new ImageStore(root), config, root };
}

/** A client with short backoffs and no ~/.docker credentials, closed after the test. */
function client(t: Ctx, config: CapsaConfig, extra: Partial<ConstructorParameters<typeof RegistryClient>[0]> = {}): RegistryClient {
  const c = new RegistryClient({ config, dockerConfig: false, backoffMs: 20, ...extra });
  t.after(() => c.close());
  return c;
}

/** Nothing half-made: no temporary files, no temporary layer dirs. */
function assertClean(root: string): void {
  assert.deepEqual(fs.readdirSync(path.join(root, 'tmp')), [], 'tmp/ is empty');
  assert.deepEqual(
    fs.readdirSync(path.join(root, 'layers')).filter((n) => n !== 'sha256'),
    [],
    'no temporary layer directories',
  );
}

function unique(): string {
  return Math.random().toString(36).slice(2, 10);
}

test('busybox as a schema2 image pulls by tag, unpacks, and a second pull is up to date', async (t) => {
  const { store, config, root } = setup(t);
  const ref = `${registry.host}/library/busybox:latest`;
  const progress: PullProgress[] = [];
  const r = await pullImage(ref, { store, config, client: client(t, config), onProgress: (p) => progress.push(p) });
  assert.equal(r.reference, ref);
  assert.equal(r.manifestDigest, registry.busybox.manifestDigest);
  assert.equal(r.id, registry.busybox.configDigest);
  assert.equal(r.upToDate, false);
  assert.deepEqual(r.image.references, [ref]);
  assert.deepEqual(r.image.repoDigests, [`${registry.host}/library/busybox@${registry.busybox.manifestDigest}`]);
  assert.deepEqual(r.image.diffIds, registry.busybox.layers.map((l) => l.diffId));
  assert.ok(r.image.size > 500_000, 'size counts the unpacked files');
  const dirs = await store.layerDirs(r.image);
  assert.equal(dirs.length, 1);
  assert.ok(fs.statSync(path.join(dirs[0], 'bin/busybox')).isFile());
  assert.equal(fs.readlinkSync(path.join(dirs[0], 'bin/sh')), 'busybox');
  assert.deepEqual((await store.config(r.image)).config?.Cmd, ['sh']);
  // The blob was kept while it streamed.
  assert.ok(await store.hasBlob(registry.busybox.layers[0].digest));
  assert.ok(progress.length >= 1);
  assert.deepEqual(progress.at(-1)!.layers.map((l) => l.status), ['done']);
  assertClean(root);

  const again = await pullImage(ref, { store, config, client: client(t, config) });
  assert.equal(again.upToDate, true);
  assert.equal((await store.resolve('127.0.0.1:' + registry.host.split(':')[1] + '/library/busybox'))?.id, r.id);
  assert.equal((await store.resolve(r.id.slice(7, 19)))?.id, r.id, 'by id prefix');
});

test('an OCI image pulls by digest and resolves by that digest afterwards', async (t) => {
  const { store, config, root } = setup(t);
  const repo = `oci-${unique()}`;
  const img = await pushImage(registry, repo, 'v1', {
    layers: [await tarLayer([{ type: 'file', path: 'hello', content: 'oci' }])],
    format: 'oci',
  });
  const ref = `${registry.host}/${repo}@${img.manifestDigest}`;
  const r = await pullImage(ref, { store, config, client: client(t, config) });
  assert.equal(r.manifestDigest, img.manifestDigest);
  assert.equal(r.image.manifestMediaType, 'application/vnd.oci.image.manifest.v1+json');
  assert.deepEqual(r.image.references, [], 'a pull by digest adds no tag');
  assert.equal((await store.resolve(ref))?.id, img.configDigest);
  const [dir] = await store.layerDirs(r.image);
  assert.equal(fs.readFileSync(path.join(dir, 'hello'), 'utf8'), 'oci');
  assertClean(root);
});

test('a zstd layer and a plain tar layer pull and unpack', async (t) => {
  const { store, config } = setup(t);
  const repo = `zstd-${unique()}`;
  await pushImage(registry, repo, 'latest', {
    layers: [
      { tar: await tarLayer([{ type: 'file', path: 'z', content: 'zstd!'.repeat(1000) }]), compression: 'zstd' },
      { tar: await tarLayer([{ type: 'file', path: 'p', content: 'plain' }]), compression: 'none' },
    ],
    format: 'oci',
  });
  const r = await pullImage(`${registry.host}/${repo}`, { store, config, client: client(t, config) });
  const [top, base] = await store.layerDirs(r.image);
  assert.equal(fs.readFileSync(path.join(base, 'z'), 'utf8'), 'zstd!'.repeat(1000));
  assert.equal(fs.readFileSync(path.join(top, 'p'), 'utf8'), 'plain');
});

test('behind a two-platform index only the host platform is fetched; --platform picks the other', async (t) => {
  const { store, config } = setup(t);
  const proxy = await startFaultProxy(registry);
  t.after(() => proxy.stop());
  const repo = `multi-${unique()}`;
  const host = hostPlatform();
  const other = host.architecture === 'amd64' ? { os: 'linux', architecture: 'arm64', variant: 'v8' } : { os: 'linux', architecture: 'amd64' };
  const mine = await pushImage(registry, repo, undefined, { layers: [await tarLayer([{ type: 'file', path: 'which', content: 'host' }])] });
  const theirs = await pushImage(registry, repo, undefined, {
    layers: [await tarLayer([{ type: 'file', path: 'which', content: 'other' }])],
    architecture: other.architecture,
    variant: other.variant,
  });
  for (const format of ['docker', 'oci'] as const) {
    const tag = `${format}-index`;
    const index = await pushIndex(registry, repo, tag, [
      { image: theirs, platform: other },
      { image: mine, platform: host },
    ], format);
    const c = client(t, config);
    const r = await pullImage(`${proxy.host}/${repo}:${tag}`, { store, config, client: c });
    assert.equal(r.manifestDigest, mine.manifestDigest);
    assert.ok(r.image.repoDigests.includes(`${proxy.host}/${repo}@${index.digest}`), 'repo digest is the index digest, as Docker records it');
    assert.equal(proxy.count(`GET /v2/${repo}/blobs/${theirs.layers[0].digest}`), 0, 'wrong platform layer not fetched');
    assert.equal(proxy.count(`GET /v2/${repo}/blobs/${theirs.configDigest}`), 0, 'wrong platform config not fetched');
    assert.equal(proxy.count(`GET /v2/${repo}/manifests/${theirs.manifestDigest}`), 0);
  }
  const o = await pullImage(`${proxy.host}/${repo}:oci-index`, {
    store,
    config,
    client: client(t, config),
    platform: `${other.os}/${other.architecture}${other.variant ? '/' + other.variant : ''}`,
  });
  assert.equal(o.id, theirs.configDigest);
  const [dir] = await store.layerDirs(o.image);
  assert.equal(fs.readFileSync(path.join(dir, 'which'), 'utf8'), 'other');
  // Pull by the index digest resolves through the index as well.
  const byDigest = await pullImage(`${proxy.host}/${repo}@${(await pushIndex(registry, repo, undefined, [{ image: mine, platform: host }], 'oci')).digest}`, {
    store,
    config,
    client: client(t, config),
  });
  assert.equal(byDigest.id, mine.configDigest);
});

test('an unknown image is a clear error and leaves nothing in the store', async (t) => {
  const { store, config, root } = setup(t);
  const ref = `${registry.host}/library/nosuch:latest`;
  await assert.rejects(pullImage(ref, { store, config, client: client(t, config) }), (err: unknown) => {
    assert.ok(err instanceof ImageNotFoundError, String(err));
    assert.equal(err.code, 'E_IMAGE_NOT_FOUND');
    assert.equal(err.message, `image "${ref}" not found in registry ${registry.host}: manifest unknown`);
    assert.equal(err.status, 404);
    return true;
  });
  const tagged = `${registry.host}/library/busybox:nosuchtag`;
  await assert.rejects(pullImage(tagged, { store, config, client: client(t, config) }), /not found in registry .*: manifest unknown/);
  assertClean(root);
  assert.deepEqual(fs.readdirSync(path.join(root, 'blobs', 'sha256')), []);
  assert.deepEqual(fs.readdirSync(path.join(root, 'layers', 'sha256')), []);
  assert.deepEqual(await store.list(), []);
});

test('a mirror configured for docker.io serves docker.io names', async (t) => {
  const { store, config } = setup(t, { mirrors: { 'docker.io': [registry.url] } });
  const r = await pullImage('busybox', { store, config, client: client(t, config) });
  assert.equal(r.reference, 'docker.io/library/busybox:latest');
  assert.equal(r.id, registry.busybox.configDigest);
  assert.deepEqual(r.image.references, ['docker.io/library/busybox:latest']);
  assert.equal((await store.resolve('busybox'))?.id, r.id);
  // missing: the local image is used without contacting any registry.
  const offline: CapsaConfig = { ...config, registries: { mirrors: { 'docker.io': ['http://127.0.0.1:9'] }, insecure: [] } };
  const local = await resolveOrPull('busybox:latest', 'missing', { store, config: offline, client: client(t, offline, { attempts: 1 }) });
  assert.equal(local.image.id, r.id);
  assert.equal(local.pulled, undefined);
  await assert.rejects(resolveOrPull('busybox:other', 'never', { store, config: offline }), /not present locally.*"never"/);
});

test('a tampered blob is a digest error naming the blob, and nothing is stored', async (t) => {
  const { store, config, root } = setup(t);
  const proxy = await startFaultProxy(registry, { flipByteAt: 100 });
  t.after(() => proxy.stop());
  await assert.rejects(
    pullImage(`${proxy.host}/library/busybox:latest`, { store, config, client: client(t, config) }),
    (err: unknown) => {
      assert.ok(err instanceof DigestMismatchError, String(err));
      assert.match(err.message, /^blob sha256:[0-9a-f]{64}: digest mismatch: expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}$/);
      return true;
    },
  );
  assertClean(root);
  assert.deepEqual(fs.readdirSync(path.join(root, 'layers', 'sha256')), []);
  assert.ok(!(await store.hasBlob(registry.busybox.layers[0].digest)));
  assert.deepEqual(await store.list(), []);
});

test('a lost layer is unpacked again from its blob without the network; a torn blob is downloaded again in the same pull', async (t) => {
  const { store, config, root } = setup(t);
  const proxy = await startFaultProxy(registry);
  t.after(() => proxy.stop());
  const ref = `${proxy.host}/library/busybox:latest`;
  const key = `GET /v2/library/busybox/blobs/${registry.busybox.layers[0].digest}`;
  const first = await pullImage(ref, { store, config, client: client(t, config) });
  assert.equal(proxy.count(key), 1);
  const layer = store.layerPath(first.image.diffIds[0]);
  const blob = store.blobPath(registry.busybox.layers[0].digest);
  const binary = fs.readFileSync(path.join(layer, 'bin', 'busybox'));

  // the layer directory gone (deleted by hand): rebuilt from the blob on disk
  fs.rmSync(layer, { recursive: true, force: true });
  await pullImage(ref, { store, config, client: client(t, config) });
  assert.equal(proxy.count(key), 1, 'no download');
  assert.deepEqual(fs.readFileSync(path.join(layer, 'bin', 'busybox')), binary);

  // the layer gone and the blob torn as a power loss leaves an unsynced file: zeros from the middle on
  fs.rmSync(layer, { recursive: true, force: true });
  const size = fs.statSync(blob).size;
  const fd = fs.openSync(blob, 'r+');
  fs.writeSync(fd, Buffer.alloc(size - Math.floor(size / 2)), 0, size - Math.floor(size / 2), Math.floor(size / 2));
  fs.closeSync(fd);
  const again = await pullImage(ref, { store, config, client: client(t, config) });
  assert.equal(again.id, registry.busybox.configDigest);
  assert.equal(proxy.count(key), 2, 'the torn blob was downloaded again');
  assert.deepEqual(fs.readFileSync(path.join(layer, 'bin', 'busybox')), binary);
  assert.equal(fs.statSync(blob).size, size);
  assertClean(root);
});

test('two concurrent pulls of images sharing layers download each blob once', async (t) => {
  const { store, config } = setup(t);
  const proxy = await startFaultProxy(registry);
  t.after(() => proxy.stop());
  const repo = `shared-${unique()}`;
  const base = await tarLayer([{ type: 'file', path: 'base', content: Buffer.alloc(300_000, 5) }]);
  const a = await pushImage(registry, repo, 'a', { layers: [base, await tarLayer([{ type: 'file', path: 'a', content: 'a' }])] });
  const b = await pushImage(registry, repo, 'b', { layers: [base, await tarLayer([{ type: 'file', path: 'b', content: 'b' }])] });
  assert.equal(a.layers[0].digest, b.layers[0].digest);
  const c = client(t, config);
  const [ra, rb] = await Promise.all([
    pullImage(`${proxy.host}/${repo}:a`, { store, config, client: c }),
    pullImage(`${proxy.host}/${repo}:b`, { store, config, client: c }),
  ]);
  assert.equal(ra.id, a.configDigest);
  assert.equal(rb.id, b.configDigest);
  assert.equal(proxy.count(`GET /v2/${repo}/blobs/${a.layers[0].digest}`), 1, 'shared layer fetched once');
  assert.equal((await store.layerDirs(ra.image))[1], (await store.layerDirs(rb.image))[1], 'one unpacked copy');
});

test('a connection cut mid-blob resumes with a Range request and completes', async (t) => {
  const { store, config, root } = setup(t);
  const proxy = await startFaultProxy(registry, { cutAfterBytes: 200_000, cutTimes: 1 });
  t.after(() => proxy.stop());
  const r = await pullImage(`${proxy.host}/library/busybox:latest`, { store, config, client: client(t, config) });
  assert.equal(r.id, registry.busybox.configDigest);
  const key = `GET /v2/library/busybox/blobs/${registry.busybox.layers[0].digest}`;
  assert.equal(proxy.count(key), 2, 'one cut, one resumed request');
  assert.ok((proxy.bytesSent.get(key) ?? 0) < registry.busybox.layers[0].size + 200_000, 'the resumed request did not start over');
  assertClean(root);
});

test('a 429 with Retry-After is waited out', async (t) => {
  const { store, config } = setup(t);
  const proxy = await startFaultProxy(registry, { tooManyRequests: 1, retryAfter: 1 });
  t.after(() => proxy.stop());
  const start = Date.now();
  const r = await pullImage(`${proxy.host}/library/busybox:latest`, { store, config, client: client(t, config) });
  assert.equal(r.id, registry.busybox.configDigest);
  assert.ok(Date.now() - start >= 950, 'waited for Retry-After');
});

test('a slow pull reports moving progress, can be cancelled, and the next pull resumes', async (t) => {
  const { store, config, root } = setup(t);
  const proxy = await startFaultProxy(registry, { bytesPerSecond: 400_000 });
  t.after(() => proxy.stop());
  const abort = new AbortController();
  const seen: number[] = [];
  const ref = `${proxy.host}/library/busybox:latest`;
  await assert.rejects(
    pullImage(ref, {
      store,
      config,
      client: client(t, config),
      signal: abort.signal,
      onProgress: (p) => {
        const done = p.layers[0].done;
        seen.push(done);
        if (done > 300_000) abort.abort();
      },
    }),
    CancelledError,
  );
  assert.ok(new Set(seen).size >= 2, `progress moved: ${seen.join(',')}`);
  assert.deepEqual(fs.readdirSync(path.join(root, 'layers')).filter((n) => n !== 'sha256'), [], 'no temporary layer dirs');
  assert.deepEqual(fs.readdirSync(path.join(root, 'layers', 'sha256')), []);
  assert.deepEqual(await store.list(), []);
  const partial = fs.readdirSync(path.join(root, 'tmp'));
  assert.equal(partial.length, 1, 'the partial download is kept for resuming');

  proxy.setFault({});
  const key = `GET /v2/library/busybox/blobs/${registry.busybox.layers[0].digest}`;
  const before = proxy.bytesSent.get(key) ?? 0;
  const r = await pullImage(ref, { store, config, client: client(t, config) });
  assert.equal(r.id, registry.busybox.configDigest);
  const resumedBytes = (proxy.bytesSent.get(key) ?? 0) - before;
  assert.ok(resumedBytes < registry.busybox.layers[0].size, `resumed, fetching ${resumedBytes} of ${registry.busybox.layers[0].size} bytes`);
  assertClean(root);
});

test('basic auth (htpasswd): right credentials pull, wrong ones are a clear error without the password', async (t) => {
  const creds = { user: 'capsa', password: 's3cret-pw' };
  const reg = await startRegistry({ htpasswd: creds });
  t.after(() => reg.stop());
  await seedBusybox({ url: reg.url, auth: creds });
  const { store, config, root } = setup(t);
  const ref = `${reg.host}/library/busybox:latest`;
  // Credentials from a Docker config.json.
  const dockerConfig = path.join(root, 'docker-config.json');
  fs.writeFileSync(dockerConfig, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${creds.user}:${creds.password}`).toString('base64') } } }));
  const r = await pullImage(ref, { store, config, client: client(t, config, { dockerConfig }) });
  assert.equal(r.id, registry.busybox.configDigest);

  const wrong = client(t, config, { credentials: { [reg.host]: { username: 'capsa', password: 'wrong-pw' } } });
  const { store: s2, config: c2 } = setup(t);
  await assert.rejects(pullImage(ref, { store: s2, config: c2, client: wrong }), (err: unknown) => {
    assert.ok(err instanceof RegistryAuthError, String(err));
    assert.doesNotMatch(err.message, /wrong-pw|s3cret/);
    assert.match(err.message, /registry 127\.0\.0\.1:\d+/);
    return true;
  });
  const anon = client(t, config);
  await assert.rejects(pullImage(ref, { store: s2, config: c2, client: anon }), /requires a username and password/);
});

test('token auth: anonymous and credentialed Bearer tokens, cached per scope', async (t) => {
  const user = { user: 'tok', password: 'tok-pw' };
  const reg = await startRegistry({ token: { users: [user] } });
  t.after(() => reg.stop());
  await seedBusybox({ url: reg.url, auth: user });
  const { store, config } = setup(t);
  const ref = `${reg.host}/library/busybox:latest`;
  await assert.rejects(pullImage(ref, { store, config, client: client(t, config) }), (err: unknown) => {
    assert.ok(err instanceof RegistryAuthError, String(err));
    return true;
  });
  const c = client(t, config, { credentials: { [reg.host]: { username: user.user, password: user.password } } });
  const before = reg.token.requests;
  const r = await pullImage(ref, { store, config, client: c });
  assert.equal(r.id, registry.busybox.configDigest);
  assert.equal(reg.token.requests - before, 1, 'one token for the repository scope, reused for manifest and blobs');
  assert.equal(reg.token.log.at(-1)?.get('scope'), 'repository:library/busybox:pull');

  const bad = client(t, config, { credentials: { [reg.host]: { username: user.user, password: 'nope' } } });
  const { store: s2, config: c2 } = setup(t);
  await assert.rejects(pullImage(ref, { store: s2, config: c2, client: bad }), (err: unknown) => {
    assert.ok(err instanceof RegistryAuthError);
    assert.match(err.message, /refused for user "tok"/);
    assert.doesNotMatch(err.message, /nope/);
    return true;
  });
});
