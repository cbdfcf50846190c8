/**
 * `saveArchive` writes the classic `docker save` layout (what `podman save
 * --format docker-archive` writes and `docker load`/`podman load` read):
 * `<config hex>.json`, `<diff-id hex>/layer.tar` (uncompressed),
 * manifest.json and repositories, into a temporary sibling of the output
 * that is renamed over it only when complete. Every layer tar is checked
 * against its diff-id as it is written. The save holds a lease on the blobs
 * it reads, so a collection meanwhile leaves them.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { once } from 'node:events';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { InvalidArgumentError } from '../../errors';
import { CancelledError, DigestMismatchError, InvalidArchiveError } from '../errors';
import { familiarReference, formatReference, parseReference } from '../reference';
import { ROOT_OWNER, type ImageRecord, type ImageStore, type Lease, type Owner } from '../store';
import { layerCompression, type Descriptor } from '../types';
import { zstdDecompressor } from '../unpack';
import type { Caller } from '../../util/peercred';
import { callerOutput, helperOutput } from './output';

export interface SaveOptions {
  signal?: AbortSignal;
  /** Whose rights the output is created and renamed with (./output); absent: the helper's own. */
  caller?: Caller;
  /** The namespace the images are named in (default root's). */
  owner?: Owner;
}

export interface SaveResult {
  /** Bytes written. */
  size: number;
  /** Image ids written. */
  ids: string[];
}

/**
 * Writes the images `refs` name (references or ids) to `output` as a
 * `docker save` archive. A reference puts that tag in the archive; an id
 * saves the image untagged, as Docker does.
 */
export async function saveArchive(store: ImageStore, refs: string[], output: string, opts: SaveOptions = {}): Promise<SaveResult> {
  if (refs.length === 0) throw new InvalidArgumentError('nothing to save: name at least one image');
  const byId = new Map<string, { record: ImageRecord; tags: string[] }>();
  for (const ref of refs) {
    const record = await store.get(ref, opts.owner ?? ROOT_OWNER);
    const entry = byId.get(record.id) ?? { record, tags: [] };
    byId.set(record.id, entry);
    let tag: string | undefined;
    try {
      const parsed = parseReference(ref);
      if (parsed.digest === undefined && record.references.includes(formatReference(parsed))) tag = formatReference(parsed);
    } catch {
      tag = undefined;
    }
    if (tag !== undefined && !entry.tags.includes(tag)) entry.tags.push(tag);
  }
  const out = opts.caller ? await callerOutput(opts.caller, output) : await helperOutput(output);
  const fh = out.fh;
  let size = 0;
  const pack = tar.pack();
  const writer = (async () => {
    for await (const chunk of pack as unknown as AsyncIterable<Buffer>) {
      let off = 0;
      while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
      size += chunk.length;
    }
  })();
  // Awaited below (success or failure); this only keeps its rejection from going unhandled meanwhile.
  writer.catch(() => undefined);
  try {
    return await store.withLease(`save of ${refs.join(', ')}`, async (lease) => {
      await holdContent(lease, [...byId.values()].map((e) => e.record));
      const manifest: Array<{ Config: string; RepoTags: string[] | null; Layers: string[] }> = [];
      const repositories: Record<string, Record<string, string>> = {};
      const written = new Set<string>();
      const mtime = new Date(0);
      for (const { record, tags } of byId.values()) {
        const configBytes = await store.readBlob(record.id);
        const configName = `${record.id.slice(7)}.json`;
        if (!written.has(configName)) {
          await addEntry(pack, { name: configName, size: configBytes.length, mtime, mode: 0o644 }, Readable.from([configBytes]), opts.signal);
          written.add(configName);
        }
        const layers: string[] = [];
        for (const [i, diffId] of record.diffIds.entries()) {
          const name = `${diffId.slice(7)}/layer.tar`;
          layers.push(name);
          if (written.has(name)) continue;
          const desc = record.layers[i];
          await writeLayer(store, pack, name, diffId, desc, mtime, opts.signal);
          written.add(name);
        }
        // Fully qualified, as podman writes them: podman reads a short
        // `busybox:latest` as localhost/busybox, Docker reads either form.
        manifest.push({ Config: configName, RepoTags: tags.length ? tags : null, Layers: layers });
        for (const t of tags.map((r) => familiarReference(r))) {
          const at = t.lastIndexOf(':');
          (repositories[t.slice(0, at)] ??= {})[t.slice(at + 1)] = record.diffIds[record.diffIds.length - 1]?.slice(7) ?? '';
        }
      }
      const docs: Array<[string, unknown]> = [['manifest.json', manifest]];
      if (Object.keys(repositories).length) docs.push(['repositories', repositories]);
      for (const [name, doc] of docs) {
        const bytes = Buffer.from(JSON.stringify(doc));
        await addEntry(pack, { name, size: bytes.length, mtime, mode: 0o644 }, Readable.from([bytes]), opts.signal);
      }
      pack.finalize();
      await writer;
      await fh.sync();
      await out.commit();
      return { size, ids: [...byId.keys()] };
    });
  } catch (err) {
    pack.destroy();
    // `err` is what to report: the writer's and the close's failures follow from it, and the file goes next.
    await writer.catch(() => undefined);
    await out.discard();
    throw err;
  }
}

/** Holds the blobs and layers of `records` for the save, so a collection meanwhile leaves what it reads. */
async function holdContent(lease: Lease, records: ImageRecord[]): Promise<void> {
  for (const r of records) {
    await lease.blob(r.id);
    for (const l of r.layers) await lease.blob(l.digest);
    for (const d of r.diffIds) await lease.layer(d);
  }
}

/** Streams one layer, uncompressed, into the archive, checking it against its diff-id. */
async function writeLayer(store: ImageStore, pack: tar.Pack, name: string, diffId: string, desc: Descriptor | undefined, mtime: Date, signal?: AbortSignal): Promise<void> {
  if (!desc || !(await store.hasBlob(desc.digest))) {
    throw new InvalidArchiveError(`cannot save layer ${diffId}: its blob is not in the store; pull the image again`);
  }
  const compression = layerCompression(desc.mediaType) ?? 'none';
  const uncompressed = (): Readable => {
    const src = createReadStream(store.blobPath(desc.digest));
    if (compression === 'none') return src;
    const d = compression === 'gzip' ? zlib.createGunzip() : zstdDecompressor();
    src.on('error', (e) => d.destroy(e));
    return src.pipe(d);
  };
  let tarSize = compression === 'none' ? desc.size : (await store.layerInfo(diffId))?.tarSize;
  if (tarSize === undefined) {
    // Layers unpacked before sizes were recorded: measure once.
    tarSize = 0;
    for await (const c of uncompressed()) tarSize += (c as Buffer).length;
  }
  const hash = createHash('sha256');
  const src = uncompressed();
  const tapped = (async function* () {
    for await (const c of src) {
      hash.update(c as Buffer);
      yield c as Buffer;
    }
  })();
  await addEntry(pack, { name, size: tarSize, mtime, mode: 0o644 }, tapped, signal);
  const actual = 'sha256:' + hash.digest('hex');
  if (actual !== diffId) throw new DigestMismatchError(`layer ${desc.digest} (diff-id)`, diffId, actual);
}

async function addEntry(pack: tar.Pack, header: Partial<tar.Header> & { name: string }, body: AsyncIterable<Buffer>, signal?: AbortSignal): Promise<void> {
  let done!: (err?: Error | null) => void;
  const finished = new Promise<void>((resolve, reject) => (done = (err) => (err ? reject(err) : resolve())));
  const entry = pack.entry(header, (err) => done(err));
  // A failed or cancelled entry is reported through `finished` and the throw below; the entry's own
  // 'error' event (streamx emits it on destroy) would otherwise have no listener and end the helper.
  entry.on('error', () => undefined);
  try {
    for await (const chunk of body) {
      if (signal?.aborted) throw new CancelledError(`save of ${header.name}`);
      if (!entry.write(chunk)) await once(entry as unknown as NodeJS.EventEmitter, 'drain');
    }
    (entry as unknown as { end(): void }).end();
  } catch (err) {
    entry.destroy(err as Error);
    // `finished` rejects with the destroy's error; `err` is the one thrown.
    finished.catch(() => undefined);
    throw err;
  }
  await finished;
}
