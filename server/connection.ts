/**
 * One client connection to the helper, on vscode-languageserver's
 * connection (JSON-RPC 2.0, Content-Length framing).
 *
 * The stock `createConnection` of vscode-languageserver/node installs a
 * watchdog that ends the whole process when a client sends `exit` or when
 * the client's process id (from `initialize`) disappears. That fits a
 * language server owned by one editor; the helper is shared by every window
 * and CLI, so each connection gets a watchdog that ends only itself.
 *
 * The library also hands the protocol connection its remote console as the
 * logger, and logs a reply it could not write ("Sending response failed")
 * through it: a notification on the very connection that just closed, which
 * throws out of a promise callback and ended the helper for every client.
 * The protocol connection logs to the helper's own log instead.
 */
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'vscode-jsonrpc';
import { createConnection as createCommonConnection, type WatchDog } from 'vscode-languageserver/lib/common/server';
import { createProtocolConnection, StreamMessageReader, StreamMessageWriter, type Connection } from 'vscode-languageserver/node';
import { FrameGuard } from './util/frameguard';

export function openConnection(input: Readable, output: Writable, onEnd: () => void, log: (message: string) => void): Connection {
  let ended = false;
  const end = (): void => {
    if (ended) return;
    ended = true;
    onEnd();
  };
  const watchDog: WatchDog = {
    shutdownReceived: false,
    initialize: () => undefined,
    exit: () => {
      end();
      input.destroy();
      output.destroy();
    },
  };
  // The reader buffers each message whole, so sizes are checked on the way in (server/limits.ts).
  const guarded = new FrameGuard();
  guarded.on('error', (err) => {
    log(`connection closed: ${err.message}`);
    input.destroy();
    end();
  });
  input.pipe(guarded);
  const connection = createCommonConnection(
    () => {
      const logger: Logger = {
        error: (m) => log(`connection: ${m}`),
        warn: (m) => log(`connection: ${m}`),
        info: () => undefined,
        log: () => undefined,
      };
      const pc = createProtocolConnection(new StreamMessageReader(guarded), new StreamMessageWriter(output), logger);
      pc.onClose(end);
      return pc;
    },
    watchDog,
  ) as unknown as Connection;
  input.on('close', end);
  input.on('error', end);
  output.on('error', end);
  return connection;
}
