/**
 * Checks on the documents an image is made of (manifests, indexes, configs),
 * shared by every source: a registry's answers and an archive's entries are
 * held to the same shapes and ceilings.
 */
import { checkStringMap, LimitExceededError, LIMITS } from '../limits';
import { UnsupportedManifestError } from './errors';
import { INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, MediaType, SCHEMA1_MEDIA_TYPES, type Descriptor, type ImageConfig, type Index, type Manifest } from './types';

/** Decides a manifest's media type and parses it, refusing schema 1 and unknown types by name. */
export function parseManifest(bytes: Buffer, contentType: string, what: string): { mediaType: string; parsed: Manifest | Index } {
  let parsed: (Manifest | Index) & { schemaVersion?: number; mediaType?: string; manifests?: unknown; config?: unknown };
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new UnsupportedManifestError(`manifest of ${what} is not valid JSON (content type ${contentType || 'none'})`, contentType || undefined);
  }
  if (typeof parsed !== 'object' || parsed === null) throw new UnsupportedManifestError(`manifest of ${what} is not a JSON object`);
  let mediaType = typeof parsed.mediaType === 'string' && parsed.mediaType ? parsed.mediaType : contentType;
  if (SCHEMA1_MEDIA_TYPES.includes(mediaType) || (parsed.schemaVersion as number) === 1) {
    throw new UnsupportedManifestError(
      `${what} uses manifest media type ${SCHEMA1_MEDIA_TYPES.includes(mediaType) ? mediaType : MediaType.DockerManifestSchema1} (Docker schema 1), which is not supported: push it again with a current client`,
      mediaType,
    );
  }
  // OCI allows the mediaType field to be absent; the registry's content type or the shape tells.
  if (!INDEX_MEDIA_TYPES.includes(mediaType) && !MANIFEST_MEDIA_TYPES.includes(mediaType)) {
    if (!mediaType || mediaType === 'application/json' || mediaType === 'application/octet-stream') {
      if (Array.isArray(parsed.manifests)) mediaType = MediaType.OciIndex;
      else if (parsed.config && typeof parsed.config === 'object') mediaType = MediaType.OciManifest;
    }
  }
  if (INDEX_MEDIA_TYPES.includes(mediaType)) {
    if (!Array.isArray(parsed.manifests)) throw new UnsupportedManifestError(`index of ${what} has no manifests list`, mediaType);
    checkAnnotations(parsed.annotations, `index of ${what}`);
    for (const d of (parsed as Index).manifests) checkDescriptor(d, what);
    return { mediaType, parsed };
  }
  if (MANIFEST_MEDIA_TYPES.includes(mediaType)) {
    const m = parsed as Manifest;
    if (!m.config || !Array.isArray(m.layers)) throw new UnsupportedManifestError(`manifest of ${what} lacks config or layers`, mediaType);
    checkAnnotations(m.annotations, `manifest of ${what}`);
    checkDescriptor(m.config, what);
    for (const l of m.layers) checkDescriptor(l, what);
    return { mediaType, parsed };
  }
  throw new UnsupportedManifestError(`${what} has unsupported manifest media type ${JSON.stringify(mediaType || 'none')}`, mediaType || undefined);
}

function checkDescriptor(d: Descriptor, what: string): void {
  if (
    !d ||
    typeof d !== 'object' ||
    typeof d.mediaType !== 'string' ||
    typeof d.digest !== 'string' ||
    !/^sha256:[0-9a-f]{64}$/.test(d.digest) ||
    !Number.isSafeInteger(d.size) ||
    d.size < 0
  ) {
    throw new UnsupportedManifestError(`manifest of ${what} has a malformed or non-sha256 descriptor ${JSON.stringify(d).slice(0, 200)}`);
  }
  checkAnnotations(d.annotations, `annotations of descriptor ${d.digest} in ${what}`);
}

/** Annotations within LIMITS.annotations; a malformed map is a malformed manifest. */
export function checkAnnotations(map: unknown, what: string): void {
  try {
    checkStringMap(LIMITS.annotations, what.startsWith('annotations') ? what : `annotations of ${what}`, map);
  } catch (err) {
    if (err instanceof LimitExceededError) throw err;
    throw new UnsupportedManifestError(`${what} has malformed annotations: ${(err as Error).message}`);
  }
}

/** Labels of an image config within LIMITS.labels; a malformed map is a malformed config. */
export function checkConfigLabels(c: ImageConfig, what: string): void {
  try {
    checkStringMap(LIMITS.labels, `labels of ${what}`, c.config?.Labels);
  } catch (err) {
    if (err instanceof LimitExceededError) throw err;
    throw new UnsupportedManifestError(`${what} has malformed labels: ${(err as Error).message}`);
  }
}
