/**
 * An OCI distribution client on undici (distribution-spec, "Pull"):
 * manifests by tag or digest, blobs with resumable ranged GETs, Bearer and
 * Basic auth, mirrors, redirects, retries with backoff. One keep-alive agent
 * is shared by every request of a client.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import type { CapsaConfig } from '../config';
import { checkSize, checkStringMap, exceeded, LimitExceededError, LIMITS, readCapped, readPrefix, type Limit } from '../limits';
import {
  CancelledError,
  DigestMismatchError,
  ImageNotFoundError,
  RegistryAuthError,
  RegistryError,
  SizeMismatchError,
  UnsupportedManifestError,
} from './errors';
import { clip, printable } from '../util/text';
import { basicAuthorization, credentialLookup, dockerConfigCredentials, parseChallenge, TokenCache, type CredentialLookup, type Credentials } from './auth';
import { DEFAULT_REGISTRY, formatReference, type ImageReference } from './reference';
import {
  INDEX_MEDIA_TYPES,
  MANIFEST_ACCEPT,
  MANIFEST_MEDIA_TYPES,
  MediaType,
  SCHEMA1_MEDIA_TYPES,
  type Descriptor,
  type FetchedManifest,
  type Index,
  type Manifest,
} from './types';

/** Docker Hub's API endpoint for the `docker.io` name. */
const DOCKER_HUB_ENDPOINT = 'https://registry-1.docker.io';
const MAX_REDIRECTS = 5;
const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

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

/** Where requests for a registry host go: a mirror or the registry itself. */
export interface Endpoint {
  /** Base URL, no trailing slash. */
  url: string;
  /** `host[:port]` for messages. */
  host: string;
  mirror: boolean;
}

/** True for 127.0.0.0/8, ::1 and localhost (with or without a port): spoken to over plain HTTP, like Docker. */
export function isLoopbackHost(hostPort: string): boolean {
  let host = hostPort;
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(hostPort);
  if (bracket) host = bracket[1];
  else if (hostPort.split(':').length === 2) host = hostPort.split(':')[0];
  host = host.toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

/** Endpoints for a registry host: its mirrors in order, then the host itself. */
export function endpointsFor(registry: string, config: Pick<CapsaConfig, 'registries'>): Endpoint[] {
  const out: Endpoint[] = [];
  for (const m of config.registries.mirrors[registry] ?? []) {
    const u = new URL(m);
    out.push({ url: m.replace(/\/+$/, ''), host: u.host, mirror: true });
  }
  if (registry === DEFAULT_REGISTRY) {
    out.push({ url: DOCKER_HUB_ENDPOINT, host: DEFAULT_REGISTRY, mirror: false });
  } else {
    const insecure = isLoopbackHost(registry) || config.registries.insecure.includes(registry);
    out.push({ url: `${insecure ? 'http' : 'https'}://${registry}`, host: registry, mirror: false });
  }
  return out;
}

interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
  url: string;
}

interface RequestOptions {
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Scope asked for in a Bearer token request. */
  scope: string;
  /** Retry on statuses/resets (default true). */
  retry?: boolean;
}

function header(res: { headers: Record<string, string | string[] | undefined> }, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new CancelledError('registry request'));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new CancelledError('registry request'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Parses Retry-After (seconds or an HTTP date) into ms. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const t = Date.parse(value);
  return Number.isFinite(t) ? Math.max(0, t - now) : undefined;
}

/**
 * Registry error body (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`):
 * only its first LIMITS.errorBody bytes are read, the rest goes with the connection.
 */
async function readErrorBody(body: Response['body']): Promise<{ codes: string[]; message: string | undefined }> {
  let text = '';
  try {
    text = (await readPrefix(body, LIMITS.errorBody)).toString('utf8');
  } catch {
    return { codes: [], message: undefined };
  }
  try {
    const parsed = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> };
    const errors = Array.isArray(parsed.errors) ? parsed.errors : [];
    const codes = errors.map((e) => String(e.code ?? '')).filter(Boolean);
    const messages = errors.map((e) => e.message || (e.code ? e.code.toLowerCase().replace(/_/g, ' ') : '')).filter(Boolean);
    // the registry's words reach a terminal: controls escaped, length bounded
    return { codes, message: messages.length ? printable(clip(messages.map(String).join('; '), 500)) : undefined };
  } catch {
    const line = text.split('\n')[0].trim().slice(0, 200);
    return { codes: [], message: line ? printable(line) : undefined };
  }
}

/**
 * Drops a response body unread, closing its connection. undici's body
 * emits an 'error' (RequestAbortedError) when destroyed, which with no
 * listener would end the process.
 */
function discard(body: Response['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

function isRetryableError(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } };
  return RETRYABLE_CODES.has(e?.code ?? '') || RETRYABLE_CODES.has(e?.cause?.code ?? '');
}

function errCode(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string }; message?: string };
  return e?.cause?.code ?? e?.code ?? e?.message ?? String(err);
}

export class RegistryClient {
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly tokens = new TokenCache();
  /** Origin → the auth scheme it challenged with last, so later requests authenticate up front. */
  private readonly challenges = new Map<string, { scheme: string; params: Record<string, string> }>();
  /** Capsa's own credentials, then Docker's config.json, read once on first use, asynchronously and bounded. */
  private credentialsLoaded: Promise<CredentialLookup> | undefined;
  private readonly attempts: number;
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
  }

  private async credentials(host: string): Promise<Credentials | undefined> {
    this.credentialsLoaded ??= (async () => {
      const docker = this.opts.dockerConfig === false ? undefined : await dockerConfigCredentials(this.opts.dockerConfig);
      return credentialLookup(this.opts.credentials, docker);
    })().catch((err: unknown) => {
      // A config.json over its limit fails this pull; the next one reads the file again.
      this.credentialsLoaded = undefined;
      throw err;
    });
    return (await this.credentialsLoaded)(host);
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
   * The bytes of blob `desc` from `offset` on, as a stream. A connection cut
   * mid-blob is resumed with a `Range` request (counted against the retry
   * budget); the stream never yields more than `desc.size` bytes in total.
   * Digest verification is the consumer's (it hashes as it goes).
   */
  blobStream(ref: ImageReference, desc: Descriptor, opts: { offset?: number; signal?: AbortSignal; prefer?: Endpoint } = {}): Readable {
    const client = this;
    async function* gen(): AsyncGenerator<Buffer> {
      let offset = opts.offset ?? 0;
      if (offset >= desc.size) return;
      let failures = 0;
      const endpoints = client.endpoints(ref);
      if (opts.prefer) endpoints.sort((a, b) => (a.url === opts.prefer!.url ? -1 : b.url === opts.prefer!.url ? 1 : 0));
      let epIndex = 0;
      let lastError: unknown;
      while (offset < desc.size) {
        if (opts.signal?.aborted) throw new CancelledError(`blob ${desc.digest}`);
        const ep = endpoints[epIndex];
        let res: Response;
        try {
          res = await client.send(ep, `${ep.url}/v2/${ref.repository}/blobs/${desc.digest}`, {
            headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
            scope: `repository:${ref.repository}:pull`,
            signal: opts.signal,
          });
        } catch (err) {
          if (err instanceof CancelledError || epIndex + 1 >= endpoints.length) throw err;
          lastError = err;
          epIndex++;
          continue;
        }
        if (res.status !== 200 && res.status !== 206) {
          const err = await client.statusError(ep, res, `blob ${desc.digest}`, `${ref.registry}/${ref.repository}@${desc.digest}`);
          if (epIndex + 1 < endpoints.length) {
            lastError = err;
            epIndex++;
            continue;
          }
          throw err;
        }
        let skip = 0;
        if (offset > 0 && res.status === 200) skip = offset; // the server ignored Range: drop what we have
        try {
          for await (const raw of res.body) {
            let chunk = raw as Buffer;
            if (skip > 0) {
              const n = Math.min(skip, chunk.length);
              skip -= n;
              chunk = chunk.subarray(n);
              if (chunk.length === 0) continue;
            }
            if (offset + chunk.length > desc.size) {
              discard(res.body);
              throw new SizeMismatchError(`blob ${desc.digest} from registry ${ep.host}`, desc.size, offset + chunk.length);
            }
            offset += chunk.length;
            yield chunk;
          }
          if (offset < desc.size) throw Object.assign(new Error('connection closed before the end of the blob'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
        } catch (err) {
          if (opts.signal?.aborted) throw new CancelledError(`blob ${desc.digest}`);
          if (!isRetryableError(err) || ++failures >= client.attempts) {
            if (isRetryableError(err)) {
              throw new RegistryError('E_REGISTRY_UNREACHABLE', `blob ${desc.digest} from registry ${ep.host}: download failed at byte ${offset} of ${desc.size} after ${failures} attempts: ${errCode(err)}`, { cause: err });
            }
            throw err;
          }
          await sleep(client.backoff(failures), opts.signal);
        }
      }
      void lastError;
    }
    return Readable.from(gen(), { objectMode: false });
  }

  private backoff(failures: number): number {
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

  private async statusError(ep: Endpoint, res: Response, what: string, image: string): Promise<Error> {
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
  private async send(ep: Endpoint, url: string, opts: RequestOptions): Promise<Response> {
    let failures = 0;
    let authTried = false;
    let reprobed = false;
    for (;;) {
      if (opts.signal?.aborted) throw new CancelledError(`request to registry ${ep.host}`);
      let authorization: string | undefined;
      try {
        authorization = await this.authorizationFor(ep, opts.scope, opts.signal);
      } catch (err) {
        // A challenge remembered from an earlier request is only a guess
        // about the registry today: it may have stopped requiring auth, or
        // moved its token server. When the token cannot be had (refused,
        // unreachable, oversized), ask the registry again (once) instead of
        // trusting the old challenge; a registry that still challenges gets
        // the fresh challenge's token, or its failure.
        if (err instanceof CancelledError || reprobed || authTried) throw err;
        reprobed = true;
        this.challenges.delete(new URL(ep.url).origin);
        continue;
      }
      let res: Response;
      try {
        res = await this.follow(url, { ...opts.headers, ...(authorization ? { authorization } : {}) }, opts.signal);
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
          await this.forgetToken(ep, opts.scope);
          this.challenges.set(new URL(ep.url).origin, challenge);
          continue;
        }
        throw new RegistryAuthError(`registry ${ep.host} requires authentication (${challenge?.scheme ?? 'no challenge'}) that is not supported`, { status: 401 });
      }
      if (RETRYABLE_STATUS.has(res.status) && opts.retry !== false && ++failures < this.attempts) {
        const after = retryAfterMs(header(res, 'retry-after'));
        await res.body.dump().catch(() => undefined);
        await sleep(after !== undefined ? Math.min(after, this.maxRetryAfterMs) : this.backoff(failures), opts.signal);
        continue;
      }
      return res;
    }
  }

  /** GET following redirects by hand, so Authorization never leaves the registry's host. */
  private async follow(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    let current = url;
    let hdrs: Record<string, string> = { 'user-agent': this.userAgent, ...headers };
    for (let i = 0; i <= MAX_REDIRECTS; i++) {
      const res = await request(current, { method: 'GET', headers: hdrs, signal, dispatcher: this.dispatcher, maxRedirections: 0 } as Parameters<typeof request>[1]);
      if (res.statusCode >= 300 && res.statusCode < 400 && res.statusCode !== 304) {
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

  private async forgetToken(ep: Endpoint, scope: string): Promise<void> {
    const ch = this.challenges.get(new URL(ep.url).origin);
    if (ch?.scheme !== 'bearer') return;
    const creds = await this.credentials(ep.host);
    this.tokens.delete(TokenCache.key(ch.params.realm ?? '', ch.params.service ?? '', scope, creds?.username));
  }

  /** The Authorization header for a request to `ep`, once it has challenged us. */
  private async authorizationFor(ep: Endpoint, scope: string, signal?: AbortSignal): Promise<string | undefined> {
    const ch = this.challenges.get(new URL(ep.url).origin);
    if (!ch) return undefined;
    const creds = await this.credentials(ep.host);
    if (ch.scheme === 'basic') {
      if (!creds) throw new RegistryAuthError(`registry ${ep.host} requires a username and password, and none is configured for it`, { status: 401 });
      return basicAuthorization(creds);
    }
    const realm = ch.params.realm;
    if (!realm) throw new RegistryAuthError(`registry ${ep.host} sent a Bearer challenge without a realm`, { status: 401 });
    const service = ch.params.service ?? '';
    const key = TokenCache.key(realm, service, scope, creds?.username);
    const cached = this.tokens.get(key);
    if (cached) return `Bearer ${cached}`;
    const u = new URL(realm);
    if (service) u.searchParams.set('service', service);
    u.searchParams.set('scope', scope);
    if (creds) u.searchParams.set('account', creds.username);
    let res: Response;
    try {
      res = await this.follow(u.toString(), creds ? { authorization: basicAuthorization(creds) } : {}, signal);
    } catch (err) {
      if (signal?.aborted) throw new CancelledError(`token request to ${u.host}`);
      throw new RegistryAuthError(`cannot get a token for registry ${ep.host} from ${u.host}: ${errCode(err)}`, { cause: err });
    }
    if (res.status !== 200) {
      const { codes, message } = await readErrorBody(res.body);
      const who = creds ? `user ${JSON.stringify(creds.username)}` : 'anonymous access';
      throw new RegistryAuthError(
        `token request for ${scope} at ${u.host} (registry ${ep.host}) refused for ${who}: HTTP ${res.status}${message ? `: ${message}` : ''}`,
        { status: res.status, registryCodes: codes },
      );
    }
    const where = `answer of token server ${u.host} for registry ${ep.host}`;
    const declared = Number(header(res, 'content-length') ?? '0');
    if (declared > LIMITS.tokenResponse.bytes) {
      discard(res.body);
      throw exceeded(LIMITS.tokenResponse, where, declared);
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown } = {};
    try {
      body = JSON.parse((await readCapped(res.body, LIMITS.tokenResponse, where)).toString('utf8')) ?? {};
    } catch (err) {
      if (err instanceof LimitExceededError) throw err;
      if (signal?.aborted) throw new CancelledError(`token request to ${u.host}`);
    }
    const token = typeof body.token === 'string' && body.token ? body.token : typeof body.access_token === 'string' ? body.access_token : undefined;
    if (!token) throw new RegistryAuthError(`token server ${u.host} for registry ${ep.host} answered without a token`);
    // It goes back in a header: one too large would come back as HTTP 431, far from its cause.
    checkSize(LIMITS.bearerToken, `token from ${u.host} for registry ${ep.host}`, Buffer.byteLength(token));
    this.tokens.set(key, token, typeof body.expires_in === 'number' ? body.expires_in : undefined, typeof body.issued_at === 'string' ? body.issued_at : undefined);
    return `Bearer ${token}`;
  }
}

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
