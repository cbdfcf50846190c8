/**
 * Values of `run`'s limit flags as Docker's client reads them: sizes with
 * binary units, CPUs as decimals, plain integers.
 */
import { InvalidArgumentError } from '../errors';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Docker's memory sizes: `512m`, `1g`, `1048576`, `64k` (binary units, optional trailing `b`). */
export function parseMemorySize(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$/i.exec(String(value).trim());
  if (!m) throw new InvalidArgumentError(`invalid value ${JSON.stringify(value)} for --${flag}: expected a size such as 512m or 2g`);
  const bytes = Math.floor(Number(m[1]) * UNITS[m[2].toLowerCase()]);
  if (!Number.isSafeInteger(bytes)) throw new InvalidArgumentError(`invalid value ${JSON.stringify(value)} for --${flag}: too large`);
  return bytes;
}

/** `--cpus` as typed: a positive decimal. */
export function parseCpus(value: string): number {
  if (!/^\d+(\.\d+)?$|^\.\d+$/.test(String(value).trim())) throw new InvalidArgumentError(`invalid value ${JSON.stringify(value)} for --cpus: expected a number of CPUs such as 0.5 or 2`);
  return Number(value);
}

export function parseIntFlag(flag: string, value: string): number {
  if (!/^-?\d+$/.test(String(value).trim())) throw new InvalidArgumentError(`invalid value ${JSON.stringify(value)} for --${flag}: expected an integer`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`invalid value ${JSON.stringify(value)} for --${flag}: out of range`);
  return n;
}
