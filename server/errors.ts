/**
 * Errors with stable codes. Messages are lower case, without a trailing
 * period, and say what failed, where and why; context is added by wrapping
 * (`cause`) at each layer rather than by rewriting the message. Every code
 * sent to a client is listed in server/protocol/errors.ts (a unit test scans
 * the source for codes missing there).
 */

/**
 * Structured facts about a failure, for clients that act on them rather than
 * parse the message: the container, image, network or volume concerned, the
 * path, the setup step and the errno. Only plain values, so they cross the
 * wire as they are.
 */
export interface ErrorFields {
  container?: string;
  image?: string;
  network?: string;
  volume?: string;
  path?: string;
  step?: string;
  errno?: number;
  [key: string]: string | number | boolean | undefined;
}

export interface ErrorOptions {
  /** The lower error this one wraps; kept so that no context is lost. */
  cause?: unknown;
  fields?: ErrorFields;
}

export class CapsaError extends Error {
  /** Stable machine-readable code, e.g. `E_IMAGE_NOT_FOUND`. */
  readonly code: string;
  /** Structured facts about the failure, when the thrower has them. */
  readonly fields: ErrorFields | undefined;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.fields = options?.fields;
    this.name = new.target.name;
  }
}

/** A reference, flag, id or parameter from a user or client is malformed. */
export class InvalidArgumentError extends CapsaError {
  constructor(message: string, options?: ErrorOptions) {
    super('E_INVALID_ARGUMENT', message, options);
  }
}

/** An image, container or blob the caller named does not exist. */
export class NotFoundError extends CapsaError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** The request conflicts with current state (name in use, image in use, container running). */
export class ConflictError extends CapsaError {
  constructor(message: string, options?: ErrorOptions) {
    super('E_CONFLICT', message, options);
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

/** How deep a cause chain is followed: deeper chains are a bug, and a cycle must not hang the caller. */
const MAX_CAUSES = 8;

/** One link of a cause chain: the code when the error has one, and its message. */
export interface CauseLink {
  code?: string;
  message: string;
  fields?: ErrorFields;
}

/**
 * The errors `err` wraps, nearest first, as plain data (`err` itself is not
 * included). Stops at a cycle and after {@link MAX_CAUSES} links.
 */
export function causeChain(err: unknown): CauseLink[] {
  const links: CauseLink[] = [];
  const seen = new Set<unknown>([err]);
  let next = err instanceof Error ? err.cause : undefined;
  while (next !== undefined && next !== null && !seen.has(next) && links.length < MAX_CAUSES) {
    seen.add(next);
    links.push(linkOf(next));
    next = next instanceof Error ? next.cause : undefined;
  }
  return links;
}

function linkOf(err: unknown): CauseLink {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | undefined)?.code;
  const fields = err instanceof CapsaError ? err.fields : undefined;
  // a Node system error's code (ENOENT, ECONNREFUSED) is as stable as ours and worth keeping
  return { ...(typeof code === 'string' ? { code } : {}), message, ...(fields ? { fields } : {}) };
}

/**
 * Renders any thrown value as a message, following `cause` chains:
 * each cause's message is appended after `: ` unless the text already says it
 * (a wrapper often quotes its cause).
 */
export function describeError(err: unknown): string {
  let text = err instanceof Error ? err.message : String(err);
  for (const c of causeChain(err)) {
    if (c.message !== '' && !text.includes(c.message)) text += `: ${c.message}`;
  }
  return text;
}

/** Validates an id or name that becomes a file name: no `/`, `.`, `..`, NUL or empty. */
export function assertSafeName(kind: string, value: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(value)) {
    throw new InvalidArgumentError(`invalid ${kind} ${JSON.stringify(value)}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 128 characters)`);
  }
}
