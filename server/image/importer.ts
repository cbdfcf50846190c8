/**
 * The one importer: brings an image from a source (./source: a registry for
 * a pull, an archive for a load) into the store. For each layer not yet
 * unpacked it streams the compressed bytes once, hashing them into the
 * store's ingest while unpacking, and publishes blob and layer only once
 * proven; then it records the image. Everything it touches is held by the
 * caller's lease from before it is checked until the image is recorded, so
 * garbage collection running meanwhile takes none of it.
 *
 * Two steps, so a caller can look at the store between them (a pull tells
 * whether anything changed): `fetchImage` makes content present,
 * `recordImage` writes the documents and the record.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { CancelledError, DigestMismatchError, InvalidLayerError, SizeMismatchError, UnsafeLayerError } from './errors';
import { formatReference } from './reference';
import type { LayerSource, ImageSource, SourceConfig, SourceManifest } from './source';
import { ROOT_OWNER, type ImageRecord, type ImageStore, type Lease, type Owner } from './store';
import type { Descriptor } from './types';
import { unpackLayer } from './unpack';

export type LayerStatus = 'waiting' | 'downloading' | 'extracting' | 'done' | 'exists';

export interface ImportOptions {
  /** Holds everything the import touches until the caller's work ends. */
  lease: Lease;
  /** Layers fetched and unpacked at once. */
  concurrency: number;
  signal?: AbortSignal;
  /** Names the operation when it is cancelled: `pull of …`, `load of …`. */
  operation: string;
  /** The layers' descriptors, base first, once the manifest and config are checked. */
  onLayers?: (layers: Descriptor[]) => void;
  /** Per-layer state as it changes: `done` counts compressed bytes. */
  onLayer?: (index: number, patch: { status?: LayerStatus; done?: number }) => void;
}

/** An image whose content is in the store and leased, ready to record. */
export interface FetchedImage {
  source: ImageSource;
  manifest: SourceManifest;
  config: SourceConfig;
  /** True when any layer's bytes had to be fetched from the source. */
  fetched: boolean;
  lease: Lease;
}

/** Makes every layer of `source`'s image present in `store`. */
export async function fetchImage(store: ImageStore, source: ImageSource, opts: ImportOptions): Promise<FetchedImage> {
  const manifest = await source.manifest();
  await opts.lease.blob(manifest.parsed.config.digest);
  const config = await source.config(manifest);
  const layers = source.layers(manifest, config);
  opts.onLayers?.(layers.map((l) => l.descriptor));
  const report = opts.onLayer ?? (() => undefined);
  let fetched = false;
  const tasks = layers.map((layer, i) => async () => {
    const { diffId, descriptor: desc } = layer;
    await opts.lease.layer(diffId);
    await opts.lease.blob(desc.digest);
    if (await store.hasLayer(diffId)) {
      report(i, { status: 'exists', done: desc.size });
    } else {
      const did = await store.once(`layer:${diffId}`, () => ensureLayer(store, layer, i, opts));
      if (did) fetched = true;
      report(i, { status: 'done', done: desc.size });
    }
    if (layer.staged && !(await store.hasBlob(desc.digest))) {
      if (layer.staged.data) await store.putBlob(layer.staged.data, desc.digest);
      else await store.adoptBlob(layer.staged.file!, desc.digest);
    }
  });
  await runLimited(opts.concurrency, tasks);
  if (opts.signal?.aborted) throw new CancelledError(opts.operation);
  return { source, manifest, config, fetched, lease: opts.lease };
}

/** Stores the manifest (and what came with it) and the config, then records the image and points its tags at it. */
/** Records `image` in `owner`'s namespace (root's by default): its tags are that owner's names. */
export async function recordImage(store: ImageStore, image: FetchedImage, owner: Owner = ROOT_OWNER): Promise<ImageRecord> {
  const { source, manifest, config, lease } = image;
  const configDigest = manifest.parsed.config.digest;
  await lease.blob(manifest.digest);
  for (const e of manifest.extra ?? []) await lease.blob(e.digest);
  await store.putBlob(manifest.bytes, manifest.digest);
  for (const e of manifest.extra ?? []) await store.putBlob(e.bytes, e.digest);
  await store.putBlob(config.bytes, configDigest);
  const [first, ...more] = source.tags;
  let record = await store.addImage({
    reference: first,
    repository: source.repository,
    repoDigest: manifest.repoDigest ?? manifest.digest,
    manifestDigest: manifest.digest,
    manifestMediaType: manifest.mediaType,
    configDigest,
    config: config.config,
    layers: manifest.parsed.layers,
  }, owner);
  for (const t of more) record = await store.tag(record.id, formatReference(t), owner);
  return record;
}

/**
 * Makes the layer present. Returns true if it had to fetch anything from
 * the source. A blob in the store that turns out corrupt (torn by a power
 * loss: blobs are not fsynced) is dropped and fetched again in the same import.
 */
async function ensureLayer(store: ImageStore, layer: LayerSource, index: number, opts: ImportOptions): Promise<boolean> {
  try {
    return await ensureLayerOnce(store, layer, index, opts);
  } catch (err) {
    if (!(err instanceof LocalBlobCorruptError)) throw err;
    return ensureLayerOnce(store, layer, index, opts);
  }
}

/** A blob read back from the store did not match its digest or was not a layer; it is gone now. */
class LocalBlobCorruptError extends Error {}

async function ensureLayerOnce(store: ImageStore, layer: LayerSource, index: number, opts: ImportOptions): Promise<boolean> {
  const { descriptor: desc, diffId, compression } = layer;
  if (await store.hasLayer(diffId)) return false;
  const label = layer.label ?? `layer ${desc.digest}`;
  const report = opts.onLayer ?? (() => undefined);
  const unpack = { compression, label, maxCompressedSize: desc.size, signal: opts.signal };
  let fetched = false;
  await store.createLayer(
    diffId,
    async (dir) => {
      // A blob already in the store (a layer deleted by hand, an earlier import
      // that failed at diff-id) is unpacked from disk without the source.
      if (await store.hasBlob(desc.digest)) {
        report(index, { status: 'extracting' });
        try {
          const r = await unpackLayer(createReadStream(store.blobPath(desc.digest)), dir, { ...unpack, onProgress: (n) => report(index, { done: n }) });
          verifyBlob(desc, r.digest, r.compressedSize);
          return { diffId: r.diffId, size: r.size, digest: desc.digest, tarSize: r.tarSize };
        } catch (err) {
          // Blobs are not fsynced (see BlobWriter.commit): one torn by a power
          // loss goes, and the next attempt fetches it again.
          if (isContentError(err) && !(err instanceof UnsafeLayerError)) {
            await store.dropCorruptBlob(desc.digest);
            throw new LocalBlobCorruptError(`blob ${desc.digest} in the store is corrupt: ${(err as Error).message}`, { cause: err });
          }
          throw err;
        }
      }
      fetched = true;
      if (layer.staged) {
        // Bytes at hand: unpack them, and fetchImage publishes the staged copy as the blob.
        const r = await unpackLayer(layer.compressed({ offset: 0, signal: opts.signal }), dir, unpack);
        verifyBlob(desc, r.digest, r.compressedSize);
        return { diffId: r.diffId, size: r.size, digest: desc.digest, tarSize: r.tarSize };
      }
      const ingest = await store.ingest(desc.digest, desc.size, { hash: false });
      const resumeFrom = ingest.offset;
      let seen = 0;
      report(index, { status: 'downloading', done: resumeFrom });
      const partial = ingest.partial();
      const remote = layer.compressed({ offset: resumeFrom, signal: opts.signal });
      const stream = partial ? concatStreams(partial, remote) : remote;
      try {
        const r = await unpackLayer(stream, dir, {
          ...unpack,
          onProgress: (n) => report(index, { done: n, status: n >= desc.size ? 'extracting' : 'downloading' }),
          // Replayed bytes of a resumed ingest are in the file already.
          sink: async (chunk) => {
            const start = seen;
            seen += chunk.length;
            if (seen <= resumeFrom) return;
            await ingest.write(start >= resumeFrom ? chunk : chunk.subarray(resumeFrom - start));
          },
        });
        verifyBlob(desc, r.digest, r.compressedSize);
        // The unpacker hashed exactly the bytes written (and replayed).
        await ingest.commit(r.digest);
        return { diffId: r.diffId, size: r.size, digest: desc.digest, tarSize: r.tarSize };
      } catch (err) {
        // Keep a partial download only if its bytes may still be right (a cut
        // connection, a cancel); never after a content error.
        await ingest.abort(!isContentError(err));
        remote.destroy();
        partial?.destroy();
        throw err;
      }
    },
    { lease: opts.lease },
  );
  return fetched;
}

/** Errors that say the bytes are wrong, not that getting them failed. */
function isContentError(err: unknown): boolean {
  return err instanceof DigestMismatchError || err instanceof SizeMismatchError || err instanceof InvalidLayerError || err instanceof UnsafeLayerError;
}

function verifyBlob(desc: Descriptor, digest: string, size: number): void {
  if (size !== desc.size) throw new SizeMismatchError(`blob ${desc.digest}`, desc.size, size);
  if (digest !== desc.digest) throw new DigestMismatchError(`blob ${desc.digest}`, desc.digest, digest);
}

function concatStreams(...streams: Readable[]): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    for (const s of streams) for await (const c of s) yield c as Buffer;
  }
  return Readable.from(gen(), { objectMode: false });
}

/** Runs `tasks` with at most `limit` at a time; rejects with the first failure after all settled. */
export async function runLimited(limit: number, tasks: Array<() => Promise<void>>): Promise<void> {
  let next = 0;
  let firstError: unknown;
  let failed = false;
  const worker = async () => {
    while (next < tasks.length && !failed) {
      const t = tasks[next++];
      try {
        await t();
      } catch (err) {
        if (!failed) firstError = err;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, tasks.length)) }, worker));
  if (failed) throw firstError;
}
