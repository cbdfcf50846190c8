/**
 * The builder's errors. A Dockerfile error names the file and line as
 * Docker prints them (`Dockerfile:7: unknown instruction: FOO`), so an
 * editor can jump to it; a context error names the path the instruction
 * gave.
 */
import { CapsaError } from '../errors';

/** Where an error sits: the Dockerfile's name as the user gave it, and 1-based lines. */
export interface SourceLocation {
  file: string;
  line: number;
  /** The last line of a multi-line instruction, when it differs. */
  endLine?: number;
}

/** The Dockerfile cannot be parsed or expanded: syntax, unknown instruction, bad flag, failed `${VAR:?}`. */
export class DockerfileError extends CapsaError {
  constructor(
    readonly location: SourceLocation | undefined,
    readonly reason: string,
  ) {
    super('E_DOCKERFILE', location ? `${location.file}:${location.line}: ${reason}` : reason, {
      fields: location ? { path: location.file, line: location.line } : undefined,
    });
  }
}

/** A source of COPY/ADD (or a context path) that would leave the build context, or that the context does not hold. */
export class BuildContextError extends CapsaError {
  constructor(message: string, readonly path?: string) {
    super('E_BUILD_CONTEXT', message, { fields: path !== undefined ? { path } : undefined });
  }
}

/** A failure of the shell-word lexer, before it is placed at a line. */
export class ExpansionError extends Error {}

/** An ADD URL that could not be fetched (status, redirects, time, connection) or whose content is not its --checksum. */
export class BuildRemoteError extends CapsaError {
  constructor(message: string, readonly url?: string, cause?: unknown) {
    super('E_BUILD_REMOTE', message, { cause, fields: url !== undefined ? { url } : undefined });
  }
}
