/**
 * A container's life: create (its directory, cgroup, network and plan),
 * start (its monitor, through the shim launcher), its exit, stop, kill,
 * wait and removal.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ConflictError, PermissionDeniedError } from '../../errors';
import { generateName, newContainerId } from '../names';
import { buildRunPlan, type ContainerPaths } from '../spec';
import { idmapsFor } from '../idmap';
import { EXIT_FILE, readExitFile, type ExitInfo } from '../monitor';
import type { Plan } from '../plan';
import { closeAll, pinBindSources, ROOT_CALLER, type PinnedPlan } from '../bindsource';
import type { Caller } from '../../util/peercred';
import type { NetworkManager } from '../network/manager';
import type { CgroupManager } from '../cgroups';
import type { RunSetup } from '../runsetup';
import { idmapsInBlock, stageUserns, useUserns, UsernsExhaustedError, type UsernsAllocator } from '../userns';
import { ownerIdmaps } from './unprivileged';
import { ContainerStartError } from '../errors';
import { assertStoppedForWrite } from './filesystem';
import type { ContainerAction, ContainerTable, Entry } from './entry';
import { hostsFile, resolvConf } from './etcfiles';
import type { ResolvedImage } from './imagesource';
import type { MonitorConnection, ShimLauncher } from './launcher';
import type { RunOptions } from './options';
import { killSameProcess, processStartTime } from './proc';
import { RECORD_VERSION, type ContainerRecord, type ContainerStore } from './record';
import { SIGKILL, signalNumber, stopSignalNumber } from './signals';
import type { StreamSink } from './streams';
import { PendingRemovals } from './pending';
import { NO_TRACE, timedPhases, traceEverything, type RunTrace, type TimedPhase } from '../trace';

/** The exit a container whose monitor went away without reporting one is recorded with. */
export const MONITOR_LOST_EXIT = 255;
export const MONITOR_LOST_ERROR = 'the container monitor ended unexpectedly; the container was killed';

/** Who a container is created for: the caller's uid and primary gid, and for a user other than root, their name (for /etc/subuid). */
export interface ContainerOwner {
  uid: number;
  gid: number;
  name?: string;
  /** The most containers this owner may have at once (a user's ceiling). */
  maxContainers?: number;
}

export const ROOT_OWNER: ContainerOwner = { uid: 0, gid: 0 };

export interface LifecycleDeps {
  table: ContainerTable;
  store: ContainerStore;
  launcher: ShimLauncher;
  cgroups: CgroupManager;
  network?: NetworkManager;
  userns: UsernsAllocator;
  /** Reports a change of e to the service's listeners. */
  emit(action: ContainerAction, e: Entry): void;
  /** With CAPSA_TRACE=1: each run's phases, teardown included, for the helper's log. */
  onTrace?(id: string, phases: TimedPhase[]): void;
  /** Whose rights a start of record opens its bind sources with; default root (the helper's own). */
  bindCaller?(record: ContainerRecord): Caller;
}

export class Lifecycle {
  /** The removals of --rm containers, which run after their exits were reported. */
  private readonly pending = new PendingRemovals();

  constructor(private readonly d: LifecycleDeps) {}

  /**
   * `owner`: who asked (root, uid 0, unless a user did). A user's container
   * always has its own user namespace, from that user's block, and its host
   * binds are idmapped to the user (unprivileged.ts); the service refused
   * what such a container may not have before this.
   */
  async create(opts: RunOptions, image: ResolvedImage, setup: RunSetup, owner: ContainerOwner = ROOT_OWNER, trace: RunTrace = NO_TRACE): Promise<Entry> {
    const { table, store, cgroups, network, userns } = this.d;
    const binds = setup.binds;
    const id = newContainerId();
    const name = opts.name ?? generateName((n) => table.nameTaken(n, owner.uid));
    if (table.nameTaken(name, owner.uid)) throw new ConflictError(`container name "${name}" is already in use`);
    // before the first await, as the name: two creates at once cannot both take the last place
    if (owner.maxContainers !== undefined && table.all().filter((e) => e.record.owner === owner.uid).length >= owner.maxContainers) {
      throw new PermissionDeniedError(`container refused for uid ${owner.uid}: it has ${owner.maxContainers} containers, this helper's ceiling for users (remove one first)`);
    }
    const hostname = opts.hostname ?? id.slice(0, 12);
    const cdir = store.pathOf(id);
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
        version: RECORD_VERSION, id, owner: owner.uid, name, image: opts.image, imageRef: image.reference, imageId: image.id, created: new Date().toISOString(), hostname, options: opts,
        plan: undefined as unknown as Plan, binds, stopSignal: (image.config as { StopSignal?: string }).StopSignal,
      },
      state: { state: 'created' },
    };
    table.set(placeholder);
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
      trace.mark('directory made');
      const marked = <T>(phase: string, p: Promise<T>): Promise<T> => (trace.on ? p.then((v) => (trace.mark(phase), v)) : p);
      // A user's container always has a user namespace, root's with --userns auto.
      const withUserns = owner.uid !== 0 || opts.userns === 'auto';
      // independent steps, side by side: each is a few ms of waiting on the kernel
      // (the id block's record is fsynced: the container's record, written after, must never name a block the disk does not hold)
      const settled = await Promise.allSettled([
        withUserns
          ? marked('userns staged', this.allocateUserns(id, owner.uid !== 0 ? owner.name : undefined).then((range) => stageUserns(range, image.layerDirs, paths)))
          : Promise.resolve(undefined),
        marked('user resolved', setup.resolveUser(opts.user ?? image.config.User, image.layerDirs)),
        marked('cgroup made', cgroups.create(id, cdir, setup.limits)),
        // before the plan: eth0 must exist when the command starts
        network
          ? marked('network attached', this.pending.retry(() => network.setup({ id, name, hostname, options: opts, hostsPath: paths.hosts, resolvConfPath: paths.resolvConf, caller: { uid: owner.uid }, lookup: (ref) => this.lookupForNetwork(ref, owner.uid) })))
          : Promise.resolve({ newNetns: opts.network !== 'host', netnsPath: undefined }),
      ] as const);
      for (const r of settled) if (r.status === 'rejected') throw r.reason;
      const [staged, user, cgroupProcs, net] = settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
        Awaited<ReturnType<typeof stageUserns>> | undefined,
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
      if (staged) {
        useUserns(plan, staged);
        plan.idmaps = owner.uid !== 0 ? ownerIdmaps(binds, staged, owner, plan.idmaps) : idmapsInBlock(plan.idmaps, staged);
      }
      placeholder.record.plan = plan;
      trace.mark('plan built');
      // two files, independent: a load without both finds no container there (recovery.ts)
      await Promise.all([store.writeRecord(placeholder.record), this.saveState(placeholder)]);
      trace.mark('record written');
    } catch (err) {
      table.delete(id);
      // Undoing a create that failed: the create's own error is what the
      // caller must see. Whatever is left is found again at the next load
      // (network and cgroup reconcile, userns reconcile drop what no
      // container owns).
      await network?.teardown(id).catch(() => undefined);
      await cgroups.remove(cdir).catch(() => undefined);
      await fs.rm(cdir, { recursive: true, force: true });
      await userns.release(id).catch(() => undefined);
      throw err;
    }
    this.d.emit('create', placeholder);
    return placeholder;
  }

  /**
   * Starts entry's monitor. Resolves once its command runs; rejects with a
   * ContainerStartError (the container is then recorded exited with that
   * error's status, and `die` is emitted).
   */
  async start(entry: Entry, sink?: StreamSink, trace: RunTrace = NO_TRACE): Promise<void> {
    const { record } = entry;
    const cdir = this.d.store.pathOf(record.id);
    // the overlay must not be mounted over an upper directory a copy is writing (docker's container lock does the same)
    while (entry.copyIn) await entry.copyIn.done.catch(() => undefined);
    entry.startsPending = (entry.startsPending ?? 0) + 1;
    try {
      // before anything is marked: a bind source the caller cannot reach (or that is gone) fails the start as it is
      const pinned = await pinBindSources(record.plan, this.d.bindCaller?.(record) ?? ROOT_CALLER);
      try {
        await this.launch(entry, pinned, cdir, sink, trace);
      } finally {
        // the shim holds its own copies from its spawn on
        closeAll(pinned.fds);
      }
    } finally {
      entry.startsPending = (entry.startsPending ?? 1) - 1 || undefined;
    }
  }

  /**
   * Runs `fn` (a write into the container's upper directory) while the
   * container neither runs nor starts; starts wait for it, one such write
   * at a time, and a removal aborts `fn`'s signal and waits for it to end.
   * Refused for a container that runs, starts or is being removed.
   */
  async whileStopped<T>(e: Entry, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    while (e.copyIn) await e.copyIn.done.catch(() => undefined);
    const { name, id } = e.record;
    // unlisted (removeEntry) before its directory goes
    if (this.d.table.get(id) !== e) throw new ConflictError(`cannot copy into container ${name}: it is being removed`);
    assertStoppedForWrite(e);
    const ac = new AbortController();
    const done = fn(ac.signal);
    const slot = { done, abort: () => ac.abort() };
    e.copyIn = slot;
    try {
      return await done;
    } finally {
      if (e.copyIn === slot) e.copyIn = undefined;
    }
  }

  private async launch(entry: Entry, pinned: PinnedPlan, cdir: string, sink: StreamSink | undefined, trace: RunTrace): Promise<void> {
    const { record } = entry;
    // a previous run's status must not be read as this run's; a container
    // never started has none (a failed start is recorded exited, not created)
    const fresh = entry.state.state === 'created' && !entry.state.startedAt && !entry.state.startingAt;
    // a helper that dies before this start is recorded leaves this mark for the next one (load)
    entry.state = { ...entry.state, startingAt: new Date().toISOString() };
    await Promise.all([fresh ? undefined : fs.rm(path.join(cdir, EXIT_FILE), { force: true }), this.saveState(entry)]);
    trace.mark('starting recorded');
    const { client, started } = this.d.launcher.launchMonitor(pinned.plan, cdir, { stdin: !!record.options.interactive, bindFds: pinned.fds, trace });
    entry.trace = trace.on ? trace : undefined;
    // onExit waits for these: a container that ends at once is still started, then ended
    let startDone!: () => void;
    let launchDone!: () => void;
    entry.starting = new Promise<void>((r) => (startDone = r));
    entry.launched = new Promise<void>((r) => (launchDone = r));
    this.follow(entry, client, sink);
    try {
      let pid: number;
      let monitorPid: number;
      try {
        // the monitor never joined the container's cgroups: only its child did (native/src/process.h)
        const s = await started;
        ({ pid, monitorPid } = s);
        if (trace.on) {
          for (const p of s.phases ?? []) trace.mark(p.phase, p.at);
          trace.mark('started reported');
        }
      } catch (cause) {
        entry.trace = undefined;
        const err = ContainerStartError.from(cause);
        entry.live = undefined;
        entry.state = { state: 'exited', exitCode: err.exitCode, finishedAt: new Date().toISOString(), error: err.message };
        launchDone();
        await this.saveState(entry);
        this.d.emit('die', entry);
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
      launchDone();
      await this.saveState(entry);
      trace.mark('running recorded');
      this.d.emit('start', entry);
    } finally {
      entry.starting = undefined;
      entry.launched = undefined;
      launchDone();
      startDone();
    }
  }

  /** Starts a created or exited container; `start -a` of a running one attaches, as docker's does. */
  async startOrAttach(e: Entry, sink?: StreamSink): Promise<void> {
    if (e.live) {
      if (sink) e.live.sinks.add(sink);
      return;
    }
    await this.start(e, sink);
  }

  /** Stops the container (if it runs) and starts it again, with its plan and its upper layer kept. */
  async restart(e: Entry, timeoutSeconds?: number): Promise<void> {
    await this.stop(e, timeoutSeconds);
    await this.startOrAttach(e);
  }

  /** Follows a monitor: its output to the sinks, its end to onExit. */
  follow(entry: Entry, monitor: MonitorConnection, sink?: StreamSink): void {
    const sinks = new Set<StreamSink>(sink ? [sink] : []);
    monitor.on('output', (stream, data) => {
      for (const s of sinks) s.output(stream, data);
    });
    const exited = monitor.exited.then(async (info) => info ?? (await readExitFile(this.d.store.pathOf(entry.record.id))));
    entry.live = { monitor, sinks, exited };
    void exited.then((info) => this.onExit(entry, sinks, info));
  }

  private async onExit(entry: Entry, sinks: Set<StreamSink>, info: ExitInfo | undefined): Promise<void> {
    const starting = entry.starting;
    await entry.launched;
    if (entry.live?.sinks !== sinks) return; // a setup failure: start() reported it
    const trace = entry.trace ?? NO_TRACE;
    entry.trace = undefined;
    trace.mark('exit seen');
    entry.live = undefined;
    const code = info?.exitCode ?? MONITOR_LOST_EXIT;
    const error = info ? undefined : MONITOR_LOST_ERROR;
    // nothing holds its output or can report its end any more
    if (!info) killSameProcess(entry.state.pid, entry.state.pidStartTime);
    const oomKilled = await this.d.cgroups.oomKilled(this.d.store.pathOf(entry.record.id));
    entry.state = { ...entry.state, state: 'exited', pid: undefined, exitCode: code, finishedAt: info?.finishedAt ?? new Date().toISOString(), error, oomKilled };
    if (entry.record.options.rm) {
      // As `docker run --rm`, the container is gone once its exit is reported:
      // removeEntry takes it out of the table (its name is free for the next
      // run) before its first await. The rest of the removal (network, cgroup,
      // directory) is not the client's to wait for: it runs after the report,
      // and `drain` waits for it (helper shutdown). A removal that fails
      // part-way leaves the directory renamed or in place; the next load
      // sweeps or finds it.
      // The report needs the exit alone, not the `running` state's write:
      // the removal waits for that write (it must not land in a directory
      // being removed), the report does not.
      const listed = this.d.table.has(entry.record.id);
      if (listed) this.unlist(entry);
      const removed = listed
        ? Promise.resolve(starting)
            .then(() => this.dispose(entry))
            .catch(() => undefined)
        : Promise.resolve();
      this.report(sinks, code, error, trace);
      this.pending.track(removed.then(() => this.traceDone(entry, trace)));
      return;
    }
    // after the `running` state's write, which must not land after this one
    await starting;
    // Written before the report: a client told of the exit may start the
    // container again at once, and that start's state must be the last
    // written. One that cannot be written (disk full) leaves the on-disk
    // state `running`: the next load finds exit.json and records the same exit.
    await this.saveState(entry).catch(() => undefined);
    this.d.emit('die', entry);
    this.report(sinks, code, error, trace);
    this.traceDone(entry, trace);
  }

  /** A block of ids for a new container; see PendingRemovals.retry. */
  private allocateUserns(id: string, owner?: string): ReturnType<UsernsAllocator['allocate']> {
    return this.pending.retry(() => this.d.userns.allocate(id, owner), (err) => err instanceof UsernsExhaustedError);
  }

  /** Waits for every clean-up still running after its exit was reported. */
  drain(): Promise<void> {
    return this.pending.drain();
  }

  private report(sinks: Set<StreamSink>, code: number, error: string | undefined, trace: RunTrace): void {
    trace.mark('exit reported');
    const timings = trace.on ? timedPhases(trace.phases()) : undefined;
    for (const s of sinks) s.exit(code, error, timings);
  }

  /** The trace's last phase; with CAPSA_TRACE=1 the whole trace goes to the helper's log. */
  private traceDone(entry: Entry, trace: RunTrace): void {
    if (!trace.on) return;
    trace.mark('teardown done');
    if (traceEverything()) this.d.onTrace?.(entry.record.id, timedPhases(trace.phases()));
  }

  async wait(e: Entry): Promise<number> {
    if (e.live) await e.live.exited;
    // onExit runs after `exited` settles; wait for the state it writes.
    while (e.state.state === 'running') await new Promise((r) => setTimeout(r, 2));
    return e.state.exitCode ?? 0;
  }

  kill(e: Entry, signal = 'SIGKILL'): void {
    const n = signalNumber(signal);
    if (!e.live) throw new ConflictError(`container ${e.record.name} is not running`);
    e.live.monitor.signal(n);
  }

  /** SIGTERM (or the image's StopSignal), then SIGKILL once timeoutSeconds passed; nothing for a container that is not running. */
  async stop(e: Entry, timeoutSeconds = 10): Promise<void> {
    if (!e.live) return;
    const live = e.live;
    live.monitor.signal(stopSignalNumber(e.record.stopSignal));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), Math.max(0, timeoutSeconds) * 1000)));
    if ((await Promise.race([live.exited, timeout])) === 'timeout') live.monitor.signal(SIGKILL);
    clearTimeout(timer);
    await this.wait(e);
  }

  async remove(e: Entry, force = false): Promise<void> {
    if (e.live) {
      if (!force) throw new ConflictError(`cannot remove container ${e.record.name}: it is running (stop it first, or use force)`);
      e.live.monitor.signal(SIGKILL);
      await this.wait(e);
      if (e.record.options.rm) return; // removed by its own exit
    }
    await this.removeEntry(e);
  }

  async removeEntry(e: Entry): Promise<void> {
    if (!this.d.table.has(e.record.id)) return;
    this.unlist(e);
    // a copy writing its upper directory stops before the directory goes
    if (e.copyIn) {
      e.copyIn.abort();
      await e.copyIn.done.catch(() => undefined);
    }
    await this.dispose(e);
  }

  /** Out of the table: its name is free, and nothing finds it any more. */
  private unlist(e: Entry): void {
    this.d.table.delete(e.record.id);
    e.state = { ...e.state, state: 'removing' };
  }

  /** Everything of an unlisted container: its network, cgroup, directory and user namespace range. */
  private async dispose(e: Entry): Promise<void> {
    const { store } = this.d;
    // independent of each other; the directory goes last, as it holds the cgroup record
    const teardown = async (): Promise<PromiseSettledResult<unknown> | undefined> =>
      (await Promise.allSettled([this.d.network?.teardown(e.record.id), this.d.cgroups.remove(store.pathOf(e.record.id))])).find((r) => r.status === 'rejected');
    let undone = await teardown();
    if (undone) {
      // A full disk fails the rewrite of a record the teardown changes (the address pool's), and what filled it is most
      // likely this container's own writes (a RUN's `dd`): those go first, then the teardown is tried once more.
      const dir = store.pathOf(e.record.id);
      await Promise.all(['upper', 'work'].map((d) => fs.rm(path.join(dir, d), { recursive: true, force: true }).catch(() => undefined)));
      undone = await teardown();
    }
    if (undone) throw (undone as PromiseRejectedResult).reason;
    await store.removeDir(e.record.id);
    await this.d.userns.release(e.record.id);
    this.d.emit('destroy', e);
  }

  saveState(e: Entry): Promise<void> {
    return this.d.store.writeState(e.record.id, e.state);
  }

  /** `container:NAME`: the container whose network namespace another joins, among those `viewer` may see. */
  private lookupForNetwork(ref: string, viewer: number): { id: string; name: string; pid?: number } {
    const e = this.d.table.find(ref, viewer);
    return { id: e.record.id, name: e.record.name, pid: e.live ? e.state.pid : undefined };
  }
}
