/**
 * `capsa`: Docker's verbs and flags, as a thin client of the helper's protocol.
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { MIN_MEMORY, parseCpus, parseIntFlag, parseMemorySize } from './limits';
import { CancellationTokenSource, ProgressType, type MessageConnection } from 'vscode-jsonrpc/node';
import { loadConfig } from '../config';
import { InvalidArgumentError } from '../errors';
import { LIMITS, LimitExceededError } from '../limits';
import { readUserFile } from '../util/hostfile';
import {
  ContainerExecRequest,
  ContainerInspectRequest,
  ContainerKillRequest,
  ContainerListRequest,
  ContainerLogsRequest,
  ContainerRemoveRequest,
  ContainerRunRequest,
  ContainerStopRequest,
  ContainerWaitRequest,
  ContainerAttachRequest,
  ContainerCreateRequest,
  ContainerPruneRequest,
  ContainerRestartRequest,
  ContainerStartRequest,
  ContainerTopRequest,
  ImageListRequest,
  ImagePullRequest,
  ImageRemoveRequest,
  StreamExitNotification,
  StreamInputNotification,
  StreamOutputNotification,
  StreamResizeNotification,
  VersionRequest,
  platformProblem,
  type PullProgress,
  type StreamOutputParams,
  type RunOptions,
} from '../protocol';
import { parseFlags, usage, type FlagSpec } from './args';
import { connect, watchHelper } from './client';
import { errorLine, exitStatus } from './exit';
import { formatAge, formatBytes, json, printable, printableLines, table } from './format';
import { ProgressDisplay } from './progress';
import { network, port } from './network';
import { volume } from './volumes';
import { imagePrune, load, save, system } from './images';
import { report as reportWarm, serveWarm } from './warm';
import { DEFAULT_DETACH_KEYS, DetachKeys, parseDetachKeys } from './detachkeys';
import * as check from './validate';

/** Exit status for errors of Capsa itself, as Docker uses 125. */
const EXIT_CAPSA = 125;

const DETACH_KEYS_FLAG: FlagSpec = { name: 'detach-keys', kind: 'value', help: `Key sequence that detaches from a terminal (default ${DEFAULT_DETACH_KEYS})` };

/** The detach sequence from --detach-keys, checked before anything starts. */
function detachKeysOf(flags: Record<string, unknown>): Buffer {
  return parseDetachKeys(typeof flags['detach-keys'] === 'string' ? flags['detach-keys'] : DEFAULT_DETACH_KEYS);
}

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
  { name: 'help', kind: 'bool', help: 'Print usage' },
];

const EXEC_FLAGS: FlagSpec[] = [
  { name: 'interactive', short: 'i', kind: 'bool', help: 'Keep STDIN open' },
  { name: 'tty', short: 't', kind: 'bool', help: 'Allocate a pseudo-TTY' },
  { name: 'env', short: 'e', kind: 'multi', help: 'Set an environment variable' },
  { name: 'workdir', short: 'w', kind: 'value', help: 'Working directory inside the container' },
  { name: 'user', short: 'u', kind: 'value', help: 'User (name|uid[:group|gid])' },
  DETACH_KEYS_FLAG,
  { name: 'help', kind: 'bool', help: 'Print usage' },
];

type Command = (argv: string[], conn: () => Promise<MessageConnection>) => Promise<number>;

function resolveEnv(list: string[] | undefined): string[] | undefined {
  if (!list) return undefined;
  const out: string[] = [];
  for (const e of list) {
    if (e.includes('=')) out.push(e);
    else if (process.env[e] !== undefined) out.push(`${e}=${process.env[e]}`);
  }
  return out;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
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

/** Our terminal's size, when stdout is a terminal that knows it. */
function terminalSize(): { rows: number; cols: number } | undefined {
  const { rows, columns } = process.stdout;
  return process.stdout.isTTY && rows > 0 && columns > 0 ? { rows, cols: columns } : undefined;
}

function newId(prefix: string): string {
  return `${prefix}-${randomBytes(8).toString('hex')}`;
}

/**
 * Follows one attach session: output to our stdout/stderr, our stdin and
 * size to the helper; `done` resolves with the exit code. Nothing is shown
 * before `start()`, which every caller makes once the session's request is
 * answered (and, for logs, its logged part written).
 */
function attachStreams(
  c: MessageConnection,
  attachId: string,
  opts: { tty: boolean; interactive: boolean; timestamps?: boolean; detachKeys?: Buffer },
): { done: Promise<number>; start: () => void } {
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  // Output that comes before start() (the request's reply) waits for it: a
  // terminal is only written once it is ours, in raw mode, and a background
  // job is stopped by the terminal before the container shows anything.
  let early: StreamOutputParams[] | undefined = [];
  const show = (p: StreamOutputParams): void => {
    const out = p.stream === 'stderr' ? process.stderr : process.stdout;
    if (opts.timestamps && p.time) out.write(`${p.time} `);
    out.write(Buffer.from(p.data, 'base64'));
  };
  c.onNotification(StreamOutputNotification.type, (p) => {
    if (p.attachId !== attachId) return;
    if (early) early.push(p);
    else show(p);
  });
  c.onNotification(StreamExitNotification.type, (p) => {
    if (p.attachId !== attachId) return;
    if (p.error) process.stderr.write(`capsa: ${printableLines(p.error)}\n`);
    resolveDone(p.exitCode);
  });
  const start = (): void => {
    if (opts.tty && process.stdin.isTTY) enterRawMode();
    for (const p of early ?? []) show(p);
    early = undefined;
    if (opts.tty && process.stdout.isTTY) {
      process.stdout.on('resize', () => {
        const size = terminalSize();
        if (size) void c.sendNotification(StreamResizeNotification.type, { attachId, ...size });
      });
    }
    if (opts.interactive) {
      const send = (d: Buffer): void => void c.sendNotification(StreamInputNotification.type, { attachId, data: d.toString('base64') });
      // as Docker: the detach keys work on a terminal; the container goes on running
      const keys = opts.tty && opts.detachKeys ? new DetachKeys(opts.detachKeys) : undefined;
      process.stdin.on('data', (d: Buffer) => {
        if (!keys) return send(d);
        const { forward, detach } = keys.feed(d);
        if (forward.length) send(forward);
        if (detach) {
          process.stdin.removeAllListeners('data').removeAllListeners('end').pause();
          resolveDone(0);
        }
      });
      process.stdin.on('end', () => void c.sendNotification(StreamInputNotification.type, { attachId, data: '', eof: true }));
      process.stdin.resume();
    }
  };
  return { done, start };
}

/**
 * Raw mode as Docker's CLI sets it (cfmakeraw). Node's raw mode keeps output
 * processing (ONLCR) on, so the container's own pty and ours would both turn
 * "\n" into "\r\n", and programs that move the cursor with a bare "\n"
 * would land in column 0; `stty -opost` turns ours off. Node restores the
 * whole original termios when raw mode ends.
 */
function enterRawMode(): void {
  process.stdin.setRawMode(true);
  spawnSync('stty', ['-opost'], { stdio: [process.stdin, 'ignore', 'ignore'] });
}

function restoreTerminal(): void {
  if (process.stdin.isTTY && process.stdin.isRaw) process.stdin.setRawMode(false);
  process.stdin.pause();
}

/**
 * LSP's `$/progress` work-done values, as far as the CLI reads them. Declared
 * here rather than imported from vscode-languageserver-protocol, whose load
 * alone would add tens of milliseconds to every CLI command.
 */
const WorkDoneProgressType = new ProgressType<{ kind: 'begin' | 'report' | 'end'; layers?: PullProgress['layers'] }>();

function trackPull(c: MessageConnection, token: string, out: NodeJS.WriteStream = process.stderr): ProgressDisplay {
  const display = new ProgressDisplay(out);
  c.onProgress(WorkDoneProgressType, token, (v) => {
    if (v.kind === 'report' && v.layers) display.update({ layers: v.layers });
  });
  return display;
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
    if (v('userns') !== 'host' && v('userns') !== 'auto') throw new InvalidArgumentError(`invalid --userns ${JSON.stringify(v('userns'))}: expected host or auto`);
    o.userns = v('userns') as 'host' | 'auto';
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
const runLike = (verb: 'run' | 'create'): Command => async (argv, conn) => {
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
  if (pull !== undefined && !['always', 'missing', 'never'].includes(pull)) throw new InvalidArgumentError(`invalid pull policy ${JSON.stringify(pull)}: expected always, missing or never`);
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
    const created = await c.sendRequest(ContainerCreateRequest.type, { ...opts, workDoneToken: token });
    process.stdout.write(`${created.id}\n`);
    return 0;
  }
  const attachId = detach ? undefined : newId('run');
  const token = newId('pull');
  trackPull(c, token);
  const streams = attachId ? attachStreams(c, attachId, { tty, interactive, detachKeys }) : undefined;
  const result = await c.sendRequest(ContainerRunRequest.type, { ...opts, attachId, workDoneToken: token });
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
  return code;
};

const exec: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, EXEC_FLAGS, { stopAtPositional: true, verb: 'exec' });
  if (flags.help) {
    process.stdout.write(usage('exec', '[OPTIONS] CONTAINER COMMAND [ARG...]', EXEC_FLAGS) + '\n');
    return 0;
  }
  const [container, ...cmd] = positionals;
  if (!container || cmd.length === 0) throw new InvalidArgumentError("'capsa exec' requires at least 2 arguments: CONTAINER COMMAND");
  const tty = !!flags.tty;
  const interactive = !!flags.interactive;
  const detachKeys = detachKeysOf(flags);
  const env = flags.env ? resolveEnv(check.checkEnv('env', flags.env as string[])) : undefined;
  const workdir = str(flags.workdir) === undefined ? undefined : check.checkWorkdir('workdir', str(flags.workdir)!);
  const user = str(flags.user) === undefined ? undefined : check.checkUser('user', str(flags.user)!);
  const c = await conn();
  const attachId = newId('exec');
  const streams = attachStreams(c, attachId, { tty, interactive, detachKeys });
  await c.sendRequest(ContainerExecRequest.type, {
    container,
    cmd,
    env,
    workdir,
    user,
    tty,
    interactive,
    size: tty ? terminalSize() : undefined,
    attachId,
  });
  streams.start();
  const code = await streams.done;
  restoreTerminal();
  return code;
};

/** `--platform`, refused here as the helper would refuse it (server/protocol/platform.ts), before anything is sent. */
function checkedPlatform(flag: unknown): string | undefined {
  const p = str(flag);
  if (p === undefined) return undefined;
  const problem = platformProblem(p);
  if (problem !== undefined) throw new InvalidArgumentError(`invalid --platform ${printable(JSON.stringify(p))}: ${problem}`);
  return p;
}

const pull: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'platform', kind: 'value', help: 'os/arch[/variant]' }, { name: 'quiet', short: 'q', kind: 'bool', help: 'Print only the reference' }], { stopAtPositional: false, verb: 'pull' });
  if (positionals.length !== 1) throw new InvalidArgumentError("'capsa pull' requires exactly 1 argument: IMAGE");
  if (str(flags.platform) !== undefined) check.checkPlatform(str(flags.platform)!);
  const c = await conn();
  const token = newId('pull');
  // Progress goes to stdout, as Docker's does, and only when it is a terminal.
  if (!flags.quiet) trackPull(c, token, process.stdout);
  // Ctrl-C cancels the pull in the helper ($/cancelRequest), which stops
  // cleanly and keeps what it verified; a second Ctrl-C leaves at once.
  const cancel = new CancellationTokenSource();
  let interrupted = false;
  const onSigint = (): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    cancel.cancel();
  };
  process.on('SIGINT', onSigint);
  let r;
  try {
    r = await c.sendRequest(ImagePullRequest.type, { reference: positionals[0], platform: checkedPlatform(flags.platform), workDoneToken: token }, cancel.token);
  } catch (err) {
    if (!interrupted) throw err;
    process.stderr.write(`capsa: pull of ${positionals[0]} cancelled\n`);
    return 130;
  } finally {
    process.off('SIGINT', onSigint);
  }
  if (!flags.quiet) {
    process.stdout.write(`Digest: ${r.manifestDigest}\n`);
    process.stdout.write(`Status: ${r.upToDate ? 'Image is up to date' : 'Downloaded newer image'} for ${r.reference}\n`);
  }
  process.stdout.write(`${r.reference}\n`);
  return 0;
};

const images: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'quiet', short: 'q', kind: 'bool', help: 'Only ids' }, { name: 'digests', kind: 'bool', help: 'Show digests' }], { stopAtPositional: false, verb: 'images' });
  if (positionals.length > 1) throw new InvalidArgumentError("'capsa images' takes at most 1 argument: REPOSITORY");
  const c = await conn();
  const list = await c.sendRequest(ImageListRequest.type);
  if (flags.quiet) {
    process.stdout.write(list.map((i) => shortId(i.id) + '\n').join(''));
    return 0;
  }
  const rows: string[][] = [];
  for (const img of list) {
    const names = img.names.length ? img.names : ['<none>:<none>'];
    for (const n of names) {
      const at = n.lastIndexOf(':');
      const repo = at > 0 && !n.slice(at).includes('/') ? n.slice(0, at) : n;
      const tag = at > 0 && !n.slice(at).includes('/') ? n.slice(at + 1) : '<none>';
      const row = [repo, tag];
      if (flags.digests) row.push(img.manifestDigest);
      row.push(shortId(img.id), formatAge(img.created), formatBytes(img.size));
      rows.push(row);
    }
  }
  const header = ['REPOSITORY', 'TAG', ...(flags.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
  process.stdout.write(table(header, rows));
  return 0;
};

const rmi: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'force', short: 'f', kind: 'bool', help: 'Remove even if containers use it' }], { stopAtPositional: false, verb: 'rmi' });
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa rmi' requires at least 1 argument: IMAGE");
  const c = await conn();
  let status = 0;
  for (const image of positionals) {
    try {
      const r = await c.sendRequest(ImageRemoveRequest.type, { image, force: !!flags.force });
      for (const u of r.untagged) process.stdout.write(`Untagged: ${u}\n`);
      for (const d of r.deleted) process.stdout.write(`Deleted: ${d}\n`);
    } catch (err) {
      process.stderr.write(`capsa: ${errorMessage(err)}\n`);
      status = 1;
    }
  }
  return status;
};

const ps: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'all', short: 'a', kind: 'bool', help: 'Show all containers' }, { name: 'quiet', short: 'q', kind: 'bool', help: 'Only ids' }], { stopAtPositional: false, verb: 'ps' });
  check.noArguments('ps', positionals);
  const c = await conn();
  const list = await c.sendRequest(ContainerListRequest.type, { all: !!flags.all });
  if (flags.quiet) {
    process.stdout.write(list.map((x) => x.id.slice(0, 12) + '\n').join(''));
    return 0;
  }
  const rows = list.map((x) => [
    x.id.slice(0, 12),
    x.image,
    JSON.stringify(x.command.join(' ').slice(0, 20)),
    formatAge(x.created),
    x.state === 'running' ? `Up ${formatAge(x.startedAt).replace(/ ago$/, '')}` : x.state === 'exited' ? `Exited (${x.exitCode ?? 0}) ${formatAge(x.finishedAt)}` : capitalise(x.state),
    (x.ports ?? []).join(', '),
    x.name,
  ]);
  process.stdout.write(table(['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'], rows));
  return 0;
};

const rm: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'force', short: 'f', kind: 'bool', help: 'Kill a running container first' }], { stopAtPositional: false, verb: 'rm' });
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa rm' requires at least 1 argument: CONTAINER");
  const c = await conn();
  let status = 0;
  for (const container of positionals) {
    try {
      await c.sendRequest(ContainerRemoveRequest.type, { container, force: !!flags.force });
      process.stdout.write(`${container}\n`);
    } catch (err) {
      process.stderr.write(`capsa: ${errorMessage(err)}\n`);
      status = 1;
    }
  }
  return status;
};

const stop: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'time', short: 't', kind: 'value', help: 'Seconds to wait before killing' }], { stopAtPositional: false, verb: 'stop' });
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa stop' requires at least 1 argument: CONTAINER");
  const timeout = str(flags.time) !== undefined ? check.checkSeconds('time', str(flags.time)!) : undefined;
  const c = await conn();
  for (const container of positionals) {
    await c.sendRequest(ContainerStopRequest.type, { container, timeout });
    process.stdout.write(`${container}\n`);
  }
  return 0;
};

const kill: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'signal', short: 's', kind: 'value', help: 'Signal to send (default KILL)' }], { stopAtPositional: false, verb: 'kill' });
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa kill' requires at least 1 argument: CONTAINER");
  if (str(flags.signal) !== undefined) check.checkSignal(str(flags.signal)!);
  const c = await conn();
  for (const container of positionals) {
    await c.sendRequest(ContainerKillRequest.type, { container, signal: str(flags.signal) });
    process.stdout.write(`${container}\n`);
  }
  return 0;
};

const logs: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(
    argv,
    [
      { name: 'follow', short: 'f', kind: 'bool', help: 'Follow output' },
      { name: 'tail', short: 'n', kind: 'value', help: 'Number of lines from the end' },
      { name: 'timestamps', short: 't', kind: 'bool', help: 'Show timestamps' },
    ],
    { stopAtPositional: false, verb: 'logs' },
  );
  if (positionals.length !== 1) throw new InvalidArgumentError("'capsa logs' requires exactly 1 argument: CONTAINER");
  const tail = str(flags.tail) !== undefined ? check.checkTail(str(flags.tail)!) : undefined;
  const c = await conn();
  const followAttachId = flags.follow ? newId('logs') : undefined;
  const streams = followAttachId ? attachStreams(c, followAttachId, { tty: false, interactive: false, timestamps: !!flags.timestamps }) : undefined;
  const r = await c.sendRequest(ContainerLogsRequest.type, { container: positionals[0], tail, followAttachId });
  for (const e of r.entries) {
    const out = e.stream === 'stderr' ? process.stderr : process.stdout;
    if (flags.timestamps) out.write(`${e.time} `);
    out.write(Buffer.from(e.data, 'base64'));
  }
  if (!streams) return 0;
  // what the container wrote after the logged part came while that was on its way: it follows it
  streams.start();
  await streams.done;
  return 0;
};

const start: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(
    argv,
    [
      { name: 'attach', short: 'a', kind: 'bool', help: "Attach to the container's output" },
      { name: 'interactive', short: 'i', kind: 'bool', help: "Attach the container's STDIN" },
      DETACH_KEYS_FLAG,
    ],
    { stopAtPositional: false, verb: 'start' },
  );
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa start' requires at least 1 argument: CONTAINER");
  const detachKeys = detachKeysOf(flags);
  const c = await conn();
  if (flags.attach || flags.interactive) {
    if (positionals.length !== 1) throw new InvalidArgumentError('you cannot start and attach multiple containers at once');
    const info = await c.sendRequest(ContainerInspectRequest.type, { container: positionals[0] });
    const attachId = newId('start');
    const tty = !!info.config.tty;
    const streams = attachStreams(c, attachId, { tty, interactive: !!flags.interactive && !!info.config.interactive, detachKeys });
    await c.sendRequest(ContainerStartRequest.type, { container: positionals[0], attachId });
    streams.start();
    const code = await streams.done;
    restoreTerminal();
    return code;
  }
  let status = 0;
  for (const container of positionals) {
    try {
      await c.sendRequest(ContainerStartRequest.type, { container });
      process.stdout.write(`${container}\n`);
    } catch (err) {
      process.stderr.write(`capsa: ${errorMessage(err)}\n`);
      status = 1;
    }
  }
  return status;
};

const restart: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'time', short: 't', kind: 'value', help: 'Seconds to wait before killing' }], { stopAtPositional: false, verb: 'restart' });
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa restart' requires at least 1 argument: CONTAINER");
  const timeout = str(flags.time) !== undefined ? check.checkSeconds('time', str(flags.time)!) : undefined;
  const c = await conn();
  for (const container of positionals) {
    await c.sendRequest(ContainerRestartRequest.type, { container, timeout });
    process.stdout.write(`${container}\n`);
  }
  return 0;
};

const attach: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'no-stdin', kind: 'bool', help: 'Do not attach STDIN' }, DETACH_KEYS_FLAG], { stopAtPositional: false, verb: 'attach' });
  if (positionals.length !== 1) throw new InvalidArgumentError("'capsa attach' requires exactly 1 argument: CONTAINER");
  const detachKeys = detachKeysOf(flags);
  const c = await conn();
  const info = await c.sendRequest(ContainerInspectRequest.type, { container: positionals[0] });
  if (info.state !== 'running') throw new InvalidArgumentError('you cannot attach to a stopped container, start it first');
  const attachId = newId('attach');
  const tty = !!info.config.tty;
  const streams = attachStreams(c, attachId, { tty, interactive: !flags['no-stdin'] && !!info.config.interactive, detachKeys });
  await c.sendRequest(ContainerAttachRequest.type, { container: positionals[0], attachId });
  const size = tty ? terminalSize() : undefined;
  if (size) void c.sendNotification(StreamResizeNotification.type, { attachId, ...size });
  streams.start();
  const code = await streams.done;
  restoreTerminal();
  return code;
};

const top: Command = async (argv, conn) => {
  const { positionals } = parseFlags(argv, [], { stopAtPositional: true, verb: 'top' });
  if (positionals.length < 1) throw new InvalidArgumentError("'capsa top' requires at least 1 argument: CONTAINER");
  const c = await conn();
  const r = await c.sendRequest(ContainerTopRequest.type, { container: positionals[0] });
  process.stdout.write(table(r.titles, r.processes));
  return 0;
};

const containerPrune: Command = async (argv, conn) => {
  const { positionals } = parseFlags(argv, [{ name: 'force', short: 'f', kind: 'bool', help: 'Do not prompt for confirmation' }], { stopAtPositional: false, verb: 'container prune' });
  check.noArguments('container prune', positionals);
  const c = await conn();
  const r = await c.sendRequest(ContainerPruneRequest.type, {});
  if (r.deleted.length) process.stdout.write(`Deleted Containers:\n${r.deleted.map((id) => `${id}\n`).join('')}\n`);
  process.stdout.write(`Total: ${r.deleted.length} containers removed\n`);
  return 0;
};

const wait: Command = async (argv, conn) => {
  const { positionals } = parseFlags(argv, [], { stopAtPositional: false, verb: 'wait' });
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa wait' requires at least 1 argument: CONTAINER");
  const c = await conn();
  let last = 0;
  for (const container of positionals) {
    const r = await c.sendRequest(ContainerWaitRequest.type, { container });
    process.stdout.write(`${r.exitCode}\n`);
    last = r.exitCode;
  }
  return last;
};

const inspect: Command = async (argv, conn) => {
  const { positionals } = parseFlags(argv, [], { stopAtPositional: false, verb: 'inspect' });
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa inspect' requires at least 1 argument");
  const c = await conn();
  const out = [];
  for (const container of positionals) out.push(await c.sendRequest(ContainerInspectRequest.type, { container }));
  process.stdout.write(json(out) + '\n');
  return 0;
};

const version: Command = async (argv, conn) => {
  check.noArguments('version', parseFlags(argv, [], { stopAtPositional: false, verb: 'version' }).positionals);
  const c = await conn();
  const v = await c.sendRequest(VersionRequest.type);
  process.stdout.write(`capsa helper ${v.version} (protocol ${v.protocol}), root ${v.root}, pid ${v.pid}\n`);
  return 0;
};

const COMMANDS: Record<string, [Command, string]> = {
  run: [runLike('run'), 'Create and run a new container from an image'],
  create: [runLike('create'), 'Create a new container'],
  start: [start, 'Start one or more stopped containers'],
  restart: [restart, 'Restart one or more containers'],
  attach: [attach, "Attach to a running container's streams"],
  top: [top, 'Display the running processes of a container'],
  'container-prune': [containerPrune, 'Remove all stopped containers'],
  exec: [exec, 'Run a command in a running container'],
  ps: [ps, 'List containers'],
  images: [images, 'List images'],
  pull: [pull, 'Download an image from a registry'],
  rmi: [rmi, 'Remove one or more images'],
  rm: [rm, 'Remove one or more containers'],
  stop: [stop, 'Stop one or more running containers'],
  kill: [kill, 'Kill one or more running containers'],
  logs: [logs, 'Fetch the logs of a container'],
  wait: [wait, 'Wait for containers to stop, then print their exit codes'],
  inspect: [inspect, 'Show details of containers'],
  version: [version, 'Show the helper version'],
  network: [network, 'Manage networks'],
  volume: [volume, 'Manage volumes'],
  load: [load, 'Load images from a docker save or OCI archive'],
  save: [save, 'Save images to a docker save archive'],
  system: [system, 'Show disk usage (system df)'],
  'image-prune': [imagePrune, 'Remove unused images (capsa image prune)'],
  port: [port, 'List port mappings of a container'],
};

const MANAGEMENT: Record<string, Record<string, string>> = {
  container: {
    ls: 'ps', list: 'ps', ps: 'ps', rm: 'rm', run: 'run', exec: 'exec', stop: 'stop', kill: 'kill', logs: 'logs', wait: 'wait', inspect: 'inspect',
    create: 'create', start: 'start', restart: 'restart', attach: 'attach', top: 'top', prune: 'container-prune',
  },
  image: { ls: 'images', list: 'images', rm: 'rmi', pull: 'pull', prune: 'image-prune', load: 'load', save: 'save' },
};

function help(): string {
  // `container-prune` and `image-prune` are reached as `capsa container prune` / `capsa image prune`; help shows those forms.
  const listed = Object.entries(COMMANDS).filter(([k]) => !k.endsWith('-prune'));
  const lines = [
    ...listed.map(([k, [, d]]) => `  ${k.padEnd(10)} ${d}`),
    `  ${'container'.padEnd(10)} Manage containers (ls, rm, prune, …)`,
    `  ${'image'.padEnd(10)} Manage images (ls, rm, pull, prune)`,
  ];
  return ['Usage: capsa COMMAND', '', 'Run code in reproducible Linux containers.', '', 'Commands:', ...lines, ''].join('\n');
}

function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** An error as the CLI prints it: its text may quote a registry, an image or a request, so controls are escaped. */
function errorMessage(err: unknown): string {
  return printableLines(err instanceof Error ? err.message : String(err));
}

/**
 * Runs one `capsa` command line. `connection`, when given, is an open
 * connection to the helper to use instead of connecting (a warm CLI process
 * opens it ahead of the call); it is disposed at the end either way.
 */
export async function main(argv: string[], opts: { connection?: MessageConnection } = {}): Promise<number> {
  const [verb, ...rest] = argv;
  if (!verb || verb === '--help' || verb === 'help') {
    process.stdout.write(help());
    return verb ? 0 : 1;
  }
  // Docker's management-command forms: `capsa container ls`, `capsa image rm`, …
  const sub = MANAGEMENT[verb];
  const name = sub ? sub[rest[0]] : verb;
  const args = sub ? rest.slice(1) : rest;
  const entry = name ? COMMANDS[name] : undefined;
  if (!entry) {
    process.stderr.write(`capsa: '${printable([verb, ...(sub ? [rest[0] ?? ''] : [])].join(' ').trim())}' is not a capsa command.\nSee 'capsa --help'\n`);
    return EXIT_CAPSA;
  }
  let connection: MessageConnection | undefined = opts.connection;
  // every verb ends when the helper goes away under it, with 125 and the reason (the catch below)
  const helper = watchHelper([verb, ...(sub ? [rest[0]] : [])].join(' '));
  let watched: MessageConnection | undefined;
  const conn = async (): Promise<MessageConnection> => {
    if (watched) return watched;
    const config = loadConfig();
    connection ??= await connect(config);
    helper.watch(connection, config.socket);
    return (watched = connection);
  };
  try {
    return await Promise.race([entry[0](args, conn), helper.lost]);
  } catch (err) {
    restoreTerminal();
    const failure = helper.lostError(err) ?? err;
    process.stderr.write(`capsa: error: ${errorLine(failure)}\n`);
    return exitStatus(failure);
  } finally {
    connection?.dispose();
  }
}

if (require.main === module && process.argv[2] === '--warm') {
  // started by the helper ahead of a call (server/warmcli.ts)
  serveWarm(main).catch((err: unknown) => {
    // to the helper while idle; to the client (fd 2 is its stderr by then) while serving one
    reportWarm(`failed ${errorMessage(err)}`);
    process.stderr.write(`capsa: error: ${errorMessage(err)}\n`);
    process.exit(EXIT_CAPSA);
  });
} else if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      // Exit only once our own output is flushed: a pipe reader must see every byte.
      process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
    },
    (err: unknown) => {
      process.stderr.write(`capsa: error: ${errorMessage(err)}\n`);
      process.exit(EXIT_CAPSA);
    },
  );
}
