/**
 * Capsa's typed errors as the Engine API gives them: Docker's status codes
 * and a `{"message": …}` body, which the docker CLI prints as
 * "Error response from daemon: MESSAGE". The status follows the kind the
 * error catalogue gives each code (server/protocol/errors.ts), so a new code
 * maps without an entry here.
 */
import { CapsaError, describeError } from '../errors';
import { errorCodeInfo, type ErrorKind } from '../protocol';

/** A request the Engine API refuses before any service sees it: a bad path, query, header or body. */
export class EngineRequestError extends CapsaError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(status === 404 ? 'E_ENDPOINT_NOT_FOUND' : status === 413 ? 'E_LIMIT_EXCEEDED' : 'E_INVALID_ARGUMENT', message);
  }
}

const STATUS_OF_KIND: Record<ErrorKind, number> = {
  invalid: 400,
  'not-found': 404,
  conflict: 409,
  denied: 403,
  limit: 413,
  unreachable: 502,
  integrity: 500,
  failed: 500,
  // Docker answers a start whose command cannot run with 400; its CLI then exits 126 or 127 by the message
  command: 400,
  cancelled: 500,
  internal: 500,
};

/** The status and body for `err`. An error that is not a CapsaError is a bug of the helper's: a 500 that says so. */
export function engineError(err: unknown): { status: number; message: string } {
  if (err instanceof EngineRequestError) return { status: err.status, message: err.message };
  if (err instanceof CapsaError) {
    const kind = errorCodeInfo(err.code)?.kind ?? 'internal';
    return { status: STATUS_OF_KIND[kind], message: describeError(err) };
  }
  return { status: 500, message: `internal error: ${describeError(err)}` };
}
