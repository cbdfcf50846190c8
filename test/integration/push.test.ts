/**
 * Push against real registries (docker-registry on 127.0.0.1): blobs skipped
 * when the registry has them, mounted from the image's origin repository,
 * uploaded in chunks that resume after a cut connection; the manifest's
 * bytes unchanged, so podman pulls back the same digest; basic and token
 * auth with the request's credentials; hostile registries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { loadConfig } from '../../server/config';
import { ImageService } from '../../server/services/images';
import type { Caller } from '../../server/util/peercred';
import type { ImagePushResult } from '../../server/protocol';
import { startFaultProxy, startRegistry, type TestRegistry } from '../helpers/registry';
import { seedBusybox, type PushedImage } from '../helpers/oci';

const execFileP = promisify(execFile);
const ROOT: Caller = { uid: 0, gid: 0, groups: [], pid: process.pid };

interface Ctx {
  after: (fn: () => unknown) => void;
}

/** An image service whose pulls of `target/…` come from `source` (a mirror), so the image is named for the target registry. */
async function setup(t: Ctx, target: { host: string }): Promise<{ images: ImageService; source: TestRegistry; busybox: PushedImage; name: string }> {
  const source = await startRegistry();
  t.after(() => source.stop());
  const busybox = await seedBusybox(source);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-push-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify({ root: path.join(dir, 'root'), registries: { mirrors: { [target.host]: [source.url] } } }));
  const saved = process.env.DOCKER_CONFIG;
  process.env.DOCKER_CONFIG = dir; // root's Docker config: none
  t.after(() => (saved === undefined ? delete process.env.DOCKER_CONFIG : (process.env.DOCKER_CONFIG = saved)));
  const images = new ImageService(loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv));
  await images.init();
  const name = `${target.host}/library/busybox:latest`;
  await images.pull(name, { caller: ROOT });
  return { images, source, busybox, name };
}

const statuses = (r: ImagePushResult): string[] => r.layers.map((l) => l.status);

/** The manifest digest podman gets for `ref`, pulled into a throw-away storage. */
async function podmanDigest(t: Ctx, ref: string, creds?: { user: string; password: string }): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-podman-'));
  const base = ['--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'run'), '--storage-driver', 'vfs'];
  t.after(async () => {
    await execFileP('podman', [...base, 'rmi', '-a', '-f']).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await execFileP('podman', [...base, 'pull', '-q', '--tls-verify=false', ...(creds ? ['--creds', `${creds.user}:${creds.password}`] : []), ref], { timeout: 120_000 });
  const { stdout } = await execFileP('podman', [...base, 'image', 'inspect', '--format', '{{.Digest}}', ref]);
  return stdout.trim();
}

test('push uploads each blob, then skips them all ("exists") on a second push, mounts them into another repository, and podman pulls back the same manifest digest', async (t) => {
  const target = await startRegistry();
  t.after(() => target.stop());
  const { images, busybox, name } = await setup(t, target);

  const first = await images.push(name, { caller: ROOT });
  assert.deepEqual(statuses(first), ['pushed', 'pushed'], JSON.stringify(first.layers));
  assert.equal(first.digest, busybox.manifestDigest, 'the manifest went byte for byte');
  assert.equal(first.size, busybox.manifest.length);
  assert.equal(first.tag, 'latest');

  const second = await images.push(name, { caller: ROOT });
  assert.deepEqual(statuses(second), ['exists', 'exists']);
  assert.equal(second.digest, busybox.manifestDigest);

  const copy = `${target.host}/team/copy:v1`;
  await images.store.tag(name, copy, ROOT.uid);
  const mounted = await images.push(copy, { caller: ROOT });
  assert.deepEqual(mounted.layers.map((l) => [l.status, l.from]), [['mounted', 'library/busybox'], ['mounted', 'library/busybox']]);

  assert.equal(await podmanDigest(t, name), busybox.manifestDigest);
  assert.equal(await podmanDigest(t, copy), busybox.manifestDigest);
});

/** Pushes through a proxy that cuts the third PATCH after `cutAfter` bytes; returns the push and the progress offsets seen. */
async function pushWithCut(t: Ctx, cutAfter: number): Promise<{ r: ImagePushResult; done: number[]; busybox: PushedImage; statusGets: number; target: TestRegistry }> {
  const target = await startRegistry();
  t.after(() => target.stop());
  const proxy = await startFaultProxy(target, { match: /^$/, cutUploadAfterBytes: cutAfter, cutUploadTimes: 1, cutUploadSkip: 2 });
  t.after(() => proxy.stop());
  const { images, busybox } = await setup(t, proxy);
  const done: number[] = [];
  const layer = busybox.layers[0].digest;
  const r = await images.push(`${proxy.host}/library/busybox:latest`, { caller: ROOT, chunkSize: 65536, onProgress: (p) => done.push(p.layers.find((l) => l.digest === layer)!.done) });
  assert.equal(proxy.uploadsCut, 1, 'one PATCH was cut');
  return { r, done, busybox, statusGets: proxy.count(/^GET \/v2\/library\/busybox\/blobs\/uploads\//), target };
}

test('a chunked upload whose connection drops before a PATCH reaches the registry resumes from the offset the registry reports (Range), not from 0', async (t) => {
  const { r, done, busybox, statusGets, target } = await pushWithCut(t, 0);
  assert.deepEqual(statuses(r), ['pushed', 'pushed']);
  assert.equal(r.digest, busybox.manifestDigest);
  assert.ok(statusGets >= 1, 'the upload status was asked after the cut');
  const afterFirst = done.findIndex((d) => d > 0);
  assert.ok(afterFirst >= 0 && done.slice(afterFirst).every((d) => d > 0), `progress never went back to 0: ${done.join(',')}`);
  assert.equal(await podmanDigest(t, `${target.host}/library/busybox:latest`), busybox.manifestDigest);
});

test('a chunked upload cut mid-PATCH, whose upload the registry then declares invalid, starts a fresh upload and completes with the right digest', async (t) => {
  const { r, busybox, statusGets, target } = await pushWithCut(t, 30_000);
  assert.deepEqual(statuses(r), ['pushed', 'pushed']);
  assert.equal(r.digest, busybox.manifestDigest);
  assert.ok(statusGets >= 1, 'the upload status was asked after the cut');
  assert.equal(await podmanDigest(t, `${target.host}/library/busybox:latest`), busybox.manifestDigest);
});

test('basic auth: a push with the request credentials works and podman pulls it back; without them or with a wrong password it is refused, naming the registry and no secret', async (t) => {
  const creds = { user: 'pusher', password: 'b4sic-s3cret' };
  const target = await startRegistry({ htpasswd: creds });
  t.after(() => target.stop());
  const { images, busybox, name } = await setup(t, target);
  await assert.rejects(images.push(name, { caller: ROOT }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'E_REGISTRY_AUTH', String(err));
    assert.match(err.message, new RegExp(target.host.replace(/\./g, '\\.')));
    return true;
  });
  await assert.rejects(images.push(name, { caller: ROOT, auth: { username: creds.user, password: 'wrong-pw' } }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'E_REGISTRY_AUTH', String(err));
    assert.doesNotMatch(err.message, /wrong-pw|b4sic-s3cret/);
    return true;
  });
  const r = await images.push(name, { caller: ROOT, auth: { username: creds.user, password: creds.password } });
  assert.equal(r.digest, busybox.manifestDigest);
  assert.equal(await podmanDigest(t, name, creds), busybox.manifestDigest, 'podman pulls it back with the same credentials');
  assert.deepEqual(await images.login(target.host, { username: creds.user, password: creds.password }), { registry: target.host });
  await assert.rejects(images.login(target.host, { username: creds.user, password: 'nope' }), /login to registry .* refused|E_REGISTRY_AUTH|refused/);
});

test('token auth: push gets a push-scoped token for the request credentials and podman pulls it back; a mount asks for both repositories at once', async (t) => {
  const creds = { user: 'tokpush', password: 't0k-s3cret' };
  const target = await startRegistry({ token: { users: [creds] } });
  t.after(() => target.stop());
  const { images, busybox, name } = await setup(t, target);
  const auth = { username: creds.user, password: creds.password };
  const r = await images.push(name, { caller: ROOT, auth });
  assert.equal(r.digest, busybox.manifestDigest);
  assert.ok(target.token.log.some((q) => q.getAll('scope').includes('repository:library/busybox:pull,push')), 'a push scope was asked');
  assert.equal(await podmanDigest(t, name, creds), busybox.manifestDigest, 'podman pulls it back through the token flow');
  const copy = `${target.host}/team/copy:v1`;
  await images.store.tag(name, copy, ROOT.uid);
  const m = await images.push(copy, { caller: ROOT, auth });
  assert.deepEqual(statuses(m), ['mounted', 'mounted']);
  assert.ok(target.token.log.some((q) => q.getAll('scope').includes('repository:library/busybox:pull') && q.getAll('scope').includes('repository:team/copy:pull,push')));
  await images.login(target.host, auth);
  await assert.rejects(images.login(target.host, { username: creds.user, password: 'bad' }), (err: Error & { code?: string }) => err.code === 'E_REGISTRY_AUTH' && !/bad"|t0k-s3cret/.test(err.message));
});

test('hostile registries: garbage answers and redirect loops to a push are clear errors, and the service still pushes elsewhere', async (t) => {
  let mode: 'garbage' | 'loop' = 'garbage';
  const evil = http.createServer((req, res) => {
    if (mode === 'loop') {
      res.writeHead(302, { location: req.url ?? '/' }).end();
      return;
    }
    res.writeHead(req.method === 'HEAD' ? 404 : 202, { location: 'gopher://x/' });
    res.end('\x00\xff not json');
  });
  await new Promise<void>((r) => evil.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => evil.close(() => r())));
  const host = `127.0.0.1:${(evil.address() as AddressInfo).port}`;
  const { images, name } = await setup(t, { host });
  await assert.rejects(images.push(`${host}/library/busybox:latest`, { caller: ROOT }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'E_REGISTRY', String(err));
    assert.match(err.message, /scheme gopher:/);
    return true;
  });
  mode = 'loop';
  await assert.rejects(images.push(`${host}/library/busybox:latest`, { caller: ROOT }), /too many redirects/);
  void name;
  await assert.rejects(images.login('bad host!', { username: 'u', password: 'p' }), /invalid registry/);
  const ok = await startRegistry();
  t.after(() => ok.stop());
  const copy = `${ok.host}/library/busybox:latest`;
  await images.store.tag(`${host}/library/busybox:latest`, copy, ROOT.uid);
  assert.deepEqual(statuses(await images.push(copy, { caller: ROOT })), ['pushed', 'pushed']);
});

test('a push cancelled mid-upload stops with E_CANCELLED and puts no manifest; the next push completes', async (t) => {
  const target = await startRegistry();
  t.after(() => target.stop());
  const { images, busybox, name } = await setup(t, target);
  const abort = new AbortController();
  await assert.rejects(
    images.push(name, { caller: ROOT, chunkSize: 65536, signal: abort.signal, onProgress: (p) => p.layers.some((l) => l.done > 0) && abort.abort() }),
    (err: Error & { code?: string }) => err.code === 'E_CANCELLED',
  );
  const head = await fetch(`${target.url}/v2/library/busybox/manifests/latest`, { method: 'HEAD' });
  assert.equal(head.status, 404, 'no manifest was put');
  const r = await images.push(name, { caller: ROOT });
  assert.equal(r.digest, busybox.manifestDigest);
});

test("an upload Location on another host gets none of the registry's credentials", async (t) => {
  const seen: Array<string | undefined> = [];
  const capture = http.createServer((req, res) => {
    seen.push(req.headers.authorization);
    req.resume();
    res.writeHead(500).end();
  });
  await new Promise<void>((r) => capture.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => capture.close(() => r())));
  const elsewhere = `http://127.0.0.1:${(capture.address() as AddressInfo).port}/upload`;
  const registry = http.createServer((req, res) => {
    req.resume();
    if (!req.headers.authorization) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="x"' }).end();
    if (req.method === 'HEAD') return void res.writeHead(404).end();
    res.writeHead(202, { location: elsewhere }).end();
  });
  await new Promise<void>((r) => registry.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => registry.close(() => r())));
  const host = `127.0.0.1:${(registry.address() as AddressInfo).port}`;
  const { images } = await setup(t, { host });
  await assert.rejects(images.push(`${host}/library/busybox:latest`, { caller: ROOT, auth: { username: 'u', password: 'leak-me' } }), /HTTP 500/);
  assert.ok(seen.length > 0, 'the upload went to the Location');
  assert.deepEqual(seen.filter((a) => a !== undefined), [], 'no Authorization reached the other host');
});

test("token auth: one request's credentials and tokens never serve another caller's request", async (t) => {
  const creds = { user: 'tokuser', password: 'only-mine' };
  const target = await startRegistry({ token: { users: [creds] } });
  t.after(() => target.stop());
  const { images, name } = await setup(t, target);
  const auth = { username: creds.user, password: creds.password };
  await images.push(name, { caller: ROOT, auth });
  const other: Caller = { uid: 4242, gid: 4242, groups: [], pid: process.pid };
  const before = target.token.log.length;
  // straight from the registry (not its mirror), as another uid without credentials
  const direct = `${target.host}/library/busybox@${(await images.store.resolve(name, 0))!.manifestDigest}`;
  const cfg = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-push-')), 'config.json');
  t.after(() => fs.rmSync(path.dirname(cfg), { recursive: true, force: true }));
  fs.writeFileSync(cfg, JSON.stringify({ root: images.store.root }));
  const service = new ImageService(loadConfig({ CAPSA_CONFIG: cfg } as NodeJS.ProcessEnv));
  await assert.rejects(service.pull(direct, { caller: other }), (err: Error & { code?: string }) => err.code === 'E_REGISTRY_AUTH' || /denied|authentication/.test(err.message));
  const asked = target.token.log.slice(before);
  assert.ok(asked.length > 0 && asked.every((q) => !q.get('account')), 'the other caller asked for its own, anonymous, token');
  // the first request's credentials still work for a request that carries them
  await images.push(name, { caller: ROOT, auth });
});
