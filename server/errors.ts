/**
 * Errors with stable codes. Messages are lower case, without a trailing
 * period, and say what failed, where and why; context is added by wrapping
 * (`cause`) at each layer rather than by rewriting the message.
 */
export class CapsaError extends Error {
  /** Stable machine-readable code, e.g. `E_IMAGE_NOT_FOUND`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A reference, flag, id or parameter from a user or client is malformed. */
export class InvalidArgumentError extends CapsaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_INVALID_ARGUMENT', message, options);
  }
}

/** An image, container or blob the caller named does not exist. */
export class NotFoundError extends CapsaError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

/** The request conflicts with current state (name in use, image in use, container running). */
export class ConflictError extends CapsaError {
  constructor(message: string) {
    super('E_CONFLICT', message);
  }
}

/** The caller (as the kernel identifies it) may not do what it asked. */
export class PermissionDeniedError extends CapsaError {
  constructor(message: string) {
    super('E_PERMISSION_DENIED', message);
  }
}

/** The client that made a request closed its connection: the request's work ends, and nobody is answered. */
export class ClientGoneError extends CapsaError {
  constructor() {
    super('E_CLIENT_GONE', 'the client closed its connection');
  }
}

/** Renders any thrown value as a one-line message, following `cause` chains. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Validates an id or name that becomes a file name: no `/`, `.`, `..`, NUL or empty. */
export function assertSafeName(kind: string, value: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(value)) {
    throw new InvalidArgumentError(`invalid ${kind} ${JSON.stringify(value)}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 128 characters)`);
  }
}
