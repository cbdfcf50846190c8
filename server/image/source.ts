/**
 * What an image importer reads from: the image as a source offers it, in the
 * style of go-containerregistry's `v1.Image` and `v1.Layer` (pkg/v1/image.go,
 * pkg/v1/layer.go). A registry (./pull) and an archive (./archive) are two
 * sources; the importer (./importer) drives either into the store, so the
 * two differ only here.
 *
 * A source checks what only it can judge (a registry's manifest against the
 * platform asked for, an archive's documents against its entries) and
 * throws its own errors; the importer checks what every source owes: the
 * compressed bytes are the descriptor's digest and size, the uncompressed
 * ones the config's diff-id.
 */
import type { Readable } from 'node:stream';
import type { ImageReference } from './reference';
import type { Compression, Descriptor, ImageConfig, Manifest } from './types';

/** The manifest an image source chose (an index resolved to the platform's manifest). */
export interface SourceManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
  parsed: Manifest;
  /** Digest the image is known by where it came from (an index's digest when there was one); default `digest`. */
  repoDigest?: string;
  /** Further documents to store with it (the index the manifest was chosen from). */
  extra?: Array<{ digest: string; bytes: Buffer }>;
}

/** The image config, verified against the manifest's config descriptor and parsed. */
export interface SourceConfig {
  bytes: Buffer;
  config: ImageConfig;
}

export interface LayerSource {
  /** Compressed descriptor as the manifest lists it: media type, digest, size. */
  readonly descriptor: Descriptor;
  /** Uncompressed digest, as the config's `rootfs.diff_ids` lists it. */
  readonly diffId: string;
  readonly compression: Compression;
  /** Names the layer in errors; default `layer <digest>`. */
  readonly label?: string;
  /**
   * The compressed bytes from `offset` on (a resumed ingest starts above 0).
   * Nothing is trusted: the importer hashes and counts what comes.
   */
  compressed(opts: { offset: number; signal?: AbortSignal }): Readable;
  /**
   * The compressed bytes are at hand already (an archive staged them): the
   * importer keeps the blob even for a layer that is unpacked already, so
   * the image can be saved again, and publishes a staged file by moving it
   * instead of copying.
   */
  readonly staged?: { file?: string; data?: Buffer };
}

export interface ImageSource {
  /** Names the image in messages: a reference, or a digest. */
  readonly name: string;
  /** Tags to point at the image, first one as its reference. */
  readonly tags: ImageReference[];
  /** Repository the image came from (for repoDigests); absent for an archive. */
  readonly repository?: ImageReference;
  manifest(): Promise<SourceManifest>;
  /** The config of `manifest`, verified and checked. */
  config(manifest: SourceManifest): Promise<SourceConfig>;
  /** The layers, base first, matched with the config's diff-ids. */
  layers(manifest: SourceManifest, config: SourceConfig): LayerSource[];
}
