/**
 * Who a connection acts as, and what it may ask for. Each connection carries
 * the Caller the kernel gave at accept (server/util/peercred.ts); handlers
 * read it as `connection.caller`, never from a message.
 *
 * Per-user authorisation is built one area at a time: a caller other than
 * root may send the handshake (`initialize`, `capsa/version`) and the
 * methods in USER_METHODS, each scoped to the caller by its handlers; every
 * other request is refused: with a socket an administrator widened
 * (socketMode, socketGroup), any other answer would hand that user root's
 * reach. Root keeps the whole protocol.
 */
import type { CancellationToken, Disposable } from 'vscode-jsonrpc';
import type { Connection } from 'vscode-languageserver/node';
import { PermissionDeniedError } from '../errors';
import {
  ImageListRequest,
  ImagePruneRequest,
  ImagePullRequest,
  ImageRemoveRequest,
  SystemDfRequest,
  VersionRequest,
} from '../protocol';
import { WorkDoneProgressCancelNotification } from 'vscode-languageserver/node';
import type { Caller } from '../util/peercred';
import { printable } from '../util/text';
import { toResponseError } from './errors';

/** A connection with the identity the kernel gave it. */
export interface ClientConnection extends Connection {
  readonly caller: Caller;
}

/** What any caller may ask (LSP's initialize and shutdown are handled by the connection itself, and always answered). */
const HANDSHAKE: ReadonlySet<string> = new Set([VersionRequest.method]);

/** What a caller other than root may send besides the handshake, each scoped to that caller where it is handled. */
const USER_METHODS: ReadonlySet<string> = new Set([
  ImageListRequest.method, // the caller's own namespace of image names (services/images.ts)
  ImagePullRequest.method, // lands in the caller's namespace; pulled without root's stored credentials
  ImageRemoveRequest.method, // the caller's names only; shared content goes only when nothing holds it
  ImagePruneRequest.method, // the caller's namespace only
  SystemDfRequest.method, // the caller's images and what they reference
  WorkDoneProgressCancelNotification.method, // cancels only progress this connection started (handlers/images.ts)
]);

/** Whether `caller` may use the whole protocol: root alone, until per-user authorisation exists. */
export function hasFullAccess(caller: Caller): boolean {
  return caller.uid === 0;
}

/** The refusal a caller without full access gets for `method`. */
export function notEnabled(method: string, caller: Caller): PermissionDeniedError {
  return new PermissionDeniedError(
    `${printable(method.slice(0, 200))} refused for uid ${caller.uid}: per-user access is not enabled on this helper, only root may use it (see the README's "Security model and limits")`,
  );
}

type Handler = (...args: unknown[]) => unknown;

/**
 * `connection` acting as `caller`: `.caller` reads it, and every request or
 * notification handler registered on it is reached only when the caller may
 * send that message. Register validating() on top of it, so a refused
 * message is refused before its params are even looked at.
 */
export function forCaller(connection: Connection, caller: Caller): ClientConnection {
  const full = hasFullAccess(caller);
  const allowed = (method: string): boolean => full || HANDSHAKE.has(method) || USER_METHODS.has(method);

  const onRequest = (first: string | { method: string } | Handler, second?: Handler): Disposable => {
    if (typeof first === 'function') {
      // a star handler gets the method first
      const star = first;
      return connection.onRequest((method: string, params: unknown, token: CancellationToken) =>
        allowed(method) ? star(method, params, token) : Promise.reject(toResponseError(notEnabled(method, caller))),
      );
    }
    const method = typeof first === 'string' ? first : first.method;
    const handler = second!;
    const gated: Handler = (...args) => (allowed(method) ? handler(...args) : Promise.reject(toResponseError(notEnabled(method, caller))));
    return (connection.onRequest as (t: unknown, h: Handler) => Disposable)(first, gated);
  };
  const onNotification = (first: string | { method: string } | Handler, second?: Handler): Disposable => {
    // a notification has no reply to carry a refusal: a refused one is dropped
    if (typeof first === 'function') {
      const star = first;
      return connection.onNotification((method: string, params: unknown) => (allowed(method) ? star(method, params) : undefined));
    }
    const method = typeof first === 'string' ? first : first.method;
    const handler = second!;
    return (connection.onNotification as (t: unknown, h: Handler) => Disposable)(first, (...args: unknown[]) => (allowed(method) ? handler(...args) : undefined));
  };

  return new Proxy(connection, {
    get(target, prop) {
      if (prop === 'caller') return caller;
      if (prop === 'onRequest') return onRequest;
      if (prop === 'onNotification') return onNotification;
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? (value as Handler).bind(target) : value;
    },
  }) as ClientConnection;
}
