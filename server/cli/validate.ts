/**
 * Checks of flag values that the CLI makes before it sends anything, so a
 * typo or a hostile value ends with exit 125 and a message naming the flag,
 * and nothing is created. The helper checks again (it has other clients);
 * these checks say, in the terms of the command line, what was expected.
 */
import { isIP } from 'node:net';
import * as path from 'node:path';
import { constants } from 'node:os';
import { InvalidArgumentError } from '../errors';
import { platformProblem } from '../protocol';

/** Longest single env entry or label (bytes): far below the kernel's 128 KiB per execve string. */
export const MAX_ENTRY_BYTES = 64 * 1024;
/** Most `-e`/`--env-file` variables and their total size: bounded so a container's execve (ARG_MAX) cannot fail on them. */
export const MAX_ENV_COUNT = 10_000;
export const MAX_ENV_BYTES = 1024 * 1024;
/** Most labels a container or volume carries. */
export const MAX_LABELS = 1_000;
/** Largest user or group id: 2^32-1 is (uid_t)-1, which the kernel reads as "no change". */
const MAX_ID = 4294967294;

const CONTROL = /[\x00-\x1f\x7f]/;

/** A value as the message shows it: quoted, control characters escaped, long ones cut. */
export function shown(value: string): string {
  const cut = value.length > 64 ? `${value.slice(0, 64)}…` : value;
  return JSON.stringify(cut).replace(/\x7f/g, '\\u007f') + (value.length > 64 ? ` (${value.length} characters)` : '');
}

function invalid(flag: string, value: string, expected: string): InvalidArgumentError {
  return new InvalidArgumentError(`invalid value ${shown(value)} for --${flag}: ${expected}`);
}

/** Container names, as Docker's: they become file and host names. */
export function checkName(value: string): string {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(value)) throw invalid('name', value, 'expected [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters');
  return value;
}

/** A host name (RFC 1123): labels of letters, digits and '-', at most 63 characters, as the kernel's limit for uname. */
export function checkHostname(value: string): string {
  const labels = value.split('.');
  if (value.length === 0 || value.length > 63 || !labels.every((l) => /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/.test(l))) {
    throw invalid('hostname', value, "expected letters, digits, '-' and '.', at most 63 characters");
  }
  return value;
}

/** `-e KEY=VALUE` or `-e KEY`: a name without '=', blanks or control characters; a value without NUL. */
export function checkEnv(flag: string, list: string[]): string[] {
  if (list.length > MAX_ENV_COUNT) throw new InvalidArgumentError(`too many environment variables (${list.length}) for --${flag}: at most ${MAX_ENV_COUNT}`);
  let total = 0;
  for (const e of list) {
    const eq = e.indexOf('=');
    const key = eq < 0 ? e : e.slice(0, eq);
    if (key === '' || /[\s=]/.test(key) || CONTROL.test(key)) throw invalid(flag, e, 'expected KEY=VALUE or KEY, with a name of no blanks or control characters');
    if (e.includes('\0')) throw invalid(flag, e, 'a variable cannot hold a NUL byte');
    const bytes = Buffer.byteLength(e);
    if (bytes > MAX_ENTRY_BYTES) throw invalid(flag, e, `a variable is at most ${MAX_ENTRY_BYTES} bytes`);
    total += bytes + 1;
  }
  if (total > MAX_ENV_BYTES) throw new InvalidArgumentError(`environment of ${total} bytes for --${flag}: at most ${MAX_ENV_BYTES} bytes in all`);
  return list;
}

/** `-l KEY=VALUE`: labels are shown in lists and terminals, so no control characters at all. */
export function checkLabels(flag: string, list: string[]): Record<string, string> {
  if (list.length > MAX_LABELS) throw new InvalidArgumentError(`too many labels (${list.length}) for --${flag}: at most ${MAX_LABELS}`);
  const labels: Record<string, string> = {};
  for (const l of list) {
    const eq = l.indexOf('=');
    const key = eq < 0 ? l : l.slice(0, eq);
    if (key === '' || CONTROL.test(l)) throw invalid(flag, l, 'expected KEY=VALUE with a non-empty key and no control characters');
    if (Buffer.byteLength(l) > MAX_ENTRY_BYTES) throw invalid(flag, l, `a label is at most ${MAX_ENTRY_BYTES} bytes`);
    labels[key] = eq < 0 ? '' : l.slice(eq + 1);
  }
  return labels;
}

/** A container path: absolute, no `..` component, no control characters. */
function containerPath(flag: string, spec: string, target: string): void {
  if (!path.posix.isAbsolute(target)) throw invalid(flag, spec, `the container path ${shown(target)} must be absolute`);
  if (target.split('/').includes('..')) throw invalid(flag, spec, `the container path ${shown(target)} may not contain '..'`);
  if (path.posix.normalize(target) === '/') throw invalid(flag, spec, "cannot mount over the container's /");
}

/** `-v SOURCE:TARGET[:OPTIONS]`: the shape is checked here; the helper checks the source. */
export function checkVolume(spec: string): string {
  if (CONTROL.test(spec)) throw invalid('volume', spec, 'a volume cannot hold control characters');
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3 || parts[0] === '' || parts[1] === '') throw invalid('volume', spec, 'expected SOURCE:CONTAINER-PATH[:ro|rw]');
  containerPath('volume', spec, parts[1]);
  if (parts.length === 3) {
    const opts = parts[2].split(',');
    for (const o of opts) if (!['ro', 'rw', 'z', 'Z'].includes(o)) throw invalid('volume', spec, `unknown option ${shown(o)}: expected ro, rw, z or Z`);
    if (new Set(opts).size !== opts.length || (opts.includes('ro') && opts.includes('rw'))) throw invalid('volume', spec, 'options may be given once each, and only one of ro and rw');
  }
  return spec;
}

const MOUNT_KEYS = new Set(['type', 'source', 'src', 'target', 'destination', 'dst', 'readonly', 'ro', 'bind-propagation', 'volume-nocopy', 'tmpfs-size', 'tmpfs-mode']);

/** `--mount type=…,source=…,target=…`: known keys, each once, a known type and a target. */
export function checkMount(spec: string): string {
  if (spec === '' || CONTROL.test(spec)) throw invalid('mount', spec, 'expected type=bind|volume|tmpfs,source=…,target=…');
  const seen = new Map<string, string | undefined>();
  for (const item of spec.split(',')) {
    const eq = item.indexOf('=');
    const key = (eq < 0 ? item : item.slice(0, eq)).trim().toLowerCase();
    if (!MOUNT_KEYS.has(key)) throw invalid('mount', spec, `unknown key ${shown(key)}`);
    const canonical = { src: 'source', destination: 'target', dst: 'target', ro: 'readonly' }[key] ?? key;
    if (seen.has(canonical)) throw invalid('mount', spec, `${canonical} is given twice`);
    seen.set(canonical, eq < 0 ? undefined : item.slice(eq + 1));
  }
  const type = seen.get('type') ?? 'volume';
  if (!['bind', 'volume', 'tmpfs'].includes(type)) throw invalid('mount', spec, `unknown type ${shown(type)}: expected bind, volume or tmpfs`);
  const target = seen.get('target');
  if (!target) throw invalid('mount', spec, 'a target is required');
  containerPath('mount', spec, target);
  return spec;
}

/** `--tmpfs PATH[:OPTIONS]`: the path here, the options in the helper. */
export function checkTmpfs(spec: string): string {
  if (CONTROL.test(spec)) throw invalid('tmpfs', spec, 'a tmpfs cannot hold control characters');
  const colon = spec.indexOf(':');
  containerPath('tmpfs', spec, colon < 0 ? spec : spec.slice(0, colon));
  return spec;
}

function portNumber(spec: string, text: string, what: string): void {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) throw invalid('publish', spec, `${what} ${shown(text)} is not a port from 1 to 65535`);
}

/** `-p [IP:][HOSTPORT:]CTRPORT[/tcp|udp]`; a host port left out (not 0) means a free one. */
export function checkPublish(spec: string): string {
  let rest = spec;
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const proto = rest.slice(slash + 1);
    if (proto !== 'tcp' && proto !== 'udp') throw invalid('publish', spec, `protocol ${shown(proto)} is not tcp or udp`);
    rest = rest.slice(0, slash);
  }
  const parts = rest.split(':');
  if (parts.length > 3 || rest === '') throw invalid('publish', spec, 'expected [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]');
  portNumber(spec, parts[parts.length - 1], 'container port');
  if (parts.length >= 2 && parts[parts.length - 2] !== '') portNumber(spec, parts[parts.length - 2], 'host port');
  if (parts.length === 3 && parts[0] !== '' && isIP(parts[0]) !== 4) throw invalid('publish', spec, `${shown(parts[0])} is not an IPv4 address`);
  return spec;
}

/** `--ulimit NAME=SOFT[:HARD]`, soft at most hard. The names are checked by the helper, which knows them. */
export function checkUlimit(spec: string): string {
  const m = /^([a-z]+)=(-1|unlimited|\d{1,19})(?::(-1|unlimited|\d{1,19}))?$/.exec(spec);
  if (!m) throw invalid('ulimit', spec, 'expected NAME=SOFT[:HARD] with integer limits, e.g. nofile=1024:4096');
  const num = (s: string): number => (s === '-1' || s === 'unlimited' ? Infinity : Number(s));
  if (Number.isFinite(num(m[2])) && !Number.isSafeInteger(num(m[2]))) throw invalid('ulimit', spec, `${m[2]} is out of range`);
  if (m[3] !== undefined && Number.isFinite(num(m[3])) && !Number.isSafeInteger(num(m[3]))) throw invalid('ulimit', spec, `${m[3]} is out of range`);
  if (m[3] !== undefined && num(m[2]) > num(m[3])) throw invalid('ulimit', spec, `the soft limit ${m[2]} is above the hard limit ${m[3]}`);
  return spec;
}

/** `--network`: a mode or a name; `container:` must name one. */
export function checkNetwork(value: string): string {
  if (value === '' || CONTROL.test(value)) throw invalid('network', value, 'expected bridge, host, none, container:NAME or a network name');
  if (value.startsWith('container:') && value.length === 'container:'.length) throw invalid('network', value, 'container: must name a container');
  return value;
}

export function checkDns(value: string): string {
  if (isIP(value) === 0) throw invalid('dns', value, 'expected an IP address');
  return value;
}

export function checkWorkdir(flag: string, value: string): string {
  if (!path.posix.isAbsolute(value) || CONTROL.test(value)) throw invalid(flag, value, 'expected an absolute path without control characters');
  return value;
}

function checkId(flag: string, spec: string, part: string, what: string): void {
  if (/^\d+$/.test(part)) {
    if (Number(part) > MAX_ID) throw invalid(flag, spec, `${what} id ${part} is out of range 0-${MAX_ID}`);
  } else if (!/^[a-zA-Z_][a-zA-Z0-9_.-]{0,31}\$?$/.test(part)) {
    throw invalid(flag, spec, `expected a ${what} name or a numeric id from 0 to ${MAX_ID}`);
  }
}

/** `-u name|uid[:group|gid]`. */
export function checkUser(flag: string, value: string): string {
  const parts = value.split(':');
  if (parts.length > 2) throw invalid(flag, value, 'expected name|uid[:group|gid]');
  checkId(flag, value, parts[0], 'user');
  if (parts.length === 2) checkId(flag, value, parts[1], 'group');
  return value;
}

export function checkGroup(flag: string, value: string): string {
  checkId(flag, value, value, 'group');
  return value;
}

/** `--platform os/arch[/variant]`, the OCI spec's lower-case values. */
export function checkPlatform(value: string): string {
  // the protocol's own vocabulary (case ignored, containerd's aliases), so the CLI and the helper agree
  const problem = platformProblem(value);
  if (problem !== undefined) throw invalid('platform', value, `expected os/arch[/variant], e.g. linux/amd64 (${problem})`);
  return value;
}

/** `--time` of stop and restart: whole seconds. */
export function checkSeconds(flag: string, value: string): number {
  if (!/^\d{1,9}$/.test(value)) throw invalid(flag, value, 'expected whole seconds >= 0');
  return Number(value);
}

/** `--tail`: `all` or a number of lines. */
export function checkTail(value: string): number | undefined {
  if (value === 'all') return undefined;
  if (!/^\d{1,15}$/.test(value)) throw invalid('tail', value, 'expected a number of lines >= 0, or all');
  return Number(value);
}

/** `kill -s`: a signal's name (with or without SIG) or its number, 1 to 64. */
export function checkSignal(value: string): string {
  if (/^\d{1,2}$/.test(value) && Number(value) >= 1 && Number(value) <= 64) return value;
  const name = value.toUpperCase().replace(/^SIG/, '');
  if (/^[A-Z0-9+-]+$/.test(name) && (`SIG${name}` in constants.signals || /^RTM(IN|AX)([+-]\d{1,2})?$/.test(name))) return value;
  throw invalid('signal', value, 'expected a signal name such as KILL or TERM, or a number from 1 to 64');
}

/** A verb that takes no positional arguments. */
export function noArguments(verb: string, positionals: string[]): void {
  if (positionals.length) throw new InvalidArgumentError(`'capsa ${verb}' accepts no arguments`);
}

/** A verb that needs at least one positional argument. */
export function someArguments(verb: string, positionals: string[]): void {
  if (!positionals.length) throw new InvalidArgumentError(`'capsa ${verb}' requires at least 1 argument`);
}

/** A flag whose value is one of `choices`. */
export function checkChoice<T extends string>(flag: string, value: string, choices: readonly T[]): T {
  if ((choices as readonly string[]).includes(value)) return value as T;
  throw new InvalidArgumentError(`invalid value ${shown(value)} for --${flag}: expected ${choices.join(' or ')}`);
}

/** Network and volume names become file names (and bridge labels): Docker's character set, at most 128 characters. */
export function checkObjectName(what: 'network' | 'volume', value: string): string {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(value)) {
    throw new InvalidArgumentError(`invalid ${what} name ${shown(value)}: expected [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters`);
  }
  return value;
}

/** `--subnet A.B.C.D/N`, an IPv4 network. */
export function checkSubnet(value: string): string {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(value);
  if (!m || isIP(m[1]) !== 4 || Number(m[2]) > 30 || Number(m[2]) < 8) throw invalid('subnet', value, 'expected an IPv4 subnet in CIDR form from /8 to /30, e.g. 10.90.0.0/24');
  return value;
}

export function checkGateway(value: string): string {
  if (isIP(value) !== 4) throw invalid('gateway', value, 'expected an IPv4 address');
  return value;
}

/** The message of a verb's unknown subcommand, with the usage after it. */
export function unknownSubcommand(verb: string, sub: string, help: string): number {
  process.stderr.write(`capsa: error: unknown command ${shown(sub)} for 'capsa ${verb}'\n\n${help}`);
  return 125;
}
