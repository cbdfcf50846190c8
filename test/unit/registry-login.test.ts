/**
 * The CLI's Docker config handling (registry names, reference hosts, the
 * atomic write that keeps other keys) and the protocol's bound on request
 * credentials.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { authKey, eraseCredentials, lookupCredentials, readConfig, referenceHost, registryHost, storeCredentials } from '../../server/cli/dockerconfig';
import { checkParams } from '../../server/handlers/validated';
import { ImageLoginRequest, ImagePullRequest, ImagePushRequest } from '../../server/protocol';

test('registry names: URLs and Docker Hub aliases normalise; anything that is not a host[:port] is refused', () => {
  assert.equal(registryHost('https://index.docker.io/v1/'), 'docker.io');
  assert.equal(registryHost('registry-1.docker.io'), 'docker.io');
  assert.equal(registryHost('Ghcr.IO'), 'ghcr.io');
  assert.equal(registryHost('http://127.0.0.1:5000/v2/'), '127.0.0.1:5000');
  assert.equal(registryHost('[::1]:5000'), '[::1]:5000');
  for (const bad of ['bad host', 'bad!host/x', '-x.com', 'x'.repeat(300), 'host:99999', 'ho\x1bst', '']) {
    assert.throws(() => registryHost(bad), /invalid registry/, bad.slice(0, 20));
  }
  assert.equal(authKey('docker.io'), 'https://index.docker.io/v1/');
  assert.equal(authKey('127.0.0.1:5000'), '127.0.0.1:5000');
});

test('the registry of a reference is decided as Docker decides it', () => {
  assert.equal(referenceHost('busybox'), 'docker.io');
  assert.equal(referenceHost('library/busybox:1'), 'docker.io');
  assert.equal(referenceHost('127.0.0.1:5000/a/b:c'), '127.0.0.1:5000');
  assert.equal(referenceHost('localhost/x'), 'localhost');
  assert.equal(referenceHost('ghcr.io/o/r@sha256:' + '0'.repeat(64)), 'ghcr.io');
  assert.equal(referenceHost('docker.io/library/busybox'), 'docker.io');
});

test('store writes auths[host].auth atomically, 0600, keeping other keys; lookup reads it back, also under a URL key; erase removes only it', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-dcfg-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'sub', 'config.json');
  fs.mkdirSync(path.dirname(file));
  fs.writeFileSync(file, JSON.stringify({ psFormat: 'x', auths: { 'https://ghcr.io/v1/': { auth: Buffer.from('g:h').toString('base64') } } }));
  await storeCredentials('docker.io', { username: 'u', password: 'p:w' }, file);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  const cfg = readConfig(file);
  assert.equal(cfg.psFormat, 'x');
  assert.equal(Buffer.from(String(cfg.auths!['https://index.docker.io/v1/'].auth), 'base64').toString(), 'u:p:w');
  assert.deepEqual(await lookupCredentials('docker.io', file), { username: 'u', password: 'p:w' });
  assert.deepEqual(await lookupCredentials('ghcr.io', file), { username: 'g', password: 'h' });
  assert.equal(await lookupCredentials('quay.io', file), undefined);
  assert.equal(await eraseCredentials('docker.io', file), true);
  assert.equal(await eraseCredentials('docker.io', file), false);
  assert.deepEqual(Object.keys(readConfig(file).auths!), ['https://ghcr.io/v1/']);
  assert.deepEqual(fs.readdirSync(path.dirname(file)), ['config.json'], 'no temporary file left');
  fs.writeFileSync(file, '[1,2]');
  await assert.rejects(storeCredentials('docker.io', { username: 'u', password: 'p' }, file), /not a JSON object/);
  assert.equal(fs.readFileSync(file, 'utf8'), '[1,2]', 'a config it cannot read is left alone');
});

test('request credentials are bounded: a 1 MiB password is refused before any handler, and the refusal does not echo it', () => {
  const huge = 'S3CRET'.repeat(200_000);
  for (const [method, schema, params] of [
    [ImagePushRequest.method, ImagePushRequest.params, { reference: 'x', auth: { username: 'u', password: huge } }],
    [ImagePullRequest.method, ImagePullRequest.params, { reference: 'x', auth: { username: 'u', password: huge } }],
    [ImageLoginRequest.method, ImageLoginRequest.params, { registry: 'x', auth: { username: 'u', password: huge } }],
  ] as const) {
    assert.throws(() => checkParams(method, schema, params), (err: Error) => {
      assert.match(err.message, /auth\.password/);
      assert.doesNotMatch(err.message, /S3CRET/);
      return true;
    });
  }
  assert.throws(() => checkParams(ImageLoginRequest.method, ImageLoginRequest.params, { registry: 'x', auth: { username: '', password: 'p' } }), /auth\.username/);
});
