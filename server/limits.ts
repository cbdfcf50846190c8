/**
 * Every ceiling on input whose size someone else decides: a registry, a
 * token server, an image archive, a file a user names. One table, so the
 * README's "Limits" section and the code cannot drift apart; every reader
 * of such input imports its entry from here and fails with
 * LimitExceededError, which names the entry and its value.
 *
 * Each ceiling is enforced while the bytes arrive (a declared size above it
 * is refused before anything is read, a stream is cut as it passes it), so
 * memory never holds more than the ceiling of one document.
 */
import { CapsaError } from './errors';

export interface Limit {
  /** The name errors and the README use: "the manifest limit (4 MiB)". */
  readonly name: string;
  /** Most bytes accepted. */
  readonly bytes: number;
  /** Most entries accepted, for maps (labels, annotations). */
  readonly entries?: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export const LIMITS = {
  /** An image manifest, from a registry or an archive. Docker and containerd refuse manifests above 4 MiB. */
  manifest: { name: 'manifest', bytes: 4 * MiB },
  /** An image index (manifest list), from a registry or an archive: fetched like a manifest, so capped like one. */
  index: { name: 'index', bytes: 4 * MiB },
  /**
   * An image config blob. Real configs are a few KiB (history of a hundred
   * steps stays under 100 KiB); 8 MiB leaves room for generous labels and
   * history while keeping a hostile "1 GiB config" from being buffered. The
   * size is declared in the manifest, so a larger one is refused before any
   * byte is fetched.
   */
  config: { name: 'config', bytes: 8 * MiB },
  /** A token server's JSON answer (token, access_token, refresh_token, expiry). */
  tokenResponse: { name: 'token response', bytes: 1 * MiB },
  /**
   * One Bearer token. It goes back in an Authorization header, and registries
   * (and the proxies in front of them) refuse headers far smaller than the
   * token response limit (nginx: 8 KiB a line; Go: 1 MiB in all).
   */
  bearerToken: { name: 'bearer token', bytes: 64 * KiB },
  /**
   * What is read of a registry's error body to explain a failed request.
   * Passing it is not an error: the rest is dropped with the connection.
   */
  errorBody: { name: 'error body', bytes: 64 * KiB },
  /**
   * manifest.json of a `docker save` archive, which lists every image in the
   * archive with its tags and layer names: larger than one manifest.
   */
  archiveManifest: { name: 'archive manifest.json', bytes: 16 * MiB },
  /** The oci-layout file of an OCI image layout archive (`{"imageLayoutVersion":"1.0.0"}`). */
  ociLayout: { name: 'oci-layout', bytes: 4 * KiB },
  /**
   * An `--env-file`. The kernel refuses an environment much above 2 MiB
   * (ARG_MAX is a quarter of the 8 MiB stack limit, shared with the
   * arguments), so a larger file could never reach a process anyway.
   */
  envFile: { name: 'env file', bytes: 1 * MiB },
  /** A `--security-opt seccomp=FILE` profile. Docker's default profile is about 20 KiB. */
  seccompProfile: { name: 'seccomp profile', bytes: 1 * MiB },
  /** Docker's client config (`~/.docker/config.json` of the helper's user), read for registry credentials. */
  dockerConfig: { name: 'docker config', bytes: 1 * MiB },
  /** Labels of an image config or a container: entries, and bytes of keys plus values. */
  labels: { name: 'labels', bytes: 256 * KiB, entries: 4096 },
  /** Annotations of a manifest, an index or one of their descriptors: entries, and bytes of keys plus values. */
  annotations: { name: 'annotations', bytes: 256 * KiB, entries: 4096 },
  /**
   * One protocol message from a client (its JSON body). The largest a client
   * has cause to send is a run with a command line and environment near the
   * kernel's ARG_MAX (2 MiB), or a chunk of stream input; the JSON-RPC reader
   * would otherwise buffer whatever length a header announces.
   */
  protocolMessage: { name: 'protocol message', bytes: 16 * MiB },
  /**
   * The JSON body of one Engine API request (a container create with its
   * command line, environment and labels, an exec's): sized as a protocol
   * message, since the same options travel in both.
   */
  engineRequestBody: { name: 'Engine API request body', bytes: 16 * MiB },
  /** The request line and headers of one Engine API request (Node's parser refuses more: 431). */
  engineRequestHeader: { name: 'Engine API request header', bytes: 64 * KiB },
  /**
   * A Dockerfile. Real ones are a few KiB; BuildKit sends the Dockerfile in
   * one gRPC message (4 MiB by default), so a larger one never builds there
   * either. `entries` counts its instructions: neither Docker nor BuildKit
   * caps them, but each RUN or COPY is a layer and Docker refuses an image
   * of more than 125 (overlayfs stacks at most 500 lowers), so a thousand
   * is already more than any image built from one can have, and every
   * instruction is planned, keyed and held by the build.
   */
  dockerfile: { name: 'Dockerfile', bytes: 4 * MiB, entries: 1000 },
  /** A .dockerignore (or FILE.dockerignore) file: its patterns are all held and tried on every path. */
  dockerignore: { name: 'dockerignore', bytes: 1 * MiB, entries: 10000 },
  /**
   * One --build-arg (name and value). Build args reach RUN as environment
   * variables, and Linux refuses any one argument or environment string
   * over MAX_ARG_STRLEN (128 KiB), so a larger one could never be used;
   * `entries` counts the --build-args of one build.
   */
  buildArg: { name: 'build arg', bytes: 128 * KiB, entries: 4096 },
  /**
   * One word of a Dockerfile after variable expansion (an ENV or LABEL
   * value, a path). Without it `ENV a=$a$a` repeated doubles memory a line.
   */
  buildWord: { name: 'expanded word', bytes: 256 * KiB },
  /** Files, directories and links a build context may hold, and the bytes of their paths together. */
  buildContext: { name: 'build context', bytes: 256 * MiB, entries: 1_000_000 },
  /**
   * One file an `ADD <URL>` downloads. It is streamed to disk (memory holds
   * none of it) and becomes part of a layer, so the ceiling is on the disk
   * a Dockerfile can make the helper fill from a server it names.
   */
  addUrl: { name: 'ADD URL download', bytes: 2 * GiB },
  /** The header block of one protocol message (`Content-Length: …\r\n\r\n`); real ones are under 100 bytes. */
  protocolHeader: { name: 'protocol message header', bytes: 8 * KiB },
} as const satisfies Record<string, Limit>;

/** `4 MiB`, `64 KiB`, `100 bytes`: how a ceiling is shown. */
export function formatLimit(bytes: number): string {
  if (bytes >= GiB && bytes % GiB === 0) return `${bytes / GiB} GiB`;
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  if (bytes >= KiB && bytes % KiB === 0) return `${bytes / KiB} KiB`;
  return `${bytes} bytes`;
}

/** Input passed one of LIMITS; the message names the limit and its value. */
export class LimitExceededError extends CapsaError {
  constructor(
    readonly limit: Limit,
    message: string,
  ) {
    super('E_LIMIT_EXCEEDED', message);
  }
}

/** "<what> is larger than the manifest limit (4 MiB)[: size bytes]". */
export function exceeded(limit: Limit, what: string, size?: number): LimitExceededError {
  const got = size !== undefined ? `: ${size} bytes` : '';
  return new LimitExceededError(limit, `${what} is larger than the ${limit.name} limit (${formatLimit(limit.bytes)})${got}`);
}

/** Refuses `size` (a declared length) above `limit` before anything is read. */
export function checkSize(limit: Limit, what: string, size: number): void {
  if (size > limit.bytes) throw exceeded(limit, what, size);
}

/** A stream of bytes: a network body, a file stream. */
type Body = AsyncIterable<Uint8Array> & { destroy?: (err?: Error) => unknown; on?: (event: 'error', fn: () => void) => unknown };

/** Stops reading `body`. Some streams (undici's bodies) emit 'error' when destroyed; that must not end the process. */
function drop(body: Body): void {
  body.on?.('error', () => undefined);
  body.destroy?.();
}

/**
 * Reads `body` whole, but never more than `limit`: past it the stream is
 * destroyed (a network body closes its connection) and LimitExceededError
 * names the limit. Memory holds at most the limit.
 */
export async function readCapped(
  body: Body,
  limit: Limit,
  what: string,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of body) {
    total += c.length;
    if (total > limit.bytes) {
      drop(body);
      throw exceeded(limit, what);
    }
    chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  }
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total);
}

/** The first `limit.bytes` of `body` (then destroyed), for explaining an error: never fails for size. */
export async function readPrefix(body: Body, limit: Limit): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of body) {
    const take = Math.min(c.length, limit.bytes - total);
    chunks.push(Buffer.from(c.subarray(0, take)));
    total += take;
    if (total >= limit.bytes) {
      drop(body);
      break;
    }
  }
  return Buffer.concat(chunks, total);
}

/**
 * Checks a string map (labels, annotations) against `limit`: a plain object
 * of strings, at most `limit.entries` entries and `limit.bytes` of keys and
 * values (UTF-8). Returns the map; undefined and null pass as absent.
 */
export function checkStringMap(limit: Limit, what: string, map: unknown): Record<string, string> | undefined {
  if (map === undefined || map === null) return undefined;
  if (typeof map !== 'object' || Array.isArray(map)) throw new CapsaError('E_INVALID_ARGUMENT', `${what} must be a map of strings`);
  let n = 0;
  let bytes = 0;
  for (const [k, v] of Object.entries(map)) {
    if (typeof v !== 'string') throw new CapsaError('E_INVALID_ARGUMENT', `${what}: value of ${JSON.stringify(k.slice(0, 100))} is not a string`);
    n++;
    bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
    if (limit.entries !== undefined && n > limit.entries) {
      throw new LimitExceededError(limit, `${what} has more than the ${limit.name} limit of ${limit.entries} entries`);
    }
    if (bytes > limit.bytes) throw exceeded(limit, what);
  }
  return map as Record<string, string>;
}
