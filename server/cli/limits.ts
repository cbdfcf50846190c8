/**
 * Values of `run`'s limit flags as Docker's client reads them: sizes with
 * binary units, CPUs as decimals, plain integers.
 */
import { InvalidArgumentError } from '../errors';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Smallest memory limit, as Docker's (6 MiB): below it a container cannot even start its command. */
export const MIN_MEMORY = 6 * 1024 * 1024;

/** Docker's memory sizes: `512m`, `1g`, `1048576`, `64k` (binary units, optional trailing `b`), at least `min` bytes. */
export function parseMemorySize(flag: string, value: string, min = 0): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$/i.exec(String(value).trim());
  if (!m) throw new InvalidArgumentError(`invalid value ${JSON.stringify(value)} for --${flag}: expected a size such as 512m or 2g`);
  const bytes = Math.floor(Number(m[1]) * UNITS[m[2].toLowerCase()]);
  if (!Number.isSafeInteger(bytes)) throw new InvalidArgumentError(`invalid value ${JSON.stringify(value)} for --${flag}: too large`);
  if (bytes < min) throw new InvalidArgumentError(`invalid value ${JSON.stringify(value)} for --${flag}: the minimum is 6m`);
  return bytes;
}

/** `--cpus` as typed: a decimal of at least 0.01 (one 1 ms quota in Docker's 100 ms period). */
export function parseCpus(value: string): number {
  if (!/^\d{1,6}(\.\d{1,6})?$|^\.\d{1,6}$/.test(String(value).trim())) throw new InvalidArgumentError(`invalid value ${JSON.stringify(value)} for --cpus: expected a number of CPUs such as 0.5 or 2`);
  if (Number(value) < 0.01) throw new InvalidArgumentError(`invalid value ${JSON.stringify(value)} for --cpus: the minimum is 0.01`);
  return Number(value);
}

/** An integer from `min` to `max`. */
export function parseIntFlag(flag: string, value: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^-?\d+$/.test(String(value).trim())) throw new InvalidArgumentError(`invalid value ${JSON.stringify(value)} for --${flag}: expected an integer`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`invalid value ${JSON.stringify(value)} for --${flag}: out of range ${min}-${max}`);
  return n;
}
