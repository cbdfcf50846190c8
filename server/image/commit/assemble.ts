/**
 * A new image from a parent image plus new layers, a config and history
 * entries (what `commit` makes, and what each build step will): the config
 * JSON (parent's platform and rootfs, diff-ids appended, history appended),
 * an OCI manifest naming the parent's layer blobs and the new ones, both
 * stored as verified blobs, and the record in the owner's namespace, tagged
 * when a reference is given.
 *
 * Garbage collection: everything is added under the caller's lease (the new
 * layers' blobs and directories, the config, the manifest), and the record
 * that references them is written before that lease ends, so no collection
 * in between takes them; after it, the record keeps them like any image's.
 */
import { createHash } from 'node:crypto';
import { checkSize, checkStringMap, LIMITS } from '../../limits';
import { parseReference, type ImageReference } from '../reference';
import type { ImageRecord, ImageStore, Lease, Owner } from '../store';
import { MediaType, type ContainerConfig, type Descriptor, type HistoryEntry, type ImageConfig, type Manifest } from '../types';

export interface NewLayer {
  /** The compressed blob, as a manifest lists it. */
  descriptor: Descriptor;
  /** sha256 of its tar. */
  diffId: string;
}

export interface ImageAssembly {
  /** The image built upon: its record (layer blobs) and config; undefined for an image from scratch. */
  parent?: { record: ImageRecord; config: ImageConfig };
  /** Layers on top of the parent's, base first. */
  layers: NewLayer[];
  /** The new image's runtime config, whole (the parent's is not merged in here). */
  config: ContainerConfig;
  /** Entries appended to the parent's history, one per step (empty_layer for a step that made no layer). */
  history: HistoryEntry[];
  /** ISO time of the image. */
  created: string;
  author?: string;
  /** Platform for an image from scratch (a parent's is kept otherwise). */
  platform?: { os: string; architecture: string; variant?: string };
}

const digestOf = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** The image config of `a`, as JSON would carry it. */
export function imageConfig(a: ImageAssembly): ImageConfig {
  const p = a.parent?.config;
  const platform = p ? { architecture: p.architecture, os: p.os, ...(p.variant ? { variant: p.variant } : {}) } : (a.platform ?? { os: 'linux', architecture: 'amd64' });
  return {
    created: a.created,
    ...(a.author ? { author: a.author } : {}),
    ...platform,
    config: a.config,
    rootfs: { type: 'layers', diff_ids: [...(p?.rootfs.diff_ids ?? []), ...a.layers.map((l) => l.diffId)] },
    history: [...(p?.history ?? []), ...a.history],
  };
}

/**
 * Writes `a` to `store` under `lease` and records it in `owner`'s namespace,
 * tagged `reference` (a `repo[:tag]`, `latest` when no tag) if given.
 */
export async function writeImage(store: ImageStore, lease: Lease, a: ImageAssembly, owner: Owner, reference?: string): Promise<ImageRecord> {
  const ref: ImageReference | undefined = reference ? parseReference(reference) : undefined;
  const config = imageConfig(a);
  // the ceilings a pull puts on a config (documents.ts), so an image made here can be pulled back, saved and loaded
  checkStringMap(LIMITS.labels, 'the labels of the new image', config.config?.Labels);
  const configBytes = Buffer.from(JSON.stringify(config));
  checkSize(LIMITS.config, "the new image's config", configBytes.length);
  const configDigest = digestOf(configBytes);
  // The manifest is OCI, so the parent's layers are named with OCI's media types even when it was pulled as
  // Docker schema 2: a manifest mixing the two is refused by containers/image (podman, skopeo) on conversion.
  const layers = [...(a.parent?.record.layers ?? []), ...a.layers.map((l) => l.descriptor)].map((l) => ({ ...l, mediaType: ociLayerMediaType(l.mediaType) }));
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: configDigest, size: configBytes.length },
    layers,
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const manifestDigest = digestOf(manifestBytes);
  await lease.blob(configDigest);
  await lease.blob(manifestDigest);
  await store.putBlob(configBytes, configDigest);
  await store.putBlob(manifestBytes, manifestDigest);
  return store.addImage(
    { reference: ref, repoDigest: manifestDigest, manifestDigest, manifestMediaType: MediaType.OciManifest, configDigest, config, layers, ...(a.parent ? { parent: a.parent.record.id } : {}) },
    owner,
  );
}

/** The OCI media type of a layer blob of `mediaType` (the same bytes: only Docker's names are changed). */
export function ociLayerMediaType(mediaType: string): string {
  switch (mediaType) {
    case MediaType.DockerLayerGzip:
      return MediaType.OciLayerGzip;
    case MediaType.DockerLayer:
      return MediaType.OciLayer;
    case MediaType.DockerLayerZstd:
      return MediaType.OciLayerZstd;
    case MediaType.DockerLayerForeignGzip:
      return MediaType.OciLayerNondistributableGzip;
    default:
      return mediaType;
  }
}
