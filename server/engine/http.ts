/**
 * What every endpoint shares: the request as the router hands it over
 * (caller, path parameters, query), a bounded JSON body, and the ways an
 * answer goes out (JSON, empty, a stream of JSON messages).
 */
import type * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { LIMITS } from '../limits';
import type { Caller } from '../util/peercred';
import { EngineRequestError } from './errors';

/** One request, as an endpoint sees it. */
export interface EngineRequest {
  readonly req: http.IncomingMessage;
  /** The answer, for a plain request; for a hijacked one (Upgrade: tcp), `socket` instead. */
  readonly res?: http.ServerResponse;
  /** The connection of a hijacked request, and the bytes read past its headers. */
  readonly socket?: Duplex;
  readonly head?: Buffer;
  /** Who the kernel says is at the other end (SO_PEERCRED at accept). */
  readonly caller: Caller;
  /** The path's `{name}` parts, decoded. */
  readonly params: Record<string, string>;
  readonly query: URLSearchParams;
  /** The API version the client asked for (the `/v1.NN/` prefix), or the newest. */
  readonly version: string;
}

/** A query parameter as Docker reads a boolean: `1`, `true`, `True` (any case) are true; absent is `fallback`. */
export function queryBool(q: URLSearchParams, name: string, fallback = false): boolean {
  const v = q.get(name);
  if (v === null || v === '') return fallback;
  return !/^(0|false|no)$/i.test(v);
}

/** A whole-number query parameter, or undefined when absent; a malformed one is a 400. */
export function queryInt(q: URLSearchParams, name: string, opts: { min?: number; max?: number } = {}): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  if (!/^-?\d{1,15}$/.test(v)) throw new EngineRequestError(400, `invalid value for ${name}: ${JSON.stringify(v.slice(0, 64))} is not a whole number`);
  const n = Number(v);
  if ((opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max)) {
    throw new EngineRequestError(400, `invalid value for ${name}: ${n} is out of range`);
  }
  return n;
}

/** `filters` as Docker sends it: JSON, `{"label": ["a=b"]}` (or the old `{"label": {"a=b": true}}`); each name's values. */
export function queryFilters(q: URLSearchParams, known: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const text = q.get('filters');
  if (text === null || text === '') return out;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new EngineRequestError(400, 'invalid filters: not JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new EngineRequestError(400, 'invalid filters: not a JSON object');
  for (const [name, values] of Object.entries(raw as Record<string, unknown>)) {
    if (!known.includes(name)) throw new EngineRequestError(400, `invalid filter '${name.slice(0, 64)}' (supported here: ${known.join(', ')})`);
    const list = Array.isArray(values) ? values : typeof values === 'object' && values !== null ? Object.keys(values) : undefined;
    if (!list || list.some((x) => typeof x !== 'string')) throw new EngineRequestError(400, `invalid filter '${name}': its values must be strings`);
    out.set(name, list as string[]);
  }
  return out;
}

/**
 * The request's JSON body (`undefined` when it has none), read up to the
 * Engine API body limit: a longer one is refused as it arrives, a body that
 * ends early or is not JSON is a 400.
 */
export async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const limit = LIMITS.engineRequestBody.bytes;
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw tooLarge();
  // listeners rather than for-await: leaving a for-await destroys the request, and with it the socket the answer goes on
  const body = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        done();
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      done();
      if (!req.complete) reject(new EngineRequestError(400, 'the request body ended before its declared length'));
      else resolve(Buffer.concat(chunks));
    };
    const done = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onEnd);
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('close', onEnd);
  });
  const text = body.toString('utf8').trim();
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new EngineRequestError(400, `the request body is not valid JSON: ${(err as Error).message}`);
  }
}

function tooLarge(): EngineRequestError {
  return new EngineRequestError(413, `the request body exceeds the ${LIMITS.engineRequestBody.name} limit (${LIMITS.engineRequestBody.bytes / 1024 / 1024} MiB)`);
}

/** The body as a JSON object (`{}` when there is none); anything else is a 400. */
export async function readObject(r: EngineRequest): Promise<Record<string, unknown>> {
  const body = await readJson(r.req);
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw new EngineRequestError(400, 'the request body must be a JSON object');
  return body as Record<string, unknown>;
}

/** The plain answer of `r`: a hijacked request has none. */
export function answer(r: EngineRequest): http.ServerResponse {
  if (!r.res) throw new EngineRequestError(400, `${r.req.method} ${r.req.url?.slice(0, 200)} does not take an upgraded connection`);
  return r.res;
}

export function sendJson(r: EngineRequest, status: number, body: unknown): void {
  const res = answer(r);
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendEmpty(r: EngineRequest, status = 204): void {
  const res = answer(r);
  res.writeHead(status);
  res.end();
}

/** Docker's time for an image or a container: seconds since the epoch. */
export function unixSeconds(iso: string | undefined): number {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? Math.floor(t / 1000) : 0;
}
