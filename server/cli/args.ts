/**
 * Docker-style argument parsing: short flags that combine (`-it`), values
 * given as `-e K=V`, `-eK=V`, `--env K=V` or `--env=K=V`, repeatable flags,
 * and flag parsing that stops at the first positional argument for verbs
 * whose trailing arguments belong to the container (`run IMAGE CMD…`).
 */
import { InvalidArgumentError } from '../errors';

/** A name the user typed, safe to print: control characters escaped, long ones cut. */
function safe(text: string): string {
  const cut = text.length > 64 ? `${text.slice(0, 64)}…` : text;
  return cut.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

export interface FlagSpec {
  /** Long name without dashes, e.g. `env`. */
  name: string;
  short?: string;
  /** Takes a value; `multi` collects every occurrence. */
  kind: 'bool' | 'value' | 'multi';
  help: string;
}

export interface Parsed {
  flags: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export function parseFlags(argv: string[], specs: FlagSpec[], opts: { stopAtPositional: boolean; verb: string }): Parsed {
  const byLong = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const flags: Parsed['flags'] = {};
  const positionals: string[] = [];
  const set = (spec: FlagSpec, value: string | boolean): void => {
    if (spec.kind === 'multi') ((flags[spec.name] as string[] | undefined) ?? (flags[spec.name] = [] as string[]) as string[]).push(value as string);
    else flags[spec.name] = value;
  };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      i++;
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const spec = byLong.get(name);
      if (!spec) throw new InvalidArgumentError(`unknown flag: --${safe(name)} (see 'capsa ${opts.verb} --help')`);
      if (spec.kind === 'bool') {
        if (eq < 0) set(spec, true);
        else {
          const v = a.slice(eq + 1);
          if (v !== 'true' && v !== 'false') throw new InvalidArgumentError(`invalid value ${JSON.stringify(safe(v))} for --${name}: expected true or false`);
          set(spec, v === 'true');
        }
      } else if (eq >= 0) set(spec, a.slice(eq + 1));
      else {
        if (i + 1 >= argv.length) throw new InvalidArgumentError(`flag needs an argument: --${name}`);
        set(spec, argv[++i]);
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      // -abc: a run of boolean short flags, the last of which may take a value (`-ePATH=x`, `-e X`).
      for (let j = 1; j < a.length; j++) {
        const spec = byShort.get(a[j]);
        if (!spec) throw new InvalidArgumentError(`unknown shorthand flag: '${safe(a[j])}' in ${safe(a)} (see 'capsa ${opts.verb} --help')`);
        if (spec.kind === 'bool') {
          set(spec, true);
          continue;
        }
        const rest = a.slice(j + 1);
        if (rest.length > 0) set(spec, rest.startsWith('=') ? rest.slice(1) : rest);
        else {
          if (i + 1 >= argv.length) throw new InvalidArgumentError(`flag needs an argument: '${a[j]}' in -${a[j]}`);
          set(spec, argv[++i]);
        }
        break;
      }
      continue;
    }
    positionals.push(a);
    if (opts.stopAtPositional) {
      i++;
      break;
    }
  }
  positionals.push(...argv.slice(i));
  return { flags, positionals };
}

export function usage(verb: string, synopsis: string, specs: FlagSpec[]): string {
  const lines = [`Usage: capsa ${verb} ${synopsis}`, ''];
  if (specs.length) {
    lines.push('Options:');
    for (const s of specs) {
      const names = `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.kind === 'bool' ? '' : ' value'}`;
      lines.push(`  ${names.padEnd(28)} ${s.help}`);
    }
  }
  return lines.join('\n');
}
