/**
 * Text a registry writes reaches the user's terminal only escaped: an error
 * body carrying terminal escape sequences, and an index whose 15,000
 * platform strings carry them, give a CLI error without a raw ESC or BEL,
 * bounded in size, with a long list cut ("… and N more"). The helper stays
 * the same process, still answers, and its log holds no raw escape either.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { VersionRequest } from '../../server/protocol';
import { connectProtocol, startHelper, type TestHelper } from '../helpers/capsa';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { hostPlatform, pushManifest, seedBusybox } from '../helpers/oci';

const ESCAPES = '\u001b]0;owned\u0007\u001b[2J\u009b31m\u202e';
/** What a terminal acts on: C0 controls but the line break, DEL, C1 controls, bidi overrides. */
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const MAX_STDERR = 4096;

/**
 * A proxy on 127.0.0.1 in front of the real registry that answers the
 * manifests of `repo` itself, with `status` and `body`, and passes every
 * other request through (the fault proxy of test/helpers/registry.ts, with a
 * body of this test's choosing).
 */
async function errorProxy(target: TestRegistry, repo: string, status: number, body: string, contentType: string): Promise<{ host: string; hits: () => number; stop: () => Promise<void> }> {
  const upstream = new URL(target.url);
  let hits = 0;
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith(`/v2/${repo}/manifests/`)) {
      hits++;
      res.writeHead(status, { 'content-type': contentType, 'docker-distribution-api-version': 'registry/2.0' });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    const up = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent: false }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { host: `127.0.0.1:${port}`, hits: () => hits, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}

async function helperLog(h: TestHelper): Promise<string> {
  let out = '';
  for (const f of await fs.readdir(h.dir)) if (f.endsWith('.log')) out += await fs.readFile(path.join(h.dir, f), 'utf8');
  return out;
}

async function sameHelper(h: TestHelper): Promise<void> {
  const c = await connectProtocol(h.socket);
  try {
    assert.equal((await c.sendRequest(VersionRequest.type)).pid, h.process.pid, 'the same helper answers');
  } finally {
    c.dispose();
  }
}

function assertSafe(stderr: string, what: string): void {
  assert.doesNotMatch(stderr, RAW_CONTROL, `${what}: no raw control character reaches the terminal: ${JSON.stringify(stderr.slice(0, 300))}`);
  assert.ok(Buffer.byteLength(stderr) < MAX_STDERR, `${what}: ${Buffer.byteLength(stderr)} bytes of stderr`);
}

test('a registry error body with terminal escapes is printed escaped and bounded', async (t) => {
  const registry = await startRegistry();
  t.after(() => registry.stop());
  const h = await startHelper();
  t.after(() => h.stop());
  const json = (filler: number) => JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: `${ESCAPES}manifest unknown ${'A'.repeat(filler)}` }, { code: 'DENIED', message: `\r\u001b[1Afake: pulled` }] });
  const cases: Array<[string, number, string, string, boolean]> = [
    ['a JSON error body', 404, json(10_000), 'application/json', true],
    ['a JSON error body larger than what is read of it', 404, json(100_000), 'application/json', false],
    ['a plain-text error body', 400, `${ESCAPES}bad request\n\u001b[2Jsecond line`, 'text/plain', true],
  ];
  for (const [what, status, body, type, shown] of cases) {
    const proxy = await errorProxy(registry, 'evil/errors', status, body, type);
    try {
      const r = await h.cli(['pull', `${proxy.host}/evil/errors:latest`]);
      assert.notEqual(r.code, 0, `${what}: ${r.stderr}`);
      assert.ok(proxy.hits() > 0, `${what}: the registry was asked`);
      assertSafe(r.stderr, what);
      // shown, escaped: the user sees what the registry said
      if (shown) assert.match(r.stderr, /\\x1b\]0;owned\\x07\\x1b\[2J\\x9b31m\\u202e/, what);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, `${what}: one line: ${JSON.stringify(r.stderr)}`);
    } finally {
      await proxy.stop();
    }
  }
  const log = await helperLog(h);
  assert.doesNotMatch(log, RAW_CONTROL, 'the helper log has no raw control character');
  await sameHelper(h);
});

test('an index of 15,000 entries with escapes in their platforms gives a short, escaped error ending "… and N more"', async (t) => {
  const registry = await startRegistry();
  t.after(() => registry.stop());
  const busybox = await seedBusybox(registry, 'evil/index', 'base');
  const entries = Array.from({ length: 15_000 }, (_, i) => ({
    mediaType: busybox.manifestMediaType,
    digest: busybox.manifestDigest,
    size: busybox.manifest.length,
    platform: { architecture: `\u001b]0;x\u0007\u001b[2J${i}`, os: 'linux' },
  }));
  const mediaType = 'application/vnd.oci.image.index.v1+json';
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests: entries }));
  await pushManifest(registry, 'evil/index', 'latest', index, mediaType);
  const h = await startHelper();
  t.after(() => h.stop());
  const before = await fs.readdir(h.root);

  const p = hostPlatform();
  for (const args of [
    ['pull', `${registry.host}/evil/index:latest`],
    ['run', '--rm', `${registry.host}/evil/index:latest`, 'true'],
  ]) {
    const r = await h.cli(args);
    assert.notEqual(r.code, 0, r.stderr);
    assertSafe(r.stderr, args[0]);
    assert.match(r.stderr, new RegExp(`no manifest for platform ${p.os}/${p.architecture}`));
    assert.match(r.stderr, /linux\/\\x1b\]0;x\\x07\\x1b\[2j0, /i, 'the first entries are shown, escaped');
    assert.ok(r.stderr.trimEnd().endsWith('… and 14,990 more'), JSON.stringify(r.stderr.slice(-200)));
  }
  assert.deepEqual(await fs.readdir(h.root), before, 'no image or container was recorded');
  assert.doesNotMatch(await helperLog(h), RAW_CONTROL, 'the helper log has no raw control character');
  await sameHelper(h);
});
