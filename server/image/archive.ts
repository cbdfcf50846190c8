/**
 * Image archives, for moving images without a registry:
 *
 * - `loadArchive` reads a `docker save` archive (manifest.json naming a
 *   config and layer tars per image, also in Docker 25's flavour where those
 *   live under blobs/sha256/) or an OCI image layout archive (oci-layout,
 *   index.json, blobs/sha256/…). The archive is read once, front to back:
 *   every file entry is hashed while it is staged in the store's tmp/ (small
 *   ones in memory), since the documents that say what the entries are
 *   (manifest.json, index.json) may come last. Then every digest and size the
 *   documents claim is checked against what was measured, and the layers go
 *   through the pull's unpacker and the store's createLayer, so the diff-ids
 *   are proven the same way. Nothing is recorded until all of an image's
 *   content is in place; the staging directory goes in every case.
 * - `saveArchive` writes the classic `docker save` layout (what `podman
 *   save --format docker-archive` writes and `docker load`/`podman load`
 *   read): `<config hex>.json`, `<diff-id hex>/layer.tar` (uncompressed),
 *   manifest.json and repositories, into a temporary sibling of the output
 *   that is renamed over it only when complete. Every layer tar is checked
 *   against its diff-id as it is written.
 *
 * Archive entry names are never used as file system paths: they only key
 * the staged content. Names that are absolute or escape with `..`, links
 * that point outside the archive, entries larger than the archive and
 * truncated archives are refused.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { once } from 'node:events';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { InvalidArgumentError } from '../errors';
import { checkSize, LIMITS, readCapped, type Limit } from '../limits';
import { openRegularFile } from '../util/hostfile';
import { CancelledError, DigestMismatchError, InvalidArchiveError, SizeMismatchError, UnsupportedManifestError } from './errors';
import { hostPlatform, selectManifest } from './platform';
import { checkConfigLabels, runLimited } from './pull';
import { checkAnnotations } from './registry';
import { familiarReference, formatReference, parseReference, type ImageReference } from './reference';
import type { ImageRecord, ImageStore } from './store';
import {
  CONFIG_MEDIA_TYPES,
  isIndexMediaType,
  isManifestMediaType,
  layerCompression,
  MediaType,
  type Compression,
  type Descriptor,
  type ImageConfig,
  type Index,
  type Manifest,
} from './types';
import { cleanEntryName, unpackLayer, zstdDecompressor } from './unpack';

/** Entries up to this size are kept in memory (JSON documents, small layers). */
const IN_MEMORY_MAX = 1024 * 1024;
/** At most this much in memory in total; the rest is staged on disk. */
const IN_MEMORY_TOTAL = 64 * 1024 * 1024;

export interface LoadOptions {
  signal?: AbortSignal;
  /** Layers unpacked at once; default 2. */
  concurrency?: number;
  /** Bytes of the archive read so far, and its size. */
  onProgress?: (read: number, total: number) => void;
}

export interface LoadedImage {
  id: string;
  /** Normalised tag references the archive gave the image (may be empty). */
  references: string[];
}

interface Staged {
  name: string;
  size: number;
  digest: string;
  /** First bytes, to recognise the compression of a docker-save layer. */
  magic: Buffer;
  data?: Buffer;
  file?: string;
}

/** One image to record, with its content located in the archive. */
interface Plan {
  label: string;
  manifestBytes: Buffer;
  manifestDigest: string;
  manifestMediaType: string;
  configBytes: Buffer;
  configDigest: string;
  config: ImageConfig;
  layers: Array<{ desc: Descriptor; compression: Compression; entry: Staged }>;
  tags: ImageReference[];
}

/** Checks a path a client sent: absolute, lexically clean, no NUL. */
export function checkClientPath(p: unknown, what: string): string {
  if (typeof p !== 'string' || p === '') throw new InvalidArgumentError(`${what} must be a non-empty path`);
  if (p.includes('\0')) throw new InvalidArgumentError(`${what} ${JSON.stringify(p)} contains a NUL byte`);
  if (!path.isAbsolute(p)) throw new InvalidArgumentError(`${what} ${JSON.stringify(p)} must be an absolute path`);
  if (path.normalize(p) !== p.replace(/\/+$/, '') || p.split('/').includes('..')) {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(p)} must be a normalised path (no "..", ".", or "//")`);
  }
  return p;
}

/**
 * Loads every image of the archive at `file` into `store`. Errors:
 * InvalidArchiveError (malformed, incomplete or hostile archive),
 * DigestMismatchError / SizeMismatchError (content that is not what the
 * archive's documents say), UnsafeLayerError (a hostile layer),
 * CancelledError.
 */
export async function loadArchive(store: ImageStore, file: string, opts: LoadOptions = {}): Promise<LoadedImage[]> {
  const label = `archive ${file}`;
  // Never a blocking open: a FIFO, a device or a directory is refused at once
  // (a FIFO without a writer would hold a pool thread, and with it every
  // other client's file operations, for as long as nobody writes).
  const { fh, st } = await openRegularFile(file, label, { nofollow: true });
  return store.hold(async () => {
    const staging = await store.stagingDir();
    try {
      const entries = await stage(fh, st.size, staging, label, opts);
      const plans = await planImages(entries, label);
      if (plans.length === 0) throw new InvalidArchiveError(`${label}: contains no image`);
      const loaded: LoadedImage[] = [];
      for (const plan of plans) loaded.push(await commitPlan(store, plan, opts));
      return loaded;
    } finally {
      await fh.close().catch(() => undefined);
      await fs.rm(staging, { recursive: true, force: true });
    }
  });
}

// ---- reading the archive ---------------------------------------------------

class Archive {
  readonly files = new Map<string, Staged>();
  /** Symbolic and hard links: name → target name (both cleaned, archive-relative). */
  readonly links = new Map<string, string>();

  constructor(readonly label: string) {}

  /** The file an archive name designates, following links inside the archive. */
  find(name: string): Staged | undefined {
    let n = name;
    for (let hops = 0; hops < 16; hops++) {
      const f = this.files.get(n);
      if (f) return f;
      const next = this.links.get(n);
      if (next === undefined) return undefined;
      n = next;
    }
    throw new InvalidArchiveError(`${this.label}: too many levels of links at ${JSON.stringify(name)}`);
  }

  /** Like find, but the entry is required: `what` says who names it. */
  need(name: string, what: string): Staged {
    let clean: string;
    try {
      clean = cleanEntryName(name);
    } catch {
      throw new InvalidArchiveError(`${this.label}: ${what} names ${JSON.stringify(name)}, which is outside the archive`);
    }
    const f = this.find(clean);
    if (!f) throw new InvalidArchiveError(`${this.label}: ${what} names ${JSON.stringify(name)}, which is not in the archive`);
    return f;
  }

  async document(name: string, what: string, limit: Limit): Promise<unknown> {
    const f = this.need(name, what);
    return parseJson(await contents(f, limit, `${this.label}: ${name}`), `${this.label}: ${name}`);
  }
}

async function stage(fh: fs.FileHandle, total: number, dir: string, label: string, opts: LoadOptions): Promise<Archive> {
  const archive = new Archive(label);
  const extract = tar.extract();
  const input = fh.createReadStream({ start: 0, autoClose: false });
  let read = 0;
  input.on('data', (c: Buffer | string) => {
    read += c.length;
    opts.onProgress?.(read, total);
  });
  let failure: unknown;
  const fail = (err: unknown): void => {
    failure ??= err;
    input.destroy();
    extract.destroy(err as Error);
  };
  input.on('error', fail);
  extract.on('error', (err: unknown) => {
    failure ??= err;
  });
  const onAbort = (): void => fail(new CancelledError(`load of ${label}`));
  if (opts.signal?.aborted) throw new CancelledError(`load of ${label}`);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  input.pipe(extract as unknown as NodeJS.WritableStream);
  let inMemory = 0;
  let n = 0;
  let current = '';
  try {
    for await (const e of extract) {
      const entry = e as unknown as AsyncIterable<Buffer> & { header: tar.Header; resume(): void };
      const h = entry.header;
      current = h.name;
      try {
        let name: string;
        try {
          name = cleanEntryName(h.name);
        } catch (err) {
          throw new InvalidArchiveError(`${label}: entry ${JSON.stringify(h.name)}: ${(err as Error).message.replace(/^entry "[^"]*": /, '')}`);
        }
        const size = h.size ?? 0;
        if (!Number.isSafeInteger(size) || size < 0 || size > total) {
          throw new InvalidArchiveError(`${label}: entry ${JSON.stringify(h.name)} claims ${String(h.size)} bytes, more than the whole archive (${total})`);
        }
        switch (h.type) {
          case 'file':
          case 'contiguous-file': {
            const keep = size <= IN_MEMORY_MAX && inMemory + size <= IN_MEMORY_TOTAL;
            const staged = await stageFile(entry, name, size, keep ? undefined : path.join(dir, String(n++)), label);
            if (staged.data) inMemory += staged.size;
            archive.files.set(name, staged);
            archive.links.delete(name);
            break;
          }
          case 'symlink':
          case 'link': {
            const target = h.linkname ?? '';
            // A symlink is relative to its directory, a hard link to the archive root.
            const joined = h.type === 'symlink' && !target.startsWith('/') ? path.posix.join(path.posix.dirname(name), target) : target;
            let clean: string;
            try {
              clean = cleanEntryName(joined);
            } catch {
              throw new InvalidArchiveError(`${label}: entry ${JSON.stringify(h.name)} links to ${JSON.stringify(target)}, outside the archive`);
            }
            archive.links.set(name, clean);
            archive.files.delete(name);
            break;
          }
          case 'directory':
            break;
          default:
            throw new InvalidArchiveError(`${label}: entry ${JSON.stringify(h.name)} has unexpected type ${String(h.type)}`);
        }
      } finally {
        entry.resume();
      }
    }
    if (failure) throw failure;
  } catch (err) {
    const first = failure ?? err;
    fail(err);
    if (first instanceof CancelledError || first instanceof InvalidArchiveError) throw first;
    const msg = first instanceof Error ? first.message : String(first);
    if (/Unexpected end of data/i.test(msg)) throw new InvalidArchiveError(`${label}: truncated archive (in or after entry ${JSON.stringify(current)})`, { cause: first });
    throw new InvalidArchiveError(`${label}: not a readable tar archive: ${msg.toLowerCase().replace(/\.$/, '')}`, { cause: first });
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  return archive;
}

async function stageFile(entry: AsyncIterable<Buffer>, name: string, size: number, file: string | undefined, label: string): Promise<Staged> {
  const hash = createHash('sha256');
  const chunks: Buffer[] = [];
  let magic = Buffer.alloc(0);
  let got = 0;
  const out = file ? await fs.open(file, 'wx', 0o600) : undefined;
  try {
    for await (const chunk of entry) {
      hash.update(chunk);
      got += chunk.length;
      if (magic.length < 4) magic = Buffer.concat([magic, chunk.subarray(0, 4 - magic.length)]);
      if (out) {
        let off = 0;
        while (off < chunk.length) off += (await out.write(chunk, off, chunk.length - off)).bytesWritten;
      } else {
        chunks.push(Buffer.from(chunk));
      }
    }
  } finally {
    await out?.close();
  }
  if (got !== size) throw new InvalidArchiveError(`${label}: truncated archive in entry ${JSON.stringify(name)}`);
  return { name, size, digest: 'sha256:' + hash.digest('hex'), magic, ...(file ? { file } : { data: Buffer.concat(chunks) }) };
}

/** A staged document's bytes, refused above `limit` before they are read. */
async function contents(f: Staged, limit: Limit, what: string): Promise<Buffer> {
  checkSize(limit, what, f.size);
  if (f.data) return f.data;
  return readCapped(createReadStream(f.file!), limit, what);
}

function open(f: Staged): Readable {
  return f.data ? Readable.from([f.data]) : createReadStream(f.file!);
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new InvalidArchiveError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function sniffCompression(magic: Buffer): Compression {
  if (magic[0] === 0x1f && magic[1] === 0x8b) return 'gzip';
  if (magic.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

const LAYER_TYPE: Record<Compression, string> = { none: MediaType.OciLayer, gzip: MediaType.OciLayerGzip, zstd: MediaType.OciLayerZstd };

// ---- what the archive says -------------------------------------------------

async function planImages(archive: Archive, label: string): Promise<Plan[]> {
  if (archive.find('manifest.json')) return planDocker(archive, label);
  if (archive.find('index.json') || archive.find('oci-layout')) return planOci(archive, label);
  throw new InvalidArchiveError(`${label}: neither a docker save archive (no manifest.json) nor an OCI image layout (no index.json)`);
}

function parseConfig(bytes: Buffer, what: string): ImageConfig {
  const c = parseJson(bytes, what) as ImageConfig;
  if (!c || typeof c !== 'object' || !c.rootfs || !Array.isArray(c.rootfs.diff_ids)) {
    throw new InvalidArchiveError(`${what}: image config has no rootfs.diff_ids`);
  }
  for (const d of c.rootfs.diff_ids) {
    if (typeof d !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(d)) throw new InvalidArchiveError(`${what}: malformed diff-id ${JSON.stringify(d).slice(0, 80)}`);
  }
  checkConfigLabels(c, what);
  return c;
}

function parseTag(s: unknown, what: string): ImageReference {
  if (typeof s !== 'string') throw new InvalidArchiveError(`${what}: a tag must be a string`);
  try {
    const ref = parseReference(s);
    return { ...ref, digest: undefined, tag: ref.tag ?? 'latest' };
  } catch (err) {
    throw new InvalidArchiveError(`${what}: invalid tag ${JSON.stringify(s)}: ${(err as Error).message}`);
  }
}

async function planDocker(archive: Archive, label: string): Promise<Plan[]> {
  const doc = await archive.document('manifest.json', 'the archive', LIMITS.archiveManifest);
  if (!Array.isArray(doc)) throw new InvalidArchiveError(`${label}: manifest.json must be a list`);
  const plans: Plan[] = [];
  for (const [i, item] of doc.entries()) {
    const what = `${label}: manifest.json entry ${i}`;
    const it = item as { Config?: unknown; RepoTags?: unknown; Layers?: unknown };
    if (!it || typeof it.Config !== 'string' || !Array.isArray(it.Layers) || it.Layers.some((l) => typeof l !== 'string')) {
      throw new InvalidArchiveError(`${what}: needs Config and Layers`);
    }
    const cfg = archive.need(it.Config, `${what} (Config)`);
    const configBytes = await contents(cfg, LIMITS.config, `${label}: config ${it.Config}`);
    const config = parseConfig(configBytes, `${label}: ${it.Config}`);
    if (config.rootfs.diff_ids.length !== it.Layers.length) {
      throw new InvalidArchiveError(`${what}: ${it.Layers.length} layers, but its config lists ${config.rootfs.diff_ids.length} diff-ids`);
    }
    const layers = (it.Layers as string[]).map((name) => {
      const entry = archive.need(name, `${what} (Layers)`);
      const compression = sniffCompression(entry.magic);
      return { desc: { mediaType: LAYER_TYPE[compression], digest: entry.digest, size: entry.size }, compression, entry };
    });
    // The archive carries no manifest: write the OCI one it implies.
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: cfg.digest, size: cfg.size },
      layers: layers.map((l) => l.desc),
    };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    const tags = Array.isArray(it.RepoTags) ? it.RepoTags.map((t) => parseTag(t, what)) : [];
    plans.push({
      label: tags[0] ? formatReference(tags[0]) : cfg.digest,
      manifestBytes,
      manifestDigest: sha256(manifestBytes),
      manifestMediaType: MediaType.OciManifest,
      configBytes,
      configDigest: cfg.digest,
      config,
      layers,
      tags,
    });
  }
  return plans;
}

function blobName(desc: Descriptor, what: string): string {
  if (!desc || typeof desc.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(desc.digest) || !Number.isSafeInteger(desc.size) || desc.size < 0) {
    throw new InvalidArchiveError(`${what}: malformed descriptor ${JSON.stringify(desc).slice(0, 200)}`);
  }
  return `blobs/sha256/${desc.digest.slice(7)}`;
}

/** The blob a descriptor names, proven to be that blob. */
function blob(archive: Archive, desc: Descriptor, what: string): Staged {
  const f = archive.need(blobName(desc, what), what);
  if (f.size !== desc.size) throw new SizeMismatchError(`${archive.label}: blob ${desc.digest}`, desc.size, f.size);
  if (f.digest !== desc.digest) throw new DigestMismatchError(`${archive.label}: blob ${desc.digest}`, desc.digest, f.digest);
  return f;
}

async function planOci(archive: Archive, label: string): Promise<Plan[]> {
  const layout = (await archive.document('oci-layout', 'an OCI image layout', LIMITS.ociLayout)) as { imageLayoutVersion?: unknown };
  if (!layout || typeof layout.imageLayoutVersion !== 'string' || !layout.imageLayoutVersion.startsWith('1.')) {
    throw new InvalidArchiveError(`${label}: unsupported OCI image layout version ${JSON.stringify(layout?.imageLayoutVersion)}`);
  }
  const index = (await archive.document('index.json', 'an OCI image layout', LIMITS.index)) as Index;
  if (!index || !Array.isArray(index.manifests)) throw new InvalidArchiveError(`${label}: index.json has no manifests`);
  const plans: Plan[] = [];
  for (const top of index.manifests) {
    const what = `${label}: index.json manifest ${top?.digest}`;
    const tags: ImageReference[] = [];
    const name = top?.annotations?.['io.containerd.image.name'] ?? top?.annotations?.['org.opencontainers.image.ref.name'];
    // ref.name may be a bare tag ("latest"), which names no repository.
    if (name !== undefined && /[:/]/.test(name)) tags.push(parseTag(name, what));
    let desc = top;
    let f = blob(archive, desc, what);
    let bytes = await contents(f, isIndexMediaType(desc.mediaType) ? LIMITS.index : LIMITS.manifest, what);
    if (isIndexMediaType(desc.mediaType)) {
      const nested = parseJson(bytes, what) as Index;
      if (nested && Array.isArray(nested.manifests)) checkAnnotations(nested.annotations, `index ${top.digest} in ${label}`);
      const chosen = selectManifest(nested, hostPlatform(), label);
      desc = chosen;
      f = blob(archive, desc, what);
      bytes = await contents(f, LIMITS.manifest, `${what}: manifest ${desc.digest}`);
    }
    if (!isManifestMediaType(desc.mediaType)) throw new UnsupportedManifestError(`${what}: unsupported media type ${desc.mediaType}`, desc.mediaType);
    const m = parseJson(bytes, what) as Manifest;
    if (!m || !m.config || !Array.isArray(m.layers)) throw new InvalidArchiveError(`${what}: manifest lacks config or layers`);
    checkAnnotations(m.annotations, `manifest ${desc.digest} in ${label}`);
    if (!CONFIG_MEDIA_TYPES.includes(m.config.mediaType)) {
      throw new UnsupportedManifestError(`${what} is not a container image: its config has media type ${m.config.mediaType}`, m.config.mediaType);
    }
    const cfg = blob(archive, m.config, `${what} (config)`);
    const configBytes = await contents(cfg, LIMITS.config, `${what}: config ${m.config.digest}`);
    const config = parseConfig(configBytes, `${what} (config)`);
    if (config.rootfs.diff_ids.length !== m.layers.length) {
      throw new InvalidArchiveError(`${what}: ${m.layers.length} layers, but its config lists ${config.rootfs.diff_ids.length} diff-ids`);
    }
    const layers = m.layers.map((l) => {
      const compression = layerCompression(l.mediaType);
      if (compression === undefined) throw new UnsupportedManifestError(`${what}: layer ${l.digest} has unsupported media type ${l.mediaType}`, l.mediaType);
      return { desc: { mediaType: l.mediaType, digest: l.digest, size: l.size }, compression, entry: blob(archive, l, `${what} (layer)`) };
    });
    plans.push({
      label: tags[0] ? formatReference(tags[0]) : desc.digest,
      manifestBytes: bytes,
      manifestDigest: desc.digest,
      manifestMediaType: desc.mediaType,
      configBytes,
      configDigest: m.config.digest,
      config,
      layers,
      tags,
    });
  }
  return plans;
}

// ---- into the store --------------------------------------------------------

async function commitPlan(store: ImageStore, plan: Plan, opts: LoadOptions): Promise<LoadedImage> {
  const diffIds = plan.config.rootfs.diff_ids;
  const tasks = plan.layers.map((l, i) => async () => {
    const diffId = diffIds[i];
    if (!(await store.hasLayer(diffId))) {
      await store.once(`layer:${diffId}`, () =>
        store.createLayer(diffId, async (dir) => {
          const r = await unpackLayer(open(l.entry), dir, {
            compression: l.compression,
            label: `layer ${l.desc.digest} of ${plan.label}`,
            maxCompressedSize: l.entry.size,
            signal: opts.signal,
          });
          if (r.digest !== l.entry.digest) throw new DigestMismatchError(`layer ${l.desc.digest}`, l.entry.digest, r.digest);
          return { diffId: r.diffId, size: r.size, digest: l.desc.digest, tarSize: r.tarSize };
        }),
      );
    }
    if (!(await store.hasBlob(l.desc.digest))) {
      if (l.entry.data) await store.putBlob(l.entry.data, l.desc.digest);
      else await store.adoptBlob(l.entry.file!, l.desc.digest);
    }
  });
  await runLimited(opts.concurrency ?? 2, tasks);
  if (opts.signal?.aborted) throw new CancelledError(`load of ${plan.label}`);
  await store.putBlob(plan.manifestBytes, plan.manifestDigest);
  await store.putBlob(plan.configBytes, plan.configDigest);
  const [first, ...more] = plan.tags;
  let image: ImageRecord = await store.addImage({
    reference: first,
    repoDigest: plan.manifestDigest,
    manifestDigest: plan.manifestDigest,
    manifestMediaType: plan.manifestMediaType,
    configDigest: plan.configDigest,
    config: plan.config,
    layers: plan.layers.map((l) => l.desc),
  });
  for (const t of more) image = await store.tag(image.id, formatReference(t));
  return { id: image.id, references: plan.tags.map((t) => formatReference(t)) };
}

function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

// ---- writing an archive ----------------------------------------------------

export interface SaveOptions {
  signal?: AbortSignal;
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
    const record = await store.get(ref);
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
  const dir = path.dirname(output);
  const st = await fs.lstat(output).catch(() => undefined);
  if (st && !st.isFile()) throw new InvalidArgumentError(`cannot write ${output}: it exists and is not a regular file`);
  const tmp = path.join(dir, `.${path.basename(output)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fs.open(tmp, 'wx', 0o600).catch((err: NodeJS.ErrnoException) => {
    throw new InvalidArgumentError(`cannot write ${output}: ${err.code === 'ENOENT' ? 'no such directory' : err.message}`);
  });
  let size = 0;
  const pack = tar.pack();
  const writer = (async () => {
    for await (const chunk of pack as unknown as AsyncIterable<Buffer>) {
      let off = 0;
      while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
      size += chunk.length;
    }
  })();
  writer.catch(() => undefined);
  try {
    return await store.hold(async () => {
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
      await fh.close();
      await fs.rename(tmp, output);
      return { size, ids: [...byId.keys()] };
    });
  } catch (err) {
    pack.destroy();
    await writer.catch(() => undefined);
    await fh.close().catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw err;
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
    finished.catch(() => undefined);
    throw err;
  }
  await finished;
}
