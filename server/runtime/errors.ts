/**
 * Why a container's command did not start, typed by what the user can do
 * about it. Docker's exit statuses go with the codes: 127 for a command not
 * found, 126 for one that cannot be run, 125 for anything else of the
 * runtime's.
 */
import { CapsaError } from '../errors';
import { ContainerSetupError } from './native';

export type ContainerStartCode = 'E_COMMAND_NOT_FOUND' | 'E_COMMAND_NOT_EXECUTABLE' | 'E_CONTAINER_SETUP';

const EXIT_CODES: Record<ContainerStartCode, number> = {
  E_COMMAND_NOT_FOUND: 127,
  E_COMMAND_NOT_EXECUTABLE: 126,
  E_CONTAINER_SETUP: 125,
};

/** ENOENT on Linux (every architecture Capsa runs on). */
const ENOENT = 2;

/**
 * A container's start failed. The message is the cause's (the shim phrases
 * exec failures as users know them from runc); `cause` is the shim's own
 * report ({@link ContainerSetupError}) or the error that kept the shim from
 * reporting at all.
 */
export class ContainerStartError extends CapsaError {
  declare readonly code: ContainerStartCode;
  /** The exit status the container is recorded with, and the CLI exits with. */
  readonly exitCode: number;
  /** Setup step that failed (`exec`, `mount`, `cwd`, …), when the shim named one. */
  readonly step: string | undefined;
  /** Path the step worked on, when the shim named one. */
  readonly path: string | undefined;
  /** errno of the failure, when the shim named one. */
  readonly errno: number | undefined;

  constructor(code: ContainerStartCode, message: string, fields: { step?: string; path?: string; errno?: number }, cause: unknown) {
    super(code, message, { cause, fields: Object.keys(fields).length ? fields : undefined });
    this.exitCode = EXIT_CODES[code];
    this.step = fields.step;
    this.path = fields.path;
    this.errno = fields.errno;
  }

  /** Classifies what a start rejected with: the shim's setup report, or any other failure (125). */
  static from(err: unknown): ContainerStartError {
    if (err instanceof ContainerStartError) return err;
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof ContainerSetupError) {
      const code: ContainerStartCode = err.step !== 'exec' ? 'E_CONTAINER_SETUP' : err.errno === ENOENT ? 'E_COMMAND_NOT_FOUND' : 'E_COMMAND_NOT_EXECUTABLE';
      return new ContainerStartError(code, message, { step: err.step, path: err.path, errno: err.errno }, err);
    }
    return new ContainerStartError('E_CONTAINER_SETUP', message, {}, err);
  }
}
