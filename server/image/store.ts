/**
 * The content-addressed image store, all under one root:
 *
 *   blobs/sha256/<hex>              manifests, configs, compressed layers
 *   layers/sha256/<diff-id hex>/    unpacked layers (overlay lowerdirs)
 *   layers/sha256/<diff-id hex>.json  { diffId, digest, size } of that layer
 *   layers/tmp-XXXX/                layers being unpacked
 *   tmp/                            blob ingests (`<hex>.partial` resumes)
 *   images.json                     tags → manifest digest, image records
 *
 * Nothing is visible under a digest it has not proven: blobs are ingested
 * into tmp/ while hashed and renamed into blobs/ only by `commit`, layers are
 * unpacked into layers/tmp-* and renamed to their diff-id only after the
 * uncompressed stream's sha256 matched. images.json is rewritten atomically
 * (temporary file, fsync, rename) and only after everything it names exists,
 * so a crash at any moment leaves either the old or the new state.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream, mkdirSync, promises as fs } from 'node:fs';
import { setTopDir } from './libc';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { writeFileAtomic } from '../util/atomic';
import { checkSize, LIMITS, readCapped, type Limit } from '../limits';
import {
  AmbiguousImageError,
  DigestMismatchError,
  ImageInUseError,
  ImageNotFoundError,
  SizeMismatchError,
} from './errors';
import {
  assertDigest,
  digestHex,
  formatReference,
  isDigest,
  parseReference,
  repositoryName,
  type ImageReference,
} from './reference';
import type { Descriptor, ImageConfig } from './types';
import { InvalidArgumentError } from '../errors';

/** One image in the store, keyed by its id (the config digest). */
export interface ImageRecord {
  /** Image id: `sha256:` digest of the image config. */
  id: string;
  /** Digest of the (platform-specific) manifest last pulled for this image. */
  manifestDigest: string;
  /** Media type of that manifest. */
  manifestMediaType: string;
  /** Every manifest digest this image was pulled as. */
  manifestDigests: string[];
  /** Normalised `registry/repo:tag` references pointing at the image. */
  references: string[];
  /** `registry/repo@sha256:…` as pulled (the index digest when pulled through one). */
  repoDigests: string[];
  /** Uncompressed layer digests, base first (config `rootfs.diff_ids`). */
  diffIds: string[];
  /** Compressed layer descriptors of the manifest, base first. */
  layers: Descriptor[];
  /** ISO creation time from the config, if any. */
  created?: string;
  /** Unpacked size in bytes (sum of the layers' file sizes). */
  size: number;
  os: string;
  architecture: string;
  variant?: string;
  /** ISO time the record was last written by a pull. */
  pulledAt: string;
}

/** What `addImage` needs from a pull. */
export interface NewImage {
  /** Tag reference to point at the image, if pulled by tag. */
  reference?: ImageReference;
  /** Repository the image came from, for repoDigests; absent for an image loaded from an archive. */
  repository?: ImageReference;
  /** Digest the registry knows the image by (an index's digest when there was one). */
  repoDigest: string;
  manifestDigest: string;
  manifestMediaType: string;
  configDigest: string;
  config: ImageConfig;
  layers: Descriptor[];
}

export interface RemoveOptions {
  /** Remove even when containers use the image or an id has several references. */
  force?: boolean;
  /** True when a container (running or not) uses the image with this id. */
  inUse?: (id: string) => boolean;
}

export interface RemoveResult {
  /** References untagged. */
  untagged: string[];
  /** Image ids, blob and layer digests deleted because nothing else uses them. */
  deleted: string[];
}

export interface LayerInfo {
  diffId: string;
  /** Compressed digest it was unpacked from. */
  digest?: string;
  /** Sum of the sizes of its regular files. */
  size: number;
  /** Length of its uncompressed tar stream (recorded since archives need it up front). */
  tarSize?: number;
}

export interface DiskUsage {
  images: { count: number; active: number; size: number; reclaimable: number };
  layers: { count: number; size: number };
  blobs: { count: number; size: number };
}

interface IndexFile {
  version: 1;
  /** Normalised `registry/repo:tag` → manifest digest. */
  tags: Record<string, string>;
  /** Manifest digest → image id. */
  manifests: Record<string, string>;
  /** Image id → record (references are derived from `tags`). */
  images: Record<string, Omit<ImageRecord, 'references'>>;
}

const INDEX_VERSION = 1;

/** Writes in flight at most per ingest (each one chunk, positional). */
const MAX_INGEST_WRITES = 8;

/**
 * Streams bytes into tmp/ while hashing them; `commit` proves and publishes
 * them. Writes are positional and several may be in flight, so the bytes
 * flowing on to the unpacker never wait for the disk; `commit` and `abort`
 * wait for all of them.
 */
export class BlobWriter {
  private hash: Hash | undefined;
  private handle: fs.FileHandle | undefined;
  private written: number;
  private done = false;
  private readonly writes = new Set<Promise<void>>();
  private writeError: unknown;

  /** @internal use ImageStore.ingest */
  constructor(
    private readonly store: ImageStore,
    readonly digest: string,
    readonly expectedSize: number,
    readonly tmpPath: string,
    handle: fs.FileHandle,
    hash: Hash | undefined,
    offset: number,
  ) {
    this.handle = handle;
    this.hash = hash;
    this.written = offset;
  }

  /** Bytes already in the ingest (a resumed partial download starts above 0). */
  get offset(): number {
    return this.written;
  }

  /** The bytes of a resumed partial ingest, to replay through an unpacker. */
  partial(): Readable | undefined {
    const n = this.written;
    return n > 0 ? createReadStream(this.tmpPath, { start: 0, end: n - 1 }) : undefined;
  }

  /**
   * Appends `chunk` (kept by reference until written: the caller must not
   * reuse it); refuses content longer than the descriptor says. Resolves once
   * the write is queued, waiting only when MAX_INGEST_WRITES are in flight.
   */
  async write(chunk: Uint8Array): Promise<void> {
    if (!this.handle) throw new Error(`blob ${this.digest}: ingest already closed`);
    if (this.writeError) throw this.writeError;
    if (this.written + chunk.length > this.expectedSize) {
      throw new SizeMismatchError(`blob ${this.digest}`, this.expectedSize, this.written + chunk.length);
    }
    this.hash?.update(chunk);
    const handle = this.handle;
    let position = this.written;
    this.written += chunk.length;
    const p = (async () => {
      let off = 0;
      while (off < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, off, chunk.length - off, position);
        off += bytesWritten;
        position += bytesWritten;
      }
    })().then(
      () => void this.writes.delete(p),
      (err: unknown) => {
        this.writes.delete(p);
        this.writeError ??= err;
      },
    );
    this.writes.add(p);
    while (this.writes.size >= MAX_INGEST_WRITES) await Promise.race(this.writes);
    if (this.writeError) throw this.writeError;
  }

  private async settle(): Promise<void> {
    while (this.writes.size) await Promise.all(this.writes);
  }

  /**
   * Verifies size and digest and renames the ingest to blobs/sha256/<hex>.
   * An ingest opened with `{ hash: false }` takes the digest its caller
   * measured over exactly the bytes it wrote (and replayed) as `measured`.
   * On a mismatch the ingest is deleted and DigestMismatchError/SizeMismatchError thrown.
   *
   * The blob is not fsynced. A kill at any moment leaves the page cache, so
   * the renamed file is whole; only a power loss or kernel crash could leave
   * it short or zeroed under its digest name, and no reader trusts a blob
   * for that: unpacking one from disk (pull.ts) measures its digest while
   * streaming and drops it on a mismatch so the next pull downloads it
   * again, and `capsa save` checks the diff-id of what it
   * reads. The unpacked layer, not
   * this blob, is what containers use, and it is published the same way
   * (rename, no fsync). Syncing here cost a second write-out of every
   * compressed byte on the pull's critical path.
   */
  async commit(measured?: string): Promise<void> {
    if (this.done) return;
    const handle = this.handle;
    if (!handle) throw new Error(`blob ${this.digest}: ingest already closed`);
    try {
      await this.settle();
      if (this.writeError) throw this.writeError;
      if (this.written !== this.expectedSize) {
        throw new SizeMismatchError(`blob ${this.digest}`, this.expectedSize, this.written);
      }
      const actual = this.hash ? 'sha256:' + this.hash.digest('hex') : measured;
      if (actual === undefined) throw new Error(`blob ${this.digest}: ingest opened without hashing needs the measured digest`);
      if (actual !== this.digest) throw new DigestMismatchError(`blob ${this.digest}`, this.digest, actual);
      await handle.close();
      this.handle = undefined;
      await fs.rename(this.tmpPath, this.store.blobPath(this.digest));
      this.done = true;
    } catch (err) {
      await this.abort(false);
      throw err;
    } finally {
      this.store._releaseIngest(this.digest);
    }
  }

  /**
   * Closes the ingest. With `keepPartial` the bytes written so far stay in
   * tmp/ so the next pull resumes with a Range request.
   */
  async abort(keepPartial: boolean): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.settle();
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close().catch(() => undefined);
    // A failed write leaves a hole: the bytes after it cannot be resumed from.
    if (this.writeError) keepPartial = false;
    if (!keepPartial || this.written === 0) await fs.rm(this.tmpPath, { force: true });
    this.store._releaseIngest(this.digest);
  }
}

export class ImageStore {
  readonly root: string;
  private readonly inflight = new Map<string, Promise<unknown>>();
  private readonly ingesting = new Set<string>();
  private indexLock: Promise<void> = Promise.resolve();
  private busy = 0;

  constructor(root: string) {
    if (!path.isAbsolute(root)) throw new InvalidArgumentError(`store root must be an absolute path, got ${JSON.stringify(root)}`);
    this.root = root;
    for (const d of ['blobs/sha256', 'layers/sha256', 'tmp']) mkdirSync(path.join(root, d), { recursive: true, mode: 0o700 });
    // each layer is unpacked in a directory of its own made here (createLayer)
    setTopDir(path.join(root, 'layers'));
  }

  // ---- paths ----

  blobPath(digest: string): string {
    return path.join(this.root, 'blobs', 'sha256', digestHex(digest));
  }

  layerPath(diffId: string): string {
    return path.join(this.root, 'layers', 'sha256', digestHex(diffId));
  }

  private layerInfoPath(diffId: string): string {
    return this.layerPath(diffId) + '.json';
  }

  private get indexPath(): string {
    return path.join(this.root, 'images.json');
  }

  // ---- in-flight work ----

  /**
   * Runs `fn` once per `key` at a time in this process: a second caller with
   * the same key while the first runs gets the first's promise.
   */
  once<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const running = this.inflight.get(key);
    if (running) return running as Promise<T>;
    this.busy++;
    const p = (async () => {
      try {
        return await fn();
      } finally {
        this.inflight.delete(key);
        this.busy--;
      }
    })();
    this.inflight.set(key, p);
    return p;
  }

  /** Marks the store busy (garbage collection of unreferenced content waits) for the duration of `fn`. */
  async hold<T>(fn: () => Promise<T>): Promise<T> {
    this.busy++;
    try {
      return await fn();
    } finally {
      this.busy--;
    }
  }

  // ---- blobs ----

  /** True when a verified blob with this digest is present. */
  async hasBlob(digest: string): Promise<boolean> {
    try {
      return (await fs.stat(this.blobPath(digest))).isFile();
    } catch {
      return false;
    }
  }

  /**
   * A small blob (a config, a manifest) whole. `limit` bounds it: a manifest
   * may name a large layer's digest as its config, and that blob may be here.
   */
  async readBlob(digest: string, limit: Limit = LIMITS.config): Promise<Buffer> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(this.blobPath(digest), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ImageNotFoundError(`blob ${digest} is not in the store`);
      throw err;
    }
    try {
      checkSize(limit, `${limit.name} blob ${digest}`, (await fh.stat()).size);
      return await readCapped(fh.createReadStream({ autoClose: false }), limit, `${limit.name} blob ${digest}`);
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  /** Stores small content (a manifest, a config) after checking it against `expectedDigest`. */
  async putBlob(bytes: Uint8Array, expectedDigest?: string): Promise<string> {
    const digest = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
    if (expectedDigest !== undefined && digest !== expectedDigest) {
      throw new DigestMismatchError(`blob ${expectedDigest}`, expectedDigest, digest);
    }
    if (await this.hasBlob(digest)) return digest;
    const tmp = path.join(this.root, 'tmp', `put-${randomBytes(8).toString('hex')}`);
    try {
      const fh = await fs.open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.rename(tmp, this.blobPath(digest));
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    return digest;
  }

  /**
   * Opens an ingest for the blob `digest` of `size` bytes. If an earlier
   * ingest of it was interrupted, its bytes are kept (re-hashed) and
   * `offset` says where to resume. One ingest per digest at a time. With
   * `hash: false` the writer does not hash (the caller measures the same
   * bytes already, partial ones included) and `commit` takes that digest.
   */
  async ingest(digest: string, size: number, opts: { hash?: boolean } = {}): Promise<BlobWriter> {
    const hashing = opts.hash ?? true;
    assertDigest(digest);
    if (!Number.isSafeInteger(size) || size < 0) throw new InvalidArgumentError(`blob ${digest}: invalid size ${size}`);
    if (this.ingesting.has(digest)) throw new Error(`blob ${digest}: already being ingested`);
    this.ingesting.add(digest);
    const tmp = path.join(this.root, 'tmp', `${digestHex(digest)}.partial`);
    try {
      const hash = hashing ? createHash('sha256') : undefined;
      let offset = 0;
      try {
        const st = await fs.stat(tmp);
        if (st.size > 0 && st.size <= size) {
          if (hash) for await (const chunk of createReadStream(tmp)) hash.update(chunk as Buffer);
          offset = st.size;
        } else {
          await fs.rm(tmp, { force: true });
        }
      } catch {
        // no partial
      }
      const handle = await fs.open(tmp, offset > 0 ? 'a' : 'w', 0o600);
      return new BlobWriter(this, digest, size, tmp, handle, hash, offset);
    } catch (err) {
      this.ingesting.delete(digest);
      throw err;
    }
  }

  /** A fresh private directory under tmp/ for staging work (an archive being loaded); recover() clears it after a crash. */
  async stagingDir(): Promise<string> {
    return fs.mkdtemp(path.join(this.root, 'tmp', 'stage-'));
  }

  /**
   * Publishes `file` (under tmp/, on the store's filesystem) as the blob
   * `digest`. The caller must have measured that digest over exactly the
   * file's bytes while writing it; the file is moved, not copied.
   */
  async adoptBlob(file: string, digest: string): Promise<void> {
    assertDigest(digest);
    if (await this.hasBlob(digest)) {
      await fs.rm(file, { force: true });
      return;
    }
    const fh = await fs.open(file, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(file, this.blobPath(digest));
  }

  /** Deletes blob `digest` after its bytes were found not to be that digest (a blob torn by a power loss), so the next pull fetches it again. */
  async dropCorruptBlob(digest: string): Promise<void> {
    assertDigest(digest);
    await fs.rm(this.blobPath(digest), { force: true });
  }

  /** @internal */
  _releaseIngest(digest: string): void {
    this.ingesting.delete(digest);
  }

  // ---- layers ----

  async hasLayer(diffId: string): Promise<boolean> {
    try {
      return (await fs.lstat(this.layerPath(diffId))).isDirectory();
    } catch {
      return false;
    }
  }

  async layerInfo(diffId: string): Promise<LayerInfo | undefined> {
    try {
      return JSON.parse(await fs.readFile(this.layerInfoPath(diffId), 'utf8')) as LayerInfo;
    } catch {
      return (await this.hasLayer(diffId)) ? { diffId, size: 0 } : undefined;
    }
  }

  /**
   * Creates the layer `expectedDiffId`: `fill` unpacks into a fresh
   * temporary directory and returns the diff-id and size it measured; only
   * if the diff-id matches is the directory renamed into place. On any error
   * the temporary directory is removed.
   */
  async createLayer(
    expectedDiffId: string,
    fill: (dir: string) => Promise<{ diffId: string; size: number; digest?: string; tarSize?: number }>,
  ): Promise<LayerInfo> {
    assertDigest(expectedDiffId);
    const layers = path.join(this.root, 'layers');
    const tmp = await fs.mkdtemp(path.join(layers, 'tmp-'));
    try {
      // The layer root is the container's `/`: 0755 like every rootfs.
      await fs.chmod(tmp, 0o755);
      const result = await fill(tmp);
      if (result.diffId !== expectedDiffId) {
        throw new DigestMismatchError(`layer ${result.digest ?? expectedDiffId}: uncompressed content (diff-id)`, expectedDiffId, result.diffId);
      }
      const info: LayerInfo = { diffId: expectedDiffId, digest: result.digest, size: result.size, tarSize: result.tarSize };
      await writeFileAtomic(this.layerInfoPath(expectedDiffId), JSON.stringify(info), 0o600);
      try {
        await fs.rename(tmp, this.layerPath(expectedDiffId));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // Another process made the same layer meanwhile: theirs is as good as ours.
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
        await removeTree(tmp);
      }
      return info;
    } catch (err) {
      await removeTree(tmp);
      throw err;
    }
  }

  // ---- images ----

  private async readIndex(): Promise<IndexFile> {
    let text: string;
    try {
      text = await fs.readFile(this.indexPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: INDEX_VERSION, tags: {}, manifests: {}, images: {} };
      throw err;
    }
    const parsed = JSON.parse(text) as IndexFile;
    if (parsed.version !== INDEX_VERSION) throw new Error(`${this.indexPath}: unsupported version ${String(parsed.version)}`);
    return parsed;
  }

  /** Serialises read-modify-write of images.json. */
  private async updateIndex<T>(fn: (index: IndexFile) => Promise<T> | T): Promise<T> {
    const prev = this.indexLock;
    let release!: () => void;
    this.indexLock = new Promise<void>((r) => (release = r));
    await prev;
    try {
      const index = await this.readIndex();
      const result = await fn(index);
      await writeFileAtomic(this.indexPath, JSON.stringify(index, null, 1) + '\n', 0o600);
      return result;
    } finally {
      release();
    }
  }

  private async withIndex<T>(fn: (index: IndexFile) => T): Promise<T> {
    await this.indexLock;
    return fn(await this.readIndex());
  }

  private static record(index: IndexFile, id: string): ImageRecord {
    const r = index.images[id];
    const references = Object.keys(index.tags)
      .filter((t) => index.manifests[index.tags[t]] === id)
      .sort();
    return { ...r, references };
  }

  /**
   * Records a pulled image whose blobs and layers are all present, and points
   * `image.reference` (if a tag) at its manifest. A tag that pointed elsewhere
   * moves, as in Docker; the old image stays, untagged.
   */
  async addImage(image: NewImage): Promise<ImageRecord> {
    const { config } = image;
    for (const d of [image.manifestDigest, image.configDigest]) {
      if (!(await this.hasBlob(d))) throw new Error(`cannot record image: blob ${d} is not in the store`);
    }
    let size = 0;
    for (const diffId of config.rootfs.diff_ids) {
      const info = await this.layerInfo(diffId);
      if (!info) throw new Error(`cannot record image: layer ${diffId} is not in the store`);
      size += info.size;
    }
    const repoDigests = image.repository ? [`${repositoryName(image.repository)}@${image.repoDigest}`] : [];
    return this.updateIndex((index) => {
      const id = image.configDigest;
      const old = index.images[id];
      index.images[id] = {
        id,
        manifestDigest: image.manifestDigest,
        manifestMediaType: image.manifestMediaType,
        manifestDigests: union(old?.manifestDigests, [image.manifestDigest]),
        repoDigests: union(old?.repoDigests, repoDigests),
        diffIds: [...config.rootfs.diff_ids],
        layers: image.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
        created: config.created,
        size,
        os: config.os,
        architecture: config.architecture,
        ...(config.variant ? { variant: config.variant } : {}),
        pulledAt: new Date().toISOString(),
      };
      index.manifests[image.manifestDigest] = id;
      if (image.repoDigest !== image.manifestDigest) index.manifests[image.repoDigest] ??= id;
      if (image.reference?.tag !== undefined) {
        index.tags[formatReference({ ...image.reference, digest: undefined })] = image.manifestDigest;
      }
      return ImageStore.record(index, id);
    });
  }

  /** All images, newest pull first. */
  async list(): Promise<ImageRecord[]> {
    return this.withIndex((index) =>
      Object.keys(index.images)
        .map((id) => ImageStore.record(index, id))
        .sort((a, b) => b.pulledAt.localeCompare(a.pulledAt)),
    );
  }

  /**
   * Finds a local image the way `docker image inspect` does: a full id
   * (`sha256:…`), then a reference (tag, or `repo@digest`), then a unique id
   * prefix. Undefined if nothing matches; AmbiguousImageError for a prefix
   * matching several.
   */
  async resolve(refOrId: string): Promise<ImageRecord | undefined> {
    return this.withIndex((index) => {
      const id = ImageStore.lookup(index, refOrId);
      return id === undefined ? undefined : ImageStore.record(index, id);
    });
  }

  private static lookup(index: IndexFile, refOrId: string): string | undefined {
    if (isDigest(refOrId)) return index.images[refOrId] ? refOrId : undefined;
    if (/^[0-9a-f]{64}$/.test(refOrId) && index.images[`sha256:${refOrId}`]) return `sha256:${refOrId}`;
    let ref: ImageReference | undefined;
    try {
      ref = parseReference(refOrId);
    } catch {
      ref = undefined;
    }
    if (ref) {
      if (ref.digest !== undefined) {
        const repoDigest = `${repositoryName(ref)}@${ref.digest}`;
        for (const r of Object.values(index.images)) {
          if (r.repoDigests.includes(repoDigest)) return r.id;
        }
        const byManifest = index.manifests[ref.digest];
        if (byManifest && index.images[byManifest]?.repoDigests.some((d) => d.startsWith(repositoryName(ref) + '@'))) {
          return byManifest;
        }
        return undefined;
      }
      const manifest = index.tags[formatReference(ref)];
      if (manifest !== undefined && index.images[index.manifests[manifest]]) return index.manifests[manifest];
    }
    const m = /^(?:sha256:)?([0-9a-f]{1,63})$/.exec(refOrId);
    if (m) {
      const hits = Object.keys(index.images).filter((id) => id.startsWith(`sha256:${m[1]}`));
      if (hits.length === 1) return hits[0];
      if (hits.length > 1) throw new AmbiguousImageError(refOrId, hits.length);
    }
    return undefined;
  }

  /** Like `resolve`, but throws ImageNotFoundError naming the reference. */
  async get(refOrId: string): Promise<ImageRecord> {
    const r = await this.resolve(refOrId);
    if (!r) throw new ImageNotFoundError(`no such image: ${refOrId}`);
    return r;
  }

  /** The image's config, from the store. */
  async config(image: ImageRecord | string): Promise<ImageConfig> {
    const id = typeof image === 'string' ? (await this.get(image)).id : image.id;
    return JSON.parse((await this.readBlob(id)).toString('utf8')) as ImageConfig;
  }

  /**
   * Directories of the image's unpacked layers, top-most FIRST: the order of
   * overlayfs's `lowerdir=` option. Throws if one is missing.
   */
  async layerDirs(image: ImageRecord | string): Promise<string[]> {
    const record = typeof image === 'string' ? await this.get(image) : image;
    const dirs: string[] = [];
    for (const diffId of [...record.diffIds].reverse()) {
      if (!(await this.hasLayer(diffId))) {
        throw new ImageNotFoundError(`layer ${diffId} of image ${record.id} is missing from the store; pull the image again`);
      }
      dirs.push(this.layerPath(diffId));
    }
    return dirs;
  }

  /** Points `target` (a tag reference) at the image `source` names. */
  async tag(source: string, target: string): Promise<ImageRecord> {
    const ref = parseReference(target);
    if (ref.digest !== undefined || ref.tag === undefined) throw new InvalidArgumentError(`cannot tag with a digest reference: ${target}`);
    return this.updateIndex((index) => {
      const id = ImageStore.lookup(index, source);
      if (!id) throw new ImageNotFoundError(`no such image: ${source}`);
      index.tags[formatReference(ref)] = index.images[id].manifestDigest;
      return ImageStore.record(index, id);
    });
  }

  /**
   * `docker rmi`: a reference with other references on the same image only
   * untags; the last reference, or an id, deletes the image and whatever
   * blobs and layers no other image uses. Refused without `force` while a
   * container uses the image (force then only untags, as Docker does) or
   * when an id names an image with several references.
   */
  async remove(refOrId: string, opts: RemoveOptions = {}): Promise<RemoveResult> {
    const inUse = opts.inUse ?? (() => false);
    const result = await this.updateIndex((index) => {
      const id = ImageStore.lookup(index, refOrId);
      if (!id) throw new ImageNotFoundError(`no such image: ${refOrId}`);
      const record = ImageStore.record(index, id);
      const out: RemoveResult = { untagged: [], deleted: [] };
      let byRef: string | undefined;
      try {
        const ref = parseReference(refOrId);
        if (ref.digest === undefined && record.references.includes(formatReference(ref))) byRef = formatReference(ref);
      } catch {
        byRef = undefined;
      }
      if (byRef !== undefined && record.references.length > 1) {
        delete index.tags[byRef];
        out.untagged.push(byRef);
        return out;
      }
      if (byRef === undefined && record.references.length > 1 && !opts.force) {
        throw new ImageInUseError(
          `unable to delete ${shortId(id)} (must be forced): image is referenced in multiple repositories (${record.references.join(', ')})`,
        );
      }
      if (inUse(id)) {
        if (!opts.force) {
          throw new ImageInUseError(
            `unable to remove ${byRef ? `repository reference ${JSON.stringify(refOrId)}` : `image ${shortId(id)}`} (must force): a container is using image ${shortId(id)}`,
          );
        }
        for (const r of record.references) {
          delete index.tags[r];
          out.untagged.push(r);
        }
        return out;
      }
      for (const r of record.references) {
        delete index.tags[r];
        out.untagged.push(r);
      }
      for (const [m, i] of Object.entries(index.manifests)) if (i === id) delete index.manifests[m];
      delete index.images[id];
      out.untagged.push(...record.repoDigests);
      out.deleted.push(id);
      return out;
    });
    if (result.deleted.length > 0) result.deleted.push(...(await this.collectGarbage()));
    return result;
  }

  /** `docker image prune`: deletes untagged images (all unused images with `all`) that no container uses. */
  async prune(opts: { all?: boolean; inUse?: (id: string) => boolean } = {}): Promise<{ deleted: string[]; reclaimed: number }> {
    const inUse = opts.inUse ?? (() => false);
    const before = await this.diskUsage();
    const deleted = await this.updateIndex((index) => {
      const ids: string[] = [];
      for (const id of Object.keys(index.images)) {
        const rec = ImageStore.record(index, id);
        if (inUse(id) || (!opts.all && rec.references.length > 0)) continue;
        for (const r of rec.references) delete index.tags[r];
        for (const [m, i] of Object.entries(index.manifests)) if (i === id) delete index.manifests[m];
        delete index.images[id];
        ids.push(id);
      }
      return ids;
    });
    deleted.push(...(await this.collectGarbage(true)));
    const after = await this.diskUsage();
    const reclaimed = Math.max(0, before.layers.size + before.blobs.size - after.layers.size - after.blobs.size);
    return { deleted, reclaimed };
  }

  /**
   * Deletes blobs and layers no image record uses, and (with `tmp`) leftover
   * temporary files. Skipped while pulls run, since those create content
   * before they record the image that uses it.
   */
  async collectGarbage(tmp = false): Promise<string[]> {
    if (this.busy > 0) return [];
    const index = await this.withIndex((i) => i);
    const keepBlobs = new Set<string>();
    const keepLayers = new Set<string>();
    for (const r of Object.values(index.images)) {
      keepBlobs.add(r.id);
      for (const m of r.manifestDigests) keepBlobs.add(m);
      for (const d of r.repoDigests) keepBlobs.add(d.slice(d.lastIndexOf('@') + 1));
      for (const l of r.layers) keepBlobs.add(l.digest);
      for (const d of r.diffIds) keepLayers.add(d);
    }
    const deleted: string[] = [];
    const blobDir = path.join(this.root, 'blobs', 'sha256');
    for (const hex of await fs.readdir(blobDir)) {
      if (this.busy > 0) break;
      if (keepBlobs.has(`sha256:${hex}`)) continue;
      await fs.rm(path.join(blobDir, hex), { force: true });
      deleted.push(`sha256:${hex}`);
    }
    const layerDir = path.join(this.root, 'layers', 'sha256');
    for (const name of await fs.readdir(layerDir)) {
      if (this.busy > 0) break;
      const hex = name.endsWith('.json') ? name.slice(0, -5) : name;
      if (!/^[0-9a-f]{64}$/.test(hex) || keepLayers.has(`sha256:${hex}`)) continue;
      if (name.endsWith('.json')) {
        await fs.rm(path.join(layerDir, name), { force: true });
        continue;
      }
      // Rename first so a half-deleted layer is never visible under its diff-id.
      const doomed = path.join(this.root, 'layers', `tmp-del-${randomBytes(6).toString('hex')}`);
      await fs.rename(path.join(layerDir, name), doomed);
      await removeTree(doomed);
      deleted.push(`sha256:${hex}`);
    }
    if (tmp && this.busy === 0) {
      for (const name of await fs.readdir(path.join(this.root, 'layers'))) {
        if (name.startsWith('tmp-')) await removeTree(path.join(this.root, 'layers', name));
      }
      for (const name of await fs.readdir(path.join(this.root, 'tmp'))) await fs.rm(path.join(this.root, 'tmp', name), { force: true, recursive: true });
    }
    return deleted;
  }

  /**
   * Removes what a crash can leave behind: half-unpacked layer directories,
   * half-written small blobs and index files. Partial blob downloads
   * (`tmp/<hex>.partial`) are kept: the next pull resumes them. Call once at
   * helper start, before any pull.
   */
  async recover(): Promise<void> {
    if (this.busy > 0) return;
    for (const name of await fs.readdir(path.join(this.root, 'layers'))) {
      if (name.startsWith('tmp-')) await removeTree(path.join(this.root, 'layers', name));
    }
    for (const name of await fs.readdir(path.join(this.root, 'tmp'))) {
      if (!/^[0-9a-f]{64}\.partial$/.test(name)) await fs.rm(path.join(this.root, 'tmp', name), { recursive: true, force: true });
    }
    for (const name of await fs.readdir(this.root)) {
      if (name.startsWith('.images.json.') && name.endsWith('.tmp')) await fs.rm(path.join(this.root, name), { force: true });
    }
  }

  /** `docker system df` for images: sizes of records, unpacked layers and blobs. */
  async diskUsage(inUse: (id: string) => boolean = () => false): Promise<DiskUsage> {
    const images = await this.list();
    const layerSizes = new Map<string, number>();
    const layerDir = path.join(this.root, 'layers', 'sha256');
    for (const name of await fs.readdir(layerDir)) {
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      const info = await this.layerInfo(`sha256:${name}`);
      layerSizes.set(`sha256:${name}`, info?.size ?? 0);
    }
    let blobCount = 0;
    let blobSize = 0;
    const blobDir = path.join(this.root, 'blobs', 'sha256');
    for (const hex of await fs.readdir(blobDir)) {
      const st = await fs.stat(path.join(blobDir, hex)).catch(() => undefined);
      if (!st) continue;
      blobCount++;
      blobSize += st.size;
    }
    const usedByActive = new Set<string>();
    for (const r of images) if (inUse(r.id)) r.diffIds.forEach((d) => usedByActive.add(d));
    let reclaimable = 0;
    for (const [d, s] of layerSizes) if (!usedByActive.has(d)) reclaimable += s;
    let total = 0;
    for (const s of layerSizes.values()) total += s;
    return {
      images: { count: images.length, active: images.filter((r) => inUse(r.id)).length, size: total, reclaimable },
      layers: { count: layerSizes.size, size: total },
      blobs: { count: blobCount, size: blobSize },
    };
  }
}

/** `sha256:0123456789ab…` → `0123456789ab`, as Docker prints ids. */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

function union(a: string[] | undefined, b: string[]): string[] {
  return [...new Set([...(a ?? []), ...b])];
}

/**
 * Removes a directory tree that may contain read-only directories and files
 * with immutable-looking modes (layers do): fs.rm handles modes as root.
 */
export async function removeTree(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true, maxRetries: 2 });
}
