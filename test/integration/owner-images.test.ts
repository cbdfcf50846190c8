/**
 * Images without poisoning: users created by the test pull through a helper
 * started as root; each user's names are their own, the content (blobs,
 * unpacked layers) is shared and fetched once, and no user's name reaches
 * root's lookups or another user's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { connectProtocol, startHelper, until, type TestHelper } from '../helpers/capsa';
import { startFaultProxy, startRegistry, type FaultProxy, type TestRegistry } from '../helpers/registry';
import { seedBusybox, tarLayer, type PushedImage } from '../helpers/oci';
import { createUser, type TestUser } from '../helpers/users';
import { askAs, rawSession, writeRawClient, type RawAnswer } from '../helpers/rawrequests';
import {
  ImageEventNotification,
  ImageListRequest,
  ImageLoadRequest,
  ImagePruneRequest,
  ImagePullRequest,
  ImageRemoveRequest,
  SystemDfRequest,
  type ImageEvent,
  type ImageSummary,
  type SystemDfResult,
} from '../../server/protocol';
import { ImageService } from '../../server/services/images';
import { loadConfig } from '../../server/config';
import type { Caller } from '../../server/util/peercred';

interface Ctx {
  after: (fn: () => Promise<void> | void) => void;
}

async function setup(t: Ctx): Promise<{ h: TestHelper; proxy: FaultProxy; busybox: PushedImage; client: string; a: TestUser; b: TestUser }> {
  const registry: TestRegistry = await startRegistry();
  t.after(() => registry.stop());
  const busybox = await seedBusybox(registry);
  // every request the helper makes goes through it, so blob downloads can be counted
  const proxy = await startFaultProxy(registry, { match: /^$/ });
  t.after(() => proxy.stop());
  const a = createUser(t);
  const b = createUser(t);
  const h = await startHelper({ mirror: proxy.url, env: { CAPSA_SOCKET_MODE: '0666' } });
  t.after(() => h.stop());
  // the test's directory (0700 from mkdtemp) opened for the users to traverse, as /run/capsa is
  chmodSync(h.dir, 0o711);
  return { h, proxy, busybox, client: writeRawClient(h.dir), a, b };
}

function result<T>(answer: RawAnswer): T {
  assert.equal(answer.error, undefined, JSON.stringify(answer));
  return answer.result as T;
}

const list = async (user: TestUser, client: string, socket: string): Promise<ImageSummary[]> =>
  result<ImageSummary[]>((await askAs(user, client, socket, [{ method: ImageListRequest.method }]))[0]);

test("a user's pull is in that user's list alone; a second user's pull of it downloads no blob again; root sees both with owners, and root's run resolves root's names alone", async (t) => {
  const { h, proxy, busybox, client, a, b } = await setup(t);
  const root = await connectProtocol(h.socket);
  t.after(() => root.dispose());
  const rootEvents: ImageEvent[] = [];
  root.onNotification(ImageEventNotification.type, (e) => void rootEvents.push(e));
  // b stays connected while a pulls: a's events are none of b's business
  const listening = rawSession(b, client, h.socket, [{ method: ImageListRequest.method }], { linger: true });
  await listening.answered;

  const [pulled] = await askAs(a, client, h.socket, [{ method: ImagePullRequest.method, params: { reference: 'busybox:latest' } }]);
  assert.equal(result<{ id: string }>(pulled).id, busybox.configDigest);
  const layerGets = (): number => busybox.layers.reduce((n, l) => n + proxy.count(new RegExp(`^GET /v2/library/busybox/blobs/${l.digest}$`)), 0);
  const configGets = (): number => proxy.count(new RegExp(`^GET /v2/library/busybox/blobs/${busybox.configDigest}$`));
  assert.equal(layerGets(), busybox.layers.length, "a's pull downloaded each layer once");

  const aList = await list(a, client, h.socket);
  assert.deepEqual(aList.map((i) => [i.names, i.owner]), [[['busybox:latest'], a.uid]]);
  assert.deepEqual(await list(b, client, h.socket), [], "b's list does not show a's image");
  const rootList = await root.sendRequest(ImageListRequest.type);
  assert.deepEqual(rootList.map((i) => [i.names, i.owner]), [[['busybox:latest'], a.uid]], 'root sees it, as a\'s');

  await until("root to hear a's pull", async () => rootEvents.some((e) => e.action === 'pull' && e.owner === a.uid));
  const bHeard = await listening.finish();
  assert.deepEqual(bHeard.notifications.filter((n) => n.method === ImageEventNotification.method), [], "b heard none of a's image events");

  // b's own pull: the manifest is asked for again (with b's rights), the content is not
  result(
    (await askAs(b, client, h.socket, [{ method: ImagePullRequest.method, params: { reference: 'busybox:latest' } }]))[0],
  );
  assert.equal(layerGets(), busybox.layers.length, 'no layer blob was downloaded twice');
  assert.equal(configGets(), 1, 'nor the config');
  assert.deepEqual((await list(b, client, h.socket)).map((i) => i.owner), [b.uid]);
  const owners = (await root.sendRequest(ImageListRequest.type)).map((i) => i.owner).sort((x, y) => x! - y!);
  assert.deepEqual(owners, [a.uid, b.uid].sort((x, y) => x - y), 'root sees one row per owner');
  const df = await root.sendRequest(SystemDfRequest.type);
  assert.deepEqual(df.owners?.map((o) => [o.owner, o.images]).sort(), [[a.uid, 1], [b.uid, 1]].sort());
  assert.equal(df.layers.count, busybox.layers.length, 'the layers are stored once');
  const aDf = result<SystemDfResult>((await askAs(a, client, h.socket, [{ method: SystemDfRequest.method }]))[0]);
  assert.equal(aDf.images.count, 1);
  assert.equal(aDf.owners, undefined, "a user's df names no other owner");

  // root's run resolves root's names alone: the users' busybox is not root's
  const never = await h.cli(['run', '--rm', '--pull', 'never', 'busybox', 'true']);
  assert.notEqual(never.code, 0);
  assert.match(never.stderr, /not present locally/);
  const ran = await h.cli(['run', '--rm', 'busybox', 'echo', 'ran']);
  assert.equal(ran.code, 0, ran.stderr);
  assert.match(ran.stdout, /ran/);
  assert.equal(layerGets(), busybox.layers.length, "root's own pull of it downloaded no layer again either");
  assert.deepEqual((await root.sendRequest(ImageListRequest.type)).filter((i) => i.owner === 0).map((i) => i.id), [busybox.configDigest]);
});

test("a user's rmi and prune remove only that user's names; the shared blobs another user needs stay", async (t) => {
  const { h, busybox, client, a, b } = await setup(t);
  for (const u of [a, b]) result((await askAs(u, client, h.socket, [{ method: ImagePullRequest.method, params: { reference: 'busybox:latest' } }]))[0]);
  const layerDir = (diffId: string): string => path.join(h.root, 'layers', 'sha256', diffId.slice(7));
  const blob = (digest: string): string => path.join(h.root, 'blobs', 'sha256', digest.slice(7));

  // root's rmi of a name that exists only in users' namespaces: not found, as any unknown name
  const root = await connectProtocol(h.socket);
  t.after(() => root.dispose());
  await assert.rejects(root.sendRequest(ImageRemoveRequest.type, { image: 'busybox' }), (e: { data?: { code: string } }) => e.data?.code === 'E_IMAGE_NOT_FOUND');

  const [removed] = await askAs(a, client, h.socket, [{ method: ImageRemoveRequest.method, params: { image: 'busybox' } }]);
  assert.deepEqual(result<{ deleted: string[] }>(removed).deleted, [], 'nothing is deleted while b holds the image');
  assert.deepEqual(await list(a, client, h.socket), []);
  assert.deepEqual((await list(b, client, h.socket)).map((i) => i.names), [['busybox:latest']], "b's name stays");
  for (const l of busybox.layers) {
    assert.ok(existsSync(layerDir(l.diffId)), `layer ${l.diffId} stays for b`);
    assert.ok(existsSync(blob(l.digest)), `blob ${l.digest} stays for b`);
  }
  // a's second rmi: a has no such name any more, whoever else has it
  const [again] = await askAs(a, client, h.socket, [{ method: ImageRemoveRequest.method, params: { image: busybox.configDigest } }]);
  assert.equal(again.error?.data?.code, 'E_IMAGE_NOT_FOUND', JSON.stringify(again));
  assert.equal(again.error?.message, `no such image: ${busybox.configDigest}`);

  // a pulls it again, then prunes everything of its own: b's name and content stay
  result((await askAs(a, client, h.socket, [{ method: ImagePullRequest.method, params: { reference: 'busybox:latest' } }]))[0]);
  result((await askAs(a, client, h.socket, [{ method: ImagePruneRequest.method, params: { all: true } }]))[0]);
  assert.deepEqual(await list(a, client, h.socket), []);
  assert.deepEqual((await list(b, client, h.socket)).map((i) => i.names), [['busybox:latest']]);
  for (const l of busybox.layers) assert.ok(existsSync(layerDir(l.diffId)));

  // b's rmi is the last name: the content goes
  const [last] = await askAs(b, client, h.socket, [{ method: ImageRemoveRequest.method, params: { image: 'busybox' } }]);
  assert.ok(result<{ deleted: string[] }>(last).deleted.includes(busybox.configDigest));
  for (const l of busybox.layers) assert.equal(existsSync(layerDir(l.diffId)), false, `layer ${l.diffId} went with the last name`);
  assert.deepEqual(readdirSync(path.join(h.root, 'blobs', 'sha256')), []);
});

test("a message that names an owner is refused, and a user's load of a file it cannot read is refused with permission denied", async (t) => {
  const { h, client, a } = await setup(t);
  const answers = await askAs(a, client, h.socket, [
    { method: ImagePullRequest.method, params: { reference: 'busybox:latest', owner: 0 } },
    { method: ImageRemoveRequest.method, params: { image: 'busybox', uid: 0 } },
    { method: ImageLoadRequest.method, params: { input: '/etc/shadow' } },
  ]);
  assert.equal(answers[0].error?.data?.code, 'E_INVALID_ARGUMENT', JSON.stringify(answers[0]));
  assert.equal(answers[1].error?.data?.code, 'E_INVALID_ARGUMENT', JSON.stringify(answers[1]));
  assert.equal(answers[2].error?.data?.code, 'E_PERMISSION_DENIED', JSON.stringify(answers[2]));
  const root = await connectProtocol(h.socket);
  t.after(() => root.dispose());
  assert.deepEqual(await root.sendRequest(ImageListRequest.type), [], 'nothing was pulled');
});

test("an archive a user loads under root's trusted name gives that user the tag; root's busybox still runs root's bytes", async (t) => {
  // in process, with a caller of a uid no account has: the archive is readable by everyone, so only the names are at stake
  const registry = await startRegistry();
  t.after(() => registry.stop());
  const busybox = await seedBusybox(registry);
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'none.json'), '{}');
  const config = loadConfig({ CAPSA_ROOT: path.join(dir, 'root'), CAPSA_CONFIG: path.join(dir, 'none.json'), CAPSA_REGISTRY_MIRROR: `docker.io=${registry.url}` });
  const images = new ImageService(config);
  await images.init();
  const rootCaller: Caller = { uid: 0, gid: 0, groups: [0], pid: process.pid };
  const alice: Caller = { uid: 4242, gid: 4242, groups: [4242], pid: process.pid };
  const trusted = await images.pull('busybox:latest', { caller: rootCaller });
  assert.equal(trusted.id, busybox.configDigest);

  const layer = await tarLayer([{ type: 'file', path: 'bin/sh', content: '#!/poison\n', mode: 0o755 }]);
  const { createHash } = await import('node:crypto');
  const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');
  const cfg = Buffer.from(JSON.stringify({ architecture: busybox.platform.architecture, os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(layer)] } }));
  const manifest = Buffer.from(JSON.stringify([{ Config: 'config.json', RepoTags: ['docker.io/library/busybox:latest'], Layers: ['l0/layer.tar'] }]));
  const archive = path.join(dir, 'poison.tar');
  chmodSync(dir, 0o755); // the archive is opened with the caller's rights (it must reach and read it)
  writeFileSync(
    archive,
    await tarLayer([
      { type: 'file', path: 'config.json', content: cfg },
      { type: 'file', path: 'l0/layer.tar', content: layer },
      { type: 'file', path: 'manifest.json', content: manifest },
    ]),
  );
  const events: ImageEvent[] = [];
  images.on('event', (e: ImageEvent) => events.push(e));
  const loaded = await images.load(alice, archive);
  assert.deepEqual(loaded.images[0].references, ['docker.io/library/busybox:latest']);
  assert.ok(events.every((e) => e.owner === alice.uid), 'the load is reported as alice\'s');

  const forRoot = await images.resolveForRun('busybox', { pull: 'never', caller: rootCaller });
  assert.equal(forRoot.id, trusted.id, "root's busybox is still the registry's");
  assert.equal((await images.resolveForRun('busybox', { pull: 'never' })).id, trusted.id, 'and so is the run of a caller-less request');
  assert.ok(existsSync(path.join(forRoot.layerDirs.at(-1)!, 'bin', 'busybox')), "root's run gets busybox's layer");
  const forAlice = await images.resolveForRun('busybox', { pull: 'never', caller: alice });
  assert.equal(forAlice.id, loaded.images[0].id, 'alice gets what she loaded, under her own name');
  assert.notEqual(forAlice.id, trusted.id);
  assert.deepEqual(
    (await images.list(rootCaller)).map((i) => `${i.owner} ${i.names.join(',')} ${i.id === trusted.id ? 'trusted' : 'poison'}`).sort(),
    ['0 busybox:latest trusted', '4242 busybox:latest poison'],
  );
  // alice's rmi takes her name only
  await images.remove(alice, 'busybox', false, new Set());
  assert.equal((await images.resolveForRun('busybox', { pull: 'never', caller: rootCaller })).id, trusted.id);
});

test("a user's pull sends none of root's stored credentials, even for an image root already pulled with them", async (t) => {
  const creds = { user: 'capsa', password: 'root-s3cret' };
  const reg = await startRegistry({ htpasswd: creds });
  t.after(() => reg.stop());
  const pushed = await seedBusybox({ url: reg.url, auth: creds });
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ root: path.join(dir, 'root'), credentials: { [reg.host]: { username: creds.user, password: creds.password } } }));
  const saved = process.env.DOCKER_CONFIG;
  process.env.DOCKER_CONFIG = dir; // no config.json there: only the config file's credentials, which are root's
  t.after(() => (saved === undefined ? delete process.env.DOCKER_CONFIG : (process.env.DOCKER_CONFIG = saved)));
  const images = new ImageService(loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv));
  await images.init();
  const rootCaller: Caller = { uid: 0, gid: 0, groups: [0], pid: process.pid };
  const alice: Caller = { uid: 4243, gid: 4243, groups: [4243], pid: process.pid };
  const ref = `${reg.host}/library/busybox:latest`;
  assert.equal((await images.pull(ref, { caller: rootCaller })).id, pushed.configDigest, "root's pull uses root's credentials");
  for (const r of [ref, `${reg.host}/library/busybox@${pushed.manifestDigest}`]) {
    await assert.rejects(images.pull(r, { caller: alice }), (e: { code?: string; message: string }) => {
      assert.equal(e.code, 'E_REGISTRY_AUTH', e.message);
      assert.doesNotMatch(e.message, /root-s3cret/);
      return true;
    }, `alice's pull of ${r} is not authorised by root's login`);
  }
  assert.deepEqual(await images.list(alice), [], 'and alice got no name');
});
