/**
 * The CLI's connection to the helper: its unix socket, starting the helper
 * in the background first when none is running and we are root.
 */
import * as net from 'node:net';
import { spawn } from 'node:child_process';
import { constants, openSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { ConnectionError, ConnectionErrors, createMessageConnection, StreamMessageReader, StreamMessageWriter, type MessageConnection } from 'vscode-jsonrpc/node';
import type { CapsaConfig } from '../config';
import { CapsaError } from '../errors';
import { helperEntry } from '../util/layout';
import { checkTrustedDirectory } from '../util/trusteddir';

function connectSocket(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    s.once('connect', () => {
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Starts the helper detached (its own session, so a Ctrl-C in this terminal does not reach it), logging to <root>/helper.log. */
function startHelper(config: CapsaConfig): void {
  // the helper refuses these too, but its log is opened here, first
  checkTrustedDirectory(config.root, 'capsa root');
  checkTrustedDirectory(path.dirname(config.socket), 'socket directory');
  mkdirSync(config.root, { recursive: true, mode: 0o700 });
  checkTrustedDirectory(config.root, 'capsa root');
  // never through a link planted in its place
  const logFd = openSync(path.join(config.root, 'helper.log'), constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  // the helper of this CLI's own build: dist/server.js beside dist/cli.js, or out/server/main.js
  const main = helperEntry();
  const child = spawn(process.execPath, [main, '--socket', config.socket, '--root', config.root], {
    detached: true,
    stdio: ['ignore', logFd, logFd],
    env: process.env,
  });
  child.unref();
}

/**
 * Connects to the helper, starting it first when none listens. `CAPSA_AUTOSTART=0`
 * turns the start off: a supervisor (or a test) that owns the helper's life
 * must not get a second, detached helper from a CLI call made while its own is down.
 */
export async function connect(config: CapsaConfig, opts: { autoStart: boolean } = { autoStart: process.env.CAPSA_AUTOSTART !== '0' }): Promise<MessageConnection> {
  let socket: net.Socket;
  try {
    socket = await connectSocket(config.socket);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!opts.autoStart || (code !== 'ENOENT' && code !== 'ECONNREFUSED')) {
      throw new CapsaError('E_HELPER_UNREACHABLE', `cannot reach the capsa helper at ${config.socket}: ${(err as Error).message}`, { cause: err, fields: { path: config.socket } });
    }
    if (process.getuid && process.getuid() !== 0) {
      throw new CapsaError('E_HELPER_UNREACHABLE', `the capsa helper is not running at ${config.socket}, and only root can start it: run 'sudo capsa' or start the helper as root`, { cause: err, fields: { path: config.socket } });
    }
    startHelper(config);
    const deadline = Date.now() + 10_000;
    for (;;) {
      await new Promise((r) => setTimeout(r, 20));
      try {
        socket = await connectSocket(config.socket);
        break;
      } catch (e) {
        // not listening yet is what a starting helper looks like: retry until the deadline, then say so with the last refusal
        if (Date.now() > deadline) {
          throw new CapsaError('E_HELPER_UNREACHABLE', `started the capsa helper, but it did not listen on ${config.socket} within 10 s (see ${path.join(config.root, 'helper.log')})`, { cause: e, fields: { path: config.socket } });
        }
      }
    }
  }
  const connection = createMessageConnection(new StreamMessageReader(socket), new StreamMessageWriter(socket));
  // disposing ends the connection itself too (a warm CLI process outlives its calls' connections)
  connection.onDispose(() => socket.destroy());
  connection.listen();
  return connection;
}

/** The helper closed the connection while a call was in flight: it exited, crashed or was killed. */
export class HelperLostError extends CapsaError {
  constructor(socket: string, verb: string) {
    super('E_HELPER_LOST', `lost the connection to the capsa helper at ${socket} during '${verb}': the helper stopped or was killed before it answered`, { fields: { path: socket } });
  }
}

/**
 * Watches a call's connection: `lost` rejects with HelperLostError once
 * the helper closes it. A request pending when the connection closes is
 * never settled by vscode-jsonrpc, so without this a command would wait on
 * it until Node finds nothing left to do and exits 0, as if it had worked.
 */
export function watchHelper(verb: string): {
  lost: Promise<never>;
  watch(connection: MessageConnection, socket: string): void;
  /** The HelperLostError that `err` is or stands for (a request on a connection that had closed already), else undefined. */
  lostError(err: unknown): HelperLostError | undefined;
} {
  let fail!: (err: Error) => void;
  const lost = new Promise<never>((_, reject) => (fail = reject));
  lost.catch(() => undefined); // settled on purpose after a call that already ended
  let socket = '';
  return {
    lost,
    watch: (connection, at) => {
      socket = at;
      connection.onClose(() => fail(new HelperLostError(socket, verb)));
    },
    // a connection opened ahead (the warm CLI's) may have closed before this call used it
    lostError: (err) =>
      err instanceof HelperLostError ? err : err instanceof ConnectionError && (err.code === ConnectionErrors.Closed || err.code === ConnectionErrors.Disposed) ? new HelperLostError(socket, verb) : undefined,
  };
}
