import * as path from 'node:path';
import { InvalidArgumentError } from '../errors';
import type { BindMount } from './spec';

/**
 * Parses Docker's `-v HOST:CTR[:OPTS]` for bind mounts. Both paths must be
 * absolute; the container path may not be `/` (it would hide the rootfs).
 * Named volumes are not supported yet and are refused, not guessed at.
 */
export function parseVolume(spec: string): BindMount {
  if (typeof spec !== 'string' || spec.length === 0 || spec.includes('\0')) {
    throw new InvalidArgumentError(`invalid volume ${JSON.stringify(spec)}: expected HOST:CONTAINER[:ro|rw]`);
  }
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3) throw new InvalidArgumentError(`invalid volume ${JSON.stringify(spec)}: expected HOST:CONTAINER[:ro|rw]`);
  const [source, target, mode = 'rw'] = parts;
  if (!path.posix.isAbsolute(source)) {
    throw new InvalidArgumentError(`invalid volume ${JSON.stringify(spec)}: host path ${JSON.stringify(source)} must be absolute (named volumes are not supported)`);
  }
  if (!path.posix.isAbsolute(target)) throw new InvalidArgumentError(`invalid volume ${JSON.stringify(spec)}: container path ${JSON.stringify(target)} must be absolute`);
  const cleanTarget = path.posix.normalize(target);
  if (cleanTarget === '/') throw new InvalidArgumentError(`invalid volume ${JSON.stringify(spec)}: cannot mount over the container's /`);
  const opts = mode.split(',');
  for (const o of opts) {
    if (!['ro', 'rw', 'z', 'Z'].includes(o)) throw new InvalidArgumentError(`invalid volume ${JSON.stringify(spec)}: unknown option ${JSON.stringify(o)}`);
  }
  return { source: path.posix.normalize(source), target: cleanTarget, readOnly: opts.includes('ro') };
}
