/**
 * `capsa run` and `capsa create`: their flags, checked and turned into
 * RunOptions here, so that a typo fails before anything is sent.
 */
import * as path from 'node:path';
import { ContainerCreateRequest, ContainerKillRequest, ContainerRunRequest, StreamTimingsNotification, errorCode, formatTimings, parseDeviceSpec, pullPolicyProblem, usernsProblem, type RegistryAuth, type RunOptions } from '../../protocol';
import { InvalidArgumentError } from '../../errors';
import { LIMITS, LimitExceededError } from '../../limits';
import { readUserFile } from '../../util/hostfile';
import { parseFlags, usage, type FlagSpec } from '../args';
import { newId, str, type Command } from '../command';
import { MIN_MEMORY, parseCpus, parseIntFlag, parseMemorySize } from '../limits';
import * as check from '../validate';
import { attachStreams, DETACH_KEYS_FLAG, detachKeysOf, restoreTerminal, terminalSize } from './streams';
import { trackPull } from '../progress';
import { credentialsFor } from '../login';

const RUN_FLAGS: FlagSpec[] = [
  { name: 'rm', kind: 'bool', help: 'Remove the container when it exits' },
  { name: 'interactive', short: 'i', kind: 'bool', help: 'Keep STDIN open' },
  { name: 'tty', short: 't', kind: 'bool', help: 'Allocate a pseudo-TTY' },
  { name: 'detach', short: 'd', kind: 'bool', help: 'Run in the background and print the container id' },
  { name: 'name', kind: 'value', help: 'Name of the container' },
  { name: 'env', short: 'e', kind: 'multi', help: 'Set an environment variable (KEY=VALUE, or KEY to pass it from here)' },
  { name: 'workdir', short: 'w', kind: 'value', help: 'Working directory inside the container' },
  { name: 'user', short: 'u', kind: 'value', help: 'User (name|uid[:group|gid])' },
  { name: 'hostname', short: 'h', kind: 'value', help: 'Container host name' },
  { name: 'entrypoint', kind: 'value', help: 'Overwrite the image ENTRYPOINT' },
  { name: 'volume', short: 'v', kind: 'multi', help: 'Bind mount HOST:CONTAINER[:ro]' },
  { name: 'network', kind: 'value', help: 'Network: bridge (default), host, none, container:NAME or a network name' },
  { name: 'net', kind: 'value', help: 'Same as --network' },
  { name: 'publish', short: 'p', kind: 'multi', help: "Publish a container's port: [IP:][HOSTPORT:]CTRPORT[/tcp|udp] (IP defaults to 127.0.0.1)" },
  { name: 'dns', kind: 'multi', help: 'Set a DNS server' },
  { name: 'pull', kind: 'value', help: 'Pull policy: always, missing (default) or never' },
  { name: 'platform', kind: 'value', help: 'Platform os/arch[/variant] for the pull' },
  { name: 'label', short: 'l', kind: 'multi', help: 'Set a label KEY=VALUE' },
  { name: 'env-file', kind: 'multi', help: 'Read environment variables from a file (KEY=VALUE lines)' },
  { name: 'mount', kind: 'multi', help: 'Mount: type=bind|volume|tmpfs,source=…,target=…[,readonly]' },
  { name: 'tmpfs', kind: 'multi', help: 'Mount a tmpfs: PATH[:OPTIONS]' },
  { name: 'read-only', kind: 'bool', help: "Mount the container's root filesystem read-only" },
  { name: 'memory', short: 'm', kind: 'value', help: 'Memory limit (e.g. 512m, 2g)' },
  { name: 'memory-swap', kind: 'value', help: 'Memory plus swap limit, -1 for unlimited swap' },
  { name: 'cpus', kind: 'value', help: 'Number of CPUs (e.g. 0.5)' },
  { name: 'cpu-shares', short: 'c', kind: 'value', help: 'CPU shares (relative weight)' },
  { name: 'pids-limit', kind: 'value', help: 'Process limit (-1 for unlimited)' },
  { name: 'device', kind: 'multi', help: 'Add a host device: HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]] (permissions of rwm, default rwm; root only)' },
  { name: 'cap-add', kind: 'multi', help: 'Add a Linux capability' },
  { name: 'cap-drop', kind: 'multi', help: 'Drop a Linux capability' },
  { name: 'privileged', kind: 'bool', help: 'Give the container every capability, no seccomp filter, no masked paths' },
  { name: 'security-opt', kind: 'multi', help: 'Security option: seccomp=unconfined|FILE, no-new-privileges' },
  { name: 'ulimit', kind: 'multi', help: 'Resource limit NAME=SOFT[:HARD]' },
  { name: 'init', kind: 'bool', help: 'Run an init inside the container that forwards signals and reaps processes' },
  { name: 'group-add', kind: 'multi', help: 'Add an additional group' },
  { name: 'pid', kind: 'value', help: 'PID namespace: host' },
  { name: 'ipc', kind: 'value', help: 'IPC namespace: host' },
  { name: 'userns', kind: 'value', help: 'User namespace: host (default) or auto (a private block of host ids)' },
  DETACH_KEYS_FLAG,
  { name: 'debug-timings', kind: 'bool', help: "Print the run's phases and their durations to stderr once it ends" },
  { name: 'help', kind: 'bool', help: 'Print usage' },
];

export function resolveEnv(list: string[] | undefined): string[] | undefined {
  if (!list) return undefined;
  const out: string[] = [];
  for (const e of list) {
    if (e.includes('=')) out.push(e);
    else if (process.env[e] !== undefined) out.push(`${e}=${process.env[e]}`);
  }
  return out;
}

/**
 * `-v ./dir:/x`: a host path starting with `.` is relative to our working
 * directory (Docker's client resolves it the same way); the helper, which
 * has its own, only takes absolute paths and volume names.
 */
function resolveBindSource(spec: string): string {
  const colon = spec.indexOf(':');
  const source = colon < 0 ? spec : spec.slice(0, colon);
  if (source !== '.' && source !== '..' && !source.startsWith('./') && !source.startsWith('../')) return spec;
  return path.resolve(process.cwd(), source) + (colon < 0 ? '' : spec.slice(colon));
}

/** `--env-file`: KEY=VALUE lines, `#` comments and blank lines skipped, a bare KEY taken from here (Docker's format). */
async function readEnvFiles(files: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = (await readUserFile(file, LIMITS.envFile, `env file ${file}`)).toString('utf8');
    } catch (err) {
      if (err instanceof LimitExceededError) throw err;
      throw new InvalidArgumentError(`cannot read env file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    for (const [i, raw] of text.split('\n').entries()) {
      const line = raw.replace(/\r$/, '').replace(/^\s+/, '');
      if (line === '' || line.startsWith('#')) continue;
      const eq = line.indexOf('=');
      const key = eq < 0 ? line.trimEnd() : line.slice(0, eq);
      if (key === '' || /\s/.test(key)) throw new InvalidArgumentError(`invalid env file ${file} line ${i + 1}: variable name ${JSON.stringify(key)} contains whitespace or is empty`);
      if (eq >= 0) out.push(line);
      else if (process.env[key] !== undefined) out.push(`${key}=${process.env[key]}`);
    }
  }
  return out;
}

/** The isolation and limit flags of `run`, parsed here so a typo fails before anything is sent. */
async function confinementOptions(flags: Record<string, string | boolean | string[] | undefined>): Promise<Partial<RunOptions>> {
  const o: Partial<RunOptions> = {};
  const v = (name: string): string | undefined => str(flags[name]);
  if (v('memory') !== undefined) o.memory = parseMemorySize('memory', v('memory')!, MIN_MEMORY);
  if (v('memory-swap') !== undefined) o.memorySwap = v('memory-swap') === '-1' ? -1 : parseMemorySize('memory-swap', v('memory-swap')!, MIN_MEMORY);
  if (o.memorySwap !== undefined && o.memory === undefined) throw new InvalidArgumentError('--memory-swap needs --memory as well');
  if (o.memorySwap !== undefined && o.memory !== undefined && o.memorySwap !== -1 && o.memorySwap < o.memory) {
    throw new InvalidArgumentError(`invalid value ${JSON.stringify(v('memory-swap'))} for --memory-swap: must be at least --memory (${v('memory')}), or -1`);
  }
  if (v('cpus') !== undefined) o.cpus = parseCpus(v('cpus')!);
  if (v('cpu-shares') !== undefined) o.cpuShares = parseIntFlag('cpu-shares', v('cpu-shares')!, 2, 262144);
  if (v('pids-limit') !== undefined) o.pidsLimit = parseIntFlag('pids-limit', v('pids-limit')!, -1);
  if (flags.device) {
    // checked here as the helper checks it again (runoptions.ts); the host path is the helper's to look at
    o.devices = (flags.device as string[]).map((d) => {
      const m = parseDeviceSpec(d);
      if (typeof m === 'string') throw new InvalidArgumentError(m);
      return d;
    });
  }
  if (flags['cap-add']) o.capAdd = flags['cap-add'] as string[];
  if (flags['cap-drop']) o.capDrop = flags['cap-drop'] as string[];
  if (flags.privileged) o.privileged = true;
  if (flags.init) o.init = true;
  if (flags['read-only']) o.readOnly = true;
  if (flags.mount) o.mounts = (flags.mount as string[]).map(check.checkMount);
  if (flags.tmpfs) o.tmpfs = (flags.tmpfs as string[]).map(check.checkTmpfs);
  if (flags.ulimit) o.ulimits = (flags.ulimit as string[]).map(check.checkUlimit);
  if (flags['group-add']) o.groupAdd = (flags['group-add'] as string[]).map((g) => check.checkGroup('group-add', g));
  for (const ns of ['pid', 'ipc'] as const) {
    const val = v(ns);
    if (val === undefined) continue;
    if (val !== 'host') throw new InvalidArgumentError(`invalid --${ns} ${JSON.stringify(val)}: expected host`);
    o[ns] = 'host';
  }
  if (v('userns') !== undefined) {
    const problem = usernsProblem(v('userns'));
    if (problem !== undefined) throw new InvalidArgumentError(problem);
    o.userns = v('userns') as RunOptions['userns'];
  }
  if (flags['security-opt']) {
    o.securityOpt = [];
    for (const opt of flags['security-opt'] as string[]) {
      const m = /^seccomp[=:](.+)$/.exec(opt);
      if (m && m[1] !== 'unconfined') {
        // as Docker's client: the profile is read here and its text sent
        let text: string;
        try {
          text = (await readUserFile(m[1], LIMITS.seccompProfile, `seccomp profile ${m[1]}`)).toString('utf8');
        } catch (err) {
          if (err instanceof LimitExceededError) throw err;
          throw new InvalidArgumentError(`cannot read seccomp profile ${m[1]}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
        o.securityOpt.push(`seccomp=${text}`);
      } else o.securityOpt.push(opt);
    }
  }
  return o;
}

/** `capsa run`, and `capsa create`: the same options, without the start. */
export const runLike = (verb: 'run' | 'create'): Command => async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, RUN_FLAGS, { stopAtPositional: true, verb });
  if (flags.help) {
    process.stdout.write(usage(verb, '[OPTIONS] IMAGE [COMMAND] [ARG...]', RUN_FLAGS) + '\n');
    return 0;
  }
  const [image, ...cmd] = positionals;
  if (!image) throw new InvalidArgumentError(`'capsa ${verb}' requires at least 1 argument: IMAGE`);
  const tty = !!flags.tty;
  const interactive = !!flags.interactive;
  const detach = !!flags.detach;
  const pull = str(flags.pull);
  const pullProblem = pull === undefined ? undefined : pullPolicyProblem(pull);
  if (pullProblem !== undefined) throw new InvalidArgumentError(pullProblem);
  const labels = check.checkLabels('label', (flags.label as string[] | undefined) ?? []);
  // every value is checked before anything is sent: a bad one creates nothing
  const detachKeys = detachKeysOf(flags);
  const given = (name: string, fn: (value: string) => string): string | undefined => (str(flags[name]) === undefined ? undefined : fn(str(flags[name])!));
  const network = str(flags.network) ?? str(flags.net);
  const opts: RunOptions = {
    image,
    cmd: cmd.length ? cmd : undefined,
    entrypoint: flags.entrypoint !== undefined ? (str(flags.entrypoint) === '' ? [] : [str(flags.entrypoint)!]) : undefined,
    env: flags.env ? resolveEnv(check.checkEnv('env', flags.env as string[])) : undefined,
    name: given('name', check.checkName),
    hostname: given('hostname', check.checkHostname),
    workdir: given('workdir', (w) => check.checkWorkdir('workdir', w)),
    user: given('user', (u) => check.checkUser('user', u)),
    tty,
    interactive,
    rm: !!flags.rm,
    pull: pull as RunOptions['pull'],
    platform: given('platform', check.checkPlatform),
    volumes: (flags.volume as string[] | undefined)?.map((v) => resolveBindSource(check.checkVolume(v))),
    network: network === undefined ? undefined : check.checkNetwork(network),
    publish: (flags.publish as string[] | undefined)?.map(check.checkPublish),
    dns: (flags.dns as string[] | undefined)?.map(check.checkDns),
    labels: Object.keys(labels).length ? labels : undefined,
    size: tty ? terminalSize() : undefined,
    ...(await confinementOptions(flags)),
  };
  if (flags['env-file']) opts.env = check.checkEnv('env-file', [...(await readEnvFiles(flags['env-file'] as string[])), ...(opts.env ?? [])]);
  const c = await conn();
  if (verb === 'create') {
    const token = newId('pull');
    trackPull(c, token);
    const created = await withLogin(opts.image, (auth) => c.sendRequest(ContainerCreateRequest.type, { ...opts, workDoneToken: token, ...(auth ? { auth } : {}) }));
    process.stdout.write(`${created.id}\n`);
    return 0;
  }
  const attachId = detach ? undefined : newId('run');
  const token = newId('pull');
  trackPull(c, token);
  const streams = attachId ? attachStreams(c, attachId, { tty, interactive, detachKeys }) : undefined;
  // the helper sends them just before the exit, on this connection
  const timings = attachId && flags['debug-timings'] ? debugTimings(c, attachId) : undefined;
  const result = await withLogin(opts.image, (auth) =>
    c.sendRequest(ContainerRunRequest.type, { ...opts, attachId, workDoneToken: token, ...(auth ? { auth } : {}), ...(timings ? { debugTimings: true } : {}) }),
  );
  if (detach || !streams) {
    process.stdout.write(`${result.id}\n`);
    return 0;
  }
  streams.start();
  if (!tty) {
    // Like Docker's sig-proxy: Ctrl-C and TERM sent to the CLI go to the container.
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.on(sig, () => void c.sendRequest(ContainerKillRequest.type, { container: result.id, signal: sig }).catch(() => undefined));
    }
  }
  const code = await streams.done;
  restoreTerminal();
  if (timings?.phases) process.stderr.write(formatTimings(timings.phases));
  return code;
};

/** `--debug-timings`: keeps the run's phases when the helper sends them. */
function debugTimings(c: Parameters<typeof attachStreams>[0], attachId: string): { phases?: Array<{ phase: string; ms: number }> } {
  const got: { phases?: Array<{ phase: string; ms: number }> } = {};
  c.onNotification(StreamTimingsNotification.type, (p) => {
    if (p.attachId === attachId) got.phases = p.phases;
  });
  return got;
}

/**
 * As Docker's CLI, credentials go only with a pull that needs them: a run or
 * create whose implicit pull the registry refused is sent once more with the
 * user's own credentials for that registry (`capsa login`, read by this
 * process, as the user), when there are any. The refused call created
 * nothing: the image is resolved before the container is made, and its
 * attach session was dropped with the error. Reading the config (or running
 * a credential helper) on every run would cost each run that time.
 */
async function withLogin<T>(image: string, send: (auth?: RegistryAuth) => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (err) {
    if (errorCode(err) !== 'E_REGISTRY_AUTH') throw err;
    const auth = await credentialsFor(image);
    if (!auth) throw err;
    return send(auth);
  }
}
