import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ImageStore, type Lease } from '../../server/image/store';

const sha = (b: Buffer | string) => 'sha256:' + createHash('sha256').update(b).digest('hex');

function newStore(t: { after: (fn: () => void) => void }): { store: ImageStore; root: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  return { store: new ImageStore(root), root };
}

async function layer(store: ImageStore, content: string, lease?: Lease): Promise<string> {
  const diffId = sha(`tar of ${content}`);
  await store.createLayer(
    diffId,
    async (dir) => {
      fs.writeFileSync(path.join(dir, 'f'), content);
      return { diffId, size: content.length };
    },
    { lease },
  );
  return diffId;
}

test('a blob held by a lease in progress survives garbage collection and is collected once the lease ends', async (t) => {
  const { store } = newStore(t);
  const lease = store.leases.create('pull of example');
  const held = await store.putBlob(Buffer.from('held'));
  await lease.blob(held);
  const loose = await store.putBlob(Buffer.from('loose'));

  const during = await store.collectGarbage();
  assert.deepEqual(during.deleted, [loose], 'unleased, unreferenced content goes even while a lease is live');
  assert.deepEqual(during.leased, [held], 'what the lease keeps is reported, not silently skipped');
  assert.ok(await store.hasBlob(held));

  lease.end();
  const after = await store.collectGarbage();
  assert.deepEqual(after.deleted, [held]);
  assert.ok(!(await store.hasBlob(held)));
});

test('a layer created under a lease survives collection until the lease ends', async (t) => {
  const { store } = newStore(t);
  const diffId = await store.withLease('load of example', async (lease) => {
    const d = await layer(store, 'a', lease);
    const gc = await store.collectGarbage({ tmp: true });
    assert.deepEqual(gc.deleted, []);
    assert.deepEqual(gc.leased, [d]);
    assert.ok(await store.hasLayer(d));
    assert.ok(await store.layerInfo(d));
    return d;
  });
  const gc = await store.collectGarbage();
  assert.deepEqual(gc.deleted, [diffId]);
  assert.ok(!(await store.hasLayer(diffId)));
});

test('collection while a layer is still unpacking neither removes its temporary directory nor returns nothing', async (t) => {
  const { store, root } = newStore(t);
  const orphan = await store.putBlob(Buffer.from('orphan'));
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let tmpDir = '';
  const lease = store.leases.create('pull of example');
  const diffId = sha('tar of slow');
  const creating = store.createLayer(
    diffId,
    async (dir) => {
      tmpDir = dir;
      fs.writeFileSync(path.join(dir, 'f'), 'slow');
      await gate;
      return { diffId, size: 4 };
    },
    { lease },
  );
  while (!tmpDir) await new Promise((r) => setImmediate(r));
  const gc = await store.collectGarbage({ tmp: true });
  assert.deepEqual(gc.deleted, [orphan], 'collection ran and took what nobody holds');
  assert.deepEqual(gc.leasedTmp, [path.relative(root, tmpDir)]);
  assert.ok(fs.existsSync(path.join(tmpDir, 'f')), 'the unpacking directory is intact');
  release();
  await creating;
  assert.ok(await store.hasLayer(diffId));
  lease.end();
});

test('a lease taken while collection deletes the resource waits until the deletion is over', async (t) => {
  const { store } = newStore(t);
  const d = await store.putBlob(Buffer.from('contested'));
  const gc = store.collectGarbage();
  // Let collection reach the blob before the lease is taken.
  await new Promise((r) => setImmediate(r));
  const lease = store.leases.create('pull of example');
  await lease.blob(d);
  // Whatever the order, the presence check after the lease is true for the lease's life.
  const present = await store.hasBlob(d);
  await gc;
  assert.equal(await store.hasBlob(d), present);
  lease.end();
});

test('an open ingest keeps its partial file through a prune of temporary files', async (t) => {
  const { store, root } = newStore(t);
  const data = Buffer.from('partial bytes');
  const w = await store.ingest(sha(data), data.length);
  await w.write(data.subarray(0, 5));
  const gc = await store.collectGarbage({ tmp: true });
  assert.equal(gc.leasedTmp.length, 1);
  assert.ok(fs.existsSync(path.join(root, 'tmp', `${sha(data).slice(7)}.partial`)));
  await w.write(data.subarray(5));
  await w.commit();
  assert.ok(await store.hasBlob(sha(data)));
  assert.deepEqual(store.leases.list(), [], 'the ingest let go of its partial file');
});

test('recorded images keep their content with no lease at all', async (t) => {
  const { store } = newStore(t);
  const diffId = await layer(store, 'kept');
  const config = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [diffId] } };
  const configDigest = await store.putBlob(Buffer.from(JSON.stringify(config)));
  const manifestDigest = await store.putBlob(Buffer.from('manifest'));
  await store.addImage({ repoDigest: manifestDigest, manifestDigest, manifestMediaType: 'application/vnd.oci.image.manifest.v1+json', configDigest, config, layers: [] });
  const gc = await store.collectGarbage({ tmp: true });
  assert.deepEqual(gc, { deleted: [], leased: [], leasedTmp: [] });
  assert.ok(await store.hasLayer(diffId));
});
