/**
 * Containers: create, start, stop, kill, restart, wait, remove, list,
 * inspect, logs, attach and resize, for the caller's own containers only:
 * every path's `{id}` is looked up with the caller's uid (idOf), where
 * another owner's container is not found, exactly as a missing one, and
 * every action then goes through the same ContainerService as the
 * protocol's methods.
 */
import {
  ContainerAttachRequest,
  ContainerCreateRequest,
  ContainerInspectRequest,
  ContainerKillRequest,
  ContainerListRequest,
  ContainerLogsRequest,
  ContainerPruneRequest,
  ContainerTopRequest,
  ContainerRemoveRequest,
  ContainerRestartRequest,
  ContainerStartRequest,
  ContainerStopRequest,
  ContainerWaitRequest,
} from '../protocol';
import { checkStringMap, LIMITS } from '../limits';
import type { ContainerChange, ContainerService, ContainerView } from '../runtime/container';
import type { LogRecord } from '../runtime/logs';
import type { Caller } from '../util/peercred';
import { dockerContainerRow, dockerInspect } from '../views/containers';
import { EngineRequestError } from './errors';
import { frame, MULTIPLEXED_STREAM, RAW_STREAM, writeOrDrop } from './hijack';
import { answer, queryBool, queryFilters, queryInt, readObject, sendEmpty, sendJson, type EngineRequest } from './http';
import type { Attachments } from './attach';
import { runOptionsOf } from './createconfig';
import type { Route } from './router';
import { compareVersions } from './router';

export interface ContainerDeps {
  containers: ContainerService;
  attachments: Attachments;
}

/** Whether `caller` sees every user's containers (root), as the protocol's list does. */
const viewerOf = (caller: Caller): number => caller.uid;

/** The container list's filters Docker's clients send most, as `docker ps --filter` gives them. */
function matches(v: ContainerView, filters: Map<string, string[]>): boolean {
  const { record, state } = v;
  const labels = record.options.labels ?? {};
  for (const [name, values] of filters) {
    if (values.length === 0) continue;
    const ok = values.some((f) => {
      switch (name) {
        case 'label': {
          const eq = f.indexOf('=');
          return eq < 0 ? f in labels : labels[f.slice(0, eq)] === f.slice(eq + 1);
        }
        case 'name':
          // Docker matches names as a regular expression, against `/name`
          return safeRegExp(f).test(`/${record.name}`);
        case 'id':
          return record.id.startsWith(f);
        case 'status':
          return state.state === f;
        default:
          return false;
      }
    });
    if (!ok) return false;
  }
  return true;
}

function safeRegExp(pattern: string): RegExp {
  try {
    return new RegExp(pattern.slice(0, 256));
  } catch {
    throw new EngineRequestError(400, `invalid name filter: ${JSON.stringify(pattern.slice(0, 64))} is not a regular expression`);
  }
}

/** The Docker inspect of a container, with the HostConfig fields Docker's clients read. */
function inspectOf(containers: ContainerService, id: string): Record<string, unknown> {
  const details = containers.inspect(id);
  const i = dockerInspect(details);
  const o = details.record.options;
  return {
    ...i,
    HostConfig: {
      ...i.HostConfig,
      AutoRemove: !!o.rm,
      NetworkMode: o.network ?? 'bridge',
      Binds: o.volumes ?? null,
      Memory: o.memory ?? 0,
      Privileged: !!o.privileged,
      ReadonlyRootfs: !!o.readOnly,
      RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
      LogConfig: { Type: 'json-file', Config: {} },
    },
  };
}

/**
 * `POST /containers/{id}/wait?condition=`: `not-running` (the default: at
 * once when it does not run), `next-exit`, or `removed`. The status line
 * goes out first, as Docker's does, so a client that waits before it starts
 * the container knows the wait is in place; the body follows at the end.
 */
function wait(r: EngineRequest, containers: ContainerService, id: string): Promise<void> {
  const res = answer(r);
  const condition = r.query.get('condition') || 'not-running';
  if (!['not-running', 'next-exit', 'removed'].includes(condition)) throw new EngineRequestError(400, `invalid condition ${JSON.stringify(condition.slice(0, 32))}: not-running, next-exit or removed`);
  const now = containers.inspect(id).state;
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.flushHeaders();
  const finish = (code: number): void => {
    res.end(JSON.stringify({ StatusCode: code, Error: null }));
  };
  if (condition === 'not-running' && now.state !== 'running') {
    finish(now.exitCode ?? 0);
    return Promise.resolve();
  }
  return new Promise<void>((resolve) => {
    let exitCode = now.exitCode ?? 0;
    const onEvent = (e: ContainerChange): void => {
      if (e.container.record.id !== id) return;
      // a container run with AutoRemove has no `die`: its `destroy` carries the exit
      if (e.action === 'die' || e.action === 'destroy') exitCode = e.container.state.exitCode ?? exitCode;
      if ((e.action === 'die' && condition !== 'removed') || e.action === 'destroy') done(exitCode);
    };
    const done = (code?: number): void => {
      containers.off('event', onEvent);
      res.off('close', gone);
      if (code !== undefined) finish(code);
      resolve();
    };
    const gone = (): void => done();
    containers.on('event', onEvent);
    res.once('close', gone);
  });
}

/** `GET /containers/{id}/logs`: the log so far (`tail`, `since`, `until`), then with `follow` what comes, until the container ends. */
async function logs(r: EngineRequest, containers: ContainerService, id: string): Promise<void> {
  const res = answer(r);
  const want = { stdout: queryBool(r.query, 'stdout'), stderr: queryBool(r.query, 'stderr') };
  if (!want.stdout && !want.stderr) throw new EngineRequestError(400, 'you must choose at least one stream');
  const tailText = r.query.get('tail');
  const tail = tailText === null || tailText === '' || tailText === 'all' ? undefined : queryInt(r.query, 'tail', { min: 0 });
  const since = Number(r.query.get('since') || 0) * 1000;
  const until = Number(r.query.get('until') || 0) * 1000;
  const timestamps = queryBool(r.query, 'timestamps');
  const follow = queryBool(r.query, 'follow');
  const tty = !!containers.inspect(id).record.options.tty;
  // Docker gives a tty's log raw and frames the rest; from API 1.42 the type says which
  const type = tty || compareVersions(r.version, '1.42') < 0 ? RAW_STREAM : MULTIPLEXED_STREAM;
  const closed = new AbortController();
  res.once('close', () => closed.abort());
  const write = (stream: 'stdout' | 'stderr', data: Buffer, time?: string): void => {
    if (!want[stream] || res.destroyed) return;
    const t = time ? Date.parse(time) : Date.now();
    if ((since && t < since) || (until && t > until)) return;
    const bytes = timestamps ? Buffer.concat([Buffer.from(`${time ?? new Date().toISOString()} `), data]) : data;
    writeOrDrop(res, tty ? bytes : frame(stream, bytes));
  };
  // set now, so output that follows before the backlog is written still goes out with the right type
  res.statusCode = 200;
  res.setHeader('Content-Type', type);
  let ended: () => void = () => undefined;
  const followEnded = new Promise<void>((resolve) => (ended = resolve));
  const entries: LogRecord[] = await containers.logs(id, {
    tail,
    follow: follow ? { output: (stream, data, time) => write(stream, data, time), exit: () => ended() } : undefined,
    signal: closed.signal,
  });
  if (!res.headersSent) res.flushHeaders();
  for (const e of entries) write(e.stream, Buffer.from(e.data, 'base64'), e.time);
  if (follow && containers.inspect(id).state.state === 'running') await Promise.race([followEnded, new Promise((resolve) => closed.signal.addEventListener('abort', resolve))]);
  res.end();
}

export function containerRoutes(deps: ContainerDeps): Route[] {
  const { containers, attachments } = deps;
  /** The full id of the caller's container `ref`. */
  const own = (r: EngineRequest): string => containers.idOf(r.params.id, viewerOf(r.caller));
  return [
    {
      method: 'POST',
      path: '/containers/create',
      access: ContainerCreateRequest.method,
      handle: async (r) => {
        const opts = runOptionsOf(await readObject(r), r.query.get('name') || undefined);
        checkStringMap(LIMITS.labels, 'Labels', opts.labels);
        const { id } = await containers.createContainer(opts, undefined, r.caller);
        sendJson(r, 201, { Id: id, Warnings: [] });
      },
    },
    {
      method: 'GET',
      path: '/containers/json',
      access: ContainerListRequest.method,
      handle: (r) => {
        const filters = queryFilters(r.query, ['label', 'name', 'id', 'status']);
        const all = queryBool(r.query, 'all') || (filters.get('status') ?? []).some((s) => s !== 'running');
        let rows = containers.list(all, viewerOf(r.caller)).filter((v) => matches(v, filters));
        const limit = queryInt(r.query, 'limit', { min: -1 });
        if (limit !== undefined && limit > 0) rows = rows.slice(0, limit);
        sendJson(r, 200, rows.map((v) => dockerContainerRow(v)));
      },
    },
    { method: 'GET', path: '/containers/{id}/json', access: ContainerInspectRequest.method, handle: (r) => sendJson(r, 200, inspectOf(containers, own(r))) },
    {
      method: 'POST',
      path: '/containers/{id}/start',
      access: ContainerStartRequest.method,
      handle: async (r) => {
        const id = own(r);
        if (containers.inspect(id).state.state === 'running') return sendEmpty(r, 304);
        const { sink, started } = attachments.takeFor(id);
        try {
          await containers.startContainer(id, sink);
        } catch (err) {
          // the attached clients have nothing more coming; an AutoRemove container that could not start goes, as Docker's does
          sink?.exit(-1);
          if (containers.inspect(id).record.options.rm) await containers.remove(id, true).catch(() => undefined);
          throw err;
        }
        started();
        sendEmpty(r);
      },
    },
    {
      method: 'POST',
      path: '/containers/{id}/stop',
      access: ContainerStopRequest.method,
      handle: async (r) => {
        const id = own(r);
        if (containers.inspect(id).state.state !== 'running') return sendEmpty(r, 304);
        await containers.stop(id, queryInt(r.query, 't', { min: -1 }) ?? undefined);
        sendEmpty(r);
      },
    },
    {
      method: 'POST',
      path: '/containers/{id}/kill',
      access: ContainerKillRequest.method,
      handle: async (r) => {
        await containers.kill(own(r), r.query.get('signal') || undefined);
        sendEmpty(r);
      },
    },
    {
      method: 'POST',
      path: '/containers/{id}/restart',
      access: ContainerRestartRequest.method,
      handle: async (r) => {
        await containers.restart(own(r), queryInt(r.query, 't', { min: -1 }) ?? undefined);
        sendEmpty(r);
      },
    },
    { method: 'POST', path: '/containers/{id}/wait', access: ContainerWaitRequest.method, handle: (r) => wait(r, containers, own(r)) },
    {
      method: 'DELETE',
      path: '/containers/{id}',
      access: ContainerRemoveRequest.method,
      handle: async (r) => {
        if (queryBool(r.query, 'link')) throw new EngineRequestError(400, 'links are not supported by Capsa');
        // `v` (anonymous volumes): Capsa makes none for a container, so there are none to remove
        await containers.remove(own(r), queryBool(r.query, 'force'));
        sendEmpty(r);
      },
    },
    {
      method: 'GET',
      path: '/containers/{id}/top',
      access: ContainerTopRequest.method,
      handle: async (r) => {
        if (r.query.get('ps_args')) throw new EngineRequestError(400, 'ps_args is not supported by Capsa: the processes come as `ps -ef` lists them');
        const { titles, processes } = await containers.top(own(r));
        sendJson(r, 200, { Titles: titles, Processes: processes });
      },
    },
    {
      method: 'POST',
      path: '/containers/prune',
      access: ContainerPruneRequest.method,
      handle: async (r) => {
        const filters = queryFilters(r.query, ['until', 'label']);
        if (filters.size) throw new EngineRequestError(400, 'prune filters are not supported by Capsa');
        // the caller's own stopped containers (root: everyone's), as the protocol's prune
        sendJson(r, 200, { ContainersDeleted: await containers.prune(viewerOf(r.caller)), SpaceReclaimed: 0 });
      },
    },
    { method: 'GET', path: '/containers/{id}/logs', access: ContainerLogsRequest.method, handle: (r) => logs(r, containers, own(r)) },
    { method: 'POST', path: '/containers/{id}/attach', access: ContainerAttachRequest.method, hijack: true, handle: (r) => attachments.attach(r, own(r)) },
    {
      method: 'POST',
      path: '/containers/{id}/resize',
      // a resize reaches only a session of the caller's own container, as the protocol's stream/resize
      access: ContainerAttachRequest.method,
      handle: (r) => {
        const id = own(r);
        const rows = queryInt(r.query, 'h', { min: 0, max: 65535 }) ?? 0;
        const cols = queryInt(r.query, 'w', { min: 0, max: 65535 }) ?? 0;
        if (rows > 0 && cols > 0) containers.resize(id, rows, cols);
        sendEmpty(r, 200);
      },
    },
  ];
}
