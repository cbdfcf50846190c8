/** HTTP pieces of the registry client: the response shape, retries, error bodies, endpoints for a host. */
import { isIP } from 'node:net';
import type { Dispatcher } from 'undici';
import type { CapsaConfig } from '../../config';
import { LIMITS, readPrefix } from '../../limits';
import { CancelledError } from '../errors';
import { clip, printable } from '../../util/text';
import { DEFAULT_REGISTRY } from '../reference';

/** Docker Hub's API endpoint for the `docker.io` name. */
const DOCKER_HUB_ENDPOINT = 'https://registry-1.docker.io';
export const MAX_REDIRECTS = 5;
export const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);
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

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
  url: string;
}

export interface RequestOptions {
  method?: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Request body (push): a buffer, or a function giving a fresh stream for each attempt. */
  body?: Buffer | (() => NodeJS.ReadableStream);
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Scope asked for in a Bearer token request. */
  scope: string;
  /** Retry on statuses/resets (default true). */
  retry?: boolean;
}

export function header(res: { headers: Record<string, string | string[] | undefined> }, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
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
export async function readErrorBody(body: Response['body']): Promise<{ codes: string[]; message: string | undefined }> {
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
export function discard(body: Response['body']): void {
  // The body is dropped on purpose: its abort error says only that.
  body.on('error', () => undefined);
  body.destroy();
}

export function isRetryableError(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } };
  return RETRYABLE_CODES.has(e?.code ?? '') || RETRYABLE_CODES.has(e?.cause?.code ?? '');
}

export function errCode(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string }; message?: string };
  return e?.cause?.code ?? e?.code ?? e?.message ?? String(err);
}
