import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { endpointsFor, isLoopbackHost, parseManifest, retryAfterMs } from '../../server/image/registry';
import { credentialLookup, dockerConfigCredentials, parseChallenge, TokenCache } from '../../server/image/auth';
import { UnsupportedManifestError } from '../../server/image/errors';
import { MediaType } from '../../server/image/types';

const D = 'sha256:' + 'b'.repeat(64);

test('loopback hosts are recognised with and without ports', () => {
  const cases: Array<[string, boolean]> = [
    ['127.0.0.1:5000', true],
    ['127.1.2.3', true],
    ['localhost', true],
    ['localhost:5000', true],
    ['[::1]:5000', true],
    ['::1', true],
    ['128.0.0.1:5000', false],
    ['example.com', false],
    ['docker.io', false],
    ['10.0.0.1:5000', false],
  ];
  for (const [host, want] of cases) assert.equal(isLoopbackHost(host), want, host);
});

test('endpoints: mirrors first, then the registry; plain HTTP for loopback and insecure hosts', () => {
  const config = { registries: { mirrors: { 'docker.io': ['http://127.0.0.1:5000/'], 'quay.io': ['https://m.example/'] }, insecure: ['reg.lan:5000'] } };
  assert.deepEqual(endpointsFor('docker.io', config).map((e) => [e.url, e.host, e.mirror]), [
    ['http://127.0.0.1:5000', '127.0.0.1:5000', true],
    ['https://registry-1.docker.io', 'docker.io', false],
  ]);
  assert.deepEqual(endpointsFor('127.0.0.1:5000', config).map((e) => e.url), ['http://127.0.0.1:5000']);
  assert.deepEqual(endpointsFor('reg.lan:5000', config).map((e) => e.url), ['http://reg.lan:5000']);
  assert.deepEqual(endpointsFor('ghcr.io', config).map((e) => e.url), ['https://ghcr.io']);
  assert.deepEqual(endpointsFor('quay.io', config).map((e) => e.url), ['https://m.example', 'https://quay.io']);
});

test('Retry-After in seconds or as an HTTP date', () => {
  assert.equal(retryAfterMs('3'), 3000);
  assert.equal(retryAfterMs(undefined), undefined);
  assert.equal(retryAfterMs('soon'), undefined);
  const now = Date.parse('2024-01-01T00:00:00Z');
  assert.equal(retryAfterMs('Mon, 01 Jan 2024 00:00:05 GMT', now), 5000);
});

test('manifest media types: schema1 and unknown types are refused by name', () => {
  const m = (o: object) => Buffer.from(JSON.stringify(o));
  const manifest = { schemaVersion: 2, config: { mediaType: MediaType.OciConfig, digest: D, size: 1 }, layers: [] };
  assert.equal(parseManifest(m({ ...manifest, mediaType: MediaType.DockerManifest }), '', 'x').mediaType, MediaType.DockerManifest);
  assert.equal(parseManifest(m(manifest), MediaType.OciManifest, 'x').mediaType, MediaType.OciManifest);
  assert.equal(parseManifest(m(manifest), '', 'x').mediaType, MediaType.OciManifest, 'shape decides when no type is given');
  assert.equal(parseManifest(m({ schemaVersion: 2, manifests: [] }), 'application/json', 'x').mediaType, MediaType.OciIndex);
  const refused: Array<[object, string, RegExp]> = [
    [{ schemaVersion: 1, name: 'x', fsLayers: [] }, MediaType.DockerManifestSchema1Signed, /x uses manifest media type application\/vnd\.docker\.distribution\.manifest\.v1\+prettyjws \(Docker schema 1\)/],
    [{ schemaVersion: 1 }, 'application/json', /Docker schema 1/],
    [{ schemaVersion: 2, mediaType: 'application/vnd.example.thing+json' }, '', /unsupported manifest media type "application\/vnd\.example\.thing\+json"/],
    [{ ...manifest, layers: [{ mediaType: 'x', digest: 'md5:abc', size: 1 }] }, MediaType.OciManifest, /malformed or non-sha256 descriptor/],
    [{ schemaVersion: 2, mediaType: MediaType.OciIndex }, '', /no manifests list/],
  ];
  for (const [body, ct, why] of refused) {
    assert.throws(() => parseManifest(m(body), ct, 'x'), (e: unknown) => e instanceof UnsupportedManifestError && why.test(e.message), JSON.stringify(body));
  }
  assert.throws(() => parseManifest(Buffer.from('{not json'), 'text/html', 'x'), /not valid JSON \(content type text\/html\)/);
});

test('WWW-Authenticate challenges parse', () => {
  assert.deepEqual(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), {
    scheme: 'bearer',
    params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' },
  });
  assert.deepEqual(parseChallenge('Basic realm="capsa-test"'), { scheme: 'basic', params: { realm: 'capsa-test' } });
  assert.deepEqual(parseChallenge('Bearer realm=http://x/token, service=reg'), { scheme: 'bearer', params: { realm: 'http://x/token', service: 'reg' } });
});

test('docker config.json auths are read, docker.io under its old index URL', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.json');
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  fs.writeFileSync(
    file,
    JSON.stringify({
      auths: {
        'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pw') },
        '127.0.0.1:5000': { auth: b64('a:b') },
        'https://reg.example.com': { username: 'u', password: 'p' },
        broken: { auth: b64('nocolon') },
      },
    }),
  );
  const creds = await dockerConfigCredentials(file);
  assert.deepEqual(creds.get('docker.io'), { username: 'hubuser', password: 'hub:pw' });
  assert.deepEqual(creds.get('127.0.0.1:5000'), { username: 'a', password: 'b' });
  assert.deepEqual(creds.get('reg.example.com'), { username: 'u', password: 'p' });
  assert.equal(creds.get('broken'), undefined);
  assert.equal((await dockerConfigCredentials(path.join(dir, 'none.json'))).size, 0);
  const lookup = credentialLookup({ '127.0.0.1:5000': { username: 'own', password: 'x' } }, creds);
  assert.equal(lookup('127.0.0.1:5000')?.username, 'own', "Capsa's own credentials win");
  assert.equal(lookup('index.docker.io')?.username, 'hubuser');
});

test('tokens are cached until shortly before they expire', () => {
  let now = 1_000_000;
  const cache = new TokenCache(() => now);
  cache.set('k', 'tok', 300);
  assert.equal(cache.get('k'), 'tok');
  now += 269_000;
  assert.equal(cache.get('k'), 'tok');
  now += 2_000;
  assert.equal(cache.get('k'), undefined, 'dropped within the safety margin');
  cache.set('d', 'default');
  now += 53_000;
  assert.equal(cache.get('d'), 'default');
  now += 2_000;
  assert.equal(cache.get('d'), undefined, 'default lifetime is 60 s');
});
