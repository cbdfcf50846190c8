import { ResponseError } from 'vscode-jsonrpc';
import { CapsaError, causeChain } from '../errors';
import { ErrorCodes, type CapsaErrorData } from '../protocol';
import { ContainerSetupError } from '../runtime/native';

/**
 * Wraps a handler so a thrown error reaches the client as a JSON-RPC error
 * with the helper's message and stable code, and never takes the helper down.
 */
export function handled<P, R>(fn: (params: P) => Promise<R> | R): (params: P) => Promise<R> {
  return async (params: P) => {
    try {
      return await fn(params);
    } catch (err) {
      throw toResponseError(err);
    }
  };
}

/**
 * An error as the client gets it: the message unchanged, and as data the
 * stable code, the thrower's structured fields and the cause chain (each
 * `{ code?, message }`), so that no context is dropped at the wire. An error
 * that is not a CapsaError is a bug: it goes as `E_INTERNAL`.
 */
export function toResponseError(err: unknown): ResponseError<CapsaErrorData> {
  if (err instanceof ResponseError) return err as ResponseError<CapsaErrorData>;
  const causes = causeChain(err);
  const more = causes.length > 0 ? { causes } : {};
  if (err instanceof CapsaError) {
    const exitCode = (err as { exitCode?: unknown }).exitCode;
    const fields = err.fields;
    return new ResponseError(ErrorCodes.CapsaError, err.message, {
      code: wireCode(err),
      ...(fields ? { fields } : {}),
      ...more,
      ...(typeof exitCode === 'number' ? { exitCode } : {}),
    });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new ResponseError(ErrorCodes.CapsaError, `internal error: ${message}`, { code: 'E_INTERNAL', ...more });
}

/** ENOENT on Linux (every architecture Capsa runs on). */
const ENOENT = 2;

/**
 * The code an error goes out with. A shim report of a failed `exec` is the
 * container command's failure, not Capsa's, and clients know it by its code
 * (E_COMMAND_NOT_FOUND, E_COMMAND_NOT_EXECUTABLE), not by the shim's steps.
 * The runtime may already have classified the failure so; then the error is
 * no longer a bare ContainerSetupError and its own code goes.
 */
function wireCode(err: CapsaError): string {
  if (err instanceof ContainerSetupError && err.step === 'exec') return err.errno === ENOENT ? 'E_COMMAND_NOT_FOUND' : 'E_COMMAND_NOT_EXECUTABLE';
  return err.code;
}
