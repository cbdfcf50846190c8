/**
 * Instruction flags (`--from=`, `--link`, `--mount=` …), checked as
 * BuildKit's BFlags checks them: each instruction declares its flags and
 * their kinds; an unknown flag, a string flag without a value, a repeated
 * single flag or a bad boolean is an error naming the flag.
 */

export type FlagKind = 'string' | 'bool' | 'strings';

export type FlagValues = { strings: Map<string, string>; bools: Map<string, boolean>; lists: Map<string, string[]> };

/** Parses `words` (as the parser extracted them) against `spec`; throws Error with BuildKit's wording. */
export function parseFlags(words: readonly string[], spec: Readonly<Record<string, FlagKind>>): FlagValues {
  const out: FlagValues = { strings: new Map(), bools: new Map(), lists: new Map() };
  const seen = new Set<string>();
  for (const w of words) {
    if (!w.startsWith('--')) throw new Error(`arg should start with -- : ${w}`);
    const body = w.slice(2);
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const value = eq < 0 ? undefined : body.slice(eq + 1);
    const kind = Object.prototype.hasOwnProperty.call(spec, name) ? spec[name] : undefined;
    if (!kind) throw new Error(`unknown flag: ${name}`);
    if (kind !== 'strings' && seen.has(name)) throw new Error(`duplicate flag specified: ${name}`);
    seen.add(name);
    if (kind === 'bool') {
      const v = (value ?? 'true').toLowerCase();
      if (v !== 'true' && v !== 'false') throw new Error(`expecting boolean value for flag ${name}, not: ${value}`);
      out.bools.set(name, v === 'true');
    } else {
      if (value === undefined) throw new Error(`missing a value on flag: ${name}`);
      if (kind === 'string') out.strings.set(name, value);
      else out.lists.set(name, [...(out.lists.get(name) ?? []), value]);
    }
  }
  return out;
}

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go's time.ParseDuration (`1m30s`, `1.5h`, `300ms`, `0`) in milliseconds; throws on anything else. */
export function parseDuration(text: string): number {
  if (text === '0') return 0;
  const m = /^([0-9]*(?:\.[0-9]*)?(?:ns|us|µs|μs|ms|s|m|h))+$/u.exec(text);
  if (!m) throw new Error(`time: invalid duration ${JSON.stringify(text)}`);
  let total = 0;
  for (const part of text.matchAll(/([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)/gu)) {
    if (part[1] === '' || part[1] === '.') throw new Error(`time: invalid duration ${JSON.stringify(text)}`);
    total += Number(part[1]) * UNITS[part[2]];
  }
  return total;
}
