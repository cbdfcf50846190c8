/**
 * OCI image-spec and Docker image-manifest v2 shapes, as far as Capsa reads
 * them. Field names follow the JSON on the wire.
 *
 * Two digests are kept apart everywhere: a layer's `digest` is the sha256 of
 * the blob as stored and transferred (usually compressed); its `diffId` is the
 * sha256 of the uncompressed tar stream, which is what the image config's
 * `rootfs.diff_ids` lists and what names an unpacked layer.
 */

export const MediaType = {
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNondistributable: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  OciLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OciLayerNondistributableZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  DockerManifestSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerLayerForeignGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  /** Not standard but emitted by some tools for uncompressed Docker layers. */
  DockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  DockerLayerZstd: 'application/vnd.docker.image.rootfs.diff.tar.zstd',
} as const;

export type Compression = 'gzip' | 'zstd' | 'none';

/** Index / manifest-list media types. */
export const INDEX_MEDIA_TYPES: readonly string[] = [MediaType.OciIndex, MediaType.DockerManifestList];
/** Single-image manifest media types. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [MediaType.OciManifest, MediaType.DockerManifest];
export const SCHEMA1_MEDIA_TYPES: readonly string[] = [MediaType.DockerManifestSchema1, MediaType.DockerManifestSchema1Signed];
export const CONFIG_MEDIA_TYPES: readonly string[] = [MediaType.OciConfig, MediaType.DockerConfig];

/** What a registry is asked for, best first. */
export const MANIFEST_ACCEPT: readonly string[] = [
  MediaType.OciIndex,
  MediaType.OciManifest,
  MediaType.DockerManifestList,
  MediaType.DockerManifest,
];

const LAYER_COMPRESSION: Record<string, Compression> = {
  [MediaType.OciLayer]: 'none',
  [MediaType.OciLayerGzip]: 'gzip',
  [MediaType.OciLayerZstd]: 'zstd',
  [MediaType.OciLayerNondistributable]: 'none',
  [MediaType.OciLayerNondistributableGzip]: 'gzip',
  [MediaType.OciLayerNondistributableZstd]: 'zstd',
  [MediaType.DockerLayerGzip]: 'gzip',
  [MediaType.DockerLayerForeignGzip]: 'gzip',
  [MediaType.DockerLayer]: 'none',
  [MediaType.DockerLayerZstd]: 'zstd',
};

/** Compression of a layer media type, or undefined if it is not a layer type Capsa unpacks. */
export function layerCompression(mediaType: string): Compression | undefined {
  return LAYER_COMPRESSION[mediaType];
}

/** os/architecture/variant of an image, as in an index entry's `platform`. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
  features?: string[];
}

/** A reference to content: media type + digest + size (OCI image-spec descriptor.md). */
export interface Descriptor {
  mediaType: string;
  /** `sha256:<hex>` of the content exactly as stored and transferred. */
  digest: string;
  /** Size in bytes of that content. */
  size: number;
  /** Only in index entries. */
  platform?: Platform;
  urls?: string[];
  annotations?: Record<string, string>;
  artifactType?: string;
}

/**
 * Most layers an image may have: overlayfs stacks at most 500 lower
 * directories (OVL_MAX_STACK in fs/overlayfs/params.h), so an image with more
 * could never run. A manifest past it is refused before anything else is
 * fetched, and a run of such an image (loaded before this ceiling) is refused
 * before its container is set up.
 */
export const MAX_IMAGE_LAYERS = 500;

/** OCI image manifest or Docker schema2 manifest. */
export interface Manifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  /** Base layer first. */
  layers: Descriptor[];
  annotations?: Record<string, string>;
  subject?: Descriptor;
  artifactType?: string;
}

/** OCI image index or Docker manifest list. */
export interface Index {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** The runtime part of an image config (`config` in OCI, `config`/`container_config` in Docker). */
export interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string> | null;
  StopSignal?: string;
  Hostname?: string;
  Tty?: boolean;
  OpenStdin?: boolean;
  Healthcheck?: unknown;
  Shell?: string[];
  ArgsEscaped?: boolean;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

/** OCI image config (config.md) / Docker image JSON. */
export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  config?: ContainerConfig;
  rootfs: {
    type: 'layers' | string;
    /** Uncompressed layer digests, base layer first. */
    diff_ids: string[];
  };
  history?: HistoryEntry[];
}

/** A manifest or index as fetched, with the exact bytes its digest covers. */
export interface FetchedManifest {
  mediaType: string;
  digest: string;
  bytes: Buffer;
  parsed: Manifest | Index;
}

export function isIndexMediaType(mediaType: string): boolean {
  return INDEX_MEDIA_TYPES.includes(mediaType);
}

export function isManifestMediaType(mediaType: string): boolean {
  return MANIFEST_MEDIA_TYPES.includes(mediaType);
}
