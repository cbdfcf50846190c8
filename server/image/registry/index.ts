/**
 * An OCI distribution client on undici (distribution-spec, "Pull"):
 * manifests by tag or digest, blobs with resumable ranged GETs, Bearer and
 * Basic auth, mirrors, redirects, retries with backoff. One keep-alive agent
 * is shared by every request of a client.
 *
 * This file is the client and its request loop (auth retry, redirects,
 * backoff) and manifest fetch; ./authorizer holds the challenge and token
 * flow, ./blobs the blob stream that resumes with Range requests, ./http the
 * response shape, retry rules and endpoints (mirrors, plain HTTP on loopback).
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import type { CapsaConfig } from '../../config';
import { checkSize, exceeded, LimitExceededError, LIMITS, readCapped, type Limit } from '../../limits';
import {
  CancelledError,
  DigestMismatchError,
  ImageNotFoundError,
  RegistryAuthError,
  RegistryError,
  SizeMismatchError,
  UnsupportedManifestError,
} from '../errors';
import { parseChallenge, type Credentials } from '../auth';
import { parseManifest } from '../documents';
import { formatReference, type ImageReference } from '../reference';
import { INDEX_MEDIA_TYPES, MANIFEST_ACCEPT, MediaType, type Descriptor, type FetchedManifest } from '../types';
import { Authorizer } from './authorizer';
import { blobStream, type BlobClient } from './blobs';
import {
  discard,
  endpointsFor,
  errCode,
  header,
  readErrorBody,
  isRetryableError,
  MAX_REDIRECTS,
  RETRYABLE_STATUS,
  retryAfterMs,
  sleep,
  type Endpoint,
  type RequestOptions,
  type Response,
} from './http';

export { endpointsFor, isLoopbackHost, retryAfterMs, type Endpoint } from './http';
export { checkAnnotations, parseManifest } from '../documents';

export interface RegistryClientOptions {
  /** Mirrors, insecure hosts. */
  config: Pick<CapsaConfig, 'registries'>;
  /** Extra credentials by registry host, tried before Docker's config.json. */
  credentials?: Record<string, Credentials>;
  /** Docker config file to read `auths` from; `false` to read none. Default `~/.docker/config.json`. */
  dockerConfig?: string | false;
  /** Attempts per request on 429/5xx/connection resets. Default 5. */
  attempts?: number;
  /** First backoff delay in ms, doubled each retry (with jitter). Default 250. */
  backoffMs?: number;
  /** Longest wait honoured from a Retry-After header, in ms. Default 60 s. */
  maxRetryAfterMs?: number;
  /** Dispatcher to use; default a keep-alive Agent owned by the client. */
  dispatcher?: Dispatcher;
  userAgent?: string;
}

export class RegistryClient implements BlobClient {
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly auth: Authorizer;
  /** @internal (BlobClient) */
  readonly attempts: number;
  private readonly backoffMs: number;
  private readonly maxRetryAfterMs: number;
  private readonly userAgent: string;

  constructor(private readonly opts: RegistryClientOptions) {
    this.ownsDispatcher = !opts.dispatcher;
    this.dispatcher = opts.dispatcher ?? new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 120_000, connections: 16 });
    this.attempts = Math.max(1, opts.attempts ?? 5);
    this.backoffMs = opts.backoffMs ?? 250;
    this.maxRetryAfterMs = opts.maxRetryAfterMs ?? 60_000;
    this.userAgent = opts.userAgent ?? 'capsa';
    this.auth = new Authorizer({ credentials: opts.credentials, dockerConfig: opts.dockerConfig, follow: (url, headers, signal) => this.follow(url, headers, signal) });
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  endpoints(ref: ImageReference): Endpoint[] {
    return endpointsFor(ref.registry, this.opts.config);
  }

  /**
   * Fetches the manifest or index `reference` (a tag or digest; default the
   * ref's digest, else its tag), trying mirrors first. Verifies the content
   * against the digest when asked by digest and against Docker-Content-Digest
   * when the registry sends one; refuses schema 1 and unknown media types.
   */
  async getManifest(ref: ImageReference, reference?: string, signal?: AbortSignal): Promise<FetchedManifest & { endpoint: Endpoint }> {
    const want = reference ?? ref.digest ?? ref.tag ?? 'latest';
    return this.withEndpoints(ref, signal, (ep) => this.getManifestFrom(ep, ref, want, signal));
  }

  private async getManifestFrom(ep: Endpoint, ref: ImageReference, want: string, signal?: AbortSignal): Promise<FetchedManifest & { endpoint: Endpoint }> {
    const url = `${ep.url}/v2/${ref.repository}/manifests/${want}`;
    const res = await this.send(ep, url, {
      headers: { accept: MANIFEST_ACCEPT.join(', ') + `, ${MediaType.DockerManifestSchema1Signed};q=0.1` },
      scope: `repository:${ref.repository}:pull`,
      signal,
    });
    const what = formatReference(ref.digest && want === ref.digest ? ref : { ...ref, ...(want.startsWith('sha256:') ? { tag: undefined, digest: want } : { tag: want, digest: undefined }) });
    if (res.status !== 200) throw await this.statusError(ep, res, `manifest ${what}`, what);
    const contentType = (header(res, 'content-type') ?? '').split(';')[0].trim();
    const limit = INDEX_MEDIA_TYPES.includes(contentType) ? LIMITS.index : LIMITS.manifest;
    const where = `${limit === LIMITS.index ? 'index' : 'manifest'} of ${what} in registry ${ep.host}`;
    const declaredLength = Number(header(res, 'content-length') ?? '0');
    if (declaredLength > limit.bytes) {
      discard(res.body);
      throw exceeded(limit, where, declaredLength);
    }
    // Read with the cap as the bytes arrive: a body without a length (chunked) never gets past it either.
    const bytes = await readCapped(res.body, limit, where);
    const digest = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
    if (want.startsWith('sha256:') && digest !== want) {
      throw new DigestMismatchError(`manifest ${what} from registry ${ep.host}`, want, digest);
    }
    const headerDigest = header(res, 'docker-content-digest');
    if (headerDigest?.startsWith('sha256:') && headerDigest !== digest) {
      throw new DigestMismatchError(`manifest ${what} from registry ${ep.host} (Docker-Content-Digest)`, headerDigest, digest);
    }
    const { mediaType, parsed } = parseManifest(bytes, contentType, `${what} in registry ${ep.host}`);
    return { mediaType, digest, bytes, parsed, endpoint: ep };
  }

  /**
   * Fetches a small blob (an image config) whole, verifying digest and size.
   * A descriptor that declares more than `limit` is refused before any
   * request; the stream never yields more than the declared size.
   */
  async getBlob(ref: ImageReference, desc: Descriptor, signal?: AbortSignal, prefer?: Endpoint, limit: Limit = LIMITS.config): Promise<Buffer> {
    checkSize(limit, `${limit.name} blob ${desc.digest} of ${formatReference(ref)}`, desc.size);
    const chunks: Buffer[] = [];
    for await (const c of this.blobStream(ref, desc, { signal, prefer })) chunks.push(c);
    const bytes = Buffer.concat(chunks);
    const digest = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
    if (bytes.length !== desc.size) throw new SizeMismatchError(`blob ${desc.digest}`, desc.size, bytes.length);
    if (digest !== desc.digest) throw new DigestMismatchError(`blob ${desc.digest}`, desc.digest, digest);
    return bytes;
  }

  /**
   * The bytes of blob `desc` from `offset` on, as a stream, resumed with a
   * `Range` request when a connection is cut (see ./blobs).
   */
  blobStream(ref: ImageReference, desc: Descriptor, opts: { offset?: number; signal?: AbortSignal; prefer?: Endpoint } = {}): Readable {
    return blobStream(this, ref, desc, opts);
  }

  /** @internal (BlobClient) */
  backoff(failures: number): number {
    const base = this.backoffMs * 2 ** (failures - 1);
    return Math.min(10_000, base / 2 + Math.random() * base);
  }

  /** Runs `fn` on each endpoint in turn until one succeeds; reports the most telling error. */
  private async withEndpoints<T>(ref: ImageReference, signal: AbortSignal | undefined, fn: (ep: Endpoint) => Promise<T>): Promise<T> {
    const errors: unknown[] = [];
    for (const ep of this.endpoints(ref)) {
      if (signal?.aborted) throw new CancelledError(`pull of ${formatReference(ref)}`);
      try {
        return await fn(ep);
      } catch (err) {
        if (err instanceof CancelledError || signal?.aborted) throw err;
        errors.push(err);
      }
    }
    // A mirror that knows the image is missing says more than an unreachable upstream.
    const rank = (e: unknown) =>
      e instanceof DigestMismatchError || e instanceof UnsupportedManifestError || e instanceof LimitExceededError ? 0 : e instanceof ImageNotFoundError ? 1 : e instanceof RegistryAuthError ? 2 : 3;
    errors.sort((a, b) => rank(a) - rank(b));
    throw errors[0];
  }

  /** @internal (BlobClient) */
  async statusError(ep: Endpoint, res: Response, what: string, image: string): Promise<Error> {
    const { codes, message } = await readErrorBody(res.body);
    const detail = message ?? `HTTP ${res.status}`;
    const notFoundCodes = ['MANIFEST_UNKNOWN', 'NAME_UNKNOWN', 'BLOB_UNKNOWN', 'NOT_FOUND'];
    if (res.status === 404 || codes.some((c) => notFoundCodes.includes(c))) {
      return new ImageNotFoundError(`image ${JSON.stringify(image)} not found in registry ${ep.host}: ${detail}`, { status: res.status, registryCodes: codes });
    }
    if (res.status === 401 || res.status === 403) {
      const denied = codes.includes('DENIED') || res.status === 403 ? 'access denied' : 'authentication required';
      return new RegistryAuthError(`pull access to ${JSON.stringify(image)} in registry ${ep.host}: ${denied}: ${detail}`, { status: res.status, registryCodes: codes });
    }
    return new RegistryError('E_REGISTRY', `${what} from registry ${ep.host}: HTTP ${res.status}: ${detail}`, { status: res.status, registryCodes: codes });
  }

  /**
   * One GET with everything around it: auth (challenge → token/basic, then
   * retry once), redirects (Authorization dropped when the host changes),
   * retries with backoff on 429/5xx/resets honouring Retry-After.
   */
  /** @internal (BlobClient) */
  async send(ep: Endpoint, url: string, opts: RequestOptions): Promise<Response> {
    let failures = 0;
    let authTried = false;
    let reprobed = false;
    for (;;) {
      if (opts.signal?.aborted) throw new CancelledError(`request to registry ${ep.host}`);
      let authorization: string | undefined;
      try {
        authorization = await this.auth.authorizationFor(ep, opts.scope, opts.signal);
      } catch (err) {
        // A challenge remembered from an earlier request is only a guess
        // about the registry today: it may have stopped requiring auth, or
        // moved its token server. When the token cannot be had (refused,
        // unreachable, oversized), ask the registry again (once) instead of
        // trusting the old challenge; a registry that still challenges gets
        // the fresh challenge's token, or its failure.
        if (err instanceof CancelledError || reprobed || authTried) throw err;
        reprobed = true;
        this.auth.forgetChallenge(ep);
        continue;
      }
      let res: Response;
      try {
        // A URL the registry named (an upload's Location) on another host gets no credentials of this one.
        const sameOrigin = new URL(url).origin === new URL(ep.url).origin;
        res = await this.follow(url, { ...opts.headers, ...(authorization && sameOrigin ? { authorization } : {}) }, opts.signal, opts.method, opts.body);
      } catch (err) {
        if (err instanceof CancelledError || err instanceof RegistryError) throw err;
        if (opts.signal?.aborted) throw new CancelledError(`request to registry ${ep.host}`);
        if (isRetryableError(err) && opts.retry !== false && ++failures < this.attempts) {
          await sleep(this.backoff(failures), opts.signal);
          continue;
        }
        throw new RegistryError('E_REGISTRY_UNREACHABLE', `cannot reach registry ${ep.host}: ${errCode(err)}`, { cause: err });
      }
      if (res.status === 401 && !authTried) {
        const challenge = parseChallenge(header(res, 'www-authenticate') ?? '');
        await res.body.dump();
        if (challenge && (challenge.scheme === 'bearer' || challenge.scheme === 'basic')) {
          authTried = true;
          // Drop any token we had for this scope: the registry just refused it.
          await this.auth.forgetToken(ep, opts.scope);
          this.auth.challenged(ep, challenge);
          continue;
        }
        throw new RegistryAuthError(`registry ${ep.host} requires authentication (${challenge?.scheme ?? 'no challenge'}) that is not supported`, { status: 401 });
      }
      if (RETRYABLE_STATUS.has(res.status) && opts.retry !== false && ++failures < this.attempts) {
        const after = retryAfterMs(header(res, 'retry-after'));
        // Draining only frees the connection; a failure just closes it, and the retry opens another.
        await res.body.dump().catch(() => undefined);
        await sleep(after !== undefined ? Math.min(after, this.maxRetryAfterMs) : this.backoff(failures), opts.signal);
        continue;
      }
      return res;
    }
  }

  /**
   * A request following redirects by hand (GET and HEAD only: a body is sent
   * once, and a push's 3xx goes back to the caller), so Authorization never
   * leaves the registry's host.
   */
  private async follow(url: string, headers: Record<string, string>, signal?: AbortSignal, method: RequestOptions['method'] = 'GET', body?: RequestOptions['body']): Promise<Response> {
    let current = url;
    let hdrs: Record<string, string> = { 'user-agent': this.userAgent, ...headers };
    const redirects = method === 'GET' || method === 'HEAD';
    for (let i = 0; i <= MAX_REDIRECTS; i++) {
      const payload = typeof body === 'function' ? body() : body;
      const res = await request(current, { method, headers: hdrs, body: payload, signal, dispatcher: this.dispatcher, maxRedirections: 0 } as Parameters<typeof request>[1]);
      if (redirects && res.statusCode >= 300 && res.statusCode < 400 && res.statusCode !== 304) {
        const location = header(res, 'location');
        await res.body.dump();
        if (!location) throw new RegistryError('E_REGISTRY', `registry redirect without a Location from ${new URL(current).host}`, { status: res.statusCode });
        const next = new URL(location, current);
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          throw new RegistryError('E_REGISTRY', `registry redirected to an unsupported URL scheme ${next.protocol}`, { status: res.statusCode });
        }
        if (next.host !== new URL(current).host) {
          const { authorization: _drop, ...rest } = hdrs;
          void _drop;
          hdrs = rest;
        }
        current = next.toString();
        continue;
      }
      return { status: res.statusCode, headers: res.headers as Response['headers'], body: res.body, url: current };
    }
    throw new RegistryError('E_REGISTRY', `too many redirects fetching ${new URL(url).pathname}`);
  }

}

