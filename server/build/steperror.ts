/** A build step that failed: a RUN that exited non-zero (its code in `exitCode`), or a cancelled build. */
import { CapsaError } from '../errors';

export class BuildStepError extends CapsaError {
  constructor(message: string, readonly exitCode?: number) {
    super('E_BUILD_STEP', message, { fields: exitCode !== undefined ? { exitCode } : undefined });
  }
}
