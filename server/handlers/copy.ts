/**
 * `cp`'s requests, for the connection's caller: the container is one of
 * the caller's own (idOf with its uid; another's is not found), sessions
 * are this connection's (their ids are random and looked up here only),
 * at most MAX_SESSIONS at once, each ended by its last chunk, its first
 * error or the connection's close. Memory: one chunk per session.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { CapsaError, NotFoundError } from '../errors';
import {
  COPY_CHUNK,
  ContainerArchiveOpenReadRequest,
  ContainerArchiveOpenWriteRequest,
  ContainerArchiveReadRequest,
  ContainerArchiveWriteRequest,
  ContainerPathStatRequest,
  type ContainerArchiveOpenReadParams,
  type ContainerArchiveOpenWriteParams,
  type ContainerPathStatParams,
} from '../protocol';
import type { ContainerService } from '../runtime/container';
import type { ClientConnection } from './access';
import { handled } from './errors';

const MAX_SESSIONS = 4;

/** Over one of cp's ceilings (sessions, chunk size). */
class CopyLimitError extends CapsaError {
  constructor(message: string) {
    super('E_LIMIT_EXCEEDED', message);
  }
}

interface ReadSession {
  kind: 'read';
  source: AsyncIterator<Buffer>;
  pending: Buffer;
}
interface WriteSession {
  kind: 'write';
  sink: PassThrough;
  done: Promise<{ entries: number }>;
  failed?: unknown;
}

export function registerCopyHandlers(connection: ClientConnection, containers: ContainerService): () => void {
  const uid = connection.caller.uid;
  const own = (ref: string): string => containers.idOf(ref, uid);
  const sessions = new Map<string, ReadSession | WriteSession>();
  const open = (s: ReadSession | WriteSession): string => {
    if (sessions.size >= MAX_SESSIONS) throw new CopyLimitError(`cp: this connection has ${MAX_SESSIONS} copies open already; finish one first`);
    const id = randomBytes(16).toString('hex');
    sessions.set(id, s);
    return id;
  };
  const find = <K extends 'read' | 'write'>(id: string, kind: K): Extract<ReadSession | WriteSession, { kind: K }> => {
    const s = sessions.get(id);
    if (!s || s.kind !== kind) throw new NotFoundError('E_COPY_SESSION_NOT_FOUND', `no ${kind} copy session ${id.slice(0, 64)} on this connection`);
    return s as Extract<ReadSession | WriteSession, { kind: K }>;
  };
  const end = (id: string): void => {
    const s = sessions.get(id);
    sessions.delete(id);
    if (s?.kind === 'read') void s.source.return?.(undefined)?.catch(() => undefined);
    if (s?.kind === 'write') s.sink.destroy();
  };

  connection.onRequest(ContainerPathStatRequest.type, handled((p: ContainerPathStatParams) => containers.statPath(own(p.container), p.path, !!p.follow)));

  connection.onRequest(
    ContainerArchiveOpenReadRequest.type,
    handled(async (p: ContainerArchiveOpenReadParams) => {
      const id = own(p.container);
      // the stat first: a missing path or a stopped container fails the open, not the first read
      const stat = await containers.statPath(id, p.path, !!p.follow);
      const source = containers.archive(id, p.path, !!p.follow)[Symbol.asyncIterator]();
      return { session: open({ kind: 'read', source, pending: Buffer.alloc(0) }), stat };
    }),
  );

  connection.onRequest(
    ContainerArchiveReadRequest.type,
    handled(async (p: { session: string }) => {
      const s = find(p.session, 'read');
      try {
        const parts: Buffer[] = [s.pending];
        let size = s.pending.length;
        let eof = false;
        while (size < COPY_CHUNK) {
          const r = await s.source.next();
          if (r.done) {
            eof = true;
            break;
          }
          parts.push(r.value);
          size += r.value.length;
        }
        const all = Buffer.concat(parts);
        s.pending = all.subarray(COPY_CHUNK);
        eof &&= s.pending.length === 0;
        if (eof) end(p.session);
        return { data: all.subarray(0, COPY_CHUNK).toString('base64'), eof };
      } catch (err) {
        end(p.session);
        throw err;
      }
    }),
  );

  connection.onRequest(
    ContainerArchiveOpenWriteRequest.type,
    handled(async (p: ContainerArchiveOpenWriteParams) => {
      const id = own(p.container);
      containers.assertWritable(id);
      const stat = await containers.statPath(id, p.path, true);
      if (stat.type !== 'directory') throw new NotFoundError('E_CONTAINER_PATH_NOT_FOUND', `cannot copy into ${JSON.stringify(p.path)} in container ${p.container}: not a directory`);
      const sink = new PassThrough({ highWaterMark: COPY_CHUNK });
      const s: WriteSession = { kind: 'write', sink, done: containers.extract(id, p.path, sink, !!p.copyIds) };
      s.done.catch((err: unknown) => {
        s.failed = err;
        sink.resume();
      });
      return { session: open(s) };
    }),
  );

  connection.onRequest(
    ContainerArchiveWriteRequest.type,
    handled(async (p: { session: string; data: string; eof?: boolean }) => {
      const s = find(p.session, 'write');
      try {
        if (s.failed) throw s.failed;
        const chunk = Buffer.from(p.data, 'base64');
        if (chunk.length > COPY_CHUNK) throw new CopyLimitError(`cp: a chunk of ${chunk.length} bytes is over ${COPY_CHUNK}`);
        if (chunk.length && !s.sink.write(chunk)) await Promise.race([once(s.sink, 'drain'), s.done]);
        if (s.failed) throw s.failed;
        if (!p.eof) return {};
        s.sink.end();
        const r = await s.done;
        end(p.session);
        return { entries: r.entries };
      } catch (err) {
        end(p.session);
        throw err;
      }
    }),
  );

  return () => {
    for (const id of [...sessions.keys()]) end(id);
  };
}
