/**
 * Containers: creation from an image and options, their life (start, exit,
 * stop, kill, remove), streams, logs, exec, and state kept on disk under
 * `<root>/containers/<id>/`.
 *
 * The container's rootfs overlay is mounted by the shim inside the
 * container's own mount namespace, so the host never holds a container
 * mount: when the container's last process ends, the kernel drops every one
 * of its mounts, and a crashed helper leaves nothing mounted behind.
 *
 * Each running container has its own monitor process (monitor.ts), detached
 * from the helper: it holds the container's stdio, writes its log and its
 * exit status, and serves an attach socket. The helper follows containers
 * through those, so they outlive it, and a restarted helper finds each one
 * again (load()).
 */
import { EventEmitter } from 'node:events';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { ConflictError, InvalidArgumentError, NotFoundError, assertSafeName } from '../errors';
import { pullPolicyProblem } from '../protocol/runoptions';
import type { ContainerEvent, ContainerInspect, DockerContainerInspect, ContainerSummary, ExecOptions, PullProgress, PullPolicy, RunOptions } from '../protocol/types';
import { writeFileAtomic } from '../util/atomic';
import { generateName, newContainerId } from './names';
import { buildExecPlan, buildRunPlan, mergeEnv, type BindMount, type ContainerPaths, type ImageRunConfig } from './spec';
import { resolveImageUser } from './users';
import { startShim } from './native';
import { idmapsFor } from './idmap';
import { EXIT_FILE, LOG_FILE, MonitorClient, killSameProcess, launchMonitor, processStartTime, readExitFile, type ExitInfo } from './monitor';
import { parseLog, tailRecords, type LogRecord } from './logs';
import type { Plan } from './plan';
import type { NetworkManager } from './network/manager';
import { CgroupManager } from './cgroups';
import { prepareRun, type RunSetup } from './runsetup';
import { planLayerDirs, useUserns, UsernsAllocator } from './userns';

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
  /** `time`: when the monitor logged the bytes (log follows only). */
  output(stream: 'stdout' | 'stderr', data: Buffer, time?: string): void;
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
  /** The image's StopSignal, if it has one. */
  stopSignal?: string;
}

/** Persisted state (state.json), rewritten atomically on every change. */
interface ContainerStateFile {
  state: ContainerSummary['state'];
  /** Host pid of the container's PID 1, and its start time (processStartTime). */
  pid?: number;
  pidStartTime?: string;
  /** The container's monitor, likewise. */
  monitorPid?: number;
  monitorStartTime?: string;
  startedAt?: string;
  finishedAt?: string;
  exitCode?: number;
  error?: string;
  /** The kernel's OOM killer killed a process of the container. */
  oomKilled?: boolean;
  /**
   * Set from just before a start launches the monitor until it is recorded
   * running (or failed): a helper that finds it set died during that start.
   */
  startingAt?: string;
}

interface Live {
  monitor: MonitorClient;
  sinks: Set<StreamSink>;
  /** Settles once the monitor reported the end (or went away). */
  exited: Promise<ExitInfo | undefined>;
}

interface Entry {
  record: ContainerRecord;
  state: ContainerStateFile;
  live?: Live;
  /** The write of the running state, while start() is at it. */
  starting?: Promise<void>;
  /** Serialises state-changing operations on one container. */
  busy: Promise<unknown>;
}

export interface ExecSession {
  execId: string;
  input(data: Buffer, eof: boolean): void;
  resize(rows: number, cols: number): void;
  /** Hangs up: SIGHUP to the process, as when its terminal closes. */
  hangup(): void;
  exited: Promise<number>;
}

export class ContainerService extends EventEmitter {
  private readonly entries = new Map<string, Entry>();
  private readonly dir: string;
  private readonly userns: UsernsAllocator;

  constructor(
    root: string,
    private readonly images: ImageSource,
    private readonly network?: NetworkManager,
    private readonly cgroups: CgroupManager = CgroupManager.fromEnv(),
  ) {
    super();
    this.dir = path.join(root, 'containers');
    this.userns = new UsernsAllocator(root);
  }

  /**
   * Loads containers from disk and finds each one's true state: a running
   * one whose monitor still listens is followed again; one that ended
   * meanwhile gets the exit status its monitor recorded (and goes, with
   * --rm); one whose monitor died is killed, as nothing could follow it.
   */
  async load(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.sweepRemoved();
    const ids = (await fs.readdir(this.dir)).filter((id) => /^[0-9a-f]{64}$/.test(id));
    const found = await Promise.all(ids.map((id) => this.loadOne(id)));
    for (const e of found) if (e) this.entries.set(e.record.id, e);
    await Promise.all(
      [...this.entries.values()].filter((e) => e.state.state === 'exited' && e.record.options.rm).map((e) => this.removeEntry(e).catch(() => undefined)),
    );
    const running = [...this.entries.values()].filter((e) => e.state.state === 'running').map((e) => e.record.id);
    await this.network?.reconcile(new Set(this.entries.keys()), new Set(running));
    await this.cgroups.reconcile(new Set(this.entries.keys()), new Set(ids)).catch(() => undefined);
    await this.userns.reconcile(new Set(this.entries.keys()));
  }

  /** Finishes removals a crash interrupted (removeEntry renames a container's directory before deleting it). */
  private async sweepRemoved(): Promise<void> {
    for (const name of await fs.readdir(this.dir)) {
      if (name.startsWith('.removing-')) await fs.rm(path.join(this.dir, name), { recursive: true, force: true });
    }
  }

  private async loadOne(id: string): Promise<Entry | undefined> {
    const cdir = path.join(this.dir, id);
    let record: ContainerRecord;
    let state: ContainerStateFile;
    try {
      record = JSON.parse(await fs.readFile(path.join(cdir, 'config.json'), 'utf8')) as ContainerRecord;
      state = JSON.parse(await fs.readFile(path.join(cdir, 'state.json'), 'utf8')) as ContainerStateFile;
    } catch {
      // A directory without a complete config is a create that died half-way: nothing else refers to it.
      await fs.rm(cdir, { recursive: true, force: true });
      return undefined;
    }
    const entry: Entry = { record, state, busy: Promise.resolve() };
    if (state.state === 'created' || state.startingAt) {
      // a helper killed between launching the monitor and recording `running`
      const monitor = await MonitorClient.connect(cdir);
      if (!monitor) {
        if (!state.startingAt) return entry; // created, never started
        const exit = await readExitFile(cdir);
        // it started, and ended while no helper ran; or it never got as far as a monitor that lasted
        entry.state = exit
          ? { state: 'exited', exitCode: exit.exitCode, startedAt: state.startingAt, finishedAt: exit.finishedAt }
          : { state: 'exited', exitCode: INTERRUPTED_START_EXIT, finishedAt: new Date().toISOString(), error: 'the helper stopped while the container was starting: the start did not complete' };
        await this.saveState(entry);
        return entry;
      }
      const found = findMonitor(cdir);
      entry.state = {
        state: 'running',
        pid: found?.pid,
        pidStartTime: found?.pid ? processStartTime(found.pid) : undefined,
        monitorPid: found?.monitorPid,
        monitorStartTime: found ? processStartTime(found.monitorPid) : undefined,
        startedAt: new Date().toISOString(),
      };
      await this.saveState(entry);
      this.follow(entry, monitor);
      return entry;
    }
    if (state.state !== 'running' && state.state !== 'removing') return entry;
    const monitor = await MonitorClient.connect(cdir);
    if (monitor) {
      this.follow(entry, monitor);
      return entry;
    }
    const exit = await readExitFile(cdir);
    if (exit) {
      entry.state = { ...state, state: 'exited', pid: undefined, exitCode: exit.exitCode, finishedAt: exit.finishedAt };
    } else {
      // the monitor died (killed): nothing holds the container's output or can report its end
      killSameProcess(state.pid, state.pidStartTime);
      entry.state = { ...state, state: 'exited', pid: undefined, exitCode: 255, finishedAt: new Date().toISOString(), error: 'the container monitor ended unexpectedly; the container was killed' };
    }
    await this.saveState(entry);
    return entry;
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
    const net = this.network?.settings(e.record.id);
    return {
      ...this.dockerInspect(e, net),
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

  /** The `docker inspect` fields. */
  private dockerInspect(e: Entry, net: ContainerInspect['networkSettings']): DockerContainerInspect {
    const { record, state } = e;
    const plan = record.plan;
    const zero = '0001-01-01T00:00:00Z';
    const ports: DockerContainerInspect['NetworkSettings']['Ports'] = {};
    for (const [ctr, host] of Object.entries(net?.ports ?? {})) {
      const at = host.lastIndexOf(':');
      ports[ctr] = [{ HostIp: host.slice(0, at), HostPort: host.slice(at + 1) }];
    }
    return {
      Id: record.id,
      Created: record.created,
      Path: plan?.args[0] ?? '',
      Args: plan?.args.slice(1) ?? [],
      State: {
        Status: state.state,
        Running: state.state === 'running',
        Paused: false,
        Restarting: false,
        OOMKilled: !!state.oomKilled,
        Dead: state.state === 'dead',
        Pid: state.state === 'running' ? state.pid ?? 0 : 0,
        ExitCode: state.exitCode ?? 0,
        Error: state.error ?? '',
        StartedAt: state.startedAt ?? zero,
        FinishedAt: state.finishedAt ?? zero,
      },
      Image: record.imageId,
      Name: `/${record.name}`,
      RestartCount: 0,
      LogPath: path.join(this.dir, record.id, LOG_FILE),
      Config: {
        Hostname: record.hostname,
        User: record.options.user ?? '',
        Env: plan?.env ?? [],
        Cmd: record.options.cmd?.length ? record.options.cmd : null,
        Entrypoint: record.options.entrypoint ?? null,
        WorkingDir: plan?.cwd ?? '/',
        Tty: !!record.options.tty,
        OpenStdin: !!record.options.interactive,
        Image: record.image,
        Labels: record.options.labels ?? {},
        ...(record.stopSignal ? { StopSignal: record.stopSignal } : {}),
      },
      Mounts: record.binds.map((b) => ({
        Type: (b as { type?: string }).type ?? 'bind',
        Source: b.source,
        Destination: b.target,
        Mode: b.readOnly ? 'ro' : '',
        RW: !b.readOnly,
        Propagation: 'rprivate',
      })),
      NetworkSettings: {
        IPAddress: net?.ipAddress ?? '',
        IPPrefixLen: net?.prefixLength ?? 0,
        Gateway: net?.gateway ?? '',
        MacAddress: net?.macAddress ?? '',
        Ports: ports,
      },
    };
  }

  /** The processes of a running container, as `ps -ef` shows them (`capsa top`). */
  async top(ref: string): Promise<{ titles: string[]; processes: string[][] }> {
    const e = this.find(ref);
    if (!e.live || !e.state.pid) throw new ConflictError(`container ${e.record.name} is not running`);
    return { titles: ['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD'], processes: await processesInPidNamespace(e.state.pid) };
  }

  /**
   * Creates and starts a container. Resolves once its process runs (or
   * rejects with the setup error); its exit is reported to `sink` and as an event.
   */
  async run(opts: RunOptions, sink?: StreamSink, onProgress?: (p: PullProgress) => void): Promise<{ id: string; name: string }> {
    const entry = await this.prepareAndCreate(opts, onProgress);
    try {
      await this.start(entry, sink);
    } catch (err) {
      if (opts.rm) await this.removeEntry(entry);
      throw err;
    }
    return { id: entry.record.id, name: entry.record.name };
  }

  /** Creates a container without starting it (`capsa create`). */
  async createContainer(opts: RunOptions, onProgress?: (p: PullProgress) => void): Promise<{ id: string; name: string }> {
    const entry = await this.prepareAndCreate(opts, onProgress);
    return { id: entry.record.id, name: entry.record.name };
  }

  private async prepareAndCreate(opts: RunOptions, onProgress?: (p: PullProgress) => void): Promise<Entry> {
    validateRunOptions(opts);
    // early, so a clash is not found only after a pull; create() checks again, atomically
    if (opts.name !== undefined && this.nameTaken(opts.name)) throw new ConflictError(`container name "${opts.name}" is already in use`);
    const setup = await prepareRun(opts, path.dirname(this.dir));
    const image = await this.images.resolveForRun(opts.image, { pull: opts.pull ?? 'missing', platform: opts.platform, onProgress });
    return this.create(opts, image, setup);
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
      record: {
        id, name, image: opts.image, imageRef: image.reference, imageId: image.id, created: new Date().toISOString(), hostname, options: opts,
        plan: undefined as unknown as Plan, binds, stopSignal: (image.config as { StopSignal?: string }).StopSignal,
      },
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
      // independent steps, side by side: each is a few ms of waiting on the kernel
      const settled = await Promise.allSettled([
        setup.resolveUser(opts.user ?? image.config.User, image.layerDirs),
        this.cgroups.create(id, cdir, setup.limits),
        // before the plan: eth0 must exist when the command starts
        this.network
          ? this.network.setup({ id, name, hostname, options: opts, hostsPath: paths.hosts, resolvConfPath: paths.resolvConf, lookup: (ref) => this.lookupForNetwork(ref) })
          : Promise.resolve({ newNetns: opts.network !== 'host', netnsPath: undefined }),
      ] as const);
      for (const r of settled) if (r.status === 'rejected') throw r.reason;
      const [user, cgroupProcs, net] = settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
        Awaited<ReturnType<RunSetup['resolveUser']>>,
        string[],
        { newNetns: boolean; netnsPath?: string },
      ];
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
      plan.idmaps = idmapsFor(opts.idmapMounts, plan.mounts);
      if (opts.userns === 'auto') await useUserns(plan, await this.userns.allocate(id), paths);
      placeholder.record.plan = plan;
      // durable, except for --rm: a record that ends with its process need not outlive the machine
      if (opts.rm) await this.replaceFile(path.join(cdir, 'config.json'), JSON.stringify(placeholder.record));
      else await writeFileAtomic(path.join(cdir, 'config.json'), JSON.stringify(placeholder.record, null, 2));
      await this.saveState(placeholder);
    } catch (err) {
      this.entries.delete(id);
      await this.network?.teardown(id).catch(() => undefined);
      await this.cgroups.remove(cdir).catch(() => undefined);
      await fs.rm(cdir, { recursive: true, force: true });
      await this.userns.release(id).catch(() => undefined);
      throw err;
    }
    this.emitEvent('create', placeholder);
    return placeholder;
  }

  /** Starts a created or exited container again, with its original plan and its upper layer kept (`capsa start`). */
  async startContainer(ref: string, sink?: StreamSink): Promise<void> {
    const e = this.find(ref);
    if (e.live) {
      // `start -a` of a running container attaches, as docker's does
      if (sink) e.live.sinks.add(sink);
      return;
    }
    await this.start(e, sink);
  }

  async restart(ref: string, timeoutSeconds?: number): Promise<void> {
    await this.stop(ref, timeoutSeconds);
    await this.startContainer(ref);
  }

  private async start(entry: Entry, sink?: StreamSink): Promise<void> {
    const { record } = entry;
    const cdir = path.join(this.dir, record.id);
    // a previous run's status must not be read as this run's
    await fs.rm(path.join(cdir, EXIT_FILE), { force: true });
    // a helper that dies before this start is recorded leaves this mark for the next one (load)
    entry.state = { ...entry.state, startingAt: new Date().toISOString() };
    await this.saveState(entry);
    const { client, started } = launchMonitor(record.plan, cdir, { stdin: !!record.options.interactive });
    // onExit waits for this: a container that ends at once is still started, then ended
    let startDone!: () => void;
    entry.starting = new Promise<void>((r) => (startDone = r));
    this.follow(entry, client, sink);
    try {
      let pid: number;
      let monitorPid: number;
      try {
        // the monitor never joined the container's cgroups: only its child did (native/src/process.h)
        ({ pid, monitorPid } = await started);
      } catch (err) {
        entry.live = undefined;
        const message = err instanceof Error ? err.message : String(err);
        const exitCode = exitCodeForSetupError(err);
        entry.state = { state: 'exited', exitCode, finishedAt: new Date().toISOString(), error: message };
        await this.saveState(entry);
        this.emitEvent('die', entry);
        if (err instanceof Error) Object.assign(err, { exitCode });
        throw err;
      }
      entry.state = {
        state: 'running',
        pid,
        pidStartTime: processStartTime(pid),
        monitorPid,
        monitorStartTime: processStartTime(monitorPid),
        startedAt: new Date().toISOString(),
      };
      await this.saveState(entry);
      this.emitEvent('start', entry);
    } finally {
      entry.starting = undefined;
      startDone();
    }
  }

  /** Follows a monitor: its output to the sinks, its end to onExit. */
  private follow(entry: Entry, monitor: MonitorClient, sink?: StreamSink): Set<StreamSink> {
    const sinks = new Set<StreamSink>(sink ? [sink] : []);
    monitor.on('output', (stream: 'stdout' | 'stderr', data: Buffer) => {
      for (const s of sinks) s.output(stream, data);
    });
    const exited = monitor.exited.then(async (info) => info ?? (await readExitFile(path.join(this.dir, entry.record.id))));
    entry.live = { monitor, sinks, exited };
    void exited.then((info) => this.onExit(entry, sinks, info));
    return sinks;
  }

  private async onExit(entry: Entry, sinks: Set<StreamSink>, info: ExitInfo | undefined): Promise<void> {
    await entry.starting;
    if (entry.live?.sinks !== sinks) return; // a setup failure: start() reported it
    entry.live = undefined;
    const code = info?.exitCode ?? 255;
    const error = info ? undefined : 'the container monitor ended unexpectedly; the container was killed';
    // nothing holds its output or can report its end any more
    if (!info) killSameProcess(entry.state.pid, entry.state.pidStartTime);
    const oomKilled = await this.cgroups.oomKilled(path.join(this.dir, entry.record.id));
    entry.state = { ...entry.state, state: 'exited', pid: undefined, exitCode: code, finishedAt: info?.finishedAt ?? new Date().toISOString(), error, oomKilled };
    if (entry.record.options.rm) {
      // as `docker run --rm`: the exit is reported once nothing of the container is left
      await this.removeEntry(entry).catch(() => undefined);
      for (const s of sinks) s.exit(code, error);
      return;
    }
    await this.saveState(entry).catch(() => undefined);
    this.emitEvent('die', entry);
    for (const s of sinks) s.exit(code, error);
  }

  /** Attaches a sink to a running container's output (used by `logs -f` and attach). */
  attach(ref: string, sink: StreamSink): () => void {
    const e = this.find(ref);
    if (!e.live) throw new ConflictError(`container ${e.record.name} is not running`);
    e.live.sinks.add(sink);
    return () => e.live?.sinks.delete(sink);
  }

  /** Stops sending a container's output to `sink`, whose client went away; the container goes on. */
  detachSink(ref: string, sink: StreamSink): void {
    const e = this.entries.get(ref) ?? [...this.entries.values()].find((x) => x.record.name === ref);
    e?.live?.sinks.delete(sink);
  }

  input(ref: string, data: Buffer, eof: boolean): void {
    this.find(ref).live?.monitor.input(data, eof);
  }

  resize(ref: string, rows: number, cols: number): void {
    const e = this.find(ref);
    checkSize(rows, cols);
    e.live?.monitor.resize(rows, cols);
  }

  async wait(ref: string): Promise<number> {
    const e = this.find(ref);
    if (e.live) await e.live.exited;
    // onExit runs after `exited` settles; wait for the state it writes.
    while (e.state.state === 'running') await new Promise((r) => setTimeout(r, 2));
    return e.state.exitCode ?? 0;
  }

  async kill(ref: string, signal = 'SIGKILL'): Promise<void> {
    const e = this.find(ref);
    const n = signalNumber(signal);
    if (!e.live) throw new ConflictError(`container ${e.record.name} is not running`);
    e.live.monitor.signal(n);
  }

  /** SIGTERM (or the image's StopSignal), then SIGKILL once timeoutSeconds passed. */
  async stop(ref: string, timeoutSeconds = 10): Promise<void> {
    const e = this.find(ref);
    if (!e.live) return;
    const live = e.live;
    live.monitor.signal(stopSignal(e.record));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), Math.max(0, timeoutSeconds) * 1000)));
    if ((await Promise.race([live.exited, timeout])) === 'timeout') live.monitor.signal(9);
    clearTimeout(timer);
    await this.wait(ref);
  }

  async remove(ref: string, force = false): Promise<void> {
    const e = this.find(ref);
    if (e.live) {
      if (!force) throw new ConflictError(`cannot remove container ${e.record.name}: it is running (stop it first, or use force)`);
      e.live.monitor.signal(9);
      await this.wait(ref);
      if (e.record.options.rm) return; // removed by its own exit
    }
    await this.removeEntry(e);
  }

  /** Removes every container that is not running (`capsa container prune`); returns their ids. */
  async prune(): Promise<string[]> {
    const gone = [...this.entries.values()].filter((e) => !e.live && e.state.state !== 'running');
    await Promise.all(gone.map((e) => this.removeEntry(e)));
    return gone.map((e) => e.record.id);
  }

  private async removeEntry(e: Entry): Promise<void> {
    if (!this.entries.has(e.record.id)) return;
    this.entries.delete(e.record.id);
    e.state = { ...e.state, state: 'removing' };
    // independent of each other; the directory goes last, as it holds the cgroup record
    const undone = (await Promise.allSettled([this.network?.teardown(e.record.id), this.cgroups.remove(path.join(this.dir, e.record.id))])).find(
      (r) => r.status === 'rejected',
    );
    if (undone) throw (undone as PromiseRejectedResult).reason;
    // out of the namespace in one step, so a crash mid-delete leaves no half container under its id (sweepRemoved)
    const doomed = path.join(this.dir, `.removing-${e.record.id}`);
    await fs.rename(path.join(this.dir, e.record.id), doomed).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await fs.rm(doomed, { recursive: true, force: true });
    await this.userns.release(e.record.id);
    this.emitEvent('destroy', e);
  }

  /**
   * The container's log as the monitor wrote it; with `follow`, what it
   * writes from then on goes to that sink, read from the same file (so
   * nothing is missed or repeated), until the container ends.
   */
  async logs(ref: string, opts: { tail?: number; follow?: StreamSink; signal?: AbortSignal } = {}): Promise<LogRecord[]> {
    const e = this.find(ref);
    const file = path.join(this.dir, e.record.id, LOG_FILE);
    const live = opts.follow ? e.live : undefined;
    let offset = 0;
    let reading: Promise<void> = Promise.resolve();
    // registered before the first read: output logged meanwhile is read by the next pump
    const pump = (): Promise<void> =>
      (reading = reading.then(async () => {
        const chunk = await readFrom(file, offset);
        const end = chunk.lastIndexOf(0x0a) + 1;
        offset += end;
        for (const r of parseLog(chunk.subarray(0, end))) opts.follow!.output(r.stream, Buffer.from(r.data, 'base64'), r.time);
      }));
    let detach = (): void => undefined;
    if (live) {
      const sink: StreamSink = { output: () => void pump(), exit: (code, error) => void pump().then(() => { detach(); opts.follow!.exit(code, error); }) };
      live.sinks.add(sink);
      detach = () => live.sinks.delete(sink);
      opts.signal?.addEventListener('abort', detach, { once: true });
    }
    const head = await readFrom(file, 0);
    const end = head.lastIndexOf(0x0a) + 1;
    offset = end;
    const records = parseLog(head.subarray(0, end));
    if (live) void pump();
    else if (opts.follow) {
      const follow = opts.follow;
      setImmediate(() => follow.exit(e.state.exitCode ?? 0, undefined));
    }
    return opts.tail !== undefined ? tailRecords(records, opts.tail) : records;
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
      namespaces: [...e.record.plan.namespaces, ...(e.record.plan.netnsPath ? ['net' as const] : []), ...(e.record.plan.userns ? ['user' as const] : [])],
      confinement: e.record.plan,
    });
    const shim = startShim(plan, { mode: 'exec', stdin: opts.interactive ? 'pipe' : 'ignore', stdout: 'pipe', stderr: 'pipe' });
    shim.stdout?.on('data', (d: Buffer) => sink.output('stdout', d));
    shim.stderr?.on('data', (d: Buffer) => sink.output('stderr', d));
    const drained = Promise.all([streamEnd(shim.stdout), streamEnd(shim.stderr)]);
    await shim.started;
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
      hangup: () => shim.signal(1 /* SIGHUP */),
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

  /**
   * state.json, replaced by rename (atomic for readers and a crashed
   * helper) without fsync: it must outlive the helper, not the machine —
   * after a reboot no container runs, and exit.json and config.json say the rest.
   */
  private async saveState(e: Entry): Promise<void> {
    await this.replaceFile(path.join(this.dir, e.record.id, 'state.json'), JSON.stringify(e.state));
  }

  /** Replaces file by rename: a reader or a crashed helper sees the old or the new content; no fsync. */
  private async replaceFile(file: string, data: string): Promise<void> {
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    await fs.writeFile(tmp, data, { mode: 0o600 });
    await fs.rename(tmp, file).catch(async (err) => {
      await fs.rm(tmp, { force: true });
      throw err;
    });
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
  const pullRefused = opts.pull === undefined ? undefined : pullPolicyProblem(opts.pull);
  if (pullRefused !== undefined) throw new InvalidArgumentError(pullRefused);
  // the network manager checks the mode itself: it knows the user-defined networks
  if (opts.network !== undefined && (typeof opts.network !== 'string' || opts.network === '')) {
    throw new InvalidArgumentError('network mode must be a non-empty string: bridge, host, none, container:NAME or a network name');
  }
  if (opts.size) checkSize(opts.size.rows, opts.size.cols);
  if (opts.workdir !== undefined && (typeof opts.workdir !== 'string' || !opts.workdir.startsWith('/'))) {
    throw new InvalidArgumentError(`working directory ${JSON.stringify(opts.workdir)} must be an absolute path`);
  }
}

/**
 * Every process in the pid namespace of pid (the container's PID 1), found
 * by the namespace's inode in /proc/PID/ns/pid, as `ps -ef` rows.
 */
/**
 * The monitor serving `cdir` (its command line names the directory) and the
 * container's PID 1 (the monitor's one child), found through /proc.
 */
function findMonitor(cdir: string): { monitorPid: number; pid: number | undefined } | undefined {
  const wanted = `\0--monitor\0${cdir}\0`;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${name}/cmdline`, 'latin1');
    } catch {
      continue;
    }
    if (!cmdline.includes(wanted)) continue;
    const monitorPid = Number(name);
    let children = '';
    try {
      children = readFileSync(`/proc/${name}/task/${name}/children`, 'latin1');
    } catch {
      /* ended meanwhile */
    }
    const pid = Number(children.trim().split(/\s+/)[0]) || undefined;
    return { monitorPid, pid };
  }
  return undefined;
}

async function processesInPidNamespace(pid: number): Promise<string[][]> {
  const ns = await fs.readlink(`/proc/${pid}/ns/pid`);
  const ticks = 100; // USER_HZ: what /proc counts in on every Linux architecture Capsa runs on
  const uptime = Number((await fs.readFile('/proc/uptime', 'utf8')).split(' ')[0]);
  const boot = Date.now() / 1000 - uptime;
  const rows: Array<[number, string[]]> = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if ((await fs.readlink(`/proc/${name}/ns/pid`)) !== ns) continue;
      const [stat, status, cmdline] = await Promise.all([
        fs.readFile(`/proc/${name}/stat`, 'utf8'),
        fs.readFile(`/proc/${name}/status`, 'utf8'),
        fs.readFile(`/proc/${name}/cmdline`, 'utf8'),
      ]);
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = f[1];
      const cpu = (Number(f[11]) + Number(f[12])) / ticks;
      const started = boot + Number(f[19]) / ticks;
      const c = Math.floor((cpu / Math.max(1e-3, Date.now() / 1000 - started)) * 100);
      const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1] ?? '?';
      const t = Math.floor(cpu);
      const time = `${String(Math.floor(t / 3600)).padStart(2, '0')}:${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}:${String(t % 60).padStart(2, '0')}`;
      const stime = new Date(started * 1000).toTimeString().slice(0, 5);
      const cmd = cmdline.split('\0').filter(Boolean).join(' ') || `[${comm}]`;
      rows.push([Number(name), [uid, name, ppid, String(c), stime, f[4] === '0' ? '?' : 'pts', time, cmd]]);
    } catch {
      // the process ended while we looked
    }
  }
  return rows.sort((a, b) => a[0] - b[0]).map((r) => r[1]);
}

/** Bytes of file from offset to its current end (none if it does not exist). */
async function readFrom(file: string, offset: number): Promise<Buffer> {
  const fh = await fs.open(file, 'r').catch(() => undefined);
  if (!fh) return Buffer.alloc(0);
  try {
    const { size } = await fh.stat();
    if (size <= offset) return Buffer.alloc(0);
    const buf = Buffer.alloc(size - offset);
    const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The image's StopSignal (SIGTERM when it has none or names one this helper does not know). */
function stopSignal(record: ContainerRecord): number {
  const s = record.stopSignal;
  try {
    return s ? signalNumber(s) : 15;
  } catch {
    return 15;
  }
}

function checkSize(rows: number, cols: number): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1 || rows > 10000 || cols > 10000) {
    throw new InvalidArgumentError(`invalid terminal size ${rows}x${cols}`);
  }
}

function lowerDirsOf(plan: Plan): string[] {
  return planLayerDirs(plan);
}

function streamEnd(s: NodeJS.ReadableStream | null | undefined): Promise<void> {
  if (!s) return Promise.resolve();
  return new Promise((resolve) => {
    s.once('end', resolve);
    s.once('close', resolve);
    s.once('error', () => resolve());
  });
}

/** Exit status recorded for a start that a dying helper left unfinished: an error of Capsa's, as Docker's 125. */
const INTERRUPTED_START_EXIT = 125;

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

