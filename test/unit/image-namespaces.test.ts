/**
 * Image names per uid over shared content: each namespace's lookups see its
 * own names only, content is recorded once and collected only when no
 * namespace holds it and no container needs it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ImageStore, ROOT_OWNER, type Owner } from '../../server/image/store';
import { parseReference } from '../../server/image/reference';
import { ImageNotFoundError } from '../../server/image/errors';
import type { ImageConfig } from '../../server/image/types';

const sha = (b: Buffer | string) => 'sha256:' + createHash('sha256').update(b).digest('hex');
const ALICE: Owner = 1001;
const BOB: Owner = 1002;

function newStore(t: { after: (fn: () => void) => void }): { store: ImageStore; root: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  return { store: new ImageStore(root), root };
}

/** Records, in `owner`'s namespace, an image made of the given layer contents (one file each), as a pull of `ref` would. */
async function addImage(store: ImageStore, owner: Owner, ref: string | undefined, layers: string[]) {
  const diffIds: string[] = [];
  for (const content of layers) {
    const diffId = sha(`tar of ${content}`);
    diffIds.push(diffId);
    if (!(await store.hasLayer(diffId))) {
      await store.createLayer(diffId, async (dir) => {
        fs.writeFileSync(path.join(dir, 'f'), content);
        return { diffId, size: content.length };
      });
    }
  }
  const config: ImageConfig = { architecture: 'amd64', os: 'linux', created: '2024-01-01T00:00:00Z', rootfs: { type: 'layers', diff_ids: diffIds } };
  const configDigest = await store.putBlob(Buffer.from(JSON.stringify(config)));
  const layerDescs = diffIds.map((d) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: d, size: 1 }));
  const manifestDigest = await store.putBlob(Buffer.from(JSON.stringify({ schemaVersion: 2, config: { digest: configDigest }, layers: layerDescs })));
  const parsed = parseReference(ref ?? 'example.com/untagged@' + manifestDigest);
  return store.addImage(
    {
      reference: ref ? parsed : undefined,
      repository: parsed,
      repoDigest: manifestDigest,
      manifestDigest,
      manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
      configDigest,
      config,
      layers: layerDescs,
    },
    owner,
  );
}

test("a name one uid records is found by that uid alone: by tag, id, id prefix and repo digest; another uid's lookups miss it", async (t) => {
  const { store } = newStore(t);
  const img = await addImage(store, ALICE, 'busybox:latest', ['alice']);
  assert.equal(img.owner, ALICE);
  const names = ['busybox', img.id, img.id.slice(7, 19), img.repoDigests[0]];
  for (const n of names) assert.equal((await store.resolve(n, ALICE))?.id, img.id, `alice finds ${n}`);
  for (const who of [BOB, ROOT_OWNER]) {
    for (const n of names) assert.equal(await store.resolve(n, who), undefined, `uid ${who} does not find ${n}`);
    assert.deepEqual(await store.list(who), []);
  }
  assert.deepEqual((await store.list(ALICE)).map((r) => r.references), [['docker.io/library/busybox:latest']]);
});

test("a tag a user records under root's trusted name leaves root's tag on root's image", async (t) => {
  const { store } = newStore(t);
  const trusted = await addImage(store, ROOT_OWNER, 'busybox:latest', ['trusted']);
  const poison = await addImage(store, ALICE, 'busybox:latest', ['poison']);
  assert.notEqual(trusted.id, poison.id);
  assert.equal((await store.resolve('busybox', ROOT_OWNER))?.id, trusted.id, "root's busybox is still root's bytes");
  assert.equal((await store.resolve('busybox', ALICE))?.id, poison.id, "alice's busybox is hers");
  assert.deepEqual(await store.layerDirs((await store.get('busybox', ROOT_OWNER))), [store.layerPath(trusted.diffIds[0])]);
});

test("tag names only images the tagging uid holds: another uid's image id is missing exactly as an unknown one", async (t) => {
  const { store } = newStore(t);
  const roots = await addImage(store, ROOT_OWNER, 'busybox:latest', ['trusted']);
  await assert.rejects(store.tag(roots.id, 'mine:1', ALICE), (e: unknown) => e instanceof ImageNotFoundError && e.message === `no such image: ${roots.id}`);
  await assert.rejects(store.tag(`sha256:${'e'.repeat(64)}`, 'mine:1', ALICE), (e: unknown) => e instanceof ImageNotFoundError && e.message === `no such image: sha256:${'e'.repeat(64)}`);
  const mine = await addImage(store, ALICE, 'local:1', ['mine']);
  await store.tag('local:1', 'docker.io/library/busybox:latest', ALICE);
  assert.equal((await store.resolve('busybox', ALICE))?.id, mine.id);
  assert.equal((await store.resolve('busybox', ROOT_OWNER))?.id, roots.id, "root's tag did not move");
});

test('the same content recorded by two uids is one record: removing one name keeps the other and the shared layers', async (t) => {
  const { store } = newStore(t);
  const a = await addImage(store, ALICE, 'busybox:latest', ['shared']);
  const b = await addImage(store, BOB, 'busybox:latest', ['shared']);
  assert.equal(a.id, b.id);
  const removed = await store.remove('busybox', {}, ALICE);
  assert.deepEqual(removed.deleted, [], 'nothing is deleted while bob holds the image');
  assert.equal(await store.resolve('busybox', ALICE), undefined);
  assert.equal((await store.resolve('busybox', BOB))?.id, b.id);
  assert.ok(await store.hasLayer(b.diffIds[0]), 'the layer bob needs is still there');
  assert.ok(await store.hasBlob(b.id), 'and its config');
  const last = await store.remove('busybox', {}, BOB);
  assert.ok(last.deleted.includes(b.id) && last.deleted.includes(b.diffIds[0]), 'the last name takes the content with it');
  assert.equal(await store.hasLayer(b.diffIds[0]), false);
});

test("rmi of a name that exists only in another namespace is not found, and changes nothing", async (t) => {
  const { store } = newStore(t);
  const img = await addImage(store, ROOT_OWNER, 'busybox:latest', ['trusted']);
  await assert.rejects(store.remove('busybox', { force: true }, ALICE), ImageNotFoundError);
  await assert.rejects(store.remove(img.id, { force: true }, ALICE), ImageNotFoundError);
  assert.equal((await store.resolve('busybox', ROOT_OWNER))?.id, img.id);
});

test("garbage collection keeps what any namespace's records use", async (t) => {
  const { store } = newStore(t);
  const a = await addImage(store, ALICE, 'a:1', ['only-alice']);
  const b = await addImage(store, BOB, 'b:1', ['only-bob']);
  const gc = await store.collectGarbage();
  assert.deepEqual(gc.deleted, []);
  for (const r of [a, b]) assert.ok(await store.hasLayer(r.diffIds[0]));
});

test("prune acts in the pruning uid's namespace only", async (t) => {
  const { store } = newStore(t);
  const aliceUntagged = await addImage(store, ALICE, undefined, ['a-untagged']);
  await addImage(store, ALICE, 'a:1', ['a-tagged']);
  const bobUntagged = await addImage(store, BOB, undefined, ['b-untagged']);
  await addImage(store, ROOT_OWNER, 'r:1', ['r-tagged']);
  const r = await store.prune({}, ALICE);
  assert.ok(r.deleted.includes(aliceUntagged.id));
  assert.deepEqual((await store.list(ALICE)).map((x) => x.references), [['docker.io/library/a:1']]);
  assert.equal((await store.list(BOB))[0].id, bobUntagged.id, "bob's untagged image stays");
  assert.ok(await store.hasLayer(bobUntagged.diffIds[0]));
  await store.prune({ all: true }, ALICE);
  assert.deepEqual(await store.list(ALICE), []);
  assert.equal((await store.list(ROOT_OWNER)).length, 1, "root's image stays");
});

test('content a container needs stays after its last name goes, and is swept once no container needs it', async (t) => {
  const { store } = newStore(t);
  const img = await addImage(store, ALICE, 'busybox:latest', ['running']);
  let needed = true;
  const r = await store.remove('busybox', { needed: () => needed }, ALICE);
  assert.deepEqual(r.deleted, [], 'a container still runs on it');
  assert.deepEqual(await store.list(ALICE), [], "the name is gone from alice's list");
  assert.ok(await store.hasLayer(img.diffIds[0]), 'the layer stays for the container');
  needed = false;
  const pruned = await store.prune({ needed: () => needed }, BOB);
  assert.ok(pruned.deleted.includes(img.id), 'the record nobody holds is swept');
  assert.equal(await store.hasLayer(img.diffIds[0]), false);
});

test("root's list of every namespace has a row per owner holding an image", async (t) => {
  const { store } = newStore(t);
  await addImage(store, ROOT_OWNER, 'busybox:latest', ['shared']);
  await addImage(store, ALICE, 'busybox:latest', ['shared']);
  await addImage(store, BOB, 'other:1', ['bob']);
  const rows = (await store.listAll()).map((r) => `${r.owner} ${r.references.join(',')}`).sort();
  assert.deepEqual(rows, ['0 docker.io/library/busybox:latest', `${ALICE} docker.io/library/busybox:latest`, `${BOB} docker.io/library/other:1`]);
});

test("a namespace's disk use counts only what its images reference", async (t) => {
  const { store } = newStore(t);
  await addImage(store, ALICE, 'a:1', ['alice-layer']);
  await addImage(store, BOB, 'b:1', ['bob-layer-which-is-longer']);
  const alice = await store.diskUsage(() => false, ALICE);
  assert.deepEqual([alice.images.count, alice.layers.count, alice.layers.size], [1, 1, 'alice-layer'.length]);
  const all = await store.diskUsage();
  assert.deepEqual([all.images.count, all.layers.count], [2, 2]);
});

test('a version 1 images.json reads as root namespace and is written back as version 2 with the same names', async (t) => {
  const { store, root } = newStore(t);
  const img = await addImage(store, ROOT_OWNER, 'busybox:latest', ['old']);
  // the same content as a helper before namespaces wrote it
  const v2 = JSON.parse(fs.readFileSync(path.join(root, 'images.json'), 'utf8')) as {
    manifests: Record<string, string>;
    images: Record<string, object>;
    namespaces: Record<string, { tags: Record<string, string>; images: Record<string, { repoDigests: string[]; pulledAt: string }> }>;
  };
  const ns = v2.namespaces['0'];
  const v1 = {
    version: 1,
    tags: ns.tags,
    manifests: v2.manifests,
    images: Object.fromEntries(Object.entries(v2.images).map(([id, r]) => [id, { ...r, ...ns.images[id] }])),
  };
  fs.writeFileSync(path.join(root, 'images.json'), JSON.stringify(v1));
  const again = new ImageStore(root);
  const found = await again.resolve('busybox', ROOT_OWNER);
  assert.equal(found?.id, img.id);
  assert.deepEqual(found?.repoDigests, img.repoDigests);
  assert.equal(await again.resolve('busybox', ALICE), undefined, 'no other uid inherits the old names');
  await again.tag('busybox', 'busybox:copy', ROOT_OWNER);
  const written = JSON.parse(fs.readFileSync(path.join(root, 'images.json'), 'utf8')) as { version: number; namespaces: Record<string, { tags: Record<string, string> }> };
  assert.equal(written.version, 2);
  assert.deepEqual(Object.keys(written.namespaces['0'].tags).sort(), ['docker.io/library/busybox:copy', 'docker.io/library/busybox:latest']);
});

test('an owner that is not a uid is refused', async (t) => {
  const { store } = newStore(t);
  await assert.rejects(addImage(store, -1, 'x:1', ['x']), /must be a uid/);
  await assert.rejects(addImage(store, 1.5, 'x:1', ['x']), /must be a uid/);
});
