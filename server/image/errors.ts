import { CapsaError, InvalidArgumentError, NotFoundError, ConflictError } from '../errors';

/** A reference (`busybox`, `host:5000/a/b:tag@sha256:…`) that does not follow Docker's grammar. */
export class InvalidReferenceError extends InvalidArgumentError {
  /** The reference as given. */
  readonly reference: string;
  constructor(reference: string, reason: string) {
    super(`invalid reference format ${JSON.stringify(truncate(reference))}: ${reason}`);
    this.reference = reference;
  }
}

/** A digest string (`sha256:<64 hex>`) that is malformed or uses an unsupported algorithm. */
export class InvalidDigestError extends InvalidArgumentError {
  constructor(digest: string, reason: string) {
    super(`invalid digest ${JSON.stringify(truncate(digest))}: ${reason}`);
  }
}

/**
 * The image is not in the local store (and was not to be pulled), or the
 * registry has no such repository, tag or digest (then `status` and
 * `registryCodes` say what it answered).
 */
export class ImageNotFoundError extends NotFoundError {
  readonly status: number | undefined;
  readonly registryCodes: string[];
  constructor(message: string, opts: { status?: number; registryCodes?: string[] } = {}) {
    super('E_IMAGE_NOT_FOUND', message);
    this.status = opts.status;
    this.registryCodes = opts.registryCodes ?? [];
  }
}

/** Two or more local images match a short id prefix. */
export class AmbiguousImageError extends CapsaError {
  constructor(prefix: string, count: number) {
    super('E_IMAGE_AMBIGUOUS', `image id prefix ${JSON.stringify(prefix)} is ambiguous: it matches ${count} images`);
  }
}

/** `rmi` without force of an image a container uses, or of an id with several tags. */
export class ImageInUseError extends ConflictError {
  constructor(message: string) {
    super(message);
  }
}

/** Content whose digest or size is not what a descriptor promised. */
export class DigestMismatchError extends CapsaError {
  readonly expected: string;
  readonly actual: string;
  constructor(what: string, expected: string, actual: string, options?: { cause?: unknown }) {
    super('E_DIGEST_MISMATCH', `${what}: digest mismatch: expected ${expected}, got ${actual}`, options);
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * A layer whose uncompressed content is not the diff-id it was to be stored
 * under: the store's own check (ImageStore.createLayer). A pull reports it to
 * its caller as DiffIdMismatchError; a load as this digest mismatch.
 */
export class LayerDiffIdMismatchError extends DigestMismatchError {
  /** The layer's compressed digest (its diff-id when it has none). */
  readonly layer: string;
  constructor(layer: string, expected: string, actual: string) {
    super(`layer ${layer}: uncompressed content (diff-id)`, expected, actual);
    this.layer = layer;
  }
}

/** Content with a size other than the descriptor's. */
export class SizeMismatchError extends CapsaError {
  constructor(what: string, expected: number, actual: number) {
    super('E_SIZE_MISMATCH', `${what}: size mismatch: expected ${expected} bytes, got ${actual}`);
  }
}

/** A layer's uncompressed digest differs from the image config's `rootfs.diff_ids`. */
export class DiffIdMismatchError extends CapsaError {
  constructor(layer: string, expected: string, actual: string) {
    super('E_DIFFID_MISMATCH', `layer ${layer}: diff-id mismatch: image config says ${expected}, layer content is ${actual}`);
  }
}

/** A manifest, index or config that is malformed, or of a media type Capsa does not pull. */
export class UnsupportedManifestError extends CapsaError {
  readonly mediaType: string | undefined;
  constructor(message: string, mediaType?: string) {
    super('E_UNSUPPORTED_MANIFEST', message);
    this.mediaType = mediaType;
  }
}

/** An image with more layers than overlayfs can stack (MAX_IMAGE_LAYERS in ./types). */
export class TooManyLayersError extends CapsaError {
  readonly layers: number;
  readonly limit: number;
  constructor(what: string, layers: number, limit: number) {
    super('E_TOO_MANY_LAYERS', `${what} has ${layers} layers, more than the ${limit} Capsa can stack (the overlay filesystem's limit)`);
    this.layers = layers;
    this.limit = limit;
  }
}

/** No manifest in an index matches the wanted platform. */
export class PlatformNotFoundError extends NotFoundError {
  constructor(message: string) {
    super('E_PLATFORM_NOT_FOUND', message);
  }
}

/** A layer tarball that is malformed or that tries to write outside its layer. */
export class UnsafeLayerError extends CapsaError {
  /** The tar entry name concerned, when there is one. */
  readonly entry: string | undefined;
  constructor(message: string, entry?: string, options?: { cause?: unknown }) {
    super('E_UNSAFE_LAYER', message, options);
    this.entry = entry;
  }
}

/** A malformed layer archive (truncated, bad header, bad compression). */
export class InvalidLayerError extends CapsaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_INVALID_LAYER', message, options);
  }
}

/** An HTTP or protocol failure talking to a registry. Never carries credentials. */
export class RegistryError extends CapsaError {
  /** HTTP status, when the registry answered. */
  readonly status: number | undefined;
  /** Registry error codes from the response body (`MANIFEST_UNKNOWN`, `UNAUTHORIZED`, …). */
  readonly registryCodes: string[];
  constructor(code: string, message: string, opts: { status?: number; registryCodes?: string[]; cause?: unknown } = {}) {
    super(code, message, { cause: opts.cause });
    this.status = opts.status;
    this.registryCodes = opts.registryCodes ?? [];
  }
}

/** The registry refused our credentials, or needs some we do not have. */
export class RegistryAuthError extends RegistryError {
  constructor(message: string, opts: { status?: number; registryCodes?: string[]; cause?: unknown } = {}) {
    super('E_REGISTRY_AUTH', message, opts);
  }
}

/** The operation was cancelled by its caller. */
export class CancelledError extends CapsaError {
  constructor(what: string) {
    super('E_CANCELLED', `${what}: cancelled`);
  }
}

function truncate(s: string): string {
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
}

/** An image archive (`capsa load`) that is malformed, incomplete or hostile. */
export class InvalidArchiveError extends CapsaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_INVALID_ARCHIVE', message, options);
  }
}
