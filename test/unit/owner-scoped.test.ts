/**
 * Owner-scoped names of volumes and networks (server/util/owners.ts): a
 * caller other than root finds only its own, root its own first, then the
 * only owner's, and a name several owners use is refused with their uids.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { AmbiguousOwnerError, pickOwned } from '../../server/util/owners';
import { VolumeNotFoundError, VolumeStore } from '../../server/runtime/volumes';
import { NetworkManager, NetworkNotFoundError, poolOf } from '../../server/runtime/network/manager';
import type { Connection } from 'vscode-languageserver/node';
import { forCaller } from '../../server/handlers/access';
import { validating } from '../../server/handlers/validated';
import {
  NetworkCreateRequest,
  NetworkInspectRequest,
  NetworkListRequest,
  NetworkPruneRequest,
  NetworkRemoveRequest,
  VolumeCreateRequest,
  VolumeInspectRequest,
  VolumeListRequest,
  VolumePruneRequest,
  VolumeRemoveRequest,
} from '../../server/protocol';

const items = [
  { name: 'data', owner: 1001 },
  { name: 'data', owner: 1002 },
  { name: 'solo', owner: 1002 },
  { name: 'mine', owner: 0 },
  { name: 'data', owner: 0 },
];
const pick = (uid: number, name: string, list = items) =>
  pickOwned({ uid }, list, (i) => i.owner, (i) => i.name === name, (owners) => new AmbiguousOwnerError('E_VOLUME_AMBIGUOUS', 'volume', name, owners, 'x'));

test('a non-root asker picks only its own of a name, and nothing of another owner', () => {
  assert.deepEqual(pick(1001, 'data'), { name: 'data', owner: 1001 });
  assert.equal(pick(1001, 'solo'), undefined);
  assert.equal(pick(1001, 'mine'), undefined);
});

test("root picks its own first, else the only owner's, else is refused with every owner's uid", () => {
  assert.deepEqual(pick(0, 'data'), { name: 'data', owner: 0 });
  assert.deepEqual(pick(0, 'solo'), { name: 'solo', owner: 1002 });
  assert.equal(pick(0, 'nothing'), undefined);
  assert.throws(() => pick(0, 'data', items.filter((i) => i.owner !== 0)), (e: AmbiguousOwnerError) => {
    assert.equal(e.code, 'E_VOLUME_AMBIGUOUS');
    assert.match(e.message, /owned by several users \(uid 1001, 1002\)/);
    return true;
  });
});

function store(t: { after: (fn: () => void) => void }): { root: string; volumes: VolumeStore } {
  const root = mkdtempSync(path.join(tmpdir(), 'capsa-owned-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  // the data goes to the test's own uid, so this runs without root
  const self = { uid: process.getuid!(), gid: process.getgid!() };
  return { root, volumes: new VolumeStore(root, { dataOwner: () => self }) };
}

const A = { uid: 1001, gid: 1001 };
const B = { uid: 1002, gid: 1002 };

test('two owners may each have a volume of one name: two directories, each listed to its owner only', async (t) => {
  const { volumes } = store(t);
  const a = await volumes.create('data', undefined, A);
  const b = await volumes.create('data', undefined, B);
  assert.notEqual(a.mountpoint, b.mountpoint);
  assert.equal(a.owner, 1001);
  assert.deepEqual((await volumes.list(A)).map((v) => [v.name, v.owner]), [['data', 1001]]);
  assert.deepEqual((await volumes.list({ uid: 0 })).map((v) => [v.name, v.owner]), [['data', 1001], ['data', 1002]]);
  assert.equal((await volumes.create('data', undefined, A)).mountpoint, a.mountpoint, 'creating it again returns the same one');
});

test("another owner's volume is not found with the message a missing one gets", async (t) => {
  const { volumes } = store(t);
  await volumes.create('theirs', undefined, B);
  const message = async (ref: string) => (await volumes.find(A, ref).then(() => assert.fail('found'), (e: unknown) => e)) as VolumeNotFoundError;
  const other = await message('theirs');
  const none = await message('nowhere');
  assert.ok(other instanceof VolumeNotFoundError && none instanceof VolumeNotFoundError);
  assert.equal(other.message.replace('theirs', 'X'), none.message.replace('nowhere', 'X'));
});

test("root finds its own volume first, the only owner's otherwise, and is refused for a name several others use", async (t) => {
  const { volumes } = store(t);
  await volumes.create('data', undefined, A);
  await volumes.create('data', undefined, B);
  await volumes.create('solo', undefined, B);
  assert.equal((await volumes.find({ uid: 0 }, 'solo')).owner, 1002);
  await assert.rejects(volumes.find({ uid: 0 }, 'data'), /E_VOLUME_AMBIGUOUS|several users \(uid 1001, 1002\)/);
  await volumes.create('data');
  assert.equal((await volumes.find({ uid: 0 }, 'data')).owner, undefined, "root's own, recorded as before owners");
});

test("resolveForRun mounts the caller's own volume, creating it owned by the caller, even when another owner has the name", async (t) => {
  const { volumes } = store(t);
  const theirs = await volumes.create('cache', undefined, B);
  const mine = await volumes.resolveForRun(A, 'cache');
  assert.notEqual(mine.mountpoint, theirs.mountpoint);
  assert.equal(mine.owner, 1001);
  const roots = await volumes.resolveForRun({ uid: 0, gid: 0 }, 'cache');
  assert.notEqual(roots.mountpoint, theirs.mountpoint, "root's run uses root's own");
});

test("prune removes only the asker's own unused volumes, root's included", async (t) => {
  const { volumes } = store(t);
  const a = await volumes.create('x', undefined, A);
  await volumes.create('y', undefined, A);
  await volumes.create('x', undefined, B);
  await volumes.create('r');
  assert.deepEqual((await volumes.prune(A, new Set([a.mountpoint]))).deleted, ['y']);
  assert.deepEqual((await volumes.prune({ uid: 0 }, new Set())).deleted, ['r']);
  assert.deepEqual((await volumes.list({ uid: 0 })).map((v) => [v.name, v.owner]), [['x', 1001], ['x', 1002]]);
});

test('a volume recorded before owners existed is root\'s', async (t) => {
  const { root, volumes } = store(t);
  const dir = path.join(root, 'volumes', 'old');
  mkdirSync(path.join(dir, '_data'), { recursive: true });
  writeFileSync(path.join(dir, 'volume.json'), JSON.stringify({ name: 'old', mountpoint: path.join(dir, '_data'), created: new Date(0).toISOString() }));
  assert.equal((await volumes.find({ uid: 0 }, 'old')).mountpoint, path.join(dir, '_data'));
  await assert.rejects(volumes.find(A, 'old'), VolumeNotFoundError);
});

function manager(t: { after: (fn: () => void) => void }): NetworkManager {
  const root = mkdtempSync(path.join(tmpdir(), 'capsa-owned-net-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  return new NetworkManager(root);
}

test('two owners may each create a network of one name; each finds its own by name, and not the other\'s by name or id', async (t) => {
  const m = manager(t);
  const a = await m.create({ name: 'front' }, A);
  const b = await m.create({ name: 'front' }, B);
  assert.notEqual(a.subnet, b.subnet);
  await assert.rejects(m.create({ name: 'front' }, A), /already exists/);
  assert.equal(m.network('front', A).id, a.id);
  assert.equal(m.network('front', B).id, b.id);
  assert.throws(() => m.network(a.id.slice(0, 12), B), NetworkNotFoundError);
  assert.throws(() => m.network(a.id, B), (e: Error) => e.message === `no such network: ${a.id}`);
  assert.deepEqual(m.networks(A).map((n) => n.name), ['bridge', 'front']);
  assert.deepEqual(m.networks().map((n) => [n.name, n.owner]), [['bridge', undefined], ['front', 1001], ['front', 1002]]);
  assert.throws(() => m.network('front'), /several users \(uid 1001, 1002\)/);
  assert.equal(m.network(b.id.slice(0, 8)).id, b.id, 'root names any by id');
  assert.notEqual(poolOf(a), poolOf(b), 'their address pools are apart');
});

test("resolveForRun gives the built-in bridge to everyone and a caller only its own network, root's runs included", async (t) => {
  const m = manager(t);
  const a = await m.create({ name: 'front' }, A);
  assert.equal(m.resolveForRun(B, 'bridge').builtin, true);
  assert.equal(m.resolveForRun(A, 'front').id, a.id);
  assert.equal(m.resolveForRun(A, a.id.slice(0, 6)).id, a.id);
  assert.throws(() => m.resolveForRun(B, 'front'), (e: Error) => e instanceof NetworkNotFoundError && e.message === 'no such network: front');
  assert.throws(() => m.resolveForRun({ uid: 0 }, 'front'), NetworkNotFoundError);
  const r = await m.create({ name: 'front' });
  assert.equal(m.resolveForRun({ uid: 0 }, 'front').id, r.id);
});

test("a subnet clash with another owner's network does not name it", async (t) => {
  const m = manager(t);
  await m.create({ name: 'secret-name', subnet: '10.95.0.0/24' }, B);
  await assert.rejects(m.create({ name: 'x', subnet: '10.95.0.0/25' }, A), (e: Error) => /another user/.test(e.message) && !e.message.includes('secret-name'));
  await assert.rejects(m.create({ name: 'x', subnet: '10.95.0.0/25' }), /secret-name/);
});

test('the gate lets a caller other than root reach the volume and network methods, and still refuses what is not opened to users', async () => {
  let request: ((method: string, params: unknown, token: unknown) => unknown) | undefined;
  const fake = {
    onRequest(h: typeof request) {
      request = h;
      return { dispose() {} };
    },
    onNotification() {
      return { dispose() {} };
    },
  };
  const conn = validating(forCaller(fake as unknown as Connection, { uid: 1000, gid: 1000, groups: [1000], pid: 2 }));
  const seen: string[] = [];
  for (const m of [VolumeListRequest, VolumeCreateRequest, VolumeInspectRequest, VolumeRemoveRequest, VolumePruneRequest, NetworkListRequest, NetworkCreateRequest, NetworkInspectRequest, NetworkRemoveRequest, NetworkPruneRequest]) {
    conn.onRequest(m.method, () => (seen.push(m.method), null));
  }
  await request!(VolumeListRequest.method, undefined, {});
  await request!(VolumeCreateRequest.method, { name: 'data' }, {});
  await request!(VolumeInspectRequest.method, { volume: 'data' }, {});
  await request!(VolumeRemoveRequest.method, { volume: 'data' }, {});
  await request!(VolumePruneRequest.method, undefined, {});
  await request!(NetworkListRequest.method, undefined, {});
  await request!(NetworkCreateRequest.method, { name: 'front' }, {});
  await request!(NetworkInspectRequest.method, { network: 'front' }, {});
  await request!(NetworkRemoveRequest.method, { network: 'front' }, {});
  await request!(NetworkPruneRequest.method, undefined, {});
  assert.equal(seen.length, 10);
  await assert.rejects(async () => request!('capsa/unlisted/method', {}, {}), (e: { data?: { code: string } }) => e.data?.code === 'E_PERMISSION_DENIED');
  assert.equal(seen.length, 10);
  // a message naming an owner is refused by its schema, before any handler
  await assert.rejects(async () => request!(VolumeInspectRequest.method, { volume: 'data', owner: 0 }, {}), /owner.*is not a known field/);
});
