/**
 * One gate for every message a client sends: a handler registered through
 * {@link validating} only ever sees params that fit its message's schema
 * (server/protocol/params.ts), so no handler can forget a check, and a
 * request of the wrong shape is refused before anything is created.
 */
import { ErrorCodes as RpcErrorCodes, ResponseError, type CancellationToken, type Disposable } from 'vscode-jsonrpc';
import { WorkDoneProgressCancelNotification, type Connection } from 'vscode-languageserver/node';
import { InvalidArgumentError } from '../errors';
import { ParamsError, v, type Schema } from '../protocol';
import { PARAMS } from '../protocol/params';
import { progressToken } from '../protocol/schemas';
import { printable } from '../util/text';
import { toResponseError } from './errors';

/** LSP's own messages that the helper handles (VS Code's "cancel" button on a progress notification). */
const LSP_PARAMS: ReadonlyMap<string, Schema> = new Map([[WorkDoneProgressCancelNotification.type.method, v.object({ token: progressToken() }) as Schema]]);

type Handler = (...args: unknown[]) => unknown;

/** The params of `method` as `schema` demands them, or an InvalidArgumentError naming the method, the field and what it must be. */
export function checkParams(method: string, schema: Schema, params: unknown): void {
  // JSON-RPC allows params to be omitted; null is taken as omitted too
  const value = params === null ? undefined : params;
  if (value === undefined && schema.optional) return;
  try {
    schema.check(value, '');
  } catch (err) {
    if (!(err instanceof ParamsError)) throw err;
    // no `cause`: the message says all the ParamsError did, escaped, and its raw text (the client's params) must not go back on the wire
    throw new InvalidArgumentError(printable(`${method}: ${err.message}`));
  }
}

function schemaOf(type: string | { method: string }): { method: string; schema: Schema } {
  const method = typeof type === 'string' ? type : type.method;
  const schema = PARAMS.get(method) ?? LSP_PARAMS.get(method);
  if (!schema) throw new Error(`no params schema for ${method}: declare its params in server/protocol`);
  return { method, schema };
}

/**
 * `connection`, but its onRequest and onNotification check params first.
 * Underneath, one catch-all handler per kind receives each message's params
 * exactly as sent (a handler registered by type would get an array spread
 * into arguments, and none at all for a no-params type); LSP's own handlers
 * (initialize, shutdown) stay registered on the connection and come first.
 */
export function validating<C extends Connection>(connection: C): C {
  const requests = new Map<string, { schema: Schema; takesParams: boolean; handler: Handler }>();
  const notifications = new Map<string, { schema: Schema; handler: Handler }>();

  connection.onRequest((method: string, params: unknown, token: CancellationToken) => {
    const r = requests.get(method);
    if (!r) return Promise.reject(new ResponseError(RpcErrorCodes.MethodNotFound, `unhandled method ${printable(method.slice(0, 200))}`));
    try {
      checkParams(method, r.schema, params);
    } catch (err) {
      return Promise.reject(toResponseError(err));
    }
    return r.takesParams ? r.handler(params, token) : r.handler(token);
  });
  const dispatch = (method: string, params: unknown): void => {
    const n = notifications.get(method);
    if (!n) return;
    try {
      checkParams(method, n.schema, params);
    } catch {
      // a notification has no reply to carry the error: a malformed one is dropped
      return;
    }
    n.handler(params);
  };
  connection.onNotification(dispatch);
  // vscode-languageserver's progress feature registers its own handler for a cancelled work-done
  // progress when a client that supports it (VS Code) initializes, and that one cancels only
  // progress the server created: the helper's pulls, whose tokens the client made, were never
  // cancelled from VS Code's notification. The library registers it before calling the
  // initialize handler, so re-routing it from there puts it back to the gate's handlers.
  const cancel = WorkDoneProgressCancelNotification.type.method;
  const onInitialize: Connection['onInitialize'] = (handler) =>
    connection.onInitialize((...args) => {
      connection.onNotification(cancel, (params: unknown) => dispatch(cancel, params));
      return handler(...args);
    });

  const onRequest = (type: string | { method: string; numberOfParams?: number }, handler: Handler): Disposable => {
    const { method, schema } = schemaOf(type);
    requests.set(method, { schema, takesParams: typeof type === 'string' || type.numberOfParams !== 0, handler });
    return { dispose: () => requests.delete(method) };
  };
  const onNotification = (type: string | { method: string }, handler: Handler): Disposable => {
    const { method, schema } = schemaOf(type);
    notifications.set(method, { schema, handler });
    return { dispose: () => notifications.delete(method) };
  };

  return new Proxy(connection, {
    get(target, prop) {
      if (prop === 'onRequest') return onRequest;
      if (prop === 'onNotification') return onNotification;
      if (prop === 'onInitialize') return onInitialize;
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? (value as Handler).bind(target) : value;
    },
  });
}
