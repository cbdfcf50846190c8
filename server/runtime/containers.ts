/**
 * Containers: creation from an image and options, their life (start, exit,
 * stop, kill, remove), streams, logs, exec, and state kept on disk under
 * `<root>/containers/<id>/`.
 *
 * The container's rootfs overlay is mounted by the shim inside the
 * container's own mount namespace, so the host never holds a container
 * mount: when the container's last process ends, the kernel drops every one
 * of its mounts, and a crashed helper leaves nothing mounted behind.
 */
import { EventEmitter } from 'node:events';
import { promises as fs, createWriteStream, type WriteStream } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConflictError, InvalidArgumentError, NotFoundError, assertSafeName } from '../errors';
import type { ContainerEvent, ContainerInspect, ContainerSummary, ExecOptions, PullProgress, PullPolicy, RunOptions } from '../protocol/types';
import { writeFileAtomic } from '../util/atomic';
import { generateName, newContainerId } from './names';
import { buildExecPlan, buildRunPlan, mergeEnv, type BindMount, type ContainerPaths, type ImageRunConfig } from './spec';
import { resolveImageUser } from './users';
import { startShim, type ShimHandle } from './native';
import type { Plan } from './plan';
import type { NetworkManager } from './network/manager';
import { CgroupManager } from './cgroups';
import { prepareRun, type RunSetup } from './runsetup';

/** What the container side needs from the image side. */
export interface ImageSource {
  resolveForRun(
    reference: string,
    options: { pull: PullPolicy; platform?: string; onProgress?: (p: PullProgress) => void; signal?: AbortSignal },
  ): Promise<ResolvedImage>;
}

export interface ResolvedImage {
  /** Image id (config digest). */
  id: string;
  /** Normalised reference. */
  reference: string;
  config: ImageRunConfig;
  /** Unpacked layers, top-most first. */
  layerDirs: string[];
}

/** Where a run or exec session's streams go: one client connection. */
export interface StreamSink {
  output(stream: 'stdout' | 'stderr', data: Buffer): void;
  exit(exitCode: number, error?: string): void;
}

export class ContainerNotFoundError extends NotFoundError {
  constructor(ref: string) {
    super('E_CONTAINER_NOT_FOUND', `no such container: ${ref}`);
  }
}

/** Persisted description of a container (config.json). Never changes after create. */
interface ContainerRecord {
  id: string;
  name: string;
  image: string;
  imageRef: string;
  imageId: string;
  created: string;
  hostname: string;
  options: RunOptions;
  plan: Plan;
  binds: BindMount[];
}

/** Persisted state (state.json), rewritten atomically on every change. */
interface ContainerStateFile {
  state: ContainerSummary['state'];
  pid?: number;
  startedAt?: string;
  finishedAt?: string;
  exitCode?: number;
  error?: string;
  /** The kernel's OOM killer killed a process of the container. */
  oomKilled?: boolean;
}

interface Live {
  shim: ShimHandle;
  sinks: Set<StreamSink>;
  log: WriteStream;
  exited: Promise<number>;
}

interface Entry {
  record: ContainerRecord;
  state: ContainerStateFile;
  live?: Live;
  /** Serialises state-changing operations on one container. */
  busy: Promise<unknown>;
}

export interface ExecSession {
  execId: string;
  input(data: Buffer, eof: boolean): void;
  resize(rows: number, cols: number): void;
  exited: Promise<number>;
}

export class ContainerService extends EventEmitter {
  private readonly entries = new Map<string, Entry>();
  private readonly dir: string;

  constructor(
    root: string,
    private readonly images: ImageSource,
    private readonly network?: NetworkManager,
    private readonly cgroups: CgroupManager = CgroupManager.fromEnv(),
  ) {
    super();
    this.dir = path.join(root, 'containers');
  }

  /** Loads containers from disk; those whose process is gone are marked exited. */
  async load(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const id of await fs.readdir(this.dir)) {
      if (!/^[0-9a-f]{64}$/.test(id)) continue;
      try {
        const record = JSON.parse(await fs.readFile(path.join(this.dir, id, 'config.json'), 'utf8')) as ContainerRecord;
        const state = JSON.parse(await fs.readFile(path.join(this.dir, id, 'state.json'), 'utf8')) as ContainerStateFile;
        const entry: Entry = { record, state, busy: Promise.resolve() };
        if (state.state === 'running' && !(state.pid && processAlive(state.pid))) {
          entry.state = { ...state, state: 'exited', pid: undefined, exitCode: state.exitCode ?? 255, finishedAt: new Date().toISOString(), error: 'the helper stopped while the container ran; its exit status is unknown' };
          await this.saveState(entry);
        }
        this.entries.set(id, entry);
      } catch {
        // A directory without a complete config is a create that died half-way: nothing else refers to it.
        await fs.rm(path.join(this.dir, id), { recursive: true, force: true });
      }
    }
    const running = [...this.entries.values()].filter((e) => e.state.state === 'running').map((e) => e.record.id);
    await this.network?.reconcile(new Set(this.entries.keys()), new Set(running));
    await this.cgroups.reconcile(new Set(this.entries.keys())).catch(() => undefined);
  }

  list(all: boolean): ContainerSummary[] {
    const out: ContainerSummary[] = [];
    for (const e of this.entries.values()) {
      if (all || e.state.state === 'running') out.push(this.summary(e));
    }
    return out.sort((a, b) => b.created.localeCompare(a.created));
  }

  /** Ids of images that containers (in any state) use. */
  imagesInUse(): Set<string> {
    return new Set([...this.entries.values()].map((e) => e.record.imageId));
  }

  inspect(ref: string): ContainerInspect {
    const e = this.find(ref);
    return {
      ...this.summary(e),
      config: e.record.options,
      hostname: e.record.hostname,
      rootfs: e.record.plan.rootfs,
      error: e.state.error,
      oomKilled: !!e.state.oomKilled,
      mounts: e.record.binds.map((b) => ({ type: b.type ?? 'bind', source: b.source, destination: b.target, readOnly: b.readOnly })),
      networkSettings: this.network?.settings(e.record.id) ?? { network: e.record.options.network ?? 'none' },
    };
  }

  /**
   * Creates and starts a container. Resolves once its process runs (or
   * rejects with the setup error); its exit is reported to `sink` and as an event.
   */
  async run(opts: RunOptions, sink?: StreamSink, onProgress?: (p: PullProgress) => void): Promise<{ id: string; name: string }> {
    validateRunOptions(opts);
    const setup = await prepareRun(opts, path.dirname(this.dir));
    const image = await this.images.resolveForRun(opts.image, { pull: opts.pull ?? 'missing', platform: opts.platform, onProgress });
    const entry = await this.create(opts, image, setup);
    try {
      await this.start(entry, sink);
    } catch (err) {
      if (opts.rm) await this.removeEntry(entry);
      throw err;
    }
    return { id: entry.record.id, name: entry.record.name };
  }

  private async create(opts: RunOptions, image: ResolvedImage, setup: RunSetup): Promise<Entry> {
    const binds = setup.binds;
    const id = newContainerId();
    const name = opts.name ?? generateName((n) => this.nameTaken(n));
    if (this.nameTaken(name)) throw new ConflictError(`container name "${name}" is already in use`);
    const hostname = opts.hostname ?? id.slice(0, 12);
    const cdir = path.join(this.dir, id);
    const paths: ContainerPaths = {
      dir: cdir,
      rootfs: path.join(cdir, 'rootfs'),
      upper: path.join(cdir, 'upper'),
      work: path.join(cdir, 'work'),
      hostname: path.join(cdir, 'hostname'),
      hosts: path.join(cdir, 'hosts'),
      resolvConf: path.join(cdir, 'resolv.conf'),
    };
    // Reserve the name before the first await so concurrent runs cannot both take it.
    const placeholder: Entry = {
      record: { id, name, image: opts.image, imageRef: image.reference, imageId: image.id, created: new Date().toISOString(), hostname, options: opts, plan: undefined as unknown as Plan, binds },
      state: { state: 'created' },
      busy: Promise.resolve(),
    };
    this.entries.set(id, placeholder);
    try {
      await fs.mkdir(cdir, { mode: 0o700 });
      await Promise.all([
        fs.mkdir(paths.rootfs),
        fs.mkdir(paths.upper, { mode: 0o755 }),
        fs.mkdir(paths.work, { mode: 0o700 }),
        fs.writeFile(paths.hostname, `${hostname}\n`, { mode: 0o644 }),
        fs.writeFile(paths.hosts, hostsFile(hostname, name), { mode: 0o644 }),
        fs.writeFile(paths.resolvConf, resolvConf(), { mode: 0o644 }),
      ]);
      const user = await setup.resolveUser(opts.user ?? image.config.User, image.layerDirs);
      const cgroupProcs = await this.cgroups.create(id, cdir, setup.limits);
      // before the plan: eth0 must exist when the command starts
      const net = this.network
        ? await this.network.setup({ id, name, hostname, options: opts, hostsPath: paths.hosts, resolvConfPath: paths.resolvConf, lookup: (ref) => this.lookupForNetwork(ref) })
        : { newNetns: opts.network !== 'host', netnsPath: undefined };
      const plan = buildRunPlan({
        ...setup.spec,
        namespaces: setup.namespaces(net.newNetns),
        cgroupProcs,
        layerDirs: image.layerDirs,
        image: image.config,
        paths,
        hostname,
        cmd: opts.cmd,
        entrypoint: opts.entrypoint,
        env: opts.env,
        workdir: opts.workdir,
        user,
        tty: !!opts.tty,
        winsize: opts.size,
        binds,
      });
      if (net.netnsPath) plan.netnsPath = net.netnsPath;
      placeholder.record.plan = plan;
      await writeFileAtomic(path.join(cdir, 'config.json'), JSON.stringify(placeholder.record, null, 2));
      await this.saveState(placeholder);
    } catch (err) {
      this.entries.delete(id);
      await this.network?.teardown(id).catch(() => undefined);
      await this.cgroups.remove(cdir).catch(() => undefined);
      await fs.rm(cdir, { recursive: true, force: true });
      throw err;
    }
    this.emitEvent('create', placeholder);
    return placeholder;
  }

  /** Starts a created or exited container again, with its original plan and its upper layer kept (`capsa start`). */
  async startContainer(ref: string): Promise<void> {
    const e = this.find(ref);
    if (e.live) return;
    await this.start(e);
  }

  async restart(ref: string, timeoutSeconds?: number): Promise<void> {
    await this.stop(ref, timeoutSeconds);
    await this.startContainer(ref);
  }

  private async start(entry: Entry, sink?: StreamSink): Promise<void> {
    const { record } = entry;
    const opts = record.options;
    const log = createWriteStream(path.join(this.dir, record.id, 'container.log'), { flags: 'a', mode: 0o600 });
    const shim = startShim(record.plan, {
      mode: 'run',
      stdin: opts.interactive ? 'pipe' : 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
    });
    const sinks = new Set<StreamSink>(sink ? [sink] : []);
    const forward = (stream: 'stdout' | 'stderr') => (data: Buffer) => {
      log.write(JSON.stringify({ stream, time: new Date().toISOString(), data: data.toString('base64') }) + '\n');
      for (const s of sinks) s.output(stream, data);
    };
    shim.stdout?.on('data', forward('stdout'));
    shim.stderr?.on('data', forward('stderr'));
    // Output pipes drain after the process exits; wait for both so the last bytes reach the client before the exit does.
    const drained = Promise.all([streamEnd(shim.stdout), streamEnd(shim.stderr)]);
    const exited = shim.exited.then(async (code) => {
      await drained;
      return code;
    });
    entry.live = { shim, sinks, log, exited };
    let pid: number;
    try {
      pid = await shim.started;
    } catch (err) {
      await exited.catch(() => undefined);
      entry.live = undefined;
      log.end();
      const message = err instanceof Error ? err.message : String(err);
      const exitCode = exitCodeForSetupError(err);
      entry.state = { state: 'exited', exitCode, finishedAt: new Date().toISOString(), error: message };
      await this.saveState(entry);
      this.emitEvent('die', entry);
      if (err instanceof Error) Object.assign(err, { exitCode });
      throw err;
    }
    if (shim.process.pid) await this.cgroups.release(shim.process.pid); // the monitor counts against none of the container's limits
    entry.state = { state: 'running', pid, startedAt: new Date().toISOString() };
    await this.saveState(entry);
    this.emitEvent('start', entry);
    void exited.then(
      (code) => this.onExit(entry, code),
      (err) => this.onExit(entry, 255, err instanceof Error ? err.message : String(err)),
    );
  }

  private async onExit(entry: Entry, code: number, error?: string): Promise<void> {
    const live = entry.live;
    entry.live = undefined;
    const oomKilled = await this.cgroups.oomKilled(path.join(this.dir, entry.record.id));
    entry.state = { ...entry.state, state: 'exited', pid: undefined, exitCode: code, finishedAt: new Date().toISOString(), error, oomKilled };
    await new Promise<void>((resolve) => (live ? live.log.end(resolve) : resolve()));
    if (entry.record.options.rm) {
      await this.removeEntry(entry);
    } else {
      await this.saveState(entry).catch(() => undefined);
      this.emitEvent('die', entry);
    }
    for (const s of live?.sinks ?? []) s.exit(code, error);
  }

  /** Attaches a sink to a running container's output (used by `logs -f` and attach). */
  attach(ref: string, sink: StreamSink): () => void {
    const e = this.find(ref);
    if (!e.live) throw new ConflictError(`container ${e.record.name} is not running`);
    e.live.sinks.add(sink);
    return () => e.live?.sinks.delete(sink);
  }

  input(ref: string, data: Buffer, eof: boolean): void {
    const e = this.find(ref);
    const stdin = e.live?.shim.stdin;
    if (!stdin || stdin.destroyed) return;
    if (data.length > 0) stdin.write(data);
    if (eof) stdin.end();
  }

  resize(ref: string, rows: number, cols: number): void {
    const e = this.find(ref);
    checkSize(rows, cols);
    e.live?.shim.resize(rows, cols);
  }

  async wait(ref: string): Promise<number> {
    const e = this.find(ref);
    if (e.live) await e.live.exited.catch(() => undefined);
    // onExit runs after `exited` settles; wait for the state it writes.
    while (e.state.state === 'running') await new Promise((r) => setTimeout(r, 5));
    return e.state.exitCode ?? 0;
  }

  async kill(ref: string, signal = 'SIGKILL'): Promise<void> {
    const e = this.find(ref);
    const n = signalNumber(signal);
    if (!e.live) throw new ConflictError(`container ${e.record.name} is not running`);
    e.live.shim.signal(n);
  }

  async stop(ref: string, timeoutSeconds = 10): Promise<void> {
    const e = this.find(ref);
    if (!e.live) return;
    const live = e.live;
    live.shim.signal(15);
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), Math.max(0, timeoutSeconds) * 1000).unref());
    if ((await Promise.race([live.exited.catch(() => 0), timer])) === 'timeout') live.shim.signal(9);
    await this.wait(ref);
  }

  async remove(ref: string, force = false): Promise<void> {
    const e = this.find(ref);
    if (e.live) {
      if (!force) throw new ConflictError(`cannot remove container ${e.record.name}: it is running (stop it first, or use force)`);
      e.live.shim.signal(9);
      await this.wait(ref);
      if (e.record.options.rm) return; // removed by its own exit
    }
    await this.removeEntry(e);
  }

  private async removeEntry(e: Entry): Promise<void> {
    if (!this.entries.has(e.record.id)) return;
    this.entries.delete(e.record.id);
    e.state = { ...e.state, state: 'removing' };
    await this.network?.teardown(e.record.id);
    await this.cgroups.remove(path.join(this.dir, e.record.id));
    await fs.rm(path.join(this.dir, e.record.id), { recursive: true, force: true });
    this.emitEvent('destroy', e);
  }

  async logs(ref: string, tail?: number): Promise<Array<{ stream: 'stdout' | 'stderr'; time: string; data: string }>> {
    const e = this.find(ref);
    const text = await fs.readFile(path.join(this.dir, e.record.id, 'container.log'), 'utf8').catch(() => '');
    const entries = text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { stream: 'stdout' | 'stderr'; time: string; data: string });
    return tail !== undefined ? entries.slice(Math.max(0, entries.length - tail)) : entries;
  }

  /** Runs a process inside a running container's namespaces. */
  async exec(opts: ExecOptions, sink: StreamSink, execId = randomBytes(8).toString('hex')): Promise<ExecSession> {
    const e = this.find(opts.container);
    if (!e.live || e.state.pid === undefined) throw new ConflictError(`container ${e.record.name} is not running`);
    if (!Array.isArray(opts.cmd) || opts.cmd.length === 0) throw new InvalidArgumentError('exec needs a command');
    if (opts.size) checkSize(opts.size.rows, opts.size.cols);
    const layerDirs = lowerDirsOf(e.record.plan);
    const user = await resolveImageUser(opts.user ?? e.record.options.user, [path.join(path.dirname(e.record.plan.rootfs), 'upper'), ...layerDirs]);
    const plan = buildExecPlan({
      pid: e.state.pid,
      rootfs: e.record.plan.rootfs,
      cmd: opts.cmd,
      env: mergeEnv(e.record.plan.env, opts.tty ? ['TERM=xterm'] : [], opts.env),
      cwd: opts.workdir ?? e.record.plan.cwd,
      user,
      tty: !!opts.tty,
      winsize: opts.size,
      // a prepared netns is not in the run plan's list, but exec must join it too
      namespaces: e.record.plan.netnsPath ? [...e.record.plan.namespaces, 'net'] : e.record.plan.namespaces,
      confinement: e.record.plan,
    });
    const shim = startShim(plan, { mode: 'exec', stdin: opts.interactive ? 'pipe' : 'ignore', stdout: 'pipe', stderr: 'pipe' });
    shim.stdout?.on('data', (d: Buffer) => sink.output('stdout', d));
    shim.stderr?.on('data', (d: Buffer) => sink.output('stderr', d));
    const drained = Promise.all([streamEnd(shim.stdout), streamEnd(shim.stderr)]);
    await shim.started;
    if (shim.process.pid) await this.cgroups.release(shim.process.pid);
    const exited = shim.exited.then(async (code) => {
      await drained;
      sink.exit(code);
      return code;
    });
    return {
      execId,
      input: (data, eof) => {
        if (!shim.stdin || shim.stdin.destroyed) return;
        if (data.length) shim.stdin.write(data);
        if (eof) shim.stdin.end();
      },
      resize: (rows, cols) => {
        checkSize(rows, cols);
        shim.resize(rows, cols);
      },
      exited,
    };
  }

  private find(ref: string): Entry {
    if (typeof ref !== 'string' || ref.length === 0) throw new InvalidArgumentError('a container id or name is required');
    const byId = this.entries.get(ref);
    if (byId) return byId;
    for (const e of this.entries.values()) if (e.record.name === ref) return e;
    if (/^[0-9a-f]{1,63}$/.test(ref)) {
      const matches = [...this.entries.values()].filter((e) => e.record.id.startsWith(ref));
      if (matches.length === 1) return matches[0];
      if (matches.length > 1) throw new InvalidArgumentError(`container id prefix ${ref} is ambiguous: ${matches.length} containers match`);
    }
    throw new ContainerNotFoundError(ref);
  }

  /** `container:NAME`: the container whose network namespace another joins. */
  private lookupForNetwork(ref: string): { id: string; name: string; pid?: number } {
    const e = this.find(ref);
    return { id: e.record.id, name: e.record.name, pid: e.live ? e.state.pid : undefined };
  }

  private nameTaken(name: string): boolean {
    for (const e of this.entries.values()) if (e.record.name === name) return true;
    return false;
  }

  private async saveState(e: Entry): Promise<void> {
    await writeFileAtomic(path.join(this.dir, e.record.id, 'state.json'), JSON.stringify(e.state));
  }

  private summary(e: Entry): ContainerSummary {
    return {
      id: e.record.id,
      name: e.record.name,
      image: e.record.image,
      imageId: e.record.imageId,
      command: e.record.plan?.args ?? [],
      state: e.state.state,
      exitCode: e.state.state === 'exited' ? e.state.exitCode : undefined,
      created: e.record.created,
      startedAt: e.state.startedAt,
      finishedAt: e.state.finishedAt,
      pid: e.state.pid,
      labels: e.record.options.labels,
      ports: this.network?.ports(e.record.id),
    };
  }

  private emitEvent(action: ContainerEvent['action'], e: Entry): void {
    this.emit('event', { action, container: this.summary(e) } satisfies ContainerEvent);
  }

  /** Kills every running container (helper shutdown in tests). */
  async killAll(): Promise<void> {
    const ids = [...this.entries.values()].filter((e) => e.live).map((e) => e.record.id);
    await Promise.all(ids.map((id) => this.remove(id, true).catch(() => undefined)));
  }
}

function validateRunOptions(opts: RunOptions): void {
  if (typeof opts !== 'object' || opts === null) throw new InvalidArgumentError('run options must be an object');
  if (typeof opts.image !== 'string' || opts.image.length === 0) throw new InvalidArgumentError('an image reference is required');
  if (opts.name !== undefined) assertSafeName('container name', opts.name);
  if (opts.hostname !== undefined && !/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,62})$/.test(opts.hostname)) {
    throw new InvalidArgumentError(`invalid hostname ${JSON.stringify(opts.hostname)}: letters, digits, '.' and '-', at most 63 characters`);
  }
  for (const [key, v] of [['cmd', opts.cmd], ['entrypoint', opts.entrypoint], ['env', opts.env], ['volumes', opts.volumes]] as const) {
    if (v !== undefined && (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || s.includes('\0')))) {
      throw new InvalidArgumentError(`${key} must be a list of strings without NUL bytes`);
    }
  }
  if (opts.pull !== undefined && !['always', 'missing', 'never'].includes(opts.pull)) {
    throw new InvalidArgumentError(`invalid pull policy ${JSON.stringify(opts.pull)}: expected always, missing or never`);
  }
  // the network manager checks the mode itself: it knows the user-defined networks
  if (opts.network !== undefined && (typeof opts.network !== 'string' || opts.network === '')) {
    throw new InvalidArgumentError('network mode must be a non-empty string: bridge, host, none, container:NAME or a network name');
  }
  if (opts.size) checkSize(opts.size.rows, opts.size.cols);
  if (opts.workdir !== undefined && (typeof opts.workdir !== 'string' || !opts.workdir.startsWith('/'))) {
    throw new InvalidArgumentError(`working directory ${JSON.stringify(opts.workdir)} must be an absolute path`);
  }
}

function checkSize(rows: number, cols: number): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1 || rows > 10000 || cols > 10000) {
    throw new InvalidArgumentError(`invalid terminal size ${rows}x${cols}`);
  }
}

function lowerDirsOf(plan: Plan): string[] {
  const data = plan.mounts.find((m) => m.fstype === 'overlay')?.data ?? '';
  const m = /lowerdir=([^,]*)/.exec(data);
  return m ? m[1].split(':') : [];
}

function streamEnd(s: NodeJS.ReadableStream | null | undefined): Promise<void> {
  if (!s) return Promise.resolve();
  return new Promise((resolve) => {
    s.once('end', resolve);
    s.once('close', resolve);
    s.once('error', () => resolve());
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Docker's convention: 127 for a command not found, 126 for one that cannot be run, 125 for the runtime. */
function exitCodeForSetupError(err: unknown): number {
  const e = err as { step?: string; errno?: number };
  if (e.step === 'exec') return e.errno === 2 ? 127 : 126;
  return 125;
}

const SIGNALS: Record<string, number> = {
  HUP: 1, INT: 2, QUIT: 3, KILL: 9, USR1: 10, USR2: 12, TERM: 15, CONT: 18, STOP: 19, WINCH: 28,
};

export function signalNumber(signal: string | number): number {
  if (typeof signal === 'number' || /^\d+$/.test(signal)) {
    const n = Number(signal);
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError(`invalid signal ${signal}`);
    return n;
  }
  const n = SIGNALS[signal.toUpperCase().replace(/^SIG/, '')];
  if (n === undefined) throw new InvalidArgumentError(`invalid signal ${JSON.stringify(signal)}`);
  return n;
}

function hostsFile(hostname: string, name: string): string {
  return [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    `127.0.1.1\t${hostname}${name !== hostname ? ` ${name}` : ''}`,
    '',
  ].join('\n');
}

/**
 * The host's resolv.conf, minus loopback name servers: a container in its
 * own network namespace cannot reach the host's 127.x stub resolver (as Docker does).
 */
export function resolvConf(hostText?: string): string {
  let text = hostText;
  if (text === undefined) {
    try {
      text = readFileSync('/etc/resolv.conf', 'utf8');
    } catch {
      text = '';
    }
  }
  const lines = text.split('\n').filter((l) => !/^\s*nameserver\s+(127\.|::1\b)/.test(l));
  return lines.join('\n').trimEnd() + '\n';
}

