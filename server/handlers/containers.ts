import {
  ContainerAttachRequest,
  ContainerCreateRequest,
  ContainerExecRequest,
  ContainerPruneRequest,
  ContainerTopRequest,
  ContainerInspectRequest,
  ContainerKillRequest,
  ContainerListRequest,
  ContainerLogsRequest,
  ContainerRemoveRequest,
  ContainerRestartRequest,
  ContainerRunRequest,
  ContainerStartRequest,
  ContainerStopRequest,
  ContainerWaitRequest,
  StreamExitNotification,
  StreamInputNotification,
  StreamOutputNotification,
  StreamResizeNotification,
  StreamCloseNotification,
  StreamTimingsNotification,
  type ContainerAttachParams,
  type ContainerCreateParams,
  type ContainerExecParams,
  type ContainerStartParams,
  type ContainerLogsParams,
  type ContainerRemoveParams,
  type ContainerRunParams,
  type ContainerStopParams,
} from '../protocol';
import { ClientGoneError, InvalidArgumentError } from '../errors';
import type { ContainerService, ExecSession, StreamSink } from '../runtime/container';
import { containerInspect, containerRow } from '../views/containers';
import { handled } from './errors';
import { checkStringMap, LIMITS } from '../limits';
import { pullProgress } from './progress';
import type { ClientConnection } from './access';
import { traceFor } from '../runtime/trace';

/** A run, exec or follow session of this connection, addressed by the client's attachId. */
type Session = { kind: 'container'; id: string; detach?: () => void } | { kind: 'exec'; exec?: ExecSession; pending: Array<[Buffer, boolean]>; hungUp?: boolean };

/**
 * The container methods, for the connection's caller: a caller other than
 * root sees and acts on its own containers only. Each request names its
 * container through `idOf(ref, uid)` first, where another owner's container
 * is not found, exactly as a missing one; the runtime then gets the full id.
 * Stream sessions are this connection's own, each opened after that lookup,
 * so no attach id reaches another's container.
 */
export function registerContainerHandlers(connection: ClientConnection, containers: ContainerService): () => void {
  const sessions = new Map<string, Session>();
  /** Run sessions whose client asked for the run's phases (debugTimings). */
  const wantsTimings = new Set<string>();
  const caller = connection.caller;
  const uid = caller.uid;
  const root = uid === 0;
  /** The full id of the container `ref` names, among the caller's. */
  const own = (ref: string): string => containers.idOf(ref, uid);

  /** Set once the connection is gone: a container's output then has nowhere to go. */
  let closed = false;
  /** Aborted once the connection is gone: work that only waits for this client (wait) ends then. */
  const gone = new AbortController();
  /** Sends a notification, unless the client went away (which sendNotification reports by throwing, not by rejecting). */
  const notify = <P>(type: { method: string }, params: P): void => {
    if (closed) return;
    try {
      // a send that fails asynchronously means the client went away: there is nobody to tell
      void (connection.sendNotification(type as never, params as never) as unknown as Promise<void>).catch(() => undefined);
    } catch {
      closed = true;
    }
  };
  const sinkFor = (attachId: string): StreamSink => ({
    output: (stream, data, time) => notify(StreamOutputNotification.type, { attachId, stream, data: data.toString('base64'), ...(time ? { time } : {}) }),
    exit: (exitCode, error, timings) => {
      sessions.delete(attachId);
      // a run traced for the helper's log alone (CAPSA_TRACE=1) sends none
      if (timings && wantsTimings.delete(attachId)) notify(StreamTimingsNotification.type, { attachId, phases: timings });
      notify(StreamExitNotification.type, { attachId, exitCode, error });
    },
  });

  const claim = (attachId: string | undefined): string | undefined => {
    // A request read before the connection closed can reach its handler after: it must not open a
    // session that nobody would ever close.
    if (closed) throw new ClientGoneError();
    if (attachId === undefined) return undefined;
    if (sessions.has(attachId)) throw new InvalidArgumentError(`attachId ${attachId} is already in use on this connection`);
    return attachId;
  };

  connection.onRequest(
    ContainerRunRequest.type,
    handled(async (params: ContainerRunParams) => {
      const trace = traceFor(params.debugTimings);
      trace.mark('request parsed');
      checkStringMap(LIMITS.labels, 'labels', params.labels);
      const attachId = claim(params.attachId);
      const { attachId: _a, workDoneToken, auth, debugTimings, ...opts } = params;
      if (attachId && debugTimings) wantsTimings.add(attachId);
      const progress = pullProgress(connection, workDoneToken, `Pulling ${opts.image}`);
      if (attachId) sessions.set(attachId, { kind: 'container', id: '' });
      try {
        const sink = attachId ? sinkFor(attachId) : undefined;
        const result = await containers.run(opts, sink, (p) => progress.report(p), caller, auth, trace);
        const s = attachId ? sessions.get(attachId) : undefined;
        if (s?.kind === 'container') {
          s.id = result.id;
          // a client that goes away (or detaches) leaves the container running, without it
          s.detach = () => containers.detachSink(result.id, sink!);
        }
        return result;
      } catch (err) {
        if (attachId) {
          sessions.delete(attachId);
          wantsTimings.delete(attachId);
        }
        throw err;
      } finally {
        progress.end();
      }
    }),
  );

  connection.onRequest(
    ContainerExecRequest.type,
    handled(async (params: ContainerExecParams) => {
      const attachId = claim(params.attachId) ?? `exec-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
      const session: Session = { kind: 'exec', pending: [] };
      sessions.set(attachId, session);
      try {
        const exec = await containers.exec({ ...params, container: own(params.container) }, sinkFor(attachId), attachId);
        session.exec = exec;
        for (const [data, eof] of session.pending) exec.input(data, eof);
        session.pending = [];
        if (session.hungUp) exec.hangup();
        return { execId: attachId };
      } catch (err) {
        sessions.delete(attachId);
        throw err;
      }
    }),
  );

  connection.onNotification(StreamInputNotification.type, (p) => {
    const s = typeof p?.attachId === 'string' ? sessions.get(p.attachId) : undefined;
    if (!s || typeof p.data !== 'string') return;
    const data = Buffer.from(p.data, 'base64');
    if (s.kind === 'exec') {
      if (s.exec) s.exec.input(data, !!p.eof);
      else s.pending.push([data, !!p.eof]);
    } else if (s.id) {
      containers.input(s.id, data, !!p.eof);
    }
  });

  connection.onNotification(StreamResizeNotification.type, (p) => {
    const s = typeof p?.attachId === 'string' ? sessions.get(p.attachId) : undefined;
    if (!s) return;
    try {
      if (s.kind === 'exec') s.exec?.resize(p.rows, p.cols);
      else if (s.id) containers.resize(s.id, p.rows, p.cols);
    } catch {
      // A bad size from one client must not disturb the session; it is ignored.
    }
  });

  connection.onNotification(StreamCloseNotification.type, (p) => {
    const s = typeof p?.attachId === 'string' ? sessions.get(p.attachId) : undefined;
    if (s?.kind === 'exec') {
      s.hungUp = true;
      s.exec?.hangup();
    } else if (s?.detach) {
      sessions.delete(p.attachId);
      s.detach();
    }
  });

  connection.onRequest(ContainerListRequest.type, handled((p) => containers.list(!!p?.all, uid).map((v) => containerRow(v, root))));
  connection.onRequest(ContainerInspectRequest.type, handled((p: { container: string }) => containerInspect(containers.inspect(own(p.container)), root)));
  connection.onRequest(
    ContainerStopRequest.type,
    handled(async (params: ContainerStopParams) => {
      await containers.stop(own(params.container), params.timeout);
    }),
  );
  connection.onRequest(ContainerKillRequest.type, handled(async (params: { container: string; signal?: string }) => {
    await containers.kill(own(params.container), params.signal);
  }));
  connection.onRequest(ContainerRemoveRequest.type, handled(async (params: ContainerRemoveParams) => {
    await containers.remove(own(params.container), !!params.force);
  }));
  connection.onRequest(ContainerStartRequest.type, handled(async (params: ContainerStartParams) => {
    const attachId = claim(params.attachId);
    const id = own(params.container);
    if (!attachId) return containers.startContainer(id);
    const sink = sinkFor(attachId);
    const session: Session = { kind: 'container', id, detach: () => containers.detachSink(id, sink) };
    sessions.set(attachId, session);
    try {
      await containers.startContainer(id, sink);
    } catch (err) {
      sessions.delete(attachId);
      throw err;
    }
  }));
  connection.onRequest(
    ContainerCreateRequest.type,
    handled(async (raw: ContainerCreateParams) => {
      checkStringMap(LIMITS.labels, 'labels', raw.labels);
      const { workDoneToken, auth, ...opts } = raw;
      const progress = pullProgress(connection, workDoneToken, `Pulling ${opts.image}`);
      try {
        return await containers.createContainer(opts, (p) => progress.report(p), caller, auth);
      } finally {
        progress.end();
      }
    }),
  );
  connection.onRequest(ContainerAttachRequest.type, handled(async (params: ContainerAttachParams) => {
    const attachId = claim(params.attachId);
    if (!attachId) throw new InvalidArgumentError('attach needs an attachId');
    const id = own(params.container);
    const detach = containers.attach(id, sinkFor(attachId));
    sessions.set(attachId, { kind: 'container', id, detach });
  }));
  connection.onRequest(ContainerTopRequest.type, handled((p: { container: string }) => containers.top(own(p.container))));
  connection.onRequest(ContainerPruneRequest.type, handled(async () => ({ deleted: await containers.prune(uid) })));
  connection.onRequest(ContainerRestartRequest.type, handled(async (params: { container: string; timeout?: number }) => {
    await containers.restart(own(params.container), params.timeout);
  }));
  connection.onRequest(
    ContainerWaitRequest.type,
    handled(async (p: { container: string }) => {
      const exitCode = containers.wait(own(p.container));
      // A wait of a client that went away holds nothing once the connection is gone: nobody is told.
      return { exitCode: await untilGone(exitCode, gone.signal) };
    }),
  );
  connection.onRequest(
    ContainerLogsRequest.type,
    handled(async (params: ContainerLogsParams) => {
      const follow = claim(params.followAttachId);
      const id = own(params.container);
      const closed = new AbortController();
      if (follow) sessions.set(follow, { kind: 'container', id, detach: () => closed.abort() });
      const sink = follow ? sinkFor(follow) : undefined;
      const entries = await containers.logs(id, {
        tail: params.tail,
        follow: sink && { output: (...a) => !closed.signal.aborted && sink.output(...a), exit: (...a) => !closed.signal.aborted && sink.exit(...a) },
        signal: closed.signal,
      });
      return { entries };
    }),
  );

  return () => {
    closed = true;
    gone.abort();
    // A run or attach leaves its container running without the client (as Docker's does); an exec
    // of a client that went away is hung up, as when its terminal closes (stream/close).
    for (const s of sessions.values()) {
      if (s.kind === 'container') s.detach?.();
      else if (s.exec) s.exec.hangup();
      else s.hungUp = true;
    }
    sessions.clear();
  };
}

/** `work`, or a rejection once `signal` aborts (the work itself goes on, and its result is dropped). */
function untilGone<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new ClientGoneError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new ClientGoneError());
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
