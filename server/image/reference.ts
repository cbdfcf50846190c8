/**
 * Image references, parsed and normalised the way Docker does
 * (github.com/distribution/reference: `reference.go`, `normalize.go`):
 *
 *   busybox                     → docker.io/library/busybox:latest
 *   user/repo                   → docker.io/user/repo:latest
 *   host:5000/repo:tag          → host:5000/repo:tag
 *   localhost/x                 → localhost/x:latest
 *   repo@sha256:<64 hex>        → docker.io/library/repo@sha256:…   (no tag added)
 *   repo:tag@sha256:<64 hex>    → docker.io/library/repo:tag@sha256:…
 */
import { InvalidDigestError, InvalidReferenceError } from './errors';

export const DEFAULT_REGISTRY = 'docker.io';
export const DEFAULT_TAG = 'latest';
const LEGACY_DEFAULT_REGISTRY = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';

/** Longest repository name (registry + path) Docker accepts. */
export const NAME_MAX_LENGTH = 255;

// reference.go grammar.
const ALNUM = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|[-]+)';
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const IPV6 = '\\[(?:[a-fA-F0-9:]+)\\]';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|${IPV6})(?::[0-9]+)?$`);
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const SHA256_RE = /^sha256:[0-9a-f]{64}$/;
const ID_PREFIX_RE = /^(?:sha256:)?[0-9a-f]{1,64}$/;

/** A parsed, normalised reference. Immutable. */
export interface ImageReference {
  /** Registry host as normalised (`docker.io`, `127.0.0.1:5000`, `localhost`). */
  readonly registry: string;
  /** Repository path inside the registry (`library/busybox`). */
  readonly repository: string;
  /** Tag, if any. `latest` is added when neither a tag nor a digest is given. */
  readonly tag: string | undefined;
  /** Manifest digest (`sha256:…`), if the reference pins one. */
  readonly digest: string | undefined;
}

/**
 * Parses a reference as a user types it and normalises it. Throws
 * InvalidReferenceError naming the reference and what is wrong with it.
 */
export function parseReference(input: string): ImageReference {
  if (typeof input !== 'string' || input === '') throw new InvalidReferenceError(String(input ?? ''), 'empty reference');
  if (/\s/.test(input)) throw new InvalidReferenceError(input, 'must not contain whitespace');
  if (/[\x00-\x1f\x7f]/.test(input)) throw new InvalidReferenceError(input, 'must not contain control characters');

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (digest.includes('@')) throw new InvalidReferenceError(input, 'more than one "@"');
    const why = digestProblem(digest);
    if (why) throw new InvalidReferenceError(input, `bad digest: ${why}`);
  }

  // A tag is after the last ':' that is not part of a host:port (i.e. no '/' after it).
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon >= 0 && !rest.slice(colon + 1).includes('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) {
      throw new InvalidReferenceError(input, `bad tag ${JSON.stringify(tag)}: must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
    }
  }
  if (rest === '') throw new InvalidReferenceError(input, 'missing repository name');

  let registry: string;
  let repository: string;
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  if (slash < 0 || (!/[.:]/.test(first) && !first.startsWith('[') && first !== 'localhost' && first.toLowerCase() === first)) {
    registry = DEFAULT_REGISTRY;
    repository = rest;
  } else {
    registry = first;
    repository = rest.slice(slash + 1);
    if (!DOMAIN_RE.test(registry)) throw new InvalidReferenceError(input, `bad registry host ${JSON.stringify(registry)}`);
  }
  if (registry === LEGACY_DEFAULT_REGISTRY) registry = DEFAULT_REGISTRY;
  if (registry === DEFAULT_REGISTRY && !repository.includes('/')) repository = OFFICIAL_REPO_PREFIX + repository;

  if (repository !== repository.toLowerCase()) {
    throw new InvalidReferenceError(input, 'repository name must be lowercase');
  }
  if (repository.split('/').some((c) => c === '' || c === '.' || c === '..')) {
    throw new InvalidReferenceError(input, 'repository name has an empty, "." or ".." component');
  }
  if (!PATH_RE.test(repository)) {
    throw new InvalidReferenceError(
      input,
      'repository name components must be lowercase letters and digits, separated by ".", "_", "__" or "-"',
    );
  }
  const nameLength = registry.length + 1 + repository.length;
  if (nameLength > NAME_MAX_LENGTH) {
    throw new InvalidReferenceError(input, `repository name must not be longer than ${NAME_MAX_LENGTH} characters`);
  }
  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return Object.freeze({ registry, repository, tag, digest });
}

/** `registry/repository`, e.g. `docker.io/library/busybox`. */
export function repositoryName(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The full normalised form: `docker.io/library/busybox:latest`, `…@sha256:…`, `…:tag@sha256:…`. */
export function formatReference(ref: ImageReference): string {
  return repositoryName(ref) + (ref.tag !== undefined ? `:${ref.tag}` : '') + (ref.digest !== undefined ? `@${ref.digest}` : '');
}

/** Normalises a reference string: `busybox` → `docker.io/library/busybox:latest`. */
export function normalizeReference(input: string): string {
  return formatReference(parseReference(input));
}

/**
 * The short form Docker prints (`busybox:latest`, `user/repo:tag`,
 * `127.0.0.1:5000/x:1`): the default registry and `library/` dropped.
 */
export function familiarReference(ref: ImageReference | string): string {
  const r = typeof ref === 'string' ? parseReference(ref) : ref;
  return familiarName(r) + (r.tag !== undefined ? `:${r.tag}` : '') + (r.digest !== undefined ? `@${r.digest}` : '');
}

/** Short repository name: `busybox`, `user/repo`, `127.0.0.1:5000/x`. */
export function familiarName(ref: ImageReference): string {
  if (ref.registry !== DEFAULT_REGISTRY) return repositoryName(ref);
  return ref.repository.startsWith(OFFICIAL_REPO_PREFIX) && ref.repository.split('/').length === 2
    ? ref.repository.slice(OFFICIAL_REPO_PREFIX.length)
    : ref.repository;
}

/** The same repository with another tag and no digest. */
export function withTag(ref: ImageReference, tag: string): ImageReference {
  if (!TAG_RE.test(tag)) throw new InvalidReferenceError(`${repositoryName(ref)}:${tag}`, `bad tag ${JSON.stringify(tag)}`);
  return Object.freeze({ registry: ref.registry, repository: ref.repository, tag, digest: undefined });
}

/** The same repository pinned to a digest, no tag (`repo@sha256:…`, Docker's RepoDigests form). */
export function withDigest(ref: ImageReference, digest: string): ImageReference {
  assertDigest(digest);
  return Object.freeze({ registry: ref.registry, repository: ref.repository, tag: undefined, digest });
}

/** Why `digest` is not acceptable, or undefined if it is. Only sha256 is supported, as by Docker. */
function digestProblem(digest: string): string | undefined {
  if (digest.startsWith('sha256:')) {
    return SHA256_RE.test(digest) ? undefined : 'sha256 digest must be 64 lowercase hex digits';
  }
  if (!DIGEST_RE.test(digest)) return `${JSON.stringify(digest)} is not algorithm:hex`;
  return `unsupported digest algorithm ${JSON.stringify(digest.slice(0, digest.indexOf(':')))}`;
  return undefined;
}

/** True for `sha256:<64 lowercase hex>`. */
export function isDigest(s: string): boolean {
  return SHA256_RE.test(s);
}

/** Throws InvalidDigestError unless `s` is `sha256:<64 lowercase hex>`. */
export function assertDigest(s: string): void {
  const why = typeof s === 'string' ? digestProblem(s) : 'not a string';
  if (why) throw new InvalidDigestError(String(s), why);
}

/** The hex part of a validated sha256 digest (safe as a file name). */
export function digestHex(digest: string): string {
  assertDigest(digest);
  return digest.slice('sha256:'.length);
}

/** True for a full or abbreviated image id (`sha256:ab12…`, `ab12…`), as `docker rmi ab12` accepts. */
export function isIdPrefix(s: string): boolean {
  return ID_PREFIX_RE.test(s);
}
