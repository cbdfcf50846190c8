import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { fetchImage, recordImage, type LayerStatus } from '../../server/image/importer';
import { DigestMismatchError } from '../../server/image/errors';
import { parseReference, type ImageReference } from '../../server/image/reference';
import type { ImageSource, LayerSource, SourceConfig, SourceManifest } from '../../server/image/source';
import { ImageStore } from '../../server/image/store';
import type { ImageConfig, Manifest } from '../../server/image/types';
import { tarLayer } from '../helpers/oci';

const sha = (b: Buffer | string) => 'sha256:' + createHash('sha256').update(b).digest('hex');
const LAYER = 'application/vnd.oci.image.layer.v1.tar';

function newStore(t: { after: (fn: () => void) => void }): { store: ImageStore; root: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  return { store: new ImageStore(root), root };
}

/** An image held in memory: the smallest ImageSource, counting what is read from it. */
class MemorySource implements ImageSource {
  readonly tags: ImageReference[];
  readonly opened: string[] = [];
  /** When set, every layer stream waits for it before its first byte. */
  gate: Promise<void> | undefined;
  private readonly manifestBytes: Buffer;
  private readonly configBytes: Buffer;
  private readonly manifestDoc: Manifest;
  private readonly configDoc: ImageConfig;

  constructor(
    readonly name: string,
    private readonly blobs: Buffer[],
    opts: { lieAbout?: number } = {},
  ) {
    this.tags = [parseReference(name)];
    this.configDoc = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: blobs.map((b) => sha(b)) } };
    this.configBytes = Buffer.from(JSON.stringify(this.configDoc));
    this.manifestDoc = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(this.configBytes), size: this.configBytes.length },
      // A lying descriptor: the digest of other bytes of the same length.
      layers: blobs.map((b, i) => ({ mediaType: LAYER, digest: i === opts.lieAbout ? sha(Buffer.alloc(b.length)) : sha(b), size: b.length })),
    };
    this.manifestBytes = Buffer.from(JSON.stringify(this.manifestDoc));
  }

  async manifest(): Promise<SourceManifest> {
    return { digest: sha(this.manifestBytes), mediaType: this.manifestDoc.mediaType!, bytes: this.manifestBytes, parsed: this.manifestDoc };
  }

  async config(): Promise<SourceConfig> {
    return { bytes: this.configBytes, config: this.configDoc };
  }

  layers(manifest: SourceManifest): LayerSource[] {
    return manifest.parsed.layers.map((descriptor, i) => ({
      descriptor,
      diffId: this.configDoc.rootfs.diff_ids[i],
      compression: 'none',
      compressed: ({ offset }) => {
        this.opened.push(descriptor.digest);
        const bytes = this.blobs[i].subarray(offset);
        const gate = this.gate;
        return Readable.from(
          (async function* () {
            await gate;
            yield bytes;
          })(),
        );
      },
    }));
  }
}

async function importImage(store: ImageStore, source: ImageSource, onLayer?: (i: number, p: { status?: LayerStatus }) => void) {
  return store.withLease(`import of ${source.name}`, async (lease) => {
    const fetched = await fetchImage(store, source, { lease, concurrency: 2, operation: `import of ${source.name}`, onLayer });
    return { fetched, record: await recordImage(store, fetched) };
  });
}

const layerA = () => tarLayer([{ type: 'file', path: 'a', content: 'first layer' }]);
const layerB = () => tarLayer([{ type: 'file', path: 'b', content: 'second layer' }]);
const layerC = () => tarLayer([{ type: 'file', path: 'c', content: 'third layer' }]);

test('the importer stores verified blobs and layers from any source and records the image', async (t) => {
  const { store } = newStore(t);
  const blobs = [await layerA(), await layerB()];
  const source = new MemorySource('example.com/app:1', blobs);
  const { fetched, record } = await importImage(store, source);
  assert.ok(fetched.fetched);
  assert.deepEqual(record.references, ['example.com/app:1']);
  assert.deepEqual(record.diffIds, blobs.map((b) => sha(b)));
  for (const b of blobs) assert.deepEqual(fs.readFileSync(store.blobPath(sha(b))), b, 'the blob is the bytes its digest names');
  assert.equal(fs.readFileSync(path.join(store.layerPath(sha(blobs[0])), 'a'), 'utf8'), 'first layer');
  assert.equal(fs.readFileSync(path.join(store.layerPath(sha(blobs[1])), 'b'), 'utf8'), 'second layer');
  assert.deepEqual(store.leases.list(), [], 'the import let go of everything');
  assert.deepEqual((await store.collectGarbage()).deleted, [], 'the record keeps all of it');
});

test('the importer refuses a layer whose bytes are not its digest and leaves nothing behind', async (t) => {
  const { store, root } = newStore(t);
  const source = new MemorySource('example.com/liar:1', [await layerA()], { lieAbout: 0 });
  await assert.rejects(importImage(store, source), (err: unknown) => err instanceof DigestMismatchError && /digest mismatch/.test(err.message));
  assert.deepEqual(await store.list(), [], 'no image recorded');
  assert.deepEqual(fs.readdirSync(path.join(root, 'blobs', 'sha256')), [], 'no blob');
  assert.deepEqual(fs.readdirSync(path.join(root, 'layers', 'sha256')), [], 'no layer');
  assert.deepEqual(fs.readdirSync(path.join(root, 'layers')), ['sha256'], 'no temporary layer directory');
  assert.deepEqual(fs.readdirSync(path.join(root, 'tmp')), [], 'no partial ingest');
  assert.deepEqual(store.leases.list(), []);
});

test('a layer shared with an image already in the store is not fetched or unpacked again', async (t) => {
  const { store } = newStore(t);
  const a = await layerA();
  await importImage(store, new MemorySource('example.com/one:1', [a, await layerB()]));
  const second = new MemorySource('example.com/two:1', [a, await layerC()]);
  const statuses: Array<string | undefined> = [];
  const { fetched, record } = await importImage(store, second, (i, p) => i === 0 && statuses.push(p.status));
  assert.deepEqual(second.opened, [sha(await layerC())], 'only the new layer was read from the source');
  assert.deepEqual(statuses, ['exists']);
  assert.ok(fetched.fetched);
  assert.equal(record.diffIds[0], sha(a));
});

test('garbage collection during an import keeps the import\'s content and still collects the rest', async (t) => {
  const { store } = newStore(t);
  const orphan = await store.putBlob(Buffer.from('nobody uses me'));
  const blobs = [await layerA(), await layerB()];
  const source = new MemorySource('example.com/busy:1', blobs);
  let open!: () => void;
  source.gate = new Promise<void>((r) => (open = r));
  const importing = importImage(store, source);
  while (source.opened.length < 2) await new Promise((r) => setImmediate(r));
  const gc = await store.collectGarbage({ tmp: true });
  assert.deepEqual(gc.deleted, [orphan], 'collection ran during the import');
  assert.ok(gc.leasedTmp.length >= 2, 'the layers being unpacked and their ingests are held');
  open();
  const { record } = await importing;
  assert.deepEqual(record.diffIds, blobs.map((b) => sha(b)));
  for (const b of blobs) assert.ok(await store.hasBlob(sha(b)));
  assert.deepEqual((await store.collectGarbage()).deleted, []);
});
