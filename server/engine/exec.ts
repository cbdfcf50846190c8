/**
 * Exec: `POST /containers/{id}/exec` records what to run, `POST
 * /exec/{id}/start` runs it (on a hijacked connection, or detached), `GET
 * /exec/{id}/json` tells whether it runs and how it ended, `POST
 * /exec/{id}/resize` sizes its terminal. Exec instances are the caller's
 * own: another uid's is not found. The process itself is the
 * ContainerService's exec, as the protocol's.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { ContainerExecRequest, type ExecOptions } from '../protocol';
import { NotFoundError } from '../errors';
import type { ContainerService, ExecSession, StreamSink } from '../runtime/container';
import type { Caller } from '../util/peercred';
import { EngineRequestError } from './errors';
import { frame, MULTIPLEXED_STREAM, parseBody, RAW_STREAM, readUpgradeBody, upgrade, writeOrDrop } from './hijack';
import { queryInt, readObject, sendEmpty, sendJson } from './http';
import { UnsupportedFieldsError, isUnset } from './createconfig';
import type { Route } from './router';

/** Exec instances kept at once, and of one user other than root; past it the oldest that ended go (Docker keeps them until their container goes). */
const MAX_EXECS = 1024;
const MAX_USER_EXECS = 256;

interface ExecInstance {
  id: string;
  owner: number;
  containerId: string;
  opts: ExecOptions;
  attach: { stdin: boolean; stdout: boolean; stderr: boolean };
  state: 'created' | 'running' | 'exited';
  exitCode?: number;
  session?: ExecSession;
}

class ExecNotFoundError extends NotFoundError {
  constructor(id: string) {
    super('E_EXEC_NOT_FOUND', `No such exec instance: ${id.slice(0, 80)}`);
  }
}

const EXEC_FIELDS = new Set(['Detach', 'AttachStdin', 'AttachStdout', 'AttachStderr', 'Tty', 'Env', 'Cmd', 'WorkingDir', 'User', 'ConsoleSize', 'DetachKeys']);

export class Execs {
  private readonly byId = new Map<string, ExecInstance>();

  constructor(private readonly containers: ContainerService) {}

  create(caller: Caller, containerId: string, body: Record<string, unknown>): string {
    const unsupported = Object.keys(body).filter((k) => !EXEC_FIELDS.has(k) && !isUnset(body[k]));
    if (unsupported.length) throw new UnsupportedFieldsError(unsupported);
    const list = (k: string): string[] | undefined => {
      const v = body[k];
      if (v === undefined || v === null) return undefined;
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new EngineRequestError(400, `invalid ${k}: expected an array of strings`);
      return v as string[];
    };
    const text = (k: string): string | undefined => (typeof body[k] === 'string' && body[k] !== '' ? (body[k] as string) : undefined);
    const cmd = list('Cmd');
    if (!cmd?.length) throw new EngineRequestError(400, 'No exec command specified');
    if (this.containers.inspect(containerId).state.state !== 'running') throw new EngineRequestError(409, `container ${containerId.slice(0, 12)} is not running`);
    const size = body.ConsoleSize;
    const opts: ExecOptions = {
      container: containerId,
      cmd,
      env: list('Env'),
      workdir: text('WorkingDir'),
      user: text('User'),
      tty: body.Tty === true,
      interactive: body.AttachStdin === true,
      ...(Array.isArray(size) && size[0] > 0 && size[1] > 0 ? { size: { rows: Number(size[0]), cols: Number(size[1]) } } : {}),
    };
    this.prune(caller.uid);
    const id = randomBytes(32).toString('hex');
    this.byId.set(id, { id, owner: caller.uid, containerId, opts, state: 'created', attach: { stdin: body.AttachStdin === true, stdout: body.AttachStdout !== false, stderr: body.AttachStderr !== false } });
    return id;
  }

  /** The caller's exec instance `id`: another uid's is not found, as a missing one. */
  get(caller: Caller, id: string): ExecInstance {
    const e = this.byId.get(id);
    if (!e || (caller.uid !== 0 && e.owner !== caller.uid)) throw new ExecNotFoundError(id);
    return e;
  }

  /** Room for one more instance of `owner`: ended ones go first, oldest first; a caller with too many running is refused. */
  private prune(owner: number): void {
    const count = (): { all: number; mine: number } => {
      let mine = 0;
      for (const e of this.byId.values()) if (e.owner === owner) mine++;
      return { all: this.byId.size, mine };
    };
    const full = (): boolean => {
      const c = count();
      return c.all >= MAX_EXECS || (owner !== 0 && c.mine >= MAX_USER_EXECS);
    };
    for (const [id, e] of this.byId) {
      if (!full()) return;
      if (e.state === 'exited' && (e.owner === owner || this.byId.size >= MAX_EXECS)) this.byId.delete(id);
    }
    if (full()) throw new EngineRequestError(409, 'too many exec instances are running: wait for some to end');
  }

  /**
   * Starts `e`; its output to `socket` (framed unless a tty), its input from
   * it; detached when there is none. The connection is hijacked only once
   * the process runs, so a failure to start is still a plain HTTP error;
   * output that comes before is held until then.
   */
  async start(e: ExecInstance, socket: Duplex | undefined, rest: Buffer): Promise<void> {
    if (e.state !== 'created') throw new EngineRequestError(409, `exec ${e.id.slice(0, 12)} has already been started`);
    e.state = 'running';
    const tty = !!e.opts.tty;
    let early: Buffer[] | undefined = [];
    let endedEarly = false;
    const send = (bytes: Buffer): void => {
      if (!socket || socket.destroyed) return;
      if (early) early.push(bytes);
      else writeOrDrop(socket, bytes);
    };
    const sink: StreamSink = {
      output: (stream, data) => {
        if (e.attach[stream]) send(tty ? data : frame(stream, data));
      },
      exit: (code) => {
        e.state = 'exited';
        e.exitCode = code;
        e.session = undefined;
        if (early) endedEarly = true;
        else if (socket && !socket.destroyed) socket.end();
      },
    };
    let session: ExecSession;
    try {
      session = await this.containers.exec({ ...e.opts, interactive: !!e.opts.interactive && !!socket }, sink);
    } catch (err) {
      e.state = 'exited';
      e.exitCode = 126;
      throw err;
    }
    if (!endedEarly) e.session = session;
    if (!socket) return;
    upgrade(socket, tty ? RAW_STREAM : MULTIPLEXED_STREAM);
    for (const bytes of early) socket.write(bytes);
    early = undefined;
    if (endedEarly) {
      socket.end();
      return;
    }
    // these run in socket events, where a throw would end the helper: a session that ended takes no more
    const quietly = (act: () => void): void => {
      try {
        act();
      } catch {
        // the process has ended
      }
    };
    if (rest.length) quietly(() => session.input(rest, false));
    socket.on('data', (chunk: Buffer) => quietly(() => e.session?.input(chunk, false)));
    socket.on('end', () => quietly(() => e.session?.input(Buffer.alloc(0), true)));
    // a client that goes away hangs its exec up, as a closed terminal does
    socket.once('close', () => quietly(() => e.session?.hangup()));
    socket.resume();
  }

  inspect(e: ExecInstance): Record<string, unknown> {
    return {
      ID: e.id,
      Running: e.state === 'running',
      ExitCode: e.state === 'exited' ? e.exitCode ?? 0 : null,
      ProcessConfig: { tty: !!e.opts.tty, entrypoint: e.opts.cmd[0], arguments: e.opts.cmd.slice(1), privileged: false, user: e.opts.user ?? '' },
      OpenStdin: e.attach.stdin,
      OpenStdout: e.attach.stdout,
      OpenStderr: e.attach.stderr,
      CanRemove: false,
      ContainerID: e.containerId,
      DetachKeys: '',
      Pid: 0,
    };
  }
}

export function execRoutes(deps: { containers: ContainerService; execs: Execs }): Route[] {
  const { containers, execs } = deps;
  const access = ContainerExecRequest.method;
  return [
    {
      method: 'POST',
      path: '/containers/{id}/exec',
      access,
      handle: async (r) => {
        const containerId = containers.idOf(r.params.id, r.caller.uid);
        sendJson(r, 201, { Id: execs.create(r.caller, containerId, await readObject(r)) });
      },
    },
    {
      method: 'POST',
      path: '/exec/{id}/start',
      access,
      hijack: true,
      handle: async (r) => {
        const e = execs.get(r.caller, r.params.id);
        if (r.socket) {
          const { body, rest } = await readUpgradeBody(r.req, r.socket, r.head ?? Buffer.alloc(0));
          const opts = parseBody(body);
          if (opts.Detach === true) throw new EngineRequestError(400, 'a detached exec start takes no upgraded connection');
          // a failure before the hijack is answered as HTTP on the socket (server.ts)
          await execs.start(e, r.socket, rest);
          return;
        }
        const opts = await readObject(r);
        if (opts.Detach !== true) throw new EngineRequestError(400, 'an attached exec start needs a hijacked connection (Connection: Upgrade, Upgrade: tcp)');
        await execs.start(e, undefined, Buffer.alloc(0));
        sendEmpty(r, 200);
      },
    },
    { method: 'GET', path: '/exec/{id}/json', access, handle: (r) => sendJson(r, 200, execs.inspect(execs.get(r.caller, r.params.id))) },
    {
      method: 'POST',
      path: '/exec/{id}/resize',
      access,
      handle: (r) => {
        const e = execs.get(r.caller, r.params.id);
        const rows = queryInt(r.query, 'h', { min: 0, max: 65535 }) ?? 0;
        const cols = queryInt(r.query, 'w', { min: 0, max: 65535 }) ?? 0;
        if (rows > 0 && cols > 0) e.session?.resize(rows, cols);
        sendEmpty(r, 200);
      },
    },
  ];
}
