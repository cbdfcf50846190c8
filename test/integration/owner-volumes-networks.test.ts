/**
 * Named volumes and user-defined networks belong to the uid that created
 * them: two created users, each talking to a helper started as root over a
 * socket opened to them, use the same names without a clash, see only their
 * own, and get "not found" for the other's exactly as for a missing one.
 * Root sees every owner's; root's runs use root's own volume and network.
 * Every helper runs in a network namespace the test creates.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, connectProtocol, fileRegistry, restartHelper, startHelper, type TestHelper } from '../helpers/capsa';
import { createUser, type TestUser } from '../helpers/users';
import { askAs, callAs, installUserClient } from '../helpers/userclient';
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
  type NetworkSummary,
  type VolumeSummary,
} from '../../server/protocol';
import { contains, parseIPv4, parseSubnet } from '../../server/util/subnet';

const registry = fileRegistry();

type T = { after: (fn: () => Promise<void> | void) => void };

function testNetns(t: T): string {
  const ns = `capsa-o-${randomBytes(4).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  t.after(() => void spawnSync('ip', ['netns', 'del', ns]));
  return ns;
}

/** A helper with busybox, socket open to every local user, running in its own network namespace; two users. */
async function setup(t: T): Promise<{ h: TestHelper; a: TestUser; b: TestUser; client: string; ns: string }> {
  const a = createUser(t);
  const b = createUser(t);
  const ns = testNetns(t);
  const h = await startHelper({ mirror: registry.url, env: { CAPSA_SOCKET_MODE: '0666' } });
  t.after(() => h.stop());
  // the registry is on the host's loopback: pull there, then serve the same root from the namespace
  const pulled = await h.cli(['pull', '-q', 'busybox']);
  assert.equal(pulled.code, 0, pulled.stderr);
  h.process.kill('SIGTERM');
  await new Promise((r) => h.process.once('exit', r));
  h.env.CAPSA_TEST_NETNS = ns;
  await restartHelper(h);
  const client = installUserClient(h.dir);
  return { h, a, b, client, ns };
}

/** The refusal a call gets: its code and its message with `name` blanked, to compare the text of two refusals. */
async function refusal(p: Promise<unknown>, name: string): Promise<{ code: string; text: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as Error & { code?: string };
    return { code: e.code ?? '', text: e.message.split(name).join('<NAME>') };
  }
  assert.fail('the call succeeded');
}

test('two users each create a volume "data" without a clash, list only their own, and the other\'s is not found as a missing one is', async (t) => {
  const { h, a, b, client } = await setup(t);
  const va = await askAs<VolumeSummary>(a, client, h.socket, VolumeCreateRequest.method, { name: 'data' });
  const vb = await askAs<VolumeSummary>(b, client, h.socket, VolumeCreateRequest.method, { name: 'data' });
  assert.equal(va.owner, a.uid);
  assert.equal(vb.owner, b.uid);
  assert.notEqual(va.mountpoint, vb.mountpoint, 'two volumes, two directories');
  await askAs(a, client, h.socket, VolumeCreateRequest.method, { name: 'only-a' });

  const listA = await askAs<VolumeSummary[]>(a, client, h.socket, VolumeListRequest.method);
  assert.deepEqual(listA.map((v) => [v.name, v.owner]), [['data', a.uid], ['only-a', a.uid]]);
  const listB = await askAs<VolumeSummary[]>(b, client, h.socket, VolumeListRequest.method);
  assert.deepEqual(listB.map((v) => [v.name, v.owner]), [['data', b.uid]]);

  // the data of a user's volume is that user's on the host, for its containers' root (through an idmapped mount)
  const st = execFileSync('stat', ['-c', '%u:%g', va.mountpoint], { encoding: 'utf8' }).trim();
  assert.equal(st, `${a.uid}:${a.gid}`);

  // B asking for A's volume gets what B gets for one that exists nowhere
  const missing = `never-${randomBytes(3).toString('hex')}`;
  for (const method of [VolumeInspectRequest.method, VolumeRemoveRequest.method]) {
    const other = await refusal(askAs(b, client, h.socket, method, { volume: 'only-a' }), 'only-a');
    const none = await refusal(askAs(b, client, h.socket, method, { volume: missing }), missing);
    assert.equal(other.code, 'E_VOLUME_NOT_FOUND', method);
    assert.deepEqual(other, none, `${method}: another user's volume reads as a missing one`);
  }
  // B's own "data" is B's: its inspect shows B's directory, not A's
  assert.equal((await askAs<VolumeSummary>(b, client, h.socket, VolumeInspectRequest.method, { volume: 'data' })).mountpoint, vb.mountpoint);

  // an RPC message cannot name an owner
  const [forged] = await callAs(b, client, h.socket, [[VolumeInspectRequest.method, { volume: 'only-a', owner: a.uid }]]);
  assert.match(forged.error?.message ?? '', /owner.*is not a known field/);

  // root sees both, with their owners; root has no "data" of its own, and two owners have one
  const conn = await connectProtocol(h.socket);
  t.after(() => conn.dispose());
  const all = await conn.sendRequest(VolumeListRequest.type);
  assert.deepEqual(all.map((v) => [v.name, v.owner]), [['data', a.uid], ['data', b.uid], ['only-a', a.uid]]);
  await assert.rejects(conn.sendRequest(VolumeInspectRequest.type, { volume: 'data' }), (e: Error & { data?: { code?: string } }) => {
    assert.equal(e.data?.code, 'E_VOLUME_AMBIGUOUS');
    assert.match(e.message, new RegExp(`uid ${Math.min(a.uid, b.uid)}, ${Math.max(a.uid, b.uid)}`));
    return true;
  });
  assert.equal((await conn.sendRequest(VolumeInspectRequest.type, { volume: 'only-a' })).owner, a.uid, 'a name only one owner uses is that owner\'s');

  // a root run with -v data:/x uses (and here creates) root's own "data", never a user's
  const r = await h.cli(['run', '--rm', '-v', 'data:/x', 'busybox', 'sh', '-c', 'echo root > /x/f']);
  assert.equal(r.code, 0, r.stderr);
  const mine = await conn.sendRequest(VolumeInspectRequest.type, { volume: 'data' });
  assert.equal(mine.owner, 0, 'root names its own first');
  assert.equal(readFileSync(path.join(mine.mountpoint, 'f'), 'utf8'), 'root\n');
  assert.ok(!existsSync(path.join(va.mountpoint, 'f')) && !existsSync(path.join(vb.mountpoint, 'f')), "the users' volumes are untouched");

  // B's prune removes B's unused volume only; A's and root's stay
  const pruned = await askAs<{ deleted: string[] }>(b, client, h.socket, VolumePruneRequest.method);
  assert.deepEqual(pruned.deleted, ['data']);
  assert.deepEqual((await conn.sendRequest(VolumeListRequest.type)).map((v) => [v.name, v.owner]), [['data', 0], ['data', a.uid], ['only-a', a.uid]]);
  // root's prune removes root's own unused volumes only
  assert.deepEqual((await conn.sendRequest(VolumePruneRequest.type)).deleted, ['data']);
  assert.deepEqual((await askAs<VolumeSummary[]>(a, client, h.socket, VolumeListRequest.method)).map((v) => v.name), ['data', 'only-a']);
  // A removes its own
  await askAs(a, client, h.socket, VolumeRemoveRequest.method, { volume: 'only-a' });
  assert.deepEqual((await askAs<VolumeSummary[]>(a, client, h.socket, VolumeListRequest.method)).map((v) => v.name), ['data']);
});

test('two users each create a network "front" without a clash, see only their own and the bridge, and the other\'s is not found by name or id', async (t) => {
  const { h, a, b, client } = await setup(t);
  const na = await askAs<NetworkSummary>(a, client, h.socket, NetworkCreateRequest.method, { name: 'front' });
  const nb = await askAs<NetworkSummary>(b, client, h.socket, NetworkCreateRequest.method, { name: 'front' });
  assert.equal(na.owner, a.uid);
  assert.equal(nb.owner, b.uid);
  assert.notEqual(na.id, nb.id);
  assert.notEqual(na.subnet, nb.subnet, 'the networks share the host: their subnets differ');
  const onlyA = await askAs<NetworkSummary>(a, client, h.socket, NetworkCreateRequest.method, { name: 'only-a' });
  const dup = await refusal(askAs(a, client, h.socket, NetworkCreateRequest.method, { name: 'front' }), 'front');
  assert.equal(dup.code, 'E_CONFLICT', 'a name clashes with the same owner\'s');

  assert.deepEqual((await askAs<NetworkSummary[]>(a, client, h.socket, NetworkListRequest.method)).map((n) => n.name), ['bridge', 'front', 'only-a']);
  assert.deepEqual((await askAs<NetworkSummary[]>(b, client, h.socket, NetworkListRequest.method)).map((n) => n.name), ['bridge', 'front']);

  const missing = `never-${randomBytes(3).toString('hex')}`;
  const fakeId = randomBytes(32).toString('hex');
  for (const method of [NetworkInspectRequest.method, NetworkRemoveRequest.method]) {
    const none = await refusal(askAs(b, client, h.socket, method, { network: missing }), missing);
    assert.equal(none.code, 'E_NETWORK_NOT_FOUND');
    for (const ref of ['only-a', onlyA.id, onlyA.id.slice(0, 12)]) {
      assert.deepEqual(await refusal(askAs(b, client, h.socket, method, { network: ref }), ref), none, `${method} ${ref}: another user's network reads as a missing one`);
    }
    assert.deepEqual(await refusal(askAs(b, client, h.socket, method, { network: fakeId }), fakeId), none);
  }
  // B's inspect of "front" is B's network
  assert.equal((await askAs<NetworkSummary>(b, client, h.socket, NetworkInspectRequest.method, { network: 'front' })).id, nb.id);

  // root sees every owner's, with owners; the built-in bridge is everyone's
  const conn = await connectProtocol(h.socket);
  t.after(() => conn.dispose());
  const all = await conn.sendRequest(NetworkListRequest.type);
  assert.deepEqual(all.map((n) => [n.name, n.owner]), [['bridge', undefined], ['front', a.uid], ['front', b.uid], ['only-a', a.uid]]);
  await assert.rejects(conn.sendRequest(NetworkInspectRequest.type, { network: 'front' }), /several users/);
  assert.equal((await conn.sendRequest(NetworkInspectRequest.type, { network: nb.id.slice(0, 12) })).owner, b.uid, 'root names any one by id');

  // root's own "front": a root run with --network front joins it, in its subnet
  const rootFront = await conn.sendRequest(NetworkCreateRequest.type, { name: 'front' });
  assert.equal(rootFront.owner, 0);
  const r = await h.cli(['run', '--rm', '--network', 'front', 'busybox', 'ip', '-o', '-4', 'addr', 'show', 'eth0']);
  assert.equal(r.code, 0, r.stderr);
  const addr = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(r.stdout)?.[1];
  assert.ok(addr && contains(parseSubnet(rootFront.subnet), parseIPv4(addr)), `${r.stdout} in ${rootFront.subnet}`);
  // root's runs never join a user's network: "only-a" is A's
  const refused = await h.cli(['run', '--rm', '--network', 'only-a', 'busybox', 'true']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /no such network: only-a/);

  // B's prune removes B's unused network only
  assert.deepEqual((await askAs<{ deleted: string[] }>(b, client, h.socket, NetworkPruneRequest.method)).deleted, ['front']);
  assert.deepEqual((await conn.sendRequest(NetworkListRequest.type)).map((n) => [n.name, n.owner]), [['bridge', undefined], ['front', 0], ['front', a.uid], ['only-a', a.uid]]);
  // A removes its own by name
  await askAs(a, client, h.socket, NetworkRemoveRequest.method, { network: 'only-a' });
  assert.deepEqual((await askAs<NetworkSummary[]>(a, client, h.socket, NetworkListRequest.method)).map((n) => n.name), ['bridge', 'front']);
  const bridge = await refusal(askAs(a, client, h.socket, NetworkRemoveRequest.method, { network: 'bridge' }), 'bridge');
  assert.equal(bridge.code, 'E_CONFLICT', 'the built-in network is no one\'s to remove');
});

/**
 * What a container of user A joins with `--network front`, set up by the
 * network manager itself in a namespace of the test's (the container side
 * hands it the caller: NetworkRequest.caller).
 */
const ATTACH = `
// node -e: the arguments start at argv[1]
const [repo, root, uidA, uidB] = [process.argv[1], process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const { NetworkManager } = require(repo + '/out/server/runtime/network/manager.js');
const fs = require('fs');
(async () => {
  const m = new NetworkManager(root, { bridgeName: 'capsa-ot0' });
  await m.reconcile(new Set(), new Set());
  const fa = await m.create({ name: 'front' }, { uid: uidA });
  const fb = await m.create({ name: 'front' }, { uid: uidB });
  const files = (id) => { const d = root + '/' + id; fs.mkdirSync(d, { recursive: true }); return { hostsPath: d + '/hosts', resolvConfPath: d + '/resolv.conf' }; };
  const req = (id, caller, network) => ({ id, name: 'c' + id.slice(0, 4), hostname: 'h', options: { network }, ...files(id), caller, lookup: () => { throw new Error('no'); } });
  const idA = 'a'.repeat(64), idB = 'b'.repeat(64);
  const out = { fa, fb };
  out.a = (await m.setup(req(idA, { uid: uidA }, 'front'))).settings;
  out.b = (await m.setup(req(idB, { uid: uidB }, 'front'))).settings;
  out.membersA = m.members(fa, { uid: uidA }).map((x) => x.id);
  out.bridgeA = (await m.setup(req('c'.repeat(64), { uid: uidA }, 'bridge'))).settings;
  out.membersBridgeB = m.members(m.network('bridge'), { uid: uidB }).map((x) => x.id);
  try { await m.setup(req('d'.repeat(64), { uid: uidB }, fa.id.slice(0, 12))); out.cross = 'joined'; } catch (e) { out.cross = e.code + ': ' + e.message; }
  for (const id of [idA, idB, 'c'.repeat(64)]) await m.teardown(id);
  await m.remove(fa.id); await m.remove(fb.id);
  await m.close();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
`;

test("a container of a user joins that user's network of the name, in its subnet, and never another user's", async (t) => {
  const a = createUser(t);
  const b = createUser(t);
  const ns = testNetns(t);
  const root = mkdtempSync(path.join(tmpdir(), 'capsa-own-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '-e', ATTACH, REPO_ROOT, root, String(a.uid), String(b.uid)], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, any>;
  assert.equal(out.a.network, 'front');
  assert.ok(contains(parseSubnet(out.fa.subnet), parseIPv4(out.a.ipAddress)), `A's container ${out.a.ipAddress} is in A's front ${out.fa.subnet}`);
  assert.ok(contains(parseSubnet(out.fb.subnet), parseIPv4(out.b.ipAddress)), `B's container ${out.b.ipAddress} is in B's front ${out.fb.subnet}`);
  assert.deepEqual(out.membersA, ['a'.repeat(64)], "only A's container is on A's front");
  assert.match(out.bridgeA.ipAddress, /^10\.88\./, 'the default bridge is usable by everyone');
  assert.deepEqual(out.membersBridgeB, [], "B does not see A's container on the shared bridge");
  assert.match(out.cross, /^E_NETWORK_NOT_FOUND: no such network: [0-9a-f]{12}$/, "B's container cannot join A's network by id");
});
