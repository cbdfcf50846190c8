/**
 * `capsa volume create|ls|inspect|rm|prune` through the real CLI and helper:
 * volumes made by the verbs are the ones `-v NAME:/path` mounts, removal is
 * refused while a container mounts the volume (unless -f), and hostile names
 * never become paths.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { VolumeCreateRequest, VolumeInspectRequest, VolumeRemoveRequest } from '../../server/protocol';
import { type TestHelper, ok, testHelper, connectProtocol, fileRegistry } from '../helpers/capsa';

const registry = fileRegistry();

async function helperFor(t: { after: (fn: () => Promise<void>) => void }): Promise<TestHelper> {
  return testHelper(t, registry.url, { checkMounts: false });
}

test('volume create, ls, inspect: the volume a container mounts by name is the one the verbs show', async (t) => {
  const h = await helperFor(t);
  assert.equal(await ok(h, ['volume', 'create', '--label', 'team=dev', 'data']), 'data\n');
  assert.equal(await ok(h, ['volume', 'create', 'data']), 'data\n', 'creating an existing volume returns it');
  const anon = (await ok(h, ['volume', 'create'])).trim();
  assert.match(anon, /^[0-9a-f]{64}$/);
  await ok(h, ['run', '--rm', '-v', 'data:/data', 'busybox', 'sh', '-c', 'echo hi > /data/f']);

  // sorted by name, as Docker lists them (the anonymous volume's random name falls either side of "data")
  const names = [anon, 'data'].sort((a, b) => a.localeCompare(b));
  const ls = await ok(h, ['volume', 'ls']);
  assert.deepEqual(ls.trimEnd().split('\n').map((l) => l.split(/\s{3,}/)), [['DRIVER', 'VOLUME NAME'], ...names.map((n) => ['local', n])]);
  assert.equal(await ok(h, ['volume', 'ls', '-q']), names.map((n) => `${n}\n`).join(''));

  const [info] = JSON.parse(await ok(h, ['volume', 'inspect', 'data'])) as Array<Record<string, unknown>>;
  assert.equal(info.Name, 'data');
  assert.equal(info.Driver, 'local');
  assert.deepEqual(info.Labels, { team: 'dev' });
  assert.equal(info.Mountpoint, path.join(h.root, 'volumes', 'data', '_data'));
  assert.equal(await fs.readFile(path.join(info.Mountpoint as string, 'f'), 'utf8'), 'hi\n');

  const missing = await h.cli(['volume', 'inspect', 'nope']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no such volume: nope/);
});

test('volume rm is refused while a container mounts the volume, unless -f; prune keeps volumes in use', async (t) => {
  const h = await helperFor(t);
  await ok(h, ['volume', 'create', 'used']);
  await ok(h, ['volume', 'create', 'idle']);
  await ok(h, ['volume', 'create', 'idle2']);
  await ok(h, ['create', '--name', 'holder', '-v', 'used:/u', 'busybox', 'true']);

  const refused = await h.cli(['volume', 'rm', 'used']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /volume used is in use by container holder/);
  assert.ok(await fs.stat(path.join(h.root, 'volumes', 'used', '_data')));
  const [info] = JSON.parse(await ok(h, ['volume', 'inspect', 'used'])) as Array<{ UsedBy: string[] }>;
  assert.deepEqual(info.UsedBy, ['holder']);

  await fs.writeFile(path.join(h.root, 'volumes', 'idle', '_data', 'blob'), Buffer.alloc(64 * 1024, 1));
  const pruned = await ok(h, ['volume', 'prune', '-f']);
  assert.match(pruned, /Deleted Volumes:\nidle\nidle2\n/);
  assert.match(pruned, /Total reclaimed space: [1-9]/);
  assert.equal(await ok(h, ['volume', 'ls', '-q']), 'used\n');

  assert.equal(await ok(h, ['volume', 'rm', '-f', 'used']), 'used\n');
  await assert.rejects(fs.stat(path.join(h.root, 'volumes', 'used')));
  const gone = await h.cli(['volume', 'rm', 'used']);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /no such volume: used/);
});

test('hostile volume names are refused by every request and never touch the filesystem', async (t) => {
  const h = await helperFor(t);
  const outside = path.join(h.dir, 'outside');
  await fs.mkdir(path.join(outside, 'keep'), { recursive: true });
  // NUL cannot travel in argv, so the table goes through the protocol as any client's params would
  const c = await connectProtocol(h.socket);
  t.after(() => c.dispose());
  const names = ['/', '..', '.', '', '../outside', 'a/b', '/etc', 'bad\0name', 'x'.repeat(129), '-rf', ' lead', 'é'];
  for (const name of names) {
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['create', () => c.sendRequest(VolumeCreateRequest.type, { name })],
      ['inspect', () => c.sendRequest(VolumeInspectRequest.type, { volume: name })],
      ['rm -f', () => c.sendRequest(VolumeRemoveRequest.type, { volume: name, force: true })],
    ];
    for (const [verb, call] of calls) {
      await assert.rejects(call(), (err: Error) => /invalid volume name|must be a non-empty string/.test(err.message), `${verb} ${JSON.stringify(name)}`);
    }
  }
  await assert.rejects(c.sendRequest(VolumeRemoveRequest.type, { volume: 'x', force: 'yes' } as never), /force must be a boolean/);
  await assert.rejects(c.sendRequest(VolumeCreateRequest.type, { name: 'x', labels: { a: 1 } } as never), /labels\.a must be a string, got the number 1/);
  assert.ok(await fs.stat(path.join(outside, 'keep')), 'nothing outside the volume store was removed');
  assert.deepEqual(await fs.readdir(path.join(h.root, 'volumes')).catch(() => []), []);

  // and through the CLI, with the message a user sees
  for (const name of ['..', '/', 'x'.repeat(129)]) {
    const r = await h.cli(['volume', 'rm', '-f', '--', name]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /invalid volume name/);
  }
  const longest = 'v'.repeat(128);
  assert.equal(await ok(h, ['volume', 'create', longest]), `${longest}\n`);
});
