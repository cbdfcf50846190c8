/**
 * Credentials from Capsa's own config file reach the registry client a pull
 * uses, for basic and token auth; wrong ones fail without echoing a secret.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../../server/config';
import { pullImage } from '../../server/image/pull';
import { ImageStore } from '../../server/image/store';
import { RegistryAuthError } from '../../server/image/errors';
import { startRegistry } from '../helpers/registry';
import { seedBusybox } from '../helpers/oci';

interface Ctx {
  after: (fn: () => unknown) => void;
}

/** A store and a config loaded from a file with these credentials; the Docker config is an empty directory. */
function setup(t: Ctx, credentials: unknown): { store: ImageStore; config: ReturnType<typeof loadConfig> } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify({ root: path.join(dir, 'root'), credentials }));
  const saved = process.env.DOCKER_CONFIG;
  process.env.DOCKER_CONFIG = dir; // no config.json there: only Capsa's credentials count
  t.after(() => (saved === undefined ? delete process.env.DOCKER_CONFIG : (process.env.DOCKER_CONFIG = saved)));
  const config = loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv);
  return { store: new ImageStore(config.root), config };
}

test('basic auth with username/password from the config file pulls; a wrong password is a clear error without it', async (t) => {
  const creds = { user: 'capsa', password: 'cfg-s3cret' };
  const reg = await startRegistry({ htpasswd: creds });
  t.after(() => reg.stop());
  const pushed = await seedBusybox({ url: reg.url, auth: creds });
  const ref = `${reg.host}/library/busybox:latest`;

  const good = setup(t, { [reg.host]: { username: creds.user, password: creds.password } });
  assert.equal((await pullImage(ref, good)).id, pushed.configDigest);

  const bad = setup(t, { [reg.host]: { username: creds.user, password: 'not-the-pw' } });
  await assert.rejects(pullImage(ref, bad), (err: unknown) => {
    assert.ok(err instanceof RegistryAuthError, String(err));
    assert.doesNotMatch(err.message, /not-the-pw|cfg-s3cret/);
    return true;
  });
});

test('token auth with a base64 auth entry from the config file gets a credentialed token', async (t) => {
  const creds = { user: 'tokenuser', password: 'tok-s3cret' };
  const reg = await startRegistry({ token: { users: [creds] } });
  t.after(() => reg.stop());
  const pushed = await seedBusybox({ url: reg.url, auth: creds });
  const ref = `${reg.host}/library/busybox:latest`;
  const { store, config } = setup(t, { [reg.host]: { auth: Buffer.from(`${creds.user}:${creds.password}`).toString('base64') } });
  assert.equal((await pullImage(ref, { store, config })).id, pushed.configDigest);
});
