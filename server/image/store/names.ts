/**
 * Names: images.json, the store's one mutable document. Tags and
 * references → manifest digest → image id → image record. It is rewritten
 * atomically (temporary file, fsync, rename) and only after everything it
 * names exists, so a crash at any moment leaves either the old or the new
 * state. Read-modify-write is serialised in this process.
 */
import { promises as fs } from 'node:fs';
import { InvalidArgumentError } from '../../errors';
import { writeFileAtomic } from '../../util/atomic';
import { AmbiguousImageError, ImageInUseError, ImageNotFoundError } from '../errors';
import { formatReference, isDigest, parseReference, repositoryName, type ImageReference } from '../reference';
import type { Descriptor, ImageConfig } from '../types';

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

export interface IndexFile {
  version: 1;
  /** Normalised `registry/repo:tag` → manifest digest. */
  tags: Record<string, string>;
  /** Manifest digest → image id. */
  manifests: Record<string, string>;
  /** Image id → record (references are derived from `tags`). */
  images: Record<string, Omit<ImageRecord, 'references'>>;
}

const INDEX_VERSION = 1;

export class Names {
  private lock: Promise<void> = Promise.resolve();

  constructor(private readonly indexPath: string) {}

  private async read(): Promise<IndexFile> {
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

  /** Runs `fn` with the index while no other update runs; with `write` the index it leaves is written back. */
  private async locked<T>(write: boolean, fn: (index: IndexFile) => Promise<T> | T): Promise<T> {
    const prev = this.lock;
    let release!: () => void;
    this.lock = new Promise<void>((r) => (release = r));
    await prev;
    try {
      const index = await this.read();
      const result = await fn(index);
      if (write) await writeFileAtomic(this.indexPath, JSON.stringify(index, null, 1) + '\n', 0o600);
      return result;
    } finally {
      release();
    }
  }

  /** Serialises read-modify-write of images.json. */
  update<T>(fn: (index: IndexFile) => Promise<T> | T): Promise<T> {
    return this.locked(true, fn);
  }

  /** Holds off every update while `fn` runs (garbage collection marks and sweeps under it). */
  exclusive<T>(fn: (index: IndexFile) => Promise<T> | T): Promise<T> {
    return this.locked(false, fn);
  }

  /** The index as it stands once the updates queued before this call are written. */
  async snapshot<T>(fn: (index: IndexFile) => T): Promise<T> {
    await this.lock;
    return fn(await this.read());
  }

  /**
   * Records an image whose blobs and layers are all present (the caller
   * checked: `size` is the sum of its layers), and points `image.reference`
   * (if a tag) at its manifest. A tag that pointed elsewhere moves, as in
   * Docker; the old image stays, untagged.
   */
  add(image: NewImage, size: number): Promise<ImageRecord> {
    const { config } = image;
    const repoDigests = image.repository ? [`${repositoryName(image.repository)}@${image.repoDigest}`] : [];
    return this.update((index) => {
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
      return record(index, id);
    });
  }

  /** All images, newest pull first. */
  list(): Promise<ImageRecord[]> {
    return this.snapshot((index) =>
      Object.keys(index.images)
        .map((id) => record(index, id))
        .sort((a, b) => b.pulledAt.localeCompare(a.pulledAt)),
    );
  }

  /** See ImageStore.resolve. */
  resolve(refOrId: string): Promise<ImageRecord | undefined> {
    return this.snapshot((index) => {
      const id = lookup(index, refOrId);
      return id === undefined ? undefined : record(index, id);
    });
  }

  /** Points `target` (a tag reference) at the image `source` names. */
  async tag(source: string, target: string): Promise<ImageRecord> {
    const ref = parseReference(target);
    if (ref.digest !== undefined || ref.tag === undefined) throw new InvalidArgumentError(`cannot tag with a digest reference: ${target}`);
    return this.update((index) => {
      const id = lookup(index, source);
      if (!id) throw new ImageNotFoundError(`no such image: ${source}`);
      index.tags[formatReference(ref)] = index.images[id].manifestDigest;
      return record(index, id);
    });
  }

  /** The record part of ImageStore.remove: untags, and deletes the record when that was its last name. */
  remove(refOrId: string, opts: RemoveOptions): Promise<RemoveResult> {
    const inUse = opts.inUse ?? (() => false);
    return this.update((index) => {
      const id = lookup(index, refOrId);
      if (!id) throw new ImageNotFoundError(`no such image: ${refOrId}`);
      const rec = record(index, id);
      const out: RemoveResult = { untagged: [], deleted: [] };
      let byRef: string | undefined;
      try {
        const ref = parseReference(refOrId);
        if (ref.digest === undefined && rec.references.includes(formatReference(ref))) byRef = formatReference(ref);
      } catch {
        byRef = undefined;
      }
      if (byRef !== undefined && rec.references.length > 1) {
        delete index.tags[byRef];
        out.untagged.push(byRef);
        return out;
      }
      if (byRef === undefined && rec.references.length > 1 && !opts.force) {
        throw new ImageInUseError(
          `unable to delete ${shortId(id)} (must be forced): image is referenced in multiple repositories (${rec.references.join(', ')})`,
        );
      }
      if (inUse(id)) {
        if (!opts.force) {
          throw new ImageInUseError(
            `unable to remove ${byRef ? `repository reference ${JSON.stringify(refOrId)}` : `image ${shortId(id)}`} (must force): a container is using image ${shortId(id)}`,
          );
        }
        for (const r of rec.references) {
          delete index.tags[r];
          out.untagged.push(r);
        }
        return out;
      }
      for (const r of rec.references) {
        delete index.tags[r];
        out.untagged.push(r);
      }
      forget(index, id);
      out.untagged.push(...rec.repoDigests);
      out.deleted.push(id);
      return out;
    });
  }

  /** The record part of ImageStore.prune: deletes untagged (with `all`, every) image no container uses; returns their ids. */
  prune(all: boolean, inUse: (id: string) => boolean): Promise<string[]> {
    return this.update((index) => {
      const ids: string[] = [];
      for (const id of Object.keys(index.images)) {
        const rec = record(index, id);
        if (inUse(id) || (!all && rec.references.length > 0)) continue;
        for (const r of rec.references) delete index.tags[r];
        forget(index, id);
        ids.push(id);
      }
      return ids;
    });
  }
}

function forget(index: IndexFile, id: string): void {
  for (const [m, i] of Object.entries(index.manifests)) if (i === id) delete index.manifests[m];
  delete index.images[id];
}

function record(index: IndexFile, id: string): ImageRecord {
  const r = index.images[id];
  const references = Object.keys(index.tags)
    .filter((t) => index.manifests[index.tags[t]] === id)
    .sort();
  return { ...r, references };
}

/**
 * Finds a local image the way `docker image inspect` does: a full id
 * (`sha256:…`), then a reference (tag, or `repo@digest`), then a unique id
 * prefix. Undefined if nothing matches; AmbiguousImageError for a prefix
 * matching several.
 */
function lookup(index: IndexFile, refOrId: string): string | undefined {
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

/** `sha256:0123456789ab…` → `0123456789ab`, as Docker prints ids. */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

function union(a: string[] | undefined, b: string[]): string[] {
  return [...new Set([...(a ?? []), ...b])];
}
