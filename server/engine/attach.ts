/**
 * `POST /containers/{id}/attach` on a hijacked connection: the container's
 * output to the client (framed without a tty, raw with one) and the
 * client's bytes to its stdin. Docker's clients attach before they start a
 * container (`docker run`, `docker start -a`), so an attachment to one that
 * does not run yet waits here, with its input held, for the start that
 * takes it (takeFor): the container's output then reaches it from the first
 * byte.
 */
import type { Duplex } from 'node:stream';
import type { ContainerService, StreamSink } from '../runtime/container';
import { EngineRequestError } from './errors';
import { frame, MULTIPLEXED_STREAM, RAW_STREAM, upgrade, writeOrDrop } from './hijack';
import { queryBool, type EngineRequest } from './http';

/** Input held for a container that has not started yet, at most (the client is then paused until it starts). */
const HELD_INPUT = 1024 * 1024;

/** One attached client. */
interface Attachment {
  readonly sink: StreamSink;
  /** Input while the container has not started, and whether it ended. */
  held: Buffer[];
  heldBytes: number;
  eof: boolean;
  /** Set once the container runs: input goes straight to it. */
  live?: (data: Buffer, eof: boolean) => void;
  readonly socket: Duplex;
}

export class Attachments {
  /** By full container id. */
  private readonly waiting = new Map<string, Set<Attachment>>();

  constructor(private readonly containers: ContainerService) {}

  /**
   * The sink a start gives the container, for the clients attached while it
   * was not running (undefined: none), and what to call once it runs: their
   * held input goes in then.
   */
  takeFor(id: string): { sink?: StreamSink; started: () => void } {
    const set = this.waiting.get(id);
    this.waiting.delete(id);
    if (!set?.size) return { started: () => undefined };
    const all = [...set];
    const sink: StreamSink = {
      output: (stream, data) => all.forEach((a) => a.sink.output(stream, data)),
      exit: (code, error) => all.forEach((a) => a.sink.exit(code, error)),
    };
    return { sink, started: () => all.forEach((a) => this.goLive(id, a)) };
  }

  /** Input for container `id`, or nothing once it is gone: this runs in socket events, where a throw would end the helper. */
  private inputTo(id: string): (data: Buffer, eof: boolean) => void {
    return (data, eof) => {
      try {
        this.containers.input(id, data, eof);
      } catch {
        // removed meanwhile (AutoRemove): its stdin went with it
      }
    };
  }

  private goLive(id: string, a: Attachment): void {
    a.live = this.inputTo(id);
    for (const chunk of a.held) a.live(chunk, false);
    if (a.eof) a.live(Buffer.alloc(0), true);
    a.held = [];
    a.heldBytes = 0;
    a.socket.resume();
  }

  /** Serves one attach request, already checked to be the caller's container `id`. */
  attach(r: EngineRequest, id: string): void {
    const socket = r.socket;
    if (!socket) throw new EngineRequestError(400, 'attach needs a hijacked connection (Connection: Upgrade, Upgrade: tcp)');
    const view = this.containers.inspect(id);
    const tty = !!view.record.options.tty;
    const want = { stdout: queryBool(r.query, 'stdout'), stderr: queryBool(r.query, 'stderr'), stdin: queryBool(r.query, 'stdin') };
    if (!queryBool(r.query, 'stream', true) && !queryBool(r.query, 'logs')) throw new EngineRequestError(400, 'attach without stream (logs only) is not supported by Capsa');
    if (queryBool(r.query, 'logs')) throw new EngineRequestError(400, 'attach with logs is not supported by Capsa: read them with /containers/{id}/logs');
    upgrade(socket, tty ? RAW_STREAM : MULTIPLEXED_STREAM);
    const sink: StreamSink = {
      output: (stream, data) => {
        if (want[stream]) writeOrDrop(socket, tty ? data : frame(stream, data));
      },
      exit: () => {
        if (!socket.destroyed) socket.end();
      },
    };
    const a: Attachment = { sink, held: [], heldBytes: 0, eof: false, socket };
    if (r.head?.length) this.input(a, r.head);
    if (want.stdin) {
      socket.on('data', (chunk: Buffer) => this.input(a, chunk));
      socket.on('end', () => (a.live ? a.live(Buffer.alloc(0), true) : (a.eof = true)));
    } else {
      // bytes the client sends without asking for stdin go nowhere
      socket.resume();
    }
    if (view.state.state === 'running') {
      const detach = this.containers.attach(id, sink);
      a.live = this.inputTo(id);
      socket.once('close', detach);
      return;
    }
    let set = this.waiting.get(id);
    if (!set) this.waiting.set(id, (set = new Set()));
    set.add(a);
    socket.once('close', () => {
      const s = this.waiting.get(id);
      s?.delete(a);
      if (s && s.size === 0) this.waiting.delete(id);
    });
  }

  private input(a: Attachment, chunk: Buffer): void {
    if (a.live) {
      a.live(chunk, false);
      return;
    }
    a.held.push(chunk);
    a.heldBytes += chunk.length;
    if (a.heldBytes >= HELD_INPUT) a.socket.pause();
  }
}
