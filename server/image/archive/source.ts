/**
 * What an archive says: its documents (docker save's manifest.json, or an
 * OCI layout's oci-layout and index.json) read against the staged entries,
 * every digest and size they claim checked against what was measured. Each
 * image becomes an ImageSource (../source) for the importer, so its layers
 * go through the same unpacker and the same proofs as a pull's.
 */
import { createHash } from 'node:crypto';
import { LIMITS } from '../../limits';
import { DigestMismatchError, InvalidArchiveError, SizeMismatchError, UnsupportedManifestError } from '../errors';
import { checkAnnotations, checkConfigLabels } from '../documents';
import { hostPlatform, selectManifest } from '../platform';
import { formatReference, parseReference, type ImageReference } from '../reference';
import type { ImageSource, LayerSource, SourceConfig, SourceManifest } from '../source';
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
} from '../types';
import { contents, LAYER_TYPE, open, parseJson, sniffCompression, type Archive, type Staged } from './read';

/** One image to record, with its content located in the archive. */
interface Plan {
  label: string;
  manifestBytes: Buffer;
  manifestDigest: string;
  manifestMediaType: string;
  manifest: Manifest;
  configBytes: Buffer;
  configDigest: string;
  config: ImageConfig;
  layers: Array<{ desc: Descriptor; compression: Compression; entry: Staged }>;
  tags: ImageReference[];
}

/** One image of an archive, as the importer reads it. */
export class ArchiveSource implements ImageSource {
  readonly name: string;
  readonly tags: ImageReference[];

  constructor(private readonly plan: Plan) {
    this.name = plan.label;
    this.tags = plan.tags;
  }

  async manifest(): Promise<SourceManifest> {
    const p = this.plan;
    return { digest: p.manifestDigest, mediaType: p.manifestMediaType, bytes: p.manifestBytes, parsed: p.manifest };
  }

  async config(): Promise<SourceConfig> {
    return { bytes: this.plan.configBytes, config: this.plan.config };
  }

  layers(): LayerSource[] {
    const diffIds = this.plan.config.rootfs.diff_ids;
    return this.plan.layers.map((l, i) => ({
      descriptor: l.desc,
      diffId: diffIds[i],
      compression: l.compression,
      label: `layer ${l.desc.digest} of ${this.plan.label}`,
      compressed: ({ offset }) => open(l.entry, offset),
      staged: { file: l.entry.file, data: l.entry.data },
    }));
  }
}

/** The images the archive holds, each checked against its staged entries. */
export async function archiveSources(archive: Archive, label: string): Promise<ArchiveSource[]> {
  return (await planImages(archive, label)).map((p) => new ArchiveSource(p));
}

export async function planImages(archive: Archive, label: string): Promise<Plan[]> {
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
      manifest,
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
      manifest: m,
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

function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}
