/**
 * What the extension does with a failed request depends on the error's
 * stable code (server/protocol/errors.ts), never on its message: a container
 * or image that is gone already, a conflict the user may force, a helper that
 * cannot be reached. No `vscode` here, so it is unit-tested alone.
 */
import { ConnectionError, ErrorCodes as RpcErrorCodes, ResponseError } from 'vscode-jsonrpc';
import { capsaErrorData, errorKind, type CapsaErrorFields, type ErrorKind } from '../server/protocol';

/** The helper is not connected: requests cannot be sent. */
export class HelperNotConnectedError extends Error {
  readonly code = 'E_HELPER_UNREACHABLE';
  constructor(socket: string) {
    super(`Capsa helper is not connected (socket ${socket})`);
    this.name = 'HelperNotConnectedError';
  }
}

/**
 * The kind of a failed request: the catalogue's kind for a helper error, and
 * `unreachable` as well when the connection itself failed (closed, not yet
 * open, or a pending request dropped when it closed). Undefined for anything
 * else (a bug, or an error of the extension's own).
 */
export function failureKind(err: unknown): ErrorKind | undefined {
  const kind = errorKind(err);
  if (kind) return kind;
  if (err instanceof ConnectionError) return 'unreachable';
  if (err instanceof ResponseError && (err.code === RpcErrorCodes.PendingResponseRejected || err.code === RpcErrorCodes.ConnectionInactive)) return 'unreachable';
  return undefined;
}

/** The structured fields of a helper error and of each error it wraps, outermost first. */
function fieldsChain(err: unknown): CapsaErrorFields[] {
  const data = capsaErrorData(err);
  if (!data) return [];
  return [data.fields, ...(data.causes ?? []).map((c) => c.fields)].filter((f): f is CapsaErrorFields => typeof f === 'object' && f !== null);
}

/**
 * The run failed because the shim could not idmap a mount (the filesystem or
 * kernel lacks idmapped mounts): a container setup error whose step, or the
 * step of an error it wraps, is `idmap`.
 */
export function isIdmapUnsupported(err: unknown): boolean {
  return capsaErrorData(err)?.code === 'E_CONTAINER_SETUP' && fieldsChain(err).some((f) => f.step === 'idmap');
}
