/**
 * ADD of a URL: the file fetched over http(s) (undici), as BuildKit's http
 * source fetches it. The file is named by the URL's last path element
 * (`__unnamed__` when there is none, as dockerfile2llb names it), written
 * 0600 (the http source's default mode; --chmod applies to the copy), its
 * mtime taken from Last-Modified when the server gives one. Its sha256 is
 * measured on the way and checked against `--checksum` when one is given.
 *
 * What a server decides is bounded: the body by LIMITS.addUrl (a declared
 * Content-Length above it is refused before any byte is read, a longer body
 * is cut as it passes), redirects by REMOTE_REDIRECTS, the whole exchange
 * by REMOTE_TIMEOUT_MS and each wait for headers or data by
 * REMOTE_IDLE_MS. Errors name the Dockerfile's line and the URL.
 *
 * Git sources (`git@…`, `git://…`, `….git` over http) are not fetched.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { request, type Dispatcher } from 'undici';
import { exceeded, LIMITS, type Limit } from '../limits';
import { BuildRemoteError, type SourceLocation } from './errors';
import type { BuildPlan } from './plan';
import { BuildStepError } from './steperror';

/** Redirects followed at most (Go's http.Client, which BuildKit's http source uses, stops after 10). */
export const REMOTE_REDIRECTS = 10;
/** The whole fetch, headers to last byte. */
export const REMOTE_TIMEOUT_MS = 30 * 60 * 1000;
/** Waiting for the response headers, or between two pieces of the body. */
export const REMOTE_IDLE_MS = 60 * 1000;

/** An http(s) source of ADD. */
export function isHttpSource(s: string): boolean {
  return /^https?:\/\//.test(s);
}

/** A source ADD takes as remote (http, https or git); the context holds none of these. */
export function isRemoteSource(s: string): boolean {
  return /^(https?:\/\/|git@|git:\/\/)/.test(s);
}

/** A git repository source, which ADD does not fetch yet. */
export function isGitSource(s: string): boolean {
  if (/^(git@|git:\/\/)/.test(s)) return true;
  if (!isHttpSource(s)) return false;
  try {
    return new URL(s).pathname.endsWith('.git');
  } catch {
    return false;
  }
}

/** The name the fetched file gets: the URL path's last element, else `__unnamed__` (dockerfile2llb's rule). */
export function remoteName(url: string): string {
  let p: string;
  try {
    p = new URL(url).pathname;
  } catch {
    return '__unnamed__';
  }
  const base = path.posix.basename(p);
  let name = base;
  try {
    name = decodeURIComponent(base);
  } catch {
    /* kept as written */
  }
  return name === '' || name === '.' || name === '..' || name === '/' || name.includes('/') || name.includes('\0') ? '__unnamed__' : name;
}

/** `--checksum=sha256:<64 hex>` checked; the digest it names. */
export function parseChecksum(spec: string, loc: SourceLocation): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(spec);
  if (!m) throw new BuildRemoteError(`${loc.file}:${loc.line}: ADD --checksum=${spec}: expected sha256:<64 hex digits>`);
  return spec;
}

export interface RemoteFile {
  url: string;
  /** The fetched file (its name is `name`), mode 0600. */
  file: string;
  name: string;
  /** sha256 of the content. */
  digest: string;
  size: number;
  /** From Last-Modified, when given and valid. */
  lastModified?: Date;
}

export interface FetchOptions {
  loc: SourceLocation;
  /** `--checksum`: the content must have this digest. */
  checksum?: string;
  signal: AbortSignal;
  /** LIMITS.addUrl unless given (tests use a small one). */
  limit?: Limit;
  timeoutMs?: number;
  idleMs?: number;
  dispatcher?: Dispatcher;
}

/** Fetches `url` into the empty directory `dir`. */
export async function fetchRemote(url: string, dir: string, o: FetchOptions): Promise<RemoteFile> {
  const where = `${o.loc.file}:${o.loc.line}: ADD ${url}`;
  const limit = o.limit ?? LIMITS.addUrl;
  const checksum = o.checksum !== undefined ? parseChecksum(o.checksum, o.loc) : undefined;
  const timeout = AbortSignal.timeout(o.timeoutMs ?? REMOTE_TIMEOUT_MS);
  const signal = AbortSignal.any([o.signal, timeout]);
  const idle = o.idleMs ?? REMOTE_IDLE_MS;
  const name = remoteName(url);
  const file = path.join(dir, name);
  const fail = (why: string, cause?: unknown): BuildRemoteError => new BuildRemoteError(`${where}: ${why}`, url, cause);
  let res: Dispatcher.ResponseData;
  try {
    res = await request(url, { method: 'GET', maxRedirections: REMOTE_REDIRECTS, headersTimeout: idle, bodyTimeout: idle, signal, ...(o.dispatcher ? { dispatcher: o.dispatcher } : {}) });
  } catch (err) {
    if (o.signal.aborted) throw fail('the build was cancelled', err);
    if (timeout.aborted) throw fail(`no answer within ${Math.round((o.timeoutMs ?? REMOTE_TIMEOUT_MS) / 1000)} s`, err);
    const e = err as Error & { code?: string };
    if (e.code === 'UND_ERR_REQ_RETRY' || /redirect/i.test(e.message)) throw fail(`more than ${REMOTE_REDIRECTS} redirects`, err);
    throw fail(`cannot fetch: ${e.code ? `${e.code}: ` : ''}${e.message}`, err);
  }
  const body = res.body;
  try {
    if (res.statusCode >= 300 && res.statusCode < 400) throw fail(`more than ${REMOTE_REDIRECTS} redirects (last answer ${res.statusCode})`);
    if (res.statusCode < 200 || res.statusCode >= 300) throw fail(`the server answered ${res.statusCode}`);
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit.bytes) throw exceeded(limit, `${where}: the download (${declared} bytes declared)`);
    const hash = createHash('sha256');
    let size = 0;
    const fh = await fs.promises.open(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    try {
      for await (const chunk of body) {
        const c = chunk as Buffer;
        size += c.length;
        if (size > limit.bytes) throw exceeded(limit, `${where}: the download`);
        hash.update(c);
        let off = 0;
        while (off < c.length) off += (await fh.write(c, off, c.length - off)).bytesWritten;
      }
      await fh.chmod(0o600);
    } finally {
      await fh.close();
    }
    const digest = 'sha256:' + hash.digest('hex');
    if (checksum !== undefined && digest !== checksum) throw fail(`the content's digest ${digest} does not match --checksum=${checksum}`);
    const lm = res.headers['last-modified'];
    const t = typeof lm === 'string' ? Date.parse(lm) : NaN;
    const lastModified = Number.isFinite(t) ? new Date(t) : undefined;
    if (lastModified) await fs.promises.utimes(file, lastModified, lastModified);
    return { url, file, name, digest, size, ...(lastModified ? { lastModified } : {}) };
  } catch (err) {
    body.on('error', () => undefined);
    body.destroy();
    await fs.promises.rm(file, { force: true });
    if (err instanceof BuildRemoteError || (err as { code?: string }).code === 'E_LIMIT_EXCEEDED') throw err;
    if (o.signal.aborted) throw fail('the build was cancelled', err);
    if (timeout.aborted) throw fail(`not fetched within ${Math.round((o.timeoutMs ?? REMOTE_TIMEOUT_MS) / 1000)} s`, err);
    const e = err as Error & { code?: string };
    throw fail(`the download failed: ${e.code ? `${e.code}: ` : ''}${e.message}`, err);
  }
}

/**
 * Fetches each URL of the plan's ADD steps that has no --checksum, once per
 * URL, each into its own directory under `dir`: their content is what their
 * steps' keys cover (BuildKit keys an http source by the digest of what it
 * fetched), so it is fetched before any step is keyed, cached or not.
 * A URL with --checksum is keyed by the checksum and fetched only when its
 * step runs.
 */
export async function prefetchRemotes(plan: BuildPlan, dir: string, signal: AbortSignal, o: Pick<FetchOptions, 'limit' | 'dispatcher' | 'timeoutMs' | 'idleMs'> = {}): Promise<Map<string, RemoteFile>> {
  const out = new Map<string, RemoteFile>();
  let n = 0;
  for (const st of plan.stages) {
    for (const step of st.steps) {
      const a = step.action;
      if (a.kind !== 'add' || a.checksum !== undefined) continue;
      for (const url of a.sources) {
        if (!isHttpSource(url) || isGitSource(url) || out.has(url)) continue;
        const d = path.join(dir, `r${n++}`);
        await fs.promises.mkdir(d, { recursive: true, mode: 0o700 });
        try {
          out.set(url, await fetchRemote(url, d, { ...o, loc: step.loc, signal }));
        } catch (err) {
          // a cancel reads as every other cancelled build, not as this URL's failure
          if (signal.aborted) throw new BuildStepError('the build was cancelled');
          throw err;
        }
      }
    }
  }
  return out;
}

/** What a fetched file contributes to its step's cache key: the content and what the copy takes from the answer. */
export function remoteKeyFacts(r: RemoteFile): unknown {
  return { name: r.name, digest: r.digest, lastModified: r.lastModified?.toISOString() };
}
