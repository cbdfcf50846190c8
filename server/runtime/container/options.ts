/**
 * The options a container is made from (run, create, exec). They are still
 * the protocol's types: this module is the container side's one door to
 * them, and checks the parts the container side relies on. (The pull
 * policy and progress are the image side's own, image/pull.ts.)
 */
import { InvalidArgumentError, assertSafeName } from '../../errors';
import { pullPolicyProblem } from '../../protocol/runoptions';
import type { ExecOptions, RunOptions } from '../../protocol/types';

export type { ExecOptions, RunOptions };

export function validateRunOptions(opts: RunOptions): void {
  if (typeof opts !== 'object' || opts === null) throw new InvalidArgumentError('run options must be an object');
  if (typeof opts.image !== 'string' || opts.image.length === 0) throw new InvalidArgumentError('an image reference is required');
  if (opts.name !== undefined) assertSafeName('container name', opts.name);
  if (opts.hostname !== undefined && !/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,62})$/.test(opts.hostname)) {
    throw new InvalidArgumentError(`invalid hostname ${JSON.stringify(opts.hostname)}: letters, digits, '.' and '-', at most 63 characters`);
  }
  for (const [key, v] of [['cmd', opts.cmd], ['entrypoint', opts.entrypoint], ['env', opts.env], ['volumes', opts.volumes]] as const) {
    if (v !== undefined && (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || s.includes('\0')))) {
      throw new InvalidArgumentError(`${key} must be a list of strings without NUL bytes`);
    }
  }
  const pullRefused = opts.pull === undefined ? undefined : pullPolicyProblem(opts.pull);
  if (pullRefused !== undefined) throw new InvalidArgumentError(pullRefused);
  // the network manager checks the mode itself: it knows the user-defined networks
  if (opts.network !== undefined && (typeof opts.network !== 'string' || opts.network === '')) {
    throw new InvalidArgumentError('network mode must be a non-empty string: bridge, host, none, container:NAME or a network name');
  }
  if (opts.size) checkSize(opts.size.rows, opts.size.cols);
  if (opts.workdir !== undefined && (typeof opts.workdir !== 'string' || !opts.workdir.startsWith('/'))) {
    throw new InvalidArgumentError(`working directory ${JSON.stringify(opts.workdir)} must be an absolute path`);
  }
}

/** A terminal size from a client: whole, positive and not absurd. */
export function checkSize(rows: number, cols: number): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1 || rows > 10000 || cols > 10000) {
    throw new InvalidArgumentError(`invalid terminal size ${rows}x${cols}`);
  }
}
