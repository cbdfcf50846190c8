/**
 * The push half of the distribution API (distribution-spec, "Push"): does
 * the registry have a blob (HEAD), mount it from another repository of the
 * same registry, upload it in chunks (POST, PATCH with Content-Range, PUT
 * with the digest) resuming from the registry's own word on what it holds
 * (GET of the upload's Location, its Range header) when a connection drops,
 * and PUT a manifest's exact bytes.
 */
import { createReadStream } from 'node:fs';
import { CancelledError, RegistryAuthError, RegistryError } from '../errors';
import type { ImageReference } from '../reference';
import type { Descriptor } from '../types';
import { errCode, header, isRetryableError, readErrorBody, sleep, type Endpoint, type RequestOptions, type Response } from './http';

/** What an upload needs of the client (RegistryClient has it). */
export interface UploadClient {
  readonly attempts: number;
  send(ep: Endpoint, url: string, opts: RequestOptions): Promise<Response>;
  backoff(failures: number): number;
}

/** How a blob reached the registry. */
export type BlobOutcome = { kind: 'exists' } | { kind: 'mounted'; from: string } | { kind: 'pushed'; resumed: number };

export interface UploadOptions {
  signal?: AbortSignal;
  /** Bytes per PATCH; default 16 MiB. A blob no larger goes in one PATCH. */
  chunkSize?: number;
  /** Bytes sent so far of this blob (for progress). */
  onBytes?: (done: number) => void;
  /** Repositories of the same registry the blob may be mounted from, tried in order. */
  mountFrom?: string[];
}

const DEFAULT_CHUNK = 16 * 1024 * 1024;

/** An error for a push request the registry answered with `res`. */
export async function pushStatusError(ep: Endpoint, res: Response, what: string, repo: string): Promise<RegistryError> {
  const { codes, message } = await readErrorBody(res.body);
  const detail = message ?? `HTTP ${res.status}`;
  if (res.status === 401 || res.status === 403) {
    const denied = codes.includes('DENIED') || res.status === 403 ? 'access denied' : 'authentication required';
    return new RegistryAuthError(`push access to ${JSON.stringify(repo)} in registry ${ep.host}: ${denied}: ${detail}`, { status: res.status, registryCodes: codes });
  }
  return new RegistryError('E_REGISTRY', `${what} to registry ${ep.host}: HTTP ${res.status}: ${detail}`, { status: res.status, registryCodes: codes });
}

/** The URL a Location header names, relative to the request's. */
function location(res: Response, ep: Endpoint, what: string): string {
  const loc = header(res, 'location');
  if (!loc) throw new RegistryError('E_REGISTRY', `${what}: registry ${ep.host} answered HTTP ${res.status} without a Location`, { status: res.status });
  const u = new URL(loc, res.url);
  // the upload goes on where the registry says, but never to another scheme
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new RegistryError('E_REGISTRY', `${what}: registry ${ep.host} sent an upload Location with scheme ${u.protocol}`);
  return u.toString();
}

/** `Range: 0-N` → N+1 bytes held; absent or `0-0` on an empty upload → 0 (distribution answers `0-0` for nothing too, so 0-0 means 0 before any byte went). */
function heldBytes(res: Response, sentSoFar: number): number | undefined {
  const m = /^(?:bytes=)?0-(\d+)$/.exec((header(res, 'range') ?? '').trim());
  if (!m) return undefined;
  const end = Number(m[1]);
  return end === 0 && sentSoFar === 0 ? 0 : end + 1;
}

function withQuery(url: string, params: Record<string, string>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

/**
 * Makes blob `desc` (its bytes at `file`) present in `ref`'s repository:
 * nothing when the registry has it, a mount when another repository of the
 * registry has it, else a chunked upload that resumes after a dropped
 * connection from the offset the registry reports.
 */
export async function pushBlob(client: UploadClient, ep: Endpoint, ref: ImageReference, desc: Descriptor, file: string, opts: UploadOptions = {}): Promise<BlobOutcome> {
  const repo = ref.repository;
  const scope = `repository:${repo}:pull,push`;
  const { signal } = opts;
  const what = `blob ${desc.digest}`;
  const head = await client.send(ep, `${ep.url}/v2/${repo}/blobs/${desc.digest}`, { method: 'HEAD', scope, signal });
  await head.body.dump().catch(() => undefined);
  if (head.status === 200) return { kind: 'exists' };
  if (head.status !== 404) throw await pushStatusError(ep, head, `HEAD ${what}`, `${ref.registry}/${repo}`);

  let upload: string | undefined;
  for (const from of opts.mountFrom ?? []) {
    if (from === repo) continue;
    const res = await client.send(ep, `${ep.url}/v2/${repo}/blobs/uploads/?mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(from)}`, {
      method: 'POST',
      scope: `${scope} repository:${from}:pull`,
      signal,
      headers: { 'content-length': '0' },
    });
    if (res.status === 201) {
      await res.body.dump().catch(() => undefined);
      return { kind: 'mounted', from };
    }
    if (res.status !== 202) throw await pushStatusError(ep, res, `mount of ${what} from ${from}`, `${ref.registry}/${repo}`);
    // not mountable: the registry opened an ordinary upload instead
    upload = location(res, ep, `mount of ${what}`);
    await res.body.dump().catch(() => undefined);
    break;
  }
  upload ??= await startUpload(client, ep, ref, what, scope, signal);

  const chunk = Math.max(1, opts.chunkSize ?? DEFAULT_CHUNK);
  let offset = 0;
  let failures = 0;
  let resumed = 0;
  while (offset < desc.size) {
    if (signal?.aborted) throw new CancelledError(`push of ${what}`);
    const end = Math.min(desc.size, offset + chunk);
    let res: Response;
    try {
      const start = offset;
      res = await client.send(ep, upload, {
        method: 'PATCH',
        scope,
        signal,
        retry: false,
        headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${end - 1}`, 'content-length': String(end - start) },
        body: () => createReadStream(file, { start, end: end - 1 }),
      });
    } catch (err) {
      if (signal?.aborted || err instanceof CancelledError) throw new CancelledError(`push of ${what}`);
      const cause = (err as { cause?: unknown }).cause ?? err;
      if (!isRetryableError(cause) || ++failures >= client.attempts) {
        throw new RegistryError('E_REGISTRY_UNREACHABLE', `upload of ${what} to registry ${ep.host} failed at byte ${offset} of ${desc.size} after ${failures} attempts: ${errCode(cause)}`, { cause: err });
      }
      await sleep(client.backoff(failures), signal);
      // Ask the registry what it holds; an upload it dropped starts again.
      const status = await uploadStatus(client, ep, upload, scope, offset, signal);
      if (status) {
        upload = status.url;
        offset = status.held;
      } else {
        upload = await startUpload(client, ep, ref, what, scope, signal);
        offset = 0;
      }
      resumed++;
      opts.onBytes?.(offset);
      continue;
    }
    if (res.status !== 202 && res.status !== 204) throw await pushStatusError(ep, res, `PATCH of ${what}`, `${ref.registry}/${repo}`);
    upload = location(res, ep, `PATCH of ${what}`);
    offset = heldBytes(res, end) ?? end;
    await res.body.dump().catch(() => undefined);
    opts.onBytes?.(offset);
  }
  const put = await client.send(ep, withQuery(upload, { digest: desc.digest }), { method: 'PUT', scope, signal, headers: { 'content-length': '0' }, body: Buffer.alloc(0) });
  if (put.status !== 201 && put.status !== 204) throw await pushStatusError(ep, put, `PUT of ${what}`, `${ref.registry}/${repo}`);
  await put.body.dump().catch(() => undefined);
  return { kind: 'pushed', resumed };
}

async function startUpload(client: UploadClient, ep: Endpoint, ref: ImageReference, what: string, scope: string, signal?: AbortSignal): Promise<string> {
  const res = await client.send(ep, `${ep.url}/v2/${ref.repository}/blobs/uploads/`, { method: 'POST', scope, signal, headers: { 'content-length': '0' } });
  if (res.status !== 202) throw await pushStatusError(ep, res, `upload of ${what}`, `${ref.registry}/${ref.repository}`);
  const url = location(res, ep, `upload of ${what}`);
  await res.body.dump().catch(() => undefined);
  return url;
}

/** The upload's state as the registry tells it (GET of its Location): where to go on, or undefined when it no longer knows it. */
async function uploadStatus(client: UploadClient, ep: Endpoint, upload: string, scope: string, sent: number, signal?: AbortSignal): Promise<{ url: string; held: number } | undefined> {
  let res: Response;
  try {
    res = await client.send(ep, upload, { scope, signal });
  } catch (err) {
    if (signal?.aborted) throw new CancelledError('push');
    throw err;
  }
  if (res.status !== 204 && res.status !== 200) {
    await res.body.dump().catch(() => undefined);
    return undefined;
  }
  const held = heldBytes(res, sent);
  const url = header(res, 'location') ? location(res, ep, 'upload status') : upload;
  await res.body.dump().catch(() => undefined);
  return held === undefined ? undefined : { url, held };
}

/** PUTs manifest `bytes` (exactly these, so its digest stays) under `reference` (a tag or digest); returns the registry's digest. */
export async function putManifest(client: UploadClient, ep: Endpoint, ref: ImageReference, reference: string, bytes: Buffer, mediaType: string, signal?: AbortSignal): Promise<string | undefined> {
  const res = await client.send(ep, `${ep.url}/v2/${ref.repository}/manifests/${reference}`, {
    method: 'PUT',
    scope: `repository:${ref.repository}:pull,push`,
    signal,
    headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
    body: bytes,
  });
  if (res.status !== 201 && res.status !== 200 && res.status !== 202) throw await pushStatusError(ep, res, `manifest ${reference}`, `${ref.registry}/${ref.repository}`);
  const digest = header(res, 'docker-content-digest');
  await res.body.dump().catch(() => undefined);
  return digest;
}

/** GET `/v2/` with the client's credentials: the login check. 200 is accepted; anything else an error. */
export async function checkLogin(client: UploadClient, ep: Endpoint, signal?: AbortSignal): Promise<void> {
  const res = await client.send(ep, `${ep.url}/v2/`, { scope: '', signal });
  await res.body.dump().catch(() => undefined);
  if (res.status === 200) return;
  if (res.status === 401 || res.status === 403) throw new RegistryAuthError(`login to registry ${ep.host} refused: HTTP ${res.status}: the username or password is wrong`, { status: res.status });
  throw new RegistryError('E_REGISTRY', `login to registry ${ep.host}: GET /v2/ answered HTTP ${res.status}`, { status: res.status });
}
