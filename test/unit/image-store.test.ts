import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ImageStore } from '../../server/image/store';
import { parseReference } from '../../server/image/reference';
import { AmbiguousImageError, DigestMismatchError, ImageInUseError, ImageNotFoundError, SizeMismatchError } from '../../server/image/errors';
import type { ImageConfig } from '../../server/image/types';

const sha = (b: Buffer | string) => 'sha256:' + createHash('sha256').update(b).digest('hex');

function newStore(t: { after: (fn: () => void) => void }): { store: ImageStore; root: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  return { store: new ImageStore(root), root };
}

/** Records an image made of the given layer contents (one file each), as a pull would. */
async function addImage(store: ImageStore, ref: string | undefined, layers: string[], created = '2024-01-01T00:00:00Z') {
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
  const config: ImageConfig = { architecture: 'amd64', os: 'linux', created, rootfs: { type: 'layers', diff_ids: diffIds } };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDigest = await store.putBlob(configBytes);
  const layerDescs = diffIds.map((d) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: d, size: 1 }));
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { digest: configDigest }, layers: layerDescs }));
  const manifestDigest = await store.putBlob(manifest);
  const parsed = parseReference(ref ?? 'example.com/untagged@' + manifestDigest);
  return store.addImage({
    reference: ref ? parsed : undefined,
    repository: parsed,
    repoDigest: manifestDigest,
    manifestDigest,
    manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
    configDigest,
    config,
    layers: layerDescs,
  });
}

test('ingest commits only content that matches its digest and size', async (t) => {
  const { store, root } = newStore(t);
  const data = Buffer.from('hello blob');
  const w = await store.ingest(sha(data), data.length);
  await w.write(data);
  await w.commit();
  assert.ok(await store.hasBlob(sha(data)));
  assert.deepEqual(await store.readBlob(sha(data)), data);

  const bad = await store.ingest(sha('other'), data.length);
  await bad.write(data);
  await assert.rejects(bad.commit(), DigestMismatchError);
  assert.ok(!(await store.hasBlob(sha('other'))));

  const long = await store.ingest(sha('x'), 2);
  await assert.rejects(long.write(data), SizeMismatchError);
  await long.abort(false);
  assert.deepEqual(fs.readdirSync(path.join(root, 'tmp')), []);
  await assert.rejects(store.putBlob(data, sha('nope')), DigestMismatchError);
});

test('an ingest without its own hash commits only under the digest its caller measured, with every write landed', async (t) => {
  const { store, root } = newStore(t);
  const data = Buffer.alloc(300_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  const w = await store.ingest(sha(data), data.length, { hash: false });
  // Many writes in flight at once, as a pull issues them.
  for (let i = 0; i < data.length; i += 1000) await w.write(data.subarray(i, i + 1000));
  await w.commit(sha(data));
  assert.deepEqual(await store.readBlob(sha(data)), data);

  const other = Buffer.from('other');
  const bad = await store.ingest(sha(other), other.length, { hash: false });
  await bad.write(other);
  await assert.rejects(bad.commit(sha('something else')), DigestMismatchError);
  assert.ok(!(await store.hasBlob(sha(other))));
  const none = await store.ingest(sha(other), other.length, { hash: false });
  await none.write(other);
  await assert.rejects(none.commit(), /measured digest/);
  assert.deepEqual(fs.readdirSync(path.join(root, 'tmp')), []);

  await store.dropCorruptBlob(sha(data));
  assert.ok(!(await store.hasBlob(sha(data))));
});

test('an interrupted ingest resumes from its partial bytes', async (t) => {
  const { store } = newStore(t);
  const data = Buffer.alloc(10_000, 9);
  const w = await store.ingest(sha(data), data.length);
  await w.write(data.subarray(0, 4000));
  await w.abort(true);
  const again = await store.ingest(sha(data), data.length);
  assert.equal(again.offset, 4000);
  await again.write(data.subarray(4000));
  await again.commit();
  assert.deepEqual(await store.readBlob(sha(data)), data);
});

test('images resolve by reference, familiar name, id, id prefix and digest; layer dirs are top first', async (t) => {
  const { store } = newStore(t);
  const a = await addImage(store, 'busybox:latest', ['base', 'top']);
  assert.deepEqual(a.references, ['docker.io/library/busybox:latest']);
  for (const q of ['busybox', 'busybox:latest', 'docker.io/library/busybox:latest', a.id, a.id.slice(7), a.id.slice(7, 19)]) {
    assert.equal((await store.resolve(q))?.id, a.id, q);
  }
  assert.equal((await store.resolve(`busybox@${a.manifestDigest}`))?.id, a.id);
  assert.equal(await store.resolve('busybox:other'), undefined);
  assert.equal(await store.resolve(`other@${a.manifestDigest}`), undefined, 'a digest is scoped to its repository');
  const dirs = await store.layerDirs(a);
  assert.deepEqual(dirs.map((d) => fs.readFileSync(path.join(d, 'f'), 'utf8')), ['top', 'base']);
  assert.equal(a.size, 'base'.length + 'top'.length);
  assert.deepEqual((await store.config(a)).rootfs.diff_ids, a.diffIds);
  await assert.rejects(store.get('nosuch'), ImageNotFoundError);
});

test('a moved tag leaves the old image untagged; ambiguous prefixes are refused', async (t) => {
  const { store } = newStore(t);
  const a = await addImage(store, 'app:1', ['a']);
  const b = await addImage(store, 'app:1', ['b']);
  assert.deepEqual((await store.get(b.id)).references, ['docker.io/library/app:1']);
  assert.deepEqual((await store.get(a.id)).references, []);
  // Find two ids sharing a first hex digit, or skip if these two do not.
  if (a.id[7] === b.id[7]) await assert.rejects(store.resolve(a.id[7]), AmbiguousImageError);
  assert.equal((await store.list()).length, 2);
});

test('rmi untags, deletes unused layers and blobs, and respects containers using the image', async (t) => {
  const { store } = newStore(t);
  const a = await addImage(store, 'app:1', ['shared', 'a']);
  await store.tag('app:1', 'app:alias');
  const b = await addImage(store, 'other:1', ['shared', 'b']);

  // A reference with siblings only untags.
  assert.deepEqual(await store.remove('app:alias'), { untagged: ['docker.io/library/app:alias'], deleted: [] });
  // An id with several references needs force.
  await store.tag('app:1', 'app:alias');
  await assert.rejects(store.remove(a.id), ImageInUseError);
  // In use: a last reference is refused, and with force only untagged.
  await store.remove('app:alias');
  await assert.rejects(store.remove('app:1', { inUse: (id) => id === a.id }), /must force.*container is using/);
  const forced = await store.remove(a.id, { force: true, inUse: (id) => id === a.id });
  assert.deepEqual(forced.deleted, []);
  assert.ok(await store.resolve(a.id), 'image kept while in use');
  // Not in use: deleted with its own layer, the shared one stays for b.
  const gone = await store.remove(a.id);
  assert.ok(gone.deleted.includes(a.id));
  assert.ok(gone.deleted.includes(a.diffIds[1]), 'its own layer deleted');
  assert.ok(!gone.deleted.includes(a.diffIds[0]), 'the shared layer kept');
  assert.ok(await store.hasLayer(a.diffIds[0]));
  assert.ok(!(await store.hasLayer(a.diffIds[1])));
  assert.deepEqual(await store.layerDirs(b), [store.layerPath(b.diffIds[1]), store.layerPath(b.diffIds[0])]);
  await assert.rejects(store.remove('app:1'), ImageNotFoundError);
});

test('prune removes untagged unused images; disk usage adds up', async (t) => {
  const { store, root } = newStore(t);
  await addImage(store, 'app:1', ['one']);
  const old = (await store.list())[0];
  await addImage(store, 'app:1', ['two']);
  const df = await store.diskUsage();
  assert.equal(df.images.count, 2);
  assert.equal(df.layers.count, 2);
  assert.equal(df.layers.size, 6);
  fs.mkdirSync(path.join(root, 'layers', 'tmp-stale'));
  const r = await store.prune();
  assert.ok(r.deleted.includes(old.id));
  assert.equal((await store.list()).length, 1);
  assert.deepEqual(fs.readdirSync(path.join(root, 'layers')), ['sha256'], 'stale temporary dirs removed');
  assert.equal((await store.diskUsage()).layers.count, 1);
});

test('images.json is rewritten atomically and survives a new store instance', async (t) => {
  const { store, root } = newStore(t);
  await Promise.all([addImage(store, 'a:1', ['x']), addImage(store, 'b:1', ['y']), addImage(store, 'c:1', ['z'])]);
  const again = new ImageStore(root);
  assert.deepEqual((await again.list()).flatMap((r) => r.references).sort(), ['docker.io/library/a:1', 'docker.io/library/b:1', 'docker.io/library/c:1']);
  assert.deepEqual(fs.readdirSync(root).filter((n) => n.includes('.tmp')), [], 'no temporary index files left');
});

test('recover removes what a crash leaves behind but keeps partial downloads', async (t) => {
  const { store, root } = newStore(t);
  fs.mkdirSync(path.join(root, 'layers', 'tmp-abc', 'usr'), { recursive: true });
  fs.writeFileSync(path.join(root, 'tmp', 'put-1234'), 'x');
  const partial = `${'c'.repeat(64)}.partial`;
  fs.writeFileSync(path.join(root, 'tmp', partial), 'x');
  fs.writeFileSync(path.join(root, '.images.json.abcdef.tmp'), '{');
  await store.recover();
  assert.deepEqual(fs.readdirSync(path.join(root, 'layers')), ['sha256']);
  assert.deepEqual(fs.readdirSync(path.join(root, 'tmp')), [partial]);
  assert.ok(!fs.existsSync(path.join(root, '.images.json.abcdef.tmp')));
});

test('the layers directory spreads new layers over the file system (ext4 TOPDIR flag, where there is one)', (t) => {
  const { root } = newStore(t);
  const probe = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-probe-'));
  t.after(() => fs.rmSync(probe, { recursive: true, force: true }));
  // a file system without the flag (tmpfs, xfs) leaves nothing to check
  const supported = spawnSync('chattr', ['+T', probe]).status === 0;
  if (!supported) return t.skip('no TOPDIR flag on this file system');
  const flags = execFileSync('lsattr', ['-d', path.join(root, 'layers')], { encoding: 'utf8' }).split(' ')[0];
  assert.match(flags, /T/, flags);
  const tmpFlags = execFileSync('lsattr', ['-d', path.join(root, 'tmp')], { encoding: 'utf8' }).split(' ')[0];
  assert.doesNotMatch(tmpFlags, /T/, 'only where layers are made');
});
