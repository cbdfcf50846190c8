/**
 * Names: images.json, the store's one mutable document. Per namespace (one
 * per uid: whoever pulled, loaded or tagged) tags → manifest digest and the
 * images that namespace holds; shared by every namespace, manifest digest →
 * image id → the image's content facts. Content (blobs, layers, what an
 * image is made of) is content-addressed and verified, so it is shared;
 * names are claims, so each uid has its own and no claim reaches another
 * namespace's lookups. It is rewritten atomically (temporary file, fsync,
 * rename) and only after everything it names exists, so a crash at any
 * moment leaves either the old or the new state. Read-modify-write is
 * serialised in this process.
 */
import { promises as fs } from 'node:fs';
import { InvalidArgumentError } from '../../errors';
import { writeFileAtomic } from '../../util/atomic';
import { AmbiguousImageError, ImageInUseError, ImageNotFoundError } from '../errors';
import { formatReference, isDigest, parseReference, repositoryName, type ImageReference } from '../reference';
import type { Descriptor, ImageConfig } from '../types';

/** A namespace of names: the uid whose pulls, loads and tags they are. Root's (0) holds every name from before namespaces. */
export type Owner = number;

/** Root's namespace. */
export const ROOT_OWNER: Owner = 0;

/** One image as one namespace holds it, keyed by its id (the config digest). */
export interface ImageRecord {
  /** Image id: `sha256:` digest of the image config. */
  id: string;
  /** The namespace this record is seen through. */
  owner: Owner;
  /** Digest of the (platform-specific) manifest last pulled for this image. */
  manifestDigest: string;
  /** Media type of that manifest. */
  manifestMediaType: string;
  /** Every manifest digest this image was pulled as (by anyone: the manifest's bytes name the config). */
  manifestDigests: string[];
  /** Normalised `registry/repo:tag` references of this namespace pointing at the image. */
  references: string[];
  /** `registry/repo@sha256:…` as this namespace pulled it (the index digest when pulled through one). */
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
  /**
   * The image this one was built on by a step of `capsa build` or by
   * `commit` (Docker's Parent): `images` hides an untagged image that is
   * some other image's parent, as Docker hides intermediate images.
   */
  parent?: string;
  /** ISO time this namespace last recorded the image (a pull, a load). */
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
  /** Id of the image it was built on locally (a build step, a commit); none for a pull or a load. */
  parent?: string;
}

export interface RemoveOptions {
  /** Remove even when containers use the image or an id has several references. */
  force?: boolean;
  /** True when a container of the namespace's owner uses the image with this id (the refusal without `force`). */
  inUse?: (id: string) => boolean;
  /** True when any container, whoever owns it, uses the image: its content stays while one does. Default: `inUse`. */
  needed?: (id: string) => boolean;
}

export interface RemoveResult {
  /** References untagged. */
  untagged: string[];
  /** Image ids, blob and layer digests deleted because nothing else uses them. */
  deleted: string[];
}

/** What one namespace holds of an image besides its tags. */
interface Held {
  repoDigests: string[];
  pulledAt: string;
}

interface Namespace {
  /** Normalised `registry/repo:tag` → manifest digest. */
  tags: Record<string, string>;
  /** Image id → what this namespace holds of it; a tag names only an image held here. */
  images: Record<string, Held>;
}

/** The content facts of an image, the same whoever holds it. */
type SharedImage = Omit<ImageRecord, 'owner' | 'references' | 'repoDigests' | 'pulledAt'>;

export interface IndexFile {
  version: 2;
  /** Manifest digest → image id (a fact about the manifest's bytes). */
  manifests: Record<string, string>;
  /** Image id → content facts. A record stays while a namespace holds it or a container needs it. */
  images: Record<string, SharedImage>;
  /** Owner (decimal uid) → its names. */
  namespaces: Record<string, Namespace>;
}

/** Version 1: one namespace, which becomes root's. */
interface IndexFileV1 {
  version: 1;
  tags: Record<string, string>;
  manifests: Record<string, string>;
  images: Record<string, Omit<ImageRecord, 'references' | 'owner'>>;
}

const INDEX_VERSION = 2;

function emptyIndex(): IndexFile {
  return { version: INDEX_VERSION, manifests: {}, images: {}, namespaces: {} };
}

/** A version 1 index as version 2: its tags and images are root's. */
export function upgradeIndex(v1: IndexFileV1): IndexFile {
  const index = emptyIndex();
  index.manifests = { ...v1.manifests };
  const ns: Namespace = { tags: { ...v1.tags }, images: {} };
  for (const [id, r] of Object.entries(v1.images)) {
    const { repoDigests, pulledAt, ...shared } = r;
    index.images[id] = shared;
    ns.images[id] = { repoDigests: repoDigests ?? [], pulledAt };
  }
  index.namespaces[String(ROOT_OWNER)] = ns;
  return index;
}

export class Names {
  private lock: Promise<void> = Promise.resolve();

  constructor(private readonly indexPath: string) {}

  private async read(): Promise<IndexFile> {
    let text: string;
    try {
      text = await fs.readFile(this.indexPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyIndex();
      throw err;
    }
    const parsed = JSON.parse(text) as IndexFile | IndexFileV1;
    if (parsed.version === 1) return upgradeIndex(parsed);
    if (parsed.version !== INDEX_VERSION) throw new Error(`${this.indexPath}: unsupported version ${String((parsed as { version: unknown }).version)}`);
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
   * checked: `size` is the sum of its layers) in `owner`'s namespace, and
   * points `image.reference` (if a tag) there at its manifest. A tag that
   * pointed elsewhere moves, as in Docker; the old image stays, untagged.
   * No other namespace changes.
   */
  add(owner: Owner, image: NewImage, size: number): Promise<ImageRecord> {
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
        diffIds: [...config.rootfs.diff_ids],
        layers: image.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
        created: config.created,
        size,
        os: config.os,
        architecture: config.architecture,
        ...(config.variant ? { variant: config.variant } : {}),
        ...(image.parent ?? old?.parent ? { parent: image.parent ?? old?.parent } : {}),
      };
      const ns = namespace(index, owner, true);
      ns.images[id] = { repoDigests: union(ns.images[id]?.repoDigests, repoDigests), pulledAt: new Date().toISOString() };
      index.manifests[image.manifestDigest] = id;
      if (image.repoDigest !== image.manifestDigest) index.manifests[image.repoDigest] ??= id;
      if (image.reference?.tag !== undefined) {
        ns.tags[formatReference({ ...image.reference, digest: undefined })] = image.manifestDigest;
      }
      return record(index, owner, id);
    });
  }

  /** The images `owner` holds, newest first. */
  list(owner: Owner): Promise<ImageRecord[]> {
    return this.snapshot((index) => listIn(index, owner));
  }

  /** Every namespace's images, each seen through its owner (root's view), newest first. */
  listAll(): Promise<ImageRecord[]> {
    return this.snapshot((index) =>
      Object.keys(index.namespaces)
        .flatMap((o) => listIn(index, Number(o)))
        .sort((a, b) => b.pulledAt.localeCompare(a.pulledAt)),
    );
  }

  /** See ImageStore.resolve: in `owner`'s namespace only. */
  resolve(owner: Owner, refOrId: string): Promise<ImageRecord | undefined> {
    return this.snapshot((index) => {
      const id = lookup(index, owner, refOrId);
      return id === undefined ? undefined : record(index, owner, id);
    });
  }

  /** Points `target` (a tag reference) of `owner`'s namespace at the image `source` names there. */
  async tag(owner: Owner, source: string, target: string): Promise<ImageRecord> {
    const ref = parseReference(target);
    if (ref.digest !== undefined || ref.tag === undefined) throw new InvalidArgumentError(`cannot tag with a digest reference: ${target}`);
    return this.update((index) => {
      const id = lookup(index, owner, source);
      if (!id) throw new ImageNotFoundError(`no such image: ${source}`);
      namespace(index, owner, true).tags[formatReference(ref)] = index.images[id].manifestDigest;
      return record(index, owner, id);
    });
  }

  /** Records `repoDigest` (`registry/repo@sha256:…`) for the image `id` of `owner`'s namespace, as Docker records a push. */
  async addRepoDigest(owner: Owner, id: string, repoDigest: string): Promise<void> {
    await this.update((index) => {
      const held = namespace(index, owner, false)?.images[id];
      if (held && !held.repoDigests.includes(repoDigest)) held.repoDigests = [...held.repoDigests, repoDigest];
    });
  }

  /**
   * The record part of ImageStore.remove, in `owner`'s namespace: untags,
   * and lets go of the image when that was its last name there. The shared
   * record goes when no namespace holds it and no container needs it.
   */
  remove(owner: Owner, refOrId: string, opts: RemoveOptions): Promise<RemoveResult> {
    const inUse = opts.inUse ?? (() => false);
    const needed = opts.needed ?? inUse;
    return this.update((index) => {
      const id = lookup(index, owner, refOrId);
      if (!id) throw new ImageNotFoundError(`no such image: ${refOrId}`);
      const ns = namespace(index, owner, true);
      const rec = record(index, owner, id);
      const out: RemoveResult = { untagged: [], deleted: [] };
      let byRef: string | undefined;
      try {
        const ref = parseReference(refOrId);
        if (ref.digest === undefined && rec.references.includes(formatReference(ref))) byRef = formatReference(ref);
      } catch {
        byRef = undefined;
      }
      if (byRef !== undefined && rec.references.length > 1) {
        delete ns.tags[byRef];
        out.untagged.push(byRef);
        return out;
      }
      if (byRef === undefined && rec.references.length > 1 && !opts.force) {
        throw new ImageInUseError(
          `unable to delete ${shortId(id)} (must be forced): image is referenced in multiple repositories (${rec.references.join(', ')})`,
        );
      }
      for (const r of rec.references) {
        delete ns.tags[r];
        out.untagged.push(r);
      }
      if (inUse(id)) {
        if (!opts.force) {
          // nothing changed yet: the tags deleted above are not written
          throw new ImageInUseError(
            `unable to remove ${byRef ? `repository reference ${JSON.stringify(refOrId)}` : `image ${shortId(id)}`} (must force): a container is using image ${shortId(id)}`,
          );
        }
        return out;
      }
      delete ns.images[id];
      out.untagged.push(...rec.repoDigests);
      if (dropUnheld(index, id, needed)) out.deleted.push(id);
      return out;
    });
  }

  /**
   * The record part of ImageStore.prune, in `owner`'s namespace: lets go of
   * its untagged images (with `all`, of every image) that no container of
   * the owner uses; returns the ids whose shared record went with that (no
   * other namespace holds them and no container needs them).
   */
  prune(owner: Owner, all: boolean, inUse: (id: string) => boolean, needed: (id: string) => boolean = inUse): Promise<string[]> {
    return this.update((index) => {
      const ids: string[] = [];
      const ns = index.namespaces[String(owner)];
      if (!ns) return ids;
      for (const id of Object.keys(ns.images)) {
        const rec = record(index, owner, id);
        if (inUse(id) || (!all && rec.references.length > 0)) continue;
        for (const r of rec.references) delete ns.tags[r];
        delete ns.images[id];
        if (dropUnheld(index, id, needed)) ids.push(id);
      }
      return ids;
    });
  }

  /** Drops the shared records no namespace holds and no container needs (one a container kept after its last name went). */
  sweep(needed: (id: string) => boolean): Promise<string[]> {
    return this.update((index) => Object.keys(index.images).filter((id) => dropUnheld(index, id, needed)));
  }
}

/** The namespace of `owner`; with `create`, made when missing. */
function namespace(index: IndexFile, owner: Owner, create: true): Namespace;
function namespace(index: IndexFile, owner: Owner, create: false): Namespace | undefined;
function namespace(index: IndexFile, owner: Owner, create: boolean): Namespace | undefined {
  if (!Number.isSafeInteger(owner) || owner < 0) throw new InvalidArgumentError(`image namespace owner must be a uid, not ${String(owner)}`);
  const key = String(owner);
  if (!index.namespaces[key] && create) index.namespaces[key] = { tags: {}, images: {} };
  return index.namespaces[key];
}

function listIn(index: IndexFile, owner: Owner): ImageRecord[] {
  const ns = namespace(index, owner, false);
  if (!ns) return [];
  return Object.keys(ns.images)
    .filter((id) => index.images[id])
    .map((id) => record(index, owner, id))
    .sort((a, b) => b.pulledAt.localeCompare(a.pulledAt));
}

/** Deletes the shared record `id` (and its manifests) when no namespace holds it and nothing needs it; true if it went. */
function dropUnheld(index: IndexFile, id: string, needed: (id: string) => boolean): boolean {
  if (!index.images[id]) return false;
  if (Object.values(index.namespaces).some((ns) => ns.images[id])) return false;
  if (needed(id)) return false;
  for (const [m, i] of Object.entries(index.manifests)) if (i === id) delete index.manifests[m];
  delete index.images[id];
  return true;
}

function record(index: IndexFile, owner: Owner, id: string): ImageRecord {
  const r = index.images[id];
  const ns = namespace(index, owner, false);
  const held = ns?.images[id];
  const tags = ns?.tags ?? {};
  const references = Object.keys(tags)
    .filter((t) => index.manifests[tags[t]] === id)
    .sort();
  return { ...r, owner, references, repoDigests: held?.repoDigests ?? [], pulledAt: held?.pulledAt ?? '' };
}

/**
 * Finds an image `owner` holds the way `docker image inspect` does: a full
 * id (`sha256:…`), then a reference (tag, or `repo@digest`), then a unique
 * id prefix. Only `owner`'s namespace is searched, so another namespace's
 * image is missing exactly as one nobody has. Undefined if nothing matches;
 * AmbiguousImageError for a prefix matching several.
 */
function lookup(index: IndexFile, owner: Owner, refOrId: string): string | undefined {
  const ns = namespace(index, owner, false);
  if (!ns) return undefined;
  const holds = (id: string | undefined): id is string => id !== undefined && ns.images[id] !== undefined && index.images[id] !== undefined;
  if (isDigest(refOrId)) return holds(refOrId) ? refOrId : undefined;
  if (/^[0-9a-f]{64}$/.test(refOrId) && holds(`sha256:${refOrId}`)) return `sha256:${refOrId}`;
  let ref: ImageReference | undefined;
  try {
    ref = parseReference(refOrId);
  } catch {
    ref = undefined;
  }
  if (ref) {
    if (ref.digest !== undefined) {
      const repoDigest = `${repositoryName(ref)}@${ref.digest}`;
      for (const [id, held] of Object.entries(ns.images)) {
        if (holds(id) && held.repoDigests.includes(repoDigest)) return id;
      }
      const byManifest = index.manifests[ref.digest];
      if (holds(byManifest) && ns.images[byManifest].repoDigests.some((d) => d.startsWith(repositoryName(ref) + '@'))) {
        return byManifest;
      }
      return undefined;
    }
    const manifest = ns.tags[formatReference(ref)];
    if (manifest !== undefined && holds(index.manifests[manifest])) return index.manifests[manifest];
  }
  const m = /^(?:sha256:)?([0-9a-f]{1,63})$/.exec(refOrId);
  if (m) {
    const hits = Object.keys(ns.images).filter((id) => holds(id) && id.startsWith(`sha256:${m[1]}`));
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
