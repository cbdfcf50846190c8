/**
 * The Engine API's listener: Node's HTTP server on a unix socket, each
 * connection identified at accept by SO_PEERCRED (as the JSON-RPC door's
 * are: server/main.ts), requests routed (router.ts) and answered, errors as
 * Docker gives them (errors.ts). Connections, header sizes and bodies are
 * bounded, and a request that fails costs only its own connection.
 */
import * as http from 'node:http';
import type * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { LIMITS } from '../limits';
import { describeError } from '../errors';
import { peerCaller, socketFd, type Caller } from '../util/peercred';
import { EngineRequestError, engineError } from './errors';
import { answerOnSocket, wantsUpgrade } from './hijack';
import type { EngineRequest } from './http';
import { API_VERSION, Router, type Route } from './router';
import { VERSION } from '../version';

/** Open connections at once; more are closed at accept (Docker's clients open one or two per command). */
export const MAX_CONNECTIONS = 512;
/** Open connections of one user other than root: one user cannot take every connection from the others. */
export const MAX_USER_CONNECTIONS = 128;
/** A request's headers and body must arrive within this (a hijacked stream, once upgraded, has no limit). */
const REQUEST_TIMEOUT_MS = 60_000;

/** Bytes of a refused request's body read and dropped, so that its client can read the answer; past them the connection closes. */
const DISCARDED_BODY = 64 * 1024 * 1024;

/**
 * Reads and drops the rest of a body the endpoint refused (too large, bad
 * JSON): closing at once would make the client's pending writes fail before
 * it reads the answer. Bounded by DISCARDED_BODY and the request timeout.
 */
function discardBody(req: http.IncomingMessage): void {
  let dropped = 0;
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > DISCARDED_BODY) req.socket?.destroy();
  });
  req.resume();
}

export class EngineServer {
  readonly http: http.Server;
  private readonly router: Router;
  private readonly callers = new WeakMap<net.Socket, Caller>();
  private readonly sockets = new Set<Duplex>();
  /** Open connections by uid (root's are not counted). */
  private readonly perUser = new Map<number, number>();

  constructor(
    routes: Route[],
    private readonly log: (message: string) => void,
  ) {
    this.router = new Router(routes);
    this.http = http.createServer({ maxHeaderSize: LIMITS.engineRequestHeader.bytes, requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS });
    this.http.maxConnections = MAX_CONNECTIONS;
    this.http.on('connection', (socket: net.Socket) => this.accept(socket));
    this.http.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => void this.serve(req, res, undefined, undefined));
    this.http.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void this.serve(req, undefined, socket, head));
    this.http.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      // a malformed request line or headers, or headers too large: Node's parser refused it
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      if (socket.writable) socket.end(`HTTP/1.1 ${status} Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      else socket.destroy();
    });
    this.http.on('dropMax', () => this.log(`engine API: a connection was refused: ${MAX_CONNECTIONS} are open already`));
  }

  private accept(socket: net.Socket): void {
    let caller: Caller;
    try {
      caller = peerCaller(socketFd(socket));
    } catch (err) {
      this.log(`engine API client refused: ${describeError(err)}`);
      socket.destroy();
      return;
    }
    const uid = caller.uid;
    if (uid !== 0) {
      const open = this.perUser.get(uid) ?? 0;
      if (open >= MAX_USER_CONNECTIONS) {
        this.log(`engine API: a connection of uid ${uid} was refused: it has ${MAX_USER_CONNECTIONS} open already`);
        socket.destroy();
        return;
      }
      this.perUser.set(uid, open + 1);
    }
    this.callers.set(socket, caller);
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      if (uid === 0) return;
      const left = (this.perUser.get(uid) ?? 1) - 1;
      if (left > 0) this.perUser.set(uid, left);
      else this.perUser.delete(uid);
    });
    // a client that goes away mid-stream is its own business; the error must not reach the process
    socket.on('error', () => undefined);
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse | undefined, socket: Duplex | undefined, head: Buffer | undefined): Promise<void> {
    const caller = this.callers.get(req.socket);
    if (!caller) {
      req.socket.destroy();
      return;
    }
    // a hijack request on an endpoint that takes none is answered as plain HTTP on its socket
    const hijacked = socket !== undefined && wantsUpgrade(req);
    try {
      const url = new URL(req.url ?? '/', 'http://engine');
      const match = this.router.match(req.method ?? 'GET', url.pathname);
      if (socket && !(hijacked && match.route.hijack)) throw new EngineRequestError(400, `${url.pathname.slice(0, 200)} does not take an upgraded connection`);
      Router.authorise(match.route, { caller });
      // on every answer, as Docker's: a client that never pinged still learns the version
      res?.setHeader('Api-Version', API_VERSION);
      res?.setHeader('Server', `Capsa/${VERSION} (linux)`);
      const r: EngineRequest = { req, res, socket, head, caller, params: match.params, query: url.searchParams, version: match.version };
      await match.route.handle(r);
    } catch (err) {
      const { status, message } = engineError(err);
      if (status >= 500) this.log(`engine API ${req.method} ${(req.url ?? '').slice(0, 200)}: ${message}`);
      if (socket) answerOnSocket(socket, status, { message });
      else if (res && !res.headersSent) {
        const text = JSON.stringify({ message });
        res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
        res.end(text);
        if (!req.complete) discardBody(req);
      } else if (res) {
        // the answer had begun (a stream): it can only be cut
        res.destroy();
      }
    }
  }

  /** Listens on `socketPath` (already free), created 0600: the caller widens it to the helper's policy once it listens. */
  async listen(socketPath: string): Promise<void> {
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        this.http.once('error', reject);
        this.http.listen(socketPath, () => {
          this.http.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
    this.http.on('error', (err) => this.log(`engine API: accepting a client failed: ${err.message}`));
  }

  /** Stops listening and drops every connection (streams included). */
  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    return closed;
  }
}
