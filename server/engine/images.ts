/**
 * Images: list, inspect, pull (`POST /images/create`, with Docker's JSON
 * progress stream), remove and tag, each in the caller's namespace of names
 * through the same services as the protocol's image methods.
 */
import { ImageInspectRequest, ImageListRequest, ImagePullRequest, ImageRemoveRequest, ImageTagRequest, type ImageSummary, type RegistryAuth } from '../protocol';
import { familiarReference, parseReference } from '../image/reference';
import type { PullProgress } from '../image/pull';
import type { ContainerService } from '../runtime/container';
import type { CommitService } from '../services/commit';
import type { ImageService } from '../services/images';
import { hasFullAccess } from '../handlers/access';
import { engineError, EngineRequestError } from './errors';
import { answer, queryBool, queryFilters, sendEmpty, sendJson, unixSeconds, type EngineRequest } from './http';
import type { Route } from './router';

export interface ImageDeps {
  images: ImageService;
  containers: ContainerService;
  commit: CommitService;
}

/** A row of `GET /images/json`. */
function imageRow(s: ImageSummary): Record<string, unknown> {
  return {
    Id: s.id,
    ParentId: s.parent ?? '',
    RepoTags: s.names,
    RepoDigests: s.repoDigests,
    Created: unixSeconds(s.created),
    Size: s.size,
    VirtualSize: s.size,
    SharedSize: -1,
    Labels: {},
    Containers: -1,
  };
}

/** A shell-style pattern of `reference=` filters (`busy*`, `busybox:1.*`) as a regular expression. */
function globPattern(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);
}

/** The credentials of `X-Registry-Auth` (base64url JSON, as Docker's clients send it), used for this pull alone. */
function registryAuthHeader(header: string | string[] | undefined): RegistryAuth | undefined {
  if (typeof header !== 'string' || header === '') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
  } catch {
    throw new EngineRequestError(400, 'X-Registry-Auth is not base64-encoded JSON');
  }
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  if (typeof o.username === 'string' && o.username !== '' && typeof o.password === 'string') return { username: o.username.slice(0, 1024), password: o.password.slice(0, 16384) };
  return undefined;
}

/** The layer's id in Docker's progress: the first 12 hex digits of its digest. */
const shortId = (digest: string): string => digest.replace(/^sha256:/, '').slice(0, 12);

/**
 * `POST /images/create?fromImage=…&tag=…`: the pull, reported as Docker's
 * JSON messages. The answer begins with the first progress, so a pull that
 * fails before (an unknown image, refused credentials) gets its status code;
 * a failure after is the stream's last message, `{"error": …}`, as Docker's.
 */
async function pull(r: EngineRequest, deps: ImageDeps): Promise<void> {
  const res = answer(r);
  const from = r.query.get('fromImage');
  if (r.query.get('fromSrc') !== null) throw new EngineRequestError(400, 'importing an image (fromSrc) is not supported by Capsa');
  if (!from) throw new EngineRequestError(400, 'fromImage is required');
  const tag = r.query.get('tag') ?? '';
  const reference = tag === '' ? from : tag.startsWith('sha256:') ? `${from}@${tag}` : `${from}:${tag}`;
  const ref = parseReference(reference);
  const auth = registryAuthHeader(r.req.headers['x-registry-auth']);
  const abort = new AbortController();
  // a client that hangs up cancels its pull
  res.once('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  const seen = new Map<string, string>();
  const send = (message: Record<string, unknown>): void => {
    if (!res.headersSent) res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write(`${JSON.stringify(message)}\n`);
  };
  const onProgress = (p: PullProgress): void => {
    if (!res.headersSent) send({ status: `Pulling from ${ref.repository.replace(/^library\//, '')}`, id: ref.tag ?? ref.digest ?? 'latest' });
    for (const l of p.layers) {
      const id = shortId(l.digest);
      const key = l.status === 'downloading' ? `${l.status}:${l.done}` : l.status;
      if (seen.get(id) === key) continue;
      if (!seen.has(id)) send({ status: 'Pulling fs layer', progressDetail: {}, id });
      seen.set(id, key);
      if (l.status === 'downloading') send({ status: 'Downloading', progressDetail: { current: l.done, total: l.size }, id });
      else if (l.status === 'extracting') send({ status: 'Extracting', progressDetail: { current: l.size, total: l.size }, id });
      else if (l.status === 'done') send({ status: 'Pull complete', progressDetail: {}, id });
      else if (l.status === 'exists') send({ status: 'Already exists', progressDetail: {}, id });
    }
  };
  let result;
  try {
    result = await deps.images.pull(reference, { caller: r.caller, platform: r.query.get('platform') || undefined, signal: abort.signal, onProgress, auth });
  } catch (err) {
    if (!res.headersSent) throw err;
    const { message } = engineError(err);
    send({ errorDetail: { message }, error: message });
    res.end();
    return;
  }
  const name = familiarReference(ref.tag === undefined && ref.digest === undefined ? `${reference}:latest` : reference);
  if (!res.headersSent) send({ status: `Pulling from ${ref.repository.replace(/^library\//, '')}`, id: ref.tag ?? ref.digest ?? 'latest' });
  send({ status: `Digest: ${result.manifestDigest}` });
  send({ status: result.upToDate ? `Status: Image is up to date for ${name}` : `Status: Downloaded newer image for ${name}` });
  res.end();
}

export function imageRoutes(deps: ImageDeps): Route[] {
  const { images, containers, commit } = deps;
  return [
    {
      method: 'GET',
      path: '/images/json',
      access: ImageListRequest.method,
      handle: async (r) => {
        const filters = queryFilters(r.query, ['dangling', 'reference', 'label']);
        let rows = await images.list(r.caller);
        const dangling = filters.get('dangling')?.[0];
        if (dangling !== undefined) rows = rows.filter((s) => (s.names.length === 0) === /^(1|true)$/i.test(dangling));
        const refs = filters.get('reference');
        if (refs?.length) {
          const pats = refs.map((g) => globPattern(g.includes(':') ? g : `${g}:*`));
          rows = rows.filter((s) => s.names.some((n) => pats.some((p) => p.test(n))));
        }
        if (filters.get('label')?.length) throw new EngineRequestError(400, "the 'label' filter of images is not supported by Capsa");
        sendJson(r, 200, rows.map(imageRow));
      },
    },
    { method: 'POST', path: '/images/create', access: ImagePullRequest.method, handle: (r) => pull(r, deps) },
    {
      method: 'GET',
      path: '/images/{name*}/json',
      access: ImageInspectRequest.method,
      handle: async (r) => sendJson(r, 200, await images.inspect(r.caller, r.params.name)),
    },
    {
      method: 'POST',
      path: '/images/{name*}/tag',
      access: ImageTagRequest.method,
      handle: async (r) => {
        const repo = r.query.get('repo');
        if (!repo) throw new EngineRequestError(400, 'repo is required');
        const tag = r.query.get('tag') || 'latest';
        await commit.tag(r.caller, r.params.name, `${repo}:${tag}`);
        sendEmpty(r, 201);
      },
    },
    {
      method: 'DELETE',
      path: '/images/{name*}',
      access: ImageRemoveRequest.method,
      handle: async (r) => {
        const full = hasFullAccess(r.caller);
        const result = await images.remove(r.caller, r.params.name, queryBool(r.query, 'force'), full ? containers.imagesInUse() : containers.imagesInUse(r.caller.uid), containers.imagesInUse());
        sendJson(r, 200, [...result.untagged.map((u) => ({ Untagged: familiarReference(u) })), ...result.deleted.map((d) => ({ Deleted: d }))]);
      },
    },
  ];
}
