/**
 * The process's confinement decided from `run` options: capabilities,
 * seccomp, no_new_privs, rlimits (`--ulimit`) and `--init`, as the plan's
 * fields the shim carries out.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../errors';
import type { RunOptions } from '../protocol/types';
import { capabilityMasks, resolveCapabilities } from './capabilities';
import { RLIMIT, type PlanCapabilities, type PlanRlimit } from './plan';
import { compileProfile, defaultProfile, parseProfile, type SeccompProfile } from './seccomp';

export interface SecuritySettings {
  capabilities: PlanCapabilities;
  /** Capability names (without CAP_), for inspect. */
  capabilityNames: string[];
  seccomp?: Buffer;
  noNewPrivileges: boolean;
  rlimits: PlanRlimit[];
  /** `--privileged`: no masked or read-only paths, /sys writable, the host's devices. */
  privileged: boolean;
}

/** `--ulimit` names (Docker's) → resource numbers. */
const ULIMITS: Record<string, number> = {
  core: RLIMIT.CORE,
  cpu: RLIMIT.CPU,
  data: RLIMIT.DATA,
  fsize: RLIMIT.FSIZE,
  locks: RLIMIT.LOCKS,
  memlock: RLIMIT.MEMLOCK,
  msgqueue: RLIMIT.MSGQUEUE,
  nice: RLIMIT.NICE,
  nofile: RLIMIT.NOFILE,
  nproc: RLIMIT.NPROC,
  rss: RLIMIT.RSS,
  rtprio: RLIMIT.RTPRIO,
  rttime: RLIMIT.RTTIME,
  sigpending: RLIMIT.SIGPENDING,
  stack: RLIMIT.STACK,
  as: RLIMIT.AS,
};

/** Docker's `--ulimit NAME=SOFT[:HARD]` (-1 or `unlimited` for no limit). */
export function parseUlimit(spec: string): PlanRlimit {
  const m = /^([a-z]+)=([^:]+)(?::([^:]+))?$/.exec(typeof spec === 'string' ? spec : '');
  if (!m) throw new InvalidArgumentError(`invalid ulimit ${JSON.stringify(spec)}: expected NAME=SOFT[:HARD], e.g. nofile=1024:4096`);
  const resource = ULIMITS[m[1]];
  if (resource === undefined) throw new InvalidArgumentError(`invalid ulimit ${JSON.stringify(spec)}: unknown resource ${m[1]} (known: ${Object.keys(ULIMITS).join(', ')})`);
  const num = (s: string): number => {
    if (s === '-1' || s === 'unlimited') return Infinity;
    if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s))) throw new InvalidArgumentError(`invalid ulimit ${JSON.stringify(spec)}: ${JSON.stringify(s)} is not a non-negative integer`);
    return Number(s);
  };
  const soft = num(m[2]);
  const hard = m[3] !== undefined ? num(m[3]) : soft;
  if (soft > hard) throw new InvalidArgumentError(`invalid ulimit ${JSON.stringify(spec)}: soft limit ${m[2]} is above hard limit ${m[3]}`);
  return { resource, soft, hard };
}

/** The options' `--security-opt` entries, parsed: Docker's keys, `key=value` or `key:value`. */
export function parseSecurityOpts(list: string[] | undefined): { seccomp?: 'unconfined' | SeccompProfile; noNewPrivileges?: boolean } {
  const out: { seccomp?: 'unconfined' | SeccompProfile; noNewPrivileges?: boolean } = {};
  for (const opt of list ?? []) {
    if (typeof opt !== 'string') throw new InvalidArgumentError('security options must be strings');
    const m = /^([a-z-]+)(?:[=:]([\s\S]*))?$/.exec(opt);
    const key = m?.[1];
    const value = m?.[2];
    if (key === 'no-new-privileges') {
      if (value !== undefined && value !== 'true' && value !== 'false') throw new InvalidArgumentError(`invalid security option ${JSON.stringify(opt)}: no-new-privileges takes true or false`);
      out.noNewPrivileges = value !== 'false';
    } else if (key === 'seccomp') {
      if (value === undefined || value === '') throw new InvalidArgumentError('invalid security option "seccomp": expected seccomp=unconfined or seccomp=PROFILE');
      out.seccomp = value === 'unconfined' ? 'unconfined' : parseProfile(value);
    } else {
      throw new InvalidArgumentError(`invalid security option ${JSON.stringify(opt.slice(0, 80))}: expected seccomp=unconfined|PROFILE or no-new-privileges`);
    }
  }
  return out;
}

/**
 * The default profile's program for a set of capabilities: the same bytes
 * each time (its rules depend on the capabilities alone), so compiled once
 * per set. Nearly every run has one of a few sets; the cache stays small.
 * The buffers are only read (plan encoding), never changed.
 */
const defaultFilters = new Map<string, Buffer>();
const DEFAULT_FILTERS_MAX = 16;

function defaultFilter(capabilities: string[]): Buffer {
  const key = capabilities.join(',');
  let program = defaultFilters.get(key);
  if (!program) {
    program = compileProfile(defaultProfile(), { capabilities });
    if (defaultFilters.size >= DEFAULT_FILTERS_MAX) defaultFilters.delete(defaultFilters.keys().next().value as string);
    defaultFilters.set(key, program);
  }
  return program;
}

/** The helper's own bounding set: what it can hand on at most. */
function ownBounding(): bigint | undefined {
  try {
    const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? BigInt(`0x${m[1]}`) : undefined;
  } catch {
    return undefined;
  }
}

export function securitySettings(opts: Pick<RunOptions, 'capAdd' | 'capDrop' | 'privileged' | 'securityOpt' | 'ulimits'>): SecuritySettings {
  const names = resolveCapabilities(opts, ownBounding());
  const sec = parseSecurityOpts(opts.securityOpt);
  const privileged = !!opts.privileged;
  let seccomp: Buffer | undefined;
  // as with Docker, --privileged turns the default filter off, but a profile the user gave still applies
  if (sec.seccomp !== 'unconfined' && !(privileged && sec.seccomp === undefined)) {
    const capabilities = names.map((n) => `CAP_${n}`);
    seccomp = sec.seccomp ? compileProfile(sec.seccomp, { capabilities }) : defaultFilter(capabilities);
  }
  const rlimits = (opts.ulimits ?? []).map(parseUlimit);
  const seen = new Set<number>();
  for (const r of rlimits) {
    if (seen.has(r.resource)) throw new InvalidArgumentError(`ulimit for resource ${Object.keys(ULIMITS).find((k) => ULIMITS[k] === r.resource)} given twice`);
    seen.add(r.resource);
  }
  return { capabilities: capabilityMasks(names), capabilityNames: names, seccomp, noNewPrivileges: !!sec.noNewPrivileges, rlimits, privileged };
}
