/**
 * The content-addressed image store, all under one root (./layout names the
 * paths). Nothing is visible under a digest it has not proven: blobs are
 * ingested into tmp/ while hashed and renamed into blobs/ only by `commit`
 * (./ingest, ./blobs), layers are unpacked into layers/tmp-* and renamed to
 * their diff-id only after the uncompressed stream's sha256 matched
 * (./layers). images.json (./names) is rewritten atomically and only after
 * everything it names exists, so a crash at any moment leaves either the old
 * or the new state. Work in progress holds leases (./leases) on what it has
 * not recorded yet; garbage collection (./gc) keeps what records or leases
 * reference and deletes the rest.
 *
 * This class is the store's one face: it composes those parts and adds the
 * operations that span several (recording an image checks blobs and layers,
 * removing one collects garbage).
 *
 * Names are per owner (a uid): every operation on names takes the namespace
 * it acts in, root's when none is given (the store's one namespace before
 * there were several). Content is shared across namespaces.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { setTopDir } from '../libc';
import { LIMITS, type Limit } from '../../limits';
import { ImageNotFoundError } from '../errors';
import type { ImageConfig } from '../types';
import { Blobs } from './blobs';
import { collectGarbage, recover, type GcResult } from './gc';
import { Ingests, type BlobWriter } from './ingest';
import { StoreLayout } from './layout';
import { Leases, type Lease } from './leases';
import { Layers, type LayerFill, type LayerInfo } from './layers';
import { Names, ROOT_OWNER, type ImageRecord, type NewImage, type Owner, type RemoveOptions, type RemoveResult } from './names';
import { diskUsage, type DiskUsage } from './usage';

export { BlobWriter } from './ingest';
export { Lease, Leases } from './leases';
export { removeTree, type LayerFill, type LayerInfo } from './layers';
export { ROOT_OWNER, shortId, type ImageRecord, type NewImage, type Owner, type RemoveOptions, type RemoveResult } from './names';
export type { DiskUsage } from './usage';
export type { GcResult } from './gc';

export class ImageStore {
  readonly root: string;
  /** Work in progress and what it holds; garbage collection keeps all of it. */
  readonly leases = new Leases();
  private readonly layout: StoreLayout;
  private readonly blobs: Blobs;
  private readonly layers: Layers;
  private readonly ingests: Ingests;
  private readonly names: Names;
  private readonly inflight = new Map<string, Promise<unknown>>();

  constructor(root: string) {
    this.layout = new StoreLayout(root);
    this.root = this.layout.root;
    this.blobs = new Blobs(this.layout, this.leases);
    this.layers = new Layers(this.layout, this.leases);
    this.ingests = new Ingests(this.layout, this.leases);
    this.names = new Names(this.layout.indexPath);
    // each layer is unpacked in a directory of its own made here (createLayer)
    setTopDir(this.layout.layersRoot);
  }

  // ---- paths ----

  blobPath(digest: string): string {
    return this.layout.blobPath(digest);
  }

  layerPath(diffId: string): string {
    return this.layout.layerPath(diffId);
  }

  // ---- work in progress ----

  /**
   * Runs `fn` once per `key` at a time in this process: a second caller with
   * the same key while the first runs gets the first's promise.
   */
  once<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const running = this.inflight.get(key);
    if (running) return running as Promise<T>;
    const p = (async () => {
      try {
        return await fn();
      } finally {
        this.inflight.delete(key);
      }
    })();
    this.inflight.set(key, p);
    return p;
  }

  /** Runs `fn` under a lease named `label` (`pull of …`), ended however `fn` ends. */
  withLease<T>(label: string, fn: (lease: Lease) => Promise<T>): Promise<T> {
    return this.leases.with(label, fn);
  }

  // ---- blobs ----

  /** True when a verified blob with this digest is present. */
  hasBlob(digest: string): Promise<boolean> {
    return this.blobs.has(digest);
  }

  /** A small blob (a config, a manifest) whole, bounded by `limit`. */
  readBlob(digest: string, limit: Limit = LIMITS.config): Promise<Buffer> {
    return this.blobs.read(digest, limit);
  }

  /** Stores small content (a manifest, a config) after checking it against `expectedDigest`. */
  putBlob(bytes: Uint8Array, expectedDigest?: string): Promise<string> {
    return this.blobs.put(bytes, expectedDigest);
  }

  /** Opens an ingest for the blob `digest` of `size` bytes (see Ingests.ingest). */
  ingest(digest: string, size: number, opts: { hash?: boolean } = {}): Promise<BlobWriter> {
    return this.ingests.ingest(digest, size, opts);
  }

  /**
   * A fresh private directory under tmp/ for staging work (an archive being
   * loaded), held by `lease` until it ends; recover() clears it after a crash.
   */
  async stagingDir(lease: Lease): Promise<string> {
    const dir = path.join(this.layout.tmpDir, `stage-${randomBytes(8).toString('hex')}`);
    await lease.add(this.layout.tmpResource(dir));
    await fs.mkdir(dir, { mode: 0o700 });
    return dir;
  }

  /** Publishes `file` (under tmp/) as the blob `digest`, which the caller measured over exactly its bytes. */
  adoptBlob(file: string, digest: string): Promise<void> {
    return this.blobs.adopt(file, digest);
  }

  /** Deletes blob `digest` after its bytes were found not to be that digest, so the next pull fetches it again. */
  dropCorruptBlob(digest: string): Promise<void> {
    return this.blobs.dropCorrupt(digest);
  }

  // ---- layers ----

  hasLayer(diffId: string): Promise<boolean> {
    return this.layers.has(diffId);
  }

  layerInfo(diffId: string): Promise<LayerInfo | undefined> {
    return this.layers.info(diffId);
  }

  /** Creates the layer `expectedDiffId` with `fill`, proven against it (see Layers.create). */
  createLayer(expectedDiffId: string, fill: (dir: string) => Promise<LayerFill>, opts: { lease?: Lease } = {}): Promise<LayerInfo> {
    return this.layers.create(expectedDiffId, fill, opts);
  }

  // ---- images ----

  /**
   * Records a pulled image whose blobs and layers are all present in
   * `owner`'s namespace, and points `image.reference` (if a tag) there at its
   * manifest. A tag that pointed elsewhere moves, as in Docker; the old image
   * stays, untagged.
   */
  async addImage(image: NewImage, owner: Owner = ROOT_OWNER): Promise<ImageRecord> {
    for (const d of [image.manifestDigest, image.configDigest]) {
      if (!(await this.hasBlob(d))) throw new Error(`cannot record image: blob ${d} is not in the store`);
    }
    let size = 0;
    for (const diffId of image.config.rootfs.diff_ids) {
      const info = await this.layerInfo(diffId);
      if (!info) throw new Error(`cannot record image: layer ${diffId} is not in the store`);
      size += info.size;
    }
    return this.names.add(owner, image, size);
  }

  /** The images `owner` holds, newest pull first. */
  list(owner: Owner = ROOT_OWNER): Promise<ImageRecord[]> {
    return this.names.list(owner);
  }

  /** Every namespace's images, each with its owner (one row per namespace holding an image), newest first. */
  listAll(): Promise<ImageRecord[]> {
    return this.names.listAll();
  }

  /**
   * Finds a local image the way `docker image inspect` does: a full id
   * (`sha256:…`), then a reference (tag, or `repo@digest`), then a unique id
   * prefix, all in `owner`'s namespace alone. Undefined if nothing matches;
   * AmbiguousImageError for a prefix matching several.
   */
  resolve(refOrId: string, owner: Owner = ROOT_OWNER): Promise<ImageRecord | undefined> {
    return this.names.resolve(owner, refOrId);
  }

  /** Like `resolve`, but throws ImageNotFoundError naming the reference. */
  async get(refOrId: string, owner: Owner = ROOT_OWNER): Promise<ImageRecord> {
    const r = await this.resolve(refOrId, owner);
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
   * overlayfs's `lowerdir=` option. Throws if one is missing. A layer the
   * image holds twice (two RUN steps that changed nothing give the same
   * empty layer) is listed once, at its top-most place: overlayfs refuses a
   * directory twice in one lowerdir (ELOOP), and the lower copy is
   * shadowed by the upper one entirely.
   */
  async layerDirs(image: ImageRecord | string): Promise<string[]> {
    const record = typeof image === 'string' ? await this.get(image) : image;
    const dirs: string[] = [];
    for (const diffId of [...new Set([...record.diffIds].reverse())]) {
      if (!(await this.hasLayer(diffId))) {
        throw new ImageNotFoundError(`layer ${diffId} of image ${record.id} is missing from the store; pull the image again`);
      }
      dirs.push(this.layerPath(diffId));
    }
    return dirs;
  }

  /** After a push: the image `id` of `owner`'s namespace is also `repoDigest` (later pushes to that registry may mount its blobs from there). */
  addRepoDigest(id: string, repoDigest: string, owner: Owner = ROOT_OWNER): Promise<void> {
    return this.names.addRepoDigest(owner, id, repoDigest);
  }

  /** Points `target` (a tag reference) at the image `source` names, both in `owner`'s namespace. */
  tag(source: string, target: string, owner: Owner = ROOT_OWNER): Promise<ImageRecord> {
    return this.names.tag(owner, source, target);
  }

  /**
   * `docker rmi`: a reference with other references on the same image only
   * untags; the last reference, or an id, deletes the image and whatever
   * blobs and layers no other image uses. Refused without `force` while a
   * container uses the image (force then only untags, as Docker does) or
   * when an id names an image with several references. Acts in `owner`'s
   * namespace: its names go; the content goes only when no namespace holds
   * the image and no container needs it (`opts.needed`).
   */
  async remove(refOrId: string, opts: RemoveOptions = {}, owner: Owner = ROOT_OWNER): Promise<RemoveResult> {
    const result = await this.names.remove(owner, refOrId, opts);
    if (result.deleted.length > 0) result.deleted.push(...(await this.collectGarbage()).deleted);
    return result;
  }

  /**
   * `docker image prune` in `owner`'s namespace: lets go of its untagged
   * images (all unused ones with `all`) that no container of the owner uses
   * (`inUse`); content goes once no namespace holds it and no container at
   * all needs it (`needed`, default `inUse`). Records a container kept after
   * their last name went are swept here too.
   */
  async prune(
    opts: { all?: boolean; inUse?: (id: string) => boolean; needed?: (id: string) => boolean } = {},
    owner: Owner = ROOT_OWNER,
  ): Promise<{ deleted: string[]; reclaimed: number }> {
    const before = await this.diskUsage();
    const inUse = opts.inUse ?? (() => false);
    const needed = opts.needed ?? inUse;
    const deleted = await this.names.prune(owner, !!opts.all, inUse, needed);
    deleted.push(...(await this.names.sweep(needed)));
    deleted.push(...(await this.collectGarbage({ tmp: true })).deleted);
    const after = await this.diskUsage();
    const reclaimed = Math.max(0, before.layers.size + before.blobs.size - after.layers.size - after.blobs.size);
    return { deleted, reclaimed };
  }

  /**
   * Deletes blobs and layers no image record uses and no lease holds, and
   * (with `tmp`) the temporary files no lease holds. Never skipped: what work
   * in progress holds is kept, and reported in `leased`.
   */
  collectGarbage(opts: { tmp?: boolean } = {}): Promise<GcResult> {
    return collectGarbage(this.layout, this.names, this.leases, opts);
  }

  /**
   * Removes what a crash can leave behind: half-unpacked layer directories,
   * half-written small blobs and index files. Partial blob downloads
   * (`tmp/<hex>.partial`) are kept: the next pull resumes them. Call once at
   * helper start, before any pull.
   */
  recover(): Promise<void> {
    return recover(this.layout, this.leases);
  }

  /**
   * `docker system df` for images: sizes of records, unpacked layers and
   * blobs. With `owner`, only that namespace's images and the layers and
   * blobs they reference; without, the whole store.
   */
  async diskUsage(inUse: (id: string) => boolean = () => false, owner?: Owner): Promise<DiskUsage> {
    if (owner !== undefined) return diskUsage(this.layout, this.layers, await this.list(owner), inUse, { onlyReferenced: true });
    const byId = new Map((await this.listAll()).map((r) => [r.id, r]));
    return diskUsage(this.layout, this.layers, [...byId.values()], inUse);
  }
}
