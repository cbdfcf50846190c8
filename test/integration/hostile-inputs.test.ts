/**
 * Hostile sizes and files: registries, token servers, archives and flags
 * that send more than any real one would, or name a file that never ends or
 * never opens. The helper answers each with an error that names the limit
 * it passed, its memory stays where it was, other clients are answered
 * meanwhile, and it is the same process, still answering, afterwards.
 *
 * The real registry (docker-registry) holds the images; a front server of
 * the test's own on 127.0.0.1 forwards to it and answers the hostile paths
 * itself, as a compromised or broken registry would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { ImageListRequest, ImageLoadRequest, ImagePullRequest, ImageSaveRequest } from '../../server/protocol';
import { connectProtocol, fileRegistry, REPO_ROOT, testHelper, until, type TestHelper } from '../helpers/capsa';
import { MediaTypes, pushImage, busyboxLayer, type PushedImage } from '../helpers/oci';
import type { TestRegistry } from '../helpers/registry';
import * as tarStream from 'tar-stream';

const registry = fileRegistry();
const MiB = 1024 * 1024;

interface Ctx {
  after: (fn: () => unknown) => void;
}

// ---- the helper, its memory, its liveness ---------------------------------

interface Session {
  h: TestHelper;
  conn: MessageConnection;
  pid: number;
}

async function session(t: Ctx): Promise<Session> {
  const h = await testHelper(t, registry.url);
  const conn = await connectProtocol(h.socket);
  t.after(() => conn.dispose());
  // One request first, so the baseline memory is that of a helper that has served.
  await conn.sendRequest(ImageListRequest.type);
  return { h, conn, pid: h.process.pid! };
}

/** VmRSS and VmHWM (peak) of a process, in bytes. */
function memory(pid: number): { rss: number; hwm: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)![1]) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Resets VmHWM to the current RSS (writing 5 to clear_refs), so the peak of what follows can be read. */
function resetPeak(pid: number): void {
  fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** The hostile input cost the helper at most `budget` bytes at its peak, and it settled back. */
function assertMemoryBounded(s: Session, before: { rss: number }, budget = 96 * MiB): void {
  const after = memory(s.pid);
  assert.ok(after.hwm - before.rss < budget, `helper peak grew by ${((after.hwm - before.rss) / MiB).toFixed(0)} MiB (budget ${budget / MiB} MiB)`);
  assert.ok(after.rss - before.rss < budget, `helper RSS stayed ${((after.rss - before.rss) / MiB).toFixed(0)} MiB above where it was`);
}

/** Same process, still alive, still answering. */
async function assertSameHelper(s: Session): Promise<void> {
  assert.equal(s.h.process.pid, s.pid, 'the helper is the same process');
  assert.equal(s.h.process.exitCode, null, 'the helper has not exited');
  assert.equal(s.h.process.signalCode, null, 'the helper was not killed');
  const fresh = await connectProtocol(s.h.socket);
  try {
    assert.ok(Array.isArray(await withTimeout(fresh.sendRequest(ImageListRequest.type), 5000, 'image/list after the case')));
  } finally {
    fresh.dispose();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms))),
  ]);
}

/** The error message of a request that must fail. */
async function failure(p: Promise<unknown>, ms = 30_000, what = 'request'): Promise<string> {
  try {
    await withTimeout(p, ms, what);
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail(`${what} succeeded`);
}

// ---- a front server before the real registry -------------------------------

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean;

interface Front {
  host: string;
  url: string;
  /** Answers a request itself when it returns true; otherwise it goes to the registry. */
  handle: Handler;
  /** Request paths seen, in order. */
  seen: string[];
}

async function listen(t: Ctx, server: http.Server): Promise<string> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

async function startFront(t: Ctx, upstream: TestRegistry): Promise<Front> {
  const target = new URL(upstream.url);
  const front: Front = { host: '', url: '', handle: () => false, seen: [] };
  const server = http.createServer((req, res) => {
    front.seen.push(`${req.method} ${(req.url ?? '').split('?')[0]}`);
    if (front.handle(req, res)) return;
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, agent: false }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  front.host = await listen(t, server);
  front.url = `http://${front.host}`;
  return front;
}

/** Resolves when `res` can take more, or is gone; one listener of each kind at a time. */
function drained(res: http.ServerResponse): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Writes `total` bytes of `fill` (or until the client hangs up), with backpressure; never holds more than a chunk. */
async function stream(res: http.ServerResponse, total: number, fill = 0x61): Promise<void> {
  const chunk = Buffer.alloc(256 * 1024, fill);
  let sent = 0;
  while (sent < total && !res.destroyed) {
    const n = Math.min(chunk.length, total - sent);
    sent += n;
    if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await drained(res);
  }
  res.end();
}

const manifestPath = (repo: string, ref: string) => `/v2/${repo}/manifests/${ref}`;
const pathOf = (req: http.IncomingMessage) => (req.url ?? '').split('?')[0];

function busyboxManifest(b: PushedImage): Record<string, unknown> {
  return JSON.parse(b.manifest.toString('utf8')) as Record<string, unknown>;
}

// ---- registries that send too much -----------------------------------------

test('a 5 MiB manifest, with or without a Content-Length, is refused naming the 4 MiB manifest limit, at bounded memory', async (t) => {
  const s = await session(t);
  const front = await startFront(t, registry);
  // Valid JSON with a long annotation: only its size is wrong.
  const pad = JSON.stringify({ ...busyboxManifest(registry.busybox), annotations: { pad: 'x'.repeat(5 * MiB) } });
  front.handle = (req, res) => {
    const p = pathOf(req);
    if (p === manifestPath('big/sized', 'latest')) {
      res.writeHead(200, { 'content-type': MediaTypes.dockerManifest, 'content-length': String(Buffer.byteLength(pad)) });
      res.end(pad);
      return true;
    }
    if (p === manifestPath('big/chunked', 'latest')) {
      res.writeHead(200, { 'content-type': MediaTypes.dockerManifest });
      void stream(res, 64 * MiB, 0x20);
      return true;
    }
    return false;
  };
  const before = memory(s.pid);
  resetPeak(s.pid);
  for (const repo of ['big/sized', 'big/chunked']) {
    const msg = await failure(s.conn.sendRequest(ImagePullRequest.type, { reference: `${front.host}/${repo}:latest` }), 30_000, `pull of ${repo}`);
    assert.match(msg, /manifest of .* is larger than the manifest limit \(4 MiB\)/, repo);
  }
  assertMemoryBounded(s, before);
  await assertSameHelper(s);
});

test('an index of more than 4 MiB is refused naming the index limit', async (t) => {
  const s = await session(t);
  const front = await startFront(t, registry);
  front.handle = (req, res) => {
    if (pathOf(req) !== manifestPath('big/index', 'latest')) return false;
    res.writeHead(200, { 'content-type': MediaTypes.ociIndex });
    res.write('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[');
    void stream(res, 6 * MiB, 0x20);
    return true;
  };
  const before = memory(s.pid);
  resetPeak(s.pid);
  const msg = await failure(s.conn.sendRequest(ImagePullRequest.type, { reference: `${front.host}/big/index:latest` }));
  assert.match(msg, /index of .* is larger than the index limit \(4 MiB\)/);
  assertMemoryBounded(s, before);
  await assertSameHelper(s);
});

test('a config that claims 1.1 GiB is refused on its declared size, before a byte of it is fetched', async (t) => {
  const s = await session(t);
  const front = await startFront(t, registry);
  const configSize = Math.floor(1.1 * 1024 * MiB);
  const configDigest = 'sha256:' + createHash('sha256').update('a config that never ends').digest('hex');
  const manifest = JSON.stringify({ ...busyboxManifest(registry.busybox), config: { mediaType: MediaTypes.dockerConfig, digest: configDigest, size: configSize } });
  front.handle = (req, res) => {
    const p = pathOf(req);
    if (p === manifestPath('big/config', 'latest')) {
      res.writeHead(200, { 'content-type': MediaTypes.dockerManifest });
      res.end(manifest);
      return true;
    }
    if (p === `/v2/big/config/blobs/${configDigest}`) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(configSize) });
      void stream(res, configSize, 0x7b);
      return true;
    }
    return false;
  };
  const before = memory(s.pid);
  resetPeak(s.pid);
  const msg = await failure(s.conn.sendRequest(ImagePullRequest.type, { reference: `${front.host}/big/config:latest` }), 120_000);
  assert.match(msg, /config .* is larger than the config limit \(8 MiB\): 1181116006 bytes/);
  assert.ok(!front.seen.some((r) => r.includes(configDigest)), `the config blob was never requested: ${front.seen.join(', ')}`);
  assertMemoryBounded(s, before);
  await assertSameHelper(s);
});

test('an image config with more labels than the labels limit is refused naming it', async (t) => {
  const s = await session(t);
  const labels: Record<string, string> = {};
  for (let i = 0; i < 5000; i++) labels[`l${i}`] = 'v';
  await pushImage(registry, 'many/labels', 'latest', { layers: [await busyboxLayer()], config: { Cmd: ['sh'], Labels: labels } });
  const msg = await failure(s.conn.sendRequest(ImagePullRequest.type, { reference: `${registry.host}/many/labels:latest` }));
  assert.match(msg, /labels of .* has more than the labels limit of 4096 entries/);
  assert.deepEqual(await s.conn.sendRequest(ImageListRequest.type), [], 'nothing was recorded');
  await assertSameHelper(s);
});

test('a registry error body that never ends is cut at the error body limit: the pull fails promptly with the status', async (t) => {
  const s = await session(t);
  const front = await startFront(t, registry);
  let served = 0;
  front.handle = (req, res) => {
    if (pathOf(req) !== manifestPath('big/error', 'latest')) return false;
    res.writeHead(400, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(256 * 1024, 0x20);
    // Endless, unless the client hangs up (up to 2 GiB, so a test without the fix ends too).
    void (async () => {
      while (!res.destroyed && served < 2048 * MiB) {
        served += chunk.length;
        if (!res.write(chunk)) await drained(res);
      }
      res.end();
    })();
    return true;
  };
  const before = memory(s.pid);
  resetPeak(s.pid);
  const start = Date.now();
  const msg = await failure(s.conn.sendRequest(ImagePullRequest.type, { reference: `${front.host}/big/error:latest` }), 60_000);
  assert.match(msg, /HTTP 400/);
  assert.ok(Date.now() - start < 5000, `answered in ${Date.now() - start} ms`);
  assert.ok(served < 16 * MiB, `the helper stopped reading the error body: ${(served / MiB).toFixed(1)} MiB were sent`);
  assertMemoryBounded(s, before);
  await assertSameHelper(s);
});

// ---- token servers ---------------------------------------------------------

interface Auth {
  /** 'bearer': the front asks for a token; 'open': anonymous pulls are allowed. */
  mode: 'bearer' | 'open';
  /** What the token server does. */
  token: 'ok' | '404' | 'huge' | 'long-token';
  tokenRequests: number;
}

/** A Bearer-auth front before the registry, and a token server, both the test's own. */
async function bearerFront(t: Ctx): Promise<{ front: Front; auth: Auth }> {
  const auth: Auth = { mode: 'bearer', token: 'ok', tokenRequests: 0 };
  const tokenServer = http.createServer((_req, res) => {
    auth.tokenRequests++;
    switch (auth.token) {
      case 'ok':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ token: 'good-token', expires_in: 300 }));
        return;
      case '404':
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('404 page not found\n');
        return;
      case 'huge':
        // Hundreds of MiB of a JSON string that never closes.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"token":"');
        void stream(res, 300 * MiB);
        return;
      case 'long-token':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ token: 'x'.repeat(200 * 1024) }));
        return;
    }
  });
  const tokenHost = await listen(t, tokenServer);
  const front = await startFront(t, registry);
  front.handle = (req, res) => {
    if (auth.mode === 'open') return false;
    if (req.headers.authorization === 'Bearer good-token') return false;
    res.writeHead(401, {
      'content-type': 'application/json',
      'www-authenticate': `Bearer realm="http://${tokenHost}/token",service="front"`,
    });
    res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
    return true;
  };
  return { front, auth };
}

test('a token server answering hundreds of MiB is refused naming the token response limit, at bounded memory', async (t) => {
  const s = await session(t);
  const { front, auth } = await bearerFront(t);
  auth.token = 'huge';
  const before = memory(s.pid);
  resetPeak(s.pid);
  const msg = await failure(s.conn.sendRequest(ImagePullRequest.type, { reference: `${front.host}/library/busybox:latest` }), 60_000);
  assert.match(msg, /answer of token server .* is larger than the token response limit \(1 MiB\)/);
  assert.doesNotMatch(msg, /\b431\b/); // a port such as 44315 is not a 431 status
  assertMemoryBounded(s, before);
  await assertSameHelper(s);
});

test('a token longer than any header a registry takes is refused naming the bearer token limit, not as HTTP 431', async (t) => {
  const s = await session(t);
  const { front, auth } = await bearerFront(t);
  auth.token = 'long-token';
  const msg = await failure(s.conn.sendRequest(ImagePullRequest.type, { reference: `${front.host}/library/busybox:latest` }));
  assert.match(msg, /token from .* is larger than the bearer token limit \(64 KiB\)/);
  assert.doesNotMatch(msg, /\b431\b/); // a port such as 44315 is not a 431 status
  await assertSameHelper(s);
});

test('a registry that once sent a Bearer challenge and now allows anonymous pulls (its token endpoint 404s) still serves pulls', async (t) => {
  const s = await session(t);
  await pushImage(registry, 'library/second', 'latest', { layers: [await busyboxLayer()], config: { Cmd: ['sh'] } });
  const { front, auth } = await bearerFront(t);
  const first = await s.conn.sendRequest(ImagePullRequest.type, { reference: `${front.host}/library/busybox:latest` });
  assert.equal(first.reference, `${front.host}/library/busybox:latest`);
  assert.ok(auth.tokenRequests > 0, 'the first pull used a token');
  // The registry drops auth; its token server is gone.
  auth.mode = 'open';
  auth.token = '404';
  // A new repository is a new scope, so no cached token can hide the change.
  const second = await withTimeout(s.conn.sendRequest(ImagePullRequest.type, { reference: `${front.host}/library/second:latest` }), 30_000, 'second pull');
  assert.equal(second.reference, `${front.host}/library/second:latest`);
  await assertSameHelper(s);
});

// ---- files that never open, never end, or are not files --------------------

function tmp(t: Ctx): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-hostile-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Holds a FIFO's other end open (O_RDWR does not block) while `settled`
 * runs, so any reader stuck in open(2), or queued to open it, goes on; for
 * cleanup, so a helper without the fix can still be stopped.
 */
async function release(fifos: string[], settled: Promise<unknown>): Promise<void> {
  const fds = fifos.map((f) => fs.openSync(f, fs.constants.O_RDWR | fs.constants.O_NONBLOCK));
  try {
    await withTimeout(settled, 10_000, 'the requests after their FIFOs were released').catch(() => undefined);
  } finally {
    for (const fd of fds) fs.closeSync(fd);
  }
}

test('loads of six FIFOs that never write are refused at once, and image/list is answered within 1 s meanwhile', async (t) => {
  const s = await session(t);
  const dir = tmp(t);
  const fifos = Array.from({ length: 6 }, (_, i) => path.join(dir, `fifo${i}`));
  for (const f of fifos) execFileSync('mkfifo', [f]);
  const conns = await Promise.all(fifos.map(() => connectProtocol(s.h.socket)));
  t.after(() => conns.forEach((c) => c.dispose()));
  let loads: Array<Promise<string>> = [];
  try {
    loads = fifos.map((f, i) =>
      conns[i].sendRequest(ImageLoadRequest.type, { input: f }).then(
        () => 'loaded',
        (err: Error) => err.message,
      ),
    );
    await new Promise((r) => setTimeout(r, 100));
    const start = Date.now();
    await withTimeout(s.conn.sendRequest(ImageListRequest.type), 1000, 'image/list while six loads of FIFOs are pending');
    assert.ok(Date.now() - start < 1000);
    for (const [i, msg] of (await withTimeout(Promise.all(loads), 2000, 'the loads of FIFOs')).entries()) {
      assert.equal(msg, `archive ${fifos[i]}: is a FIFO, not a regular file`);
    }
  } finally {
    // A helper stuck in open(2) on them could not even stop: let it go on before the after-hooks stop it.
    await release(fifos, Promise.all(loads));
  }
  assert.deepEqual(fs.readdirSync(dir).sort(), fifos.map((f) => path.basename(f)).sort(), 'nothing changed beside the FIFOs');
  await assertSameHelper(s);
});

test('load of /dev/zero and of a directory is refused at once, saying what they are', async (t) => {
  const s = await session(t);
  const dir = tmp(t);
  const before = memory(s.pid);
  resetPeak(s.pid);
  const cases: Array<[string, string]> = [
    ['/dev/zero', 'archive /dev/zero: is a character device, not a regular file'],
    [dir, `archive ${dir}: is a directory, not a regular file`],
  ];
  for (const [input, want] of cases) {
    assert.equal(await failure(s.conn.sendRequest(ImageLoadRequest.type, { input }), 3000, `load of ${input}`), want);
  }
  assertMemoryBounded(s, before);
  await assertSameHelper(s);
});

test('save to a FIFO is refused at once and leaves nothing beside it', async (t) => {
  const s = await session(t);
  await s.conn.sendRequest(ImagePullRequest.type, { reference: `${registry.host}/library/busybox:latest` });
  const dir = tmp(t);
  const fifo = path.join(dir, 'out.tar');
  execFileSync('mkfifo', [fifo]);
  const save = s.conn.sendRequest(ImageSaveRequest.type, { images: [`${registry.host}/library/busybox:latest`], output: fifo });
  let msg: string;
  try {
    msg = await failure(save, 3000, 'save to a FIFO');
  } finally {
    await release([fifo], save.catch(() => undefined));
  }
  assert.match(msg, /not a regular file/);
  assert.deepEqual(fs.readdirSync(dir), ['out.tar']);
  await assertSameHelper(s);
});

// ---- the CLI: files a user names -------------------------------------------

/** `capsa` as a user runs it (the compiled client, which hands the call to a warm CLI process). */
const CLIENT = path.join(REPO_ROOT, 'bin', 'capsa');

/** Pids of the helper's warm CLI processes. */
function warmChildren(h: TestHelper): number[] {
  const out: number[] = [];
  for (const pid of fs.readFileSync(`/proc/${h.process.pid}/task/${h.process.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) {
    try {
      if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('--warm')) out.push(Number(pid));
    } catch {
      // gone
    }
  }
  return out;
}

for (const [flag, value, limit] of [
  ['--env-file', '/dev/zero', /env file \/dev\/zero is larger than the env file limit \(1 MiB\)/],
  ['--security-opt', 'seccomp=/dev/zero', /seccomp profile \/dev\/zero is larger than the seccomp profile limit \(1 MiB\)/],
] as const) {
  test(`capsa run ${flag} ${value} fails naming the limit, and the warm CLI's memory stays bounded`, async (t) => {
    const s = await session(t);
    await until('a warm CLI process', async () => warmChildren(s.h).length > 0, 15_000);
    const warm = warmChildren(s.h);
    const baseline = Math.max(...warm.map((p) => memory(p).rss));
    // Every 20 ms, the largest RSS of any warm process: the one serving the call is among them.
    let peak = 0;
    const sampler = setInterval(() => {
      for (const p of warmChildren(s.h)) {
        try {
          peak = Math.max(peak, memory(p).hwm);
        } catch {
          // exited between the listing and the read
        }
      }
    }, 20);
    t.after(() => clearInterval(sampler));
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(CLIENT, ['run', '--rm', flag, value, `${registry.host}/library/busybox:latest`, 'true'], { env: s.h.env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`capsa run ${flag} ${value} did not finish; stderr: ${stderr}`));
      }, 60_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
    clearInterval(sampler);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, limit);
    assert.ok(peak - baseline < 64 * MiB, `a warm CLI peaked ${((peak - baseline) / MiB).toFixed(0)} MiB above the idle ones`);
    for (const p of warmChildren(s.h)) {
      try {
        const m = memory(p);
        assert.ok(m.rss - baseline < 64 * MiB, `warm CLI ${p} stays ${((m.rss - baseline) / MiB).toFixed(0)} MiB above the idle ones`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    await assertSameHelper(s);
  });
}

// ---- archives whose documents are too large --------------------------------

/** A tar of `entries` (name → content), written with tar-stream. */
async function writeTar(file: string, entries: Array<[string, Buffer]>): Promise<void> {
  const pack = tarStream.pack();
  const out = fs.createWriteStream(file);
  const done = new Promise<void>((resolve, reject) => {
    out.on('finish', resolve);
    out.on('error', reject);
  });
  pack.pipe(out);
  for (const [name, content] of entries) {
    await new Promise<void>((resolve, reject) => pack.entry({ name, size: content.length }, content, (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
}

const digestOf = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

test('image/load of archives whose index.json, manifest.json or config pass their limits is refused naming the limit, at bounded memory', async (t) => {
  const s = await session(t);
  const dir = tmp(t);
  const layer = await busyboxLayer();
  const layerDigest = digestOf(layer);
  // OCI layout with a 5 MiB index.json (valid JSON, padded with spaces).
  const ociIndex = Buffer.concat([Buffer.from('{"schemaVersion":2,"manifests":[]'), Buffer.alloc(5 * MiB, 0x20), Buffer.from('}')]);
  const oci = path.join(dir, 'oci.tar');
  await writeTar(oci, [
    ['oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}')],
    ['index.json', ociIndex],
  ]);
  // docker save archive with a 17 MiB manifest.json.
  const bigList = Buffer.concat([Buffer.from('['), Buffer.alloc(17 * MiB, 0x20), Buffer.from(']')]);
  const dockerList = path.join(dir, 'docker-list.tar');
  await writeTar(dockerList, [['manifest.json', bigList]]);
  // docker save archive whose config is 9 MiB.
  const config = Buffer.concat([Buffer.from(`{"rootfs":{"type":"layers","diff_ids":["${layerDigest}"]}`), Buffer.alloc(9 * MiB, 0x20), Buffer.from('}')]);
  const dockerConfig = path.join(dir, 'docker-config.tar');
  await writeTar(dockerConfig, [
    ['config.json', config],
    ['layer.tar', layer],
    ['manifest.json', Buffer.from(JSON.stringify([{ Config: 'config.json', RepoTags: ['big/config:latest'], Layers: ['layer.tar'] }]))],
  ]);
  const before = memory(s.pid);
  resetPeak(s.pid);
  const cases: Array<[string, RegExp]> = [
    [oci, /index\.json is larger than the index limit \(4 MiB\)/],
    [dockerList, /manifest\.json is larger than the archive manifest\.json limit \(16 MiB\)/],
    [dockerConfig, /config config\.json is larger than the config limit \(8 MiB\)/],
  ];
  for (const [input, want] of cases) {
    assert.match(await failure(s.conn.sendRequest(ImageLoadRequest.type, { input }), 30_000, `load of ${input}`), want);
  }
  assertMemoryBounded(s, before);
  assert.deepEqual(await s.conn.sendRequest(ImageListRequest.type), [], 'nothing was recorded');
  assert.deepEqual(fs.readdirSync(dir).sort(), ['docker-config.tar', 'docker-list.tar', 'oci.tar'], 'the archives are all that is beside them');
  await assertSameHelper(s);
});
