import { ResponseError } from 'vscode-jsonrpc';
import { CapsaError } from '../errors';
import { ErrorCodes, type CapsaErrorData } from '../protocol';

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

export function toResponseError(err: unknown): ResponseError<CapsaErrorData> {
  if (err instanceof ResponseError) return err as ResponseError<CapsaErrorData>;
  if (err instanceof CapsaError) {
    const exitCode = (err as { exitCode?: unknown }).exitCode;
    return new ResponseError(ErrorCodes.CapsaError, err.message, { code: err.code, ...(typeof exitCode === 'number' ? { exitCode } : {}) });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new ResponseError(ErrorCodes.CapsaError, `internal error: ${message}`, { code: 'E_INTERNAL' });
}
