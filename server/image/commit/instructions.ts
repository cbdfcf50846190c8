/**
 * The Dockerfile instructions that change only an image's config, as
 * `docker commit --change` takes them (and as a build applies them): CMD,
 * ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL.
 * `parseInstruction` turns one line into a typed instruction and
 * `applyInstruction` applies it to a config, so each rule lives once.
 *
 * Forms follow the Dockerfile reference: CMD, ENTRYPOINT and VOLUME take a
 * JSON array (exec form) or a shell form (CMD/ENTRYPOINT run by
 * `/bin/sh -c`, VOLUME split on blanks); ENV and LABEL take `KEY=VALUE`
 * pairs with Docker's quoting, ENV also the older `ENV KEY VALUE`; EXPOSE
 * takes `PORT[/PROTO]` words; WORKDIR relative to the previous one.
 */
import * as path from 'node:path';
import { InvalidArgumentError } from '../../errors';
import type { ContainerConfig } from '../types';

export type ConfigInstruction =
  | { kind: 'CMD' | 'ENTRYPOINT'; args: string[]; shellForm: boolean }
  | { kind: 'ENV' | 'LABEL'; pairs: Array<[string, string]> }
  | { kind: 'EXPOSE'; ports: string[] }
  | { kind: 'VOLUME'; paths: string[] }
  | { kind: 'USER' | 'WORKDIR' | 'STOPSIGNAL'; value: string };

export const CONFIG_INSTRUCTIONS = ['CMD', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'LABEL', 'USER', 'VOLUME', 'WORKDIR', 'STOPSIGNAL'] as const;

function bad(line: string, why: string): InvalidArgumentError {
  const shown = line.length > 120 ? `${line.slice(0, 120)}…` : line;
  return new InvalidArgumentError(`invalid change ${JSON.stringify(shown)}: ${why}`);
}

/** A JSON array of strings, or undefined when `rest` is not one (then it is the shell form, as Docker decides). */
function jsonArray(rest: string): string[] | undefined {
  if (!rest.startsWith('[')) return undefined;
  try {
    const v = JSON.parse(rest) as unknown;
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  } catch {
    // not JSON: the shell form, as Docker takes `CMD [oops`
  }
  return undefined;
}

/**
 * Words with Docker's quoting (ENV, LABEL): blanks separate words outside
 * quotes, `"…"` and `'…'` group, a backslash escapes the next character
 * (inside double quotes only `"`, `\` and `$` are special to it).
 */
export function splitWords(s: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"' && i + 1 < s.length && '"\\$'.includes(s[i + 1])) cur += s[++i];
      else cur += c;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\n') {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
      continue;
    }
    inWord = true;
    if (c === '"' || c === "'") quote = c;
    else if (c === '\\' && i + 1 < s.length) cur += s[++i];
    else cur += c;
  }
  if (quote) throw new InvalidArgumentError(`unmatched ${quote} in ${JSON.stringify(s.slice(0, 120))}`);
  if (inWord) words.push(cur);
  return words;
}

function pairs(line: string, kind: 'ENV' | 'LABEL', rest: string): Array<[string, string]> {
  const words = splitWords(rest);
  if (words.length === 0) throw bad(line, `${kind} needs at least one KEY=VALUE`);
  // the older `ENV KEY VALUE…` form: no `=` in the first word
  if (kind === 'ENV' && !words[0].includes('=')) {
    const m = /^(\S+)\s+([\s\S]*)$/.exec(rest.trim());
    if (!m) throw bad(line, 'ENV KEY VALUE needs a value');
    return [[m[1], splitWords(m[2]).join(' ')]];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq <= 0) throw bad(line, `${JSON.stringify(w)} is not KEY=VALUE`);
    return [w.slice(0, eq), w.slice(eq + 1)] as [string, string];
  });
}

/** One instruction line (`CMD ["sh"]`, `ENV A=1 B=2`, …); the keyword is case-insensitive, as in a Dockerfile. */
export function parseInstruction(line: string): ConfigInstruction {
  const m = /^\s*([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(line);
  if (!m) throw bad(line, 'expected INSTRUCTION ARGUMENTS');
  const kind = m[1].toUpperCase();
  const rest = (m[2] ?? '').trim();
  switch (kind) {
    case 'CMD':
    case 'ENTRYPOINT': {
      const exec = jsonArray(rest);
      if (exec) return { kind, args: exec, shellForm: false };
      if (rest === '') throw bad(line, `${kind} needs a command`);
      return { kind, args: ['/bin/sh', '-c', rest], shellForm: true };
    }
    case 'ENV':
    case 'LABEL':
      return { kind, pairs: pairs(line, kind, rest) };
    case 'EXPOSE': {
      const ports = rest.split(/\s+/).filter(Boolean);
      if (ports.length === 0) throw bad(line, 'EXPOSE needs a port');
      return { kind, ports: ports.map((p) => exposedPort(line, p)) };
    }
    case 'VOLUME': {
      const paths = jsonArray(rest) ?? rest.split(/\s+/).filter(Boolean);
      if (paths.length === 0 || paths.some((p) => p === '')) throw bad(line, 'VOLUME needs a path');
      return { kind, paths };
    }
    case 'USER':
    case 'WORKDIR':
    case 'STOPSIGNAL':
      if (rest === '') throw bad(line, `${kind} needs a value`);
      return { kind, value: rest };
    default:
      throw bad(line, `${kind} cannot be a change: one of ${CONFIG_INSTRUCTIONS.join(', ')} can`);
  }
}

/** `80`, `80/tcp`, `53/udp` → Docker's ExposedPorts key (tcp when no protocol is given). */
function exposedPort(line: string, word: string): string {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/(tcp|udp|sctp))?$/i.exec(word);
  if (!m || Number(m[1]) > 65535 || (m[2] !== undefined && Number(m[2]) > 65535)) throw bad(line, `${JSON.stringify(word)} is not PORT[/PROTOCOL]`);
  return `${m[1]}${m[2] ? `-${m[2]}` : ''}/${(m[3] ?? 'tcp').toLowerCase()}`;
}

/**
 * `config` with `ins` applied (a new object; `config` is left as it was).
 * `cmdSet`: a CMD came earlier in the same set of changes (or build stage),
 * which an ENTRYPOINT then keeps; otherwise it resets an inherited CMD.
 */
export function applyInstruction(config: ContainerConfig, ins: ConfigInstruction, cmdSet = false): ContainerConfig {
  const c: ContainerConfig = { ...config };
  switch (ins.kind) {
    case 'CMD':
      c.Cmd = ins.args;
      break;
    case 'ENTRYPOINT':
      c.Entrypoint = ins.args;
      // an ENTRYPOINT resets an inherited CMD (Dockerfile reference, "Understand how CMD and ENTRYPOINT interact"; moby's dispatchEntrypoint)
      if (!cmdSet) c.Cmd = null;
      break;
    case 'ENV': {
      const env = [...(c.Env ?? [])];
      for (const [k, v] of ins.pairs) {
        const i = env.findIndex((e) => e.split('=')[0] === k);
        if (i >= 0) env[i] = `${k}=${v}`;
        else env.push(`${k}=${v}`);
      }
      c.Env = env;
      break;
    }
    case 'LABEL':
      c.Labels = { ...(c.Labels ?? {}), ...Object.fromEntries(ins.pairs) };
      break;
    case 'EXPOSE':
      c.ExposedPorts = { ...(c.ExposedPorts ?? {}), ...Object.fromEntries(ins.ports.map((p) => [p, {}])) };
      break;
    case 'VOLUME':
      c.Volumes = { ...(c.Volumes ?? {}), ...Object.fromEntries(ins.paths.map((p) => [p, {}])) };
      break;
    case 'USER':
      c.User = ins.value;
      break;
    case 'WORKDIR':
      c.WorkingDir = path.posix.resolve(c.WorkingDir || '/', ins.value);
      break;
    case 'STOPSIGNAL':
      c.StopSignal = ins.value;
      break;
  }
  return c;
}

/** Each line parsed, then applied in order. */
export function applyChanges(config: ContainerConfig, lines: readonly string[]): ContainerConfig {
  let cmdSet = false;
  let c = config;
  for (const ins of lines.map(parseInstruction)) {
    c = applyInstruction(c, ins, cmdSet);
    if (ins.kind === 'CMD') cmdSet = true;
  }
  return c;
}
