/**
 * A registry as an image source (./source): the manifest by tag or digest
 * (through an index to the platform's manifest), the config (from the store
 * when it is there already), and each layer's compressed bytes as a ranged,
 * resumable blob stream.
 */
import { checkSize, LIMITS } from '../limits';
import { ImageNotFoundError, SizeMismatchError, TooManyLayersError, UnsupportedManifestError } from './errors';
import { checkConfigLabels } from './documents';
import { formatPlatform, normalizePlatform, selectManifest, type PlatformSpec } from './platform';
import { clip, printable } from '../util/text';
import { formatReference, type ImageReference } from './reference';
import type { Endpoint, RegistryClient } from './registry';
import type { ImageSource, LayerSource, SourceConfig, SourceManifest } from './source';
import { CONFIG_MEDIA_TYPES, MAX_IMAGE_LAYERS, isIndexMediaType, layerCompression, type ImageConfig, type Index, type Manifest } from './types';

export interface RegistrySourceOptions {
  client: RegistryClient;
  platform: PlatformSpec;
  /** The platform was asked for explicitly: an image for another one is refused. */
  explicitPlatform: boolean;
  signal?: AbortSignal;
  /** A blob already in the store, if it is (the config is then not fetched again). */
  local: (digest: string) => Promise<Buffer | undefined>;
}

export class RegistrySource implements ImageSource {
  readonly name: string;
  readonly tags: ImageReference[];
  readonly repository: ImageReference;
  /** The registry or mirror that served the manifest: blobs are asked there first. */
  private endpoint: Endpoint | undefined;

  constructor(
    private readonly ref: ImageReference,
    private readonly opts: RegistrySourceOptions,
  ) {
    this.name = formatReference(ref);
    this.tags = ref.tag !== undefined ? [ref] : [];
    this.repository = ref;
  }

  async manifest(): Promise<SourceManifest> {
    const { client, platform, signal } = this.opts;
    const { ref, name } = this;
    const top = await client.getManifest(ref, undefined, signal);
    let chosen: SourceManifest & { endpoint: Endpoint };
    if (isIndexMediaType(top.mediaType)) {
      const d = selectManifest(top.parsed as Index, platform, name);
      if (isIndexMediaType(d.mediaType)) {
        throw new UnsupportedManifestError(`${name}: nested index ${d.digest} for ${formatPlatform(platform)} is not supported`, d.mediaType);
      }
      checkSize(LIMITS.manifest, `manifest ${d.digest} of ${name}`, d.size);
      const m = await client.getManifest(ref, d.digest, signal);
      if (m.bytes.length !== d.size) throw new SizeMismatchError(`manifest ${d.digest} of ${name}`, d.size, m.bytes.length);
      if (isIndexMediaType(m.mediaType)) throw new UnsupportedManifestError(`${name}: manifest ${d.digest} is itself an index`, m.mediaType);
      chosen = { digest: m.digest, mediaType: m.mediaType, bytes: m.bytes, parsed: m.parsed as Manifest, endpoint: m.endpoint };
    } else {
      chosen = { digest: top.digest, mediaType: top.mediaType, bytes: top.bytes, parsed: top.parsed as Manifest, endpoint: top.endpoint };
    }
    checkImageManifest(chosen.parsed, name);
    this.endpoint = chosen.endpoint;
    const extra = top.digest !== chosen.digest ? [{ digest: top.digest, bytes: top.bytes }] : [];
    return { digest: chosen.digest, mediaType: chosen.mediaType, bytes: chosen.bytes, parsed: chosen.parsed, repoDigest: top.digest, extra };
  }

  async config(manifest: SourceManifest): Promise<SourceConfig> {
    const { name } = this;
    const desc = manifest.parsed.config;
    // Its declared size is checked before any byte is read, from the store or the network.
    checkSize(LIMITS.config, `config ${desc.digest} of ${name}`, desc.size);
    const bytes = (await this.opts.local(desc.digest)) ?? (await this.opts.client.getBlob(this.ref, desc, this.opts.signal, this.endpoint));
    const config = parseConfig(bytes, name);
    checkPlatform(config, this.opts.platform, name, this.opts.explicitPlatform);
    if (config.rootfs.diff_ids.length !== manifest.parsed.layers.length) {
      throw new UnsupportedManifestError(
        `${name}: manifest lists ${manifest.parsed.layers.length} layers but its config lists ${config.rootfs.diff_ids.length} diff-ids`,
      );
    }
    return { bytes, config };
  }

  layers(manifest: SourceManifest, config: SourceConfig): LayerSource[] {
    const diffIds = config.config.rootfs.diff_ids;
    return manifest.parsed.layers.map((desc, i) => ({
      descriptor: desc,
      diffId: diffIds[i],
      compression: layerCompression(desc.mediaType)!,
      compressed: ({ offset, signal }) => this.opts.client.blobStream(this.ref, desc, { offset, signal, prefer: this.endpoint }),
    }));
  }
}

function checkImageManifest(m: Manifest, name: string): void {
  // before the config or any layer is fetched: a manifest of thousands of entries costs only its own bytes
  if (m.layers.length > MAX_IMAGE_LAYERS) throw new TooManyLayersError(`image ${name}`, m.layers.length, MAX_IMAGE_LAYERS);
  if (!CONFIG_MEDIA_TYPES.includes(m.config.mediaType)) {
    throw new UnsupportedManifestError(`${name} is not a container image: its config has media type ${m.config.mediaType}`, m.config.mediaType);
  }
  for (const l of m.layers) {
    if (layerCompression(l.mediaType) === undefined) {
      throw new UnsupportedManifestError(`${name}: layer ${l.digest} has unsupported media type ${l.mediaType}`, l.mediaType);
    }
    if (l.urls?.length) {
      // Foreign layers live outside the registry; Capsa pulls only what the registry serves.
      throw new UnsupportedManifestError(`${name}: layer ${l.digest} is a foreign layer (urls), which is not supported`, l.mediaType);
    }
  }
}

function parseConfig(bytes: Buffer, name: string): ImageConfig {
  let c: ImageConfig;
  try {
    c = JSON.parse(bytes.toString('utf8')) as ImageConfig;
  } catch {
    throw new UnsupportedManifestError(`${name}: image config is not valid JSON`);
  }
  if (!c || typeof c !== 'object' || !c.rootfs || !Array.isArray(c.rootfs.diff_ids)) {
    throw new UnsupportedManifestError(`${name}: image config has no rootfs.diff_ids`);
  }
  for (const d of c.rootfs.diff_ids) {
    if (typeof d !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(d)) {
      throw new UnsupportedManifestError(`${name}: image config has a malformed diff-id ${JSON.stringify(d).slice(0, 100)}`);
    }
  }
  checkConfigLabels(c, `${name}: image config`);
  return c;
}

/** A single-platform image for another platform is refused when a platform was asked for explicitly, like Docker. */
function checkPlatform(config: ImageConfig, want: PlatformSpec, name: string, explicit: boolean): void {
  if (!explicit || !config.os || !config.architecture) return;
  // the image's own words, not a user's flag: normalised, not held to the --platform vocabulary
  const got = normalizePlatform({ os: String(config.os), architecture: String(config.architecture), variant: config.variant === undefined ? undefined : String(config.variant) });
  if (got.os !== want.os || got.architecture !== want.architecture) {
    throw new ImageNotFoundError(`image ${name} is for ${printable(clip(formatPlatform(got), 80))}, not the requested ${formatPlatform(want)}`);
  }
}

