/**
 * Containers: creation from an image and options, their life (start, exit,
 * stop, kill, remove), streams, logs, exec, and state kept on disk under
 * `<root>/containers/<id>/`. This class is the container side's face; each
 * concern is a module of this folder (docs/ARCHITECTURE.md, runtime/container/).
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
import * as path from 'node:path';
import { ConflictError } from '../../errors';
import { LOG_FILE } from '../monitor';
import type { LogRecord } from '../logs';
import type { NetworkManager } from '../network/manager';
import { CgroupManager } from '../cgroups';
import { prepareRun } from '../runsetup';
import { UsernsAllocator } from '../userns';
import { ContainerTable, type ContainerAction, type ContainerChange, type ContainerDetails, type ContainerView, type Entry } from './entry';
import { execIn, type ExecSession } from './exec';
import { assertStoppedForWrite, containerFilesystem, openContainerRoot, openUnionRoot, runsNow, type ContainerFilesystem } from './filesystem';
import { archivePath, archiveUnion, extractInto, statPath, statUnion, type PathStat } from './archive';
import { extractIntoUnion } from './unionwrite';
import type { ImageSource, PullCredentials } from './imagesource';
import { nativeShimLauncher, type ShimLauncher } from './launcher';
import { Lifecycle, ROOT_OWNER, type ContainerOwner, type LifecycleDeps } from './lifecycle';
import { userName } from '../../util/passwd';
import { ownerCaller, refuseUnprivileged, withinCeilings, type UserCeilings } from './unprivileged';
import type { Caller } from '../../util/peercred';
import type { BindMount } from '../spec';
import { readLogs } from './logs';
import type { PullProgress } from '../../image/pull';
import { validateRunOptions, type ExecOptions, type RunOptions } from './options';
import { processesInPidNamespace } from './proc';
import { ContainerStore } from './record';
import { loadContainers } from './recovery';
import { NO_TRACE, type RunTrace } from '../trace';
import { attachSink, detachSink, resizeTerminal, sendInput, type StreamSink } from './streams';

/**
 * Emits `event` ({@link ContainerChange}) on every create, start, die and
 * destroy; with CAPSA_TRACE=1, `trace` ({ id, phases }) once a run's teardown is done.
 */
export class ContainerService extends EventEmitter {
  private readonly table = new ContainerTable();
  private readonly store: ContainerStore;
  private readonly deps: LifecycleDeps;
  private readonly life: Lifecycle;
  /** What each user other than root may have at most (the config's userLimits); none by default. */
  userCeilings: UserCeilings = {};

  /** `launcher`: the shim (a fake in unit tests). */
  constructor(
    root: string,
    private readonly images: ImageSource,
    private readonly network?: NetworkManager,
    cgroups: CgroupManager = CgroupManager.fromEnv(),
    launcher: ShimLauncher = nativeShimLauncher,
  ) {
    super();
    this.store = new ContainerStore(path.join(root, 'containers'));
    this.deps = {
      table: this.table,
      store: this.store,
      launcher,
      cgroups,
      network,
      userns: new UsernsAllocator(root),
      emit: (action, e) => this.emitChange(action, e),
      onTrace: (id, phases) => this.emit('trace', { id, phases }),
      // each start opens the binds again, with the rights of whoever owns the container
      bindCaller: (record) => ownerCaller(record.owner),
    };
    this.life = new Lifecycle(this.deps);
  }

  /** Loads containers from disk and finds each one's true state (recovery.ts). */
  load(): Promise<void> {
    return loadContainers(this.deps, this.life);
  }

  /**
   * Containers `viewer` (a uid) may see: its own, or every one for root (0).
   * Every method that names a container takes it by id (from idOf for a
   * caller other than root): idOf is where another owner's container is
   * not found.
   */
  list(all: boolean, viewer = 0): ContainerView[] {
    const out: ContainerView[] = [];
    for (const e of this.table.all()) if ((all || e.state.state === 'running') && (viewer === 0 || e.record.owner === viewer)) out.push(this.view(e));
    return out.sort((a, b) => b.record.created.localeCompare(a.record.created));
  }

  /** Ids of images that containers (in any state) use: every container's, or `owner`'s alone. */
  imagesInUse(owner?: number): Set<string> {
    return new Set(this.table.all().filter((e) => owner === undefined || e.record.owner === owner).map((e) => e.record.imageId));
  }

  /** The full id of the container ref names among those `viewer` may see (entry.ts, find). */
  idOf(ref: string, viewer = 0): string {
    return this.table.find(ref, viewer).record.id;
  }

  inspect(ref: string): ContainerDetails {
    const e = this.table.find(ref);
    return { ...this.view(e), network: this.network?.settings(e.record.id), logPath: path.join(this.store.pathOf(e.record.id), LOG_FILE) };
  }

  /** The processes of a running container, as `ps -ef` shows them (`capsa top`). */
  async top(ref: string): Promise<{ titles: string[]; processes: string[][] }> {
    const e = this.table.find(ref);
    if (!e.live || !e.state.pid) throw new ConflictError(`container ${e.record.name} is not running`);
    return { titles: ['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD'], processes: await processesInPidNamespace(e.state.pid) };
  }

  /**
   * Creates and starts a container. Resolves once its process runs (or
   * rejects with the ContainerStartError); its exit is reported to `sink` and as an event.
   */
  async run(
    opts: RunOptions,
    sink?: StreamSink,
    onProgress?: (p: PullProgress) => void,
    caller?: Caller,
    auth?: PullCredentials,
    trace: RunTrace = NO_TRACE,
  ): Promise<{ id: string; name: string }> {
    const entry = await this.prepareAndCreate(opts, onProgress, caller, auth, trace);
    try {
      await this.life.start(entry, sink, trace);
    } catch (err) {
      if (opts.rm) await this.life.removeEntry(entry);
      throw err;
    }
    return { id: entry.record.id, name: entry.record.name };
  }

  /**
   * Creates a container without starting it (`capsa create`). `helperBinds`:
   * directories the helper prepared itself (type `helper`, a build step's
   * mounts), which no request can name.
   */
  async createContainer(opts: RunOptions, onProgress?: (p: PullProgress) => void, caller?: Caller, auth?: PullCredentials, helperBinds: BindMount[] = []): Promise<{ id: string; name: string }> {
    const entry = await this.prepareAndCreate(opts, onProgress, caller, auth, NO_TRACE, helperBinds);
    return { id: entry.record.id, name: entry.record.name };
  }

  /** `caller`: who asked; root's when absent. A caller other than root gets an unprivileged container (unprivileged.ts). */
  private async prepareAndCreate(opts: RunOptions, onProgress?: (p: PullProgress) => void, caller?: Caller, auth?: PullCredentials, trace: RunTrace = NO_TRACE, helperBinds: BindMount[] = []): Promise<Entry> {
    validateRunOptions(opts);
    let owner: ContainerOwner = ROOT_OWNER;
    if (caller && caller.uid !== 0) {
      refuseUnprivileged(opts, caller);
      // recorded as it is: inspect shows the user namespace the container has, and the limits it got
      opts = { ...withinCeilings(opts, caller.uid, this.userCeilings), userns: 'auto' };
      owner = { uid: caller.uid, gid: caller.gid, name: userName(caller.uid), maxContainers: this.userCeilings.containers };
    }
    // early, so a clash is not found only after a pull; create() checks again, atomically
    if (opts.name !== undefined && this.table.nameTaken(opts.name, owner.uid)) throw new ConflictError(`container name "${opts.name}" is already in use`);
    const setup = await prepareRun(opts, path.dirname(this.store.dir), owner.uid !== 0 ? caller : undefined);
    for (const b of helperBinds) {
      if (setup.binds.some((x) => x.target === b.target)) throw new ConflictError(`duplicate mount point: ${b.target}`);
      setup.binds.push(b);
    }
    trace.mark('options prepared');
    // in the owner's namespace of image names: a user's run never takes root's (or another user's) name for its bytes
    const image = await this.images.resolveForRun(opts.image, { pull: opts.pull ?? 'missing', platform: opts.platform, onProgress, caller: owner.uid !== 0 ? caller : undefined, auth });
    trace.mark('image resolved');
    return this.life.create(opts, image, setup, owner, trace);
  }

  /** Starts a created or exited container again, with its original plan and its upper layer kept (`capsa start`). */
  startContainer(ref: string, sink?: StreamSink): Promise<void> {
    return this.life.startOrAttach(this.table.find(ref), sink);
  }

  restart(ref: string, timeoutSeconds?: number): Promise<void> {
    return this.life.restart(this.table.find(ref), timeoutSeconds);
  }

  /** Attaches a sink to a running container's output (used by `logs -f` and attach). */
  attach(ref: string, sink: StreamSink): () => void {
    return attachSink(this.table.find(ref), sink);
  }

  /** Stops sending a container's output to `sink`, whose client went away; the container goes on. */
  detachSink(ref: string, sink: StreamSink): void {
    detachSink(this.table.lookup(ref), sink);
  }

  input(ref: string, data: Buffer, eof: boolean): void {
    sendInput(this.table.find(ref), data, eof);
  }

  resize(ref: string, rows: number, cols: number): void {
    resizeTerminal(this.table.find(ref), rows, cols);
  }

  wait(ref: string): Promise<number> {
    return this.life.wait(this.table.find(ref));
  }

  async kill(ref: string, signal?: string): Promise<void> {
    this.life.kill(this.table.find(ref), signal);
  }

  /** SIGTERM (or the image's StopSignal), then SIGKILL once timeoutSeconds passed. */
  stop(ref: string, timeoutSeconds?: number): Promise<void> {
    return this.life.stop(this.table.find(ref), timeoutSeconds);
  }

  remove(ref: string, force = false): Promise<void> {
    return this.life.remove(this.table.find(ref), force);
  }

  /** Removes every container of `viewer`'s (every one's, for root) that is not running (`capsa container prune`); returns their ids. */
  async prune(viewer = 0): Promise<string[]> {
    const gone = this.table.all().filter((e) => !e.live && e.state.state !== 'running' && (viewer === 0 || e.record.owner === viewer));
    await Promise.all(gone.map((e) => this.life.removeEntry(e)));
    return gone.map((e) => e.record.id);
  }

  /** The container's log (logs.ts); `follow` gets what is written from then on, until the container ends. */
  logs(ref: string, opts: { tail?: number; follow?: StreamSink; signal?: AbortSignal } = {}): Promise<LogRecord[]> {
    const e = this.table.find(ref);
    return readLogs(e, path.join(this.store.pathOf(e.record.id), LOG_FILE), opts);
  }

  /** Runs a process inside a running container's namespaces. */
  exec(opts: ExecOptions, sink: StreamSink, execId?: string): Promise<ExecSession> {
    return execIn(this.table.find(opts.container), this.deps.launcher, opts, sink, execId);
  }

  /** The container's upper directory, layers and freezer, for commit, diff and cp (filesystem.ts). */
  filesystem(ref: string): ContainerFilesystem {
    const e = this.table.find(ref);
    return containerFilesystem(e, this.store.pathOf(e.record.id), this.deps.cgroups);
  }

  /** `p` in a container (archive.ts): what `cp` needs for its path rules; a stopped one's is read from its layers. */
  async statPath(ref: string, p: string, follow: boolean): Promise<PathStat> {
    const e = this.table.find(ref);
    if (!runsNow(e)) {
      const u = openUnionRoot(e, this.store.pathOf(e.record.id));
      try {
        return await statUnion(u, p, follow);
      } finally {
        u.close();
      }
    }
    const root = openContainerRoot(e);
    try {
      return await statPath(root, p, follow);
    } finally {
      root.close();
    }
  }

  /** The tar of `p` in a container, ids as it sees them (archive.ts); a stopped one's from its layers. */
  async *archive(ref: string, p: string, follow: boolean): AsyncGenerator<Buffer> {
    const e = this.table.find(ref);
    const idShift = this.filesystem(ref).idShift;
    if (!runsNow(e)) {
      const u = openUnionRoot(e, this.store.pathOf(e.record.id));
      try {
        yield* archiveUnion(u, p, { follow, idShift });
      } finally {
        u.close();
      }
      return;
    }
    const root = openContainerRoot(e);
    try {
      yield* archivePath(root, p, { follow, idShift });
    } finally {
      root.close();
    }
  }

  /**
   * Throws unless files can be copied into the container now: it runs
   * (written through its root), or it is created or exited (written into
   * its upper directory, unionwrite.ts), and it is not starting.
   */
  assertWritable(ref: string): void {
    const e = this.table.find(ref);
    if (runsNow(e)) return;
    assertStoppedForWrite(e);
  }

  /**
   * Extracts `source` into the directory `dest` of a container (archive.ts):
   * through its root while it runs, else into its upper directory, the
   * container held stopped meanwhile (Lifecycle.whileStopped).
   */
  async extract(ref: string, dest: string, source: AsyncIterable<Uint8Array>, copyIds: boolean): Promise<{ entries: number }> {
    const e = this.table.find(ref);
    const { idShift, mountPoints } = this.filesystem(ref);
    if (!runsNow(e)) {
      return this.life.whileStopped(e, async (signal) => {
        const u = openUnionRoot(e, this.store.pathOf(e.record.id));
        try {
          return await extractIntoUnion(u, dest, untilAborted(source, signal, e.record.name), { copyIds, idShift, mountPoints });
        } finally {
          u.close();
        }
      });
    }
    const root = openContainerRoot(e);
    try {
      return await extractInto(root, dest, source, { copyIds, idShift });
    } finally {
      root.close();
    }
  }

  /** Kills every running container (helper shutdown in tests). */
  async killAll(): Promise<void> {
    const ids = this.table.all().filter((e) => e.live).map((e) => e.record.id);
    // best effort at shutdown: a container already gone (or one that cannot be removed) must not stop the others
    await Promise.all(ids.map((id) => this.remove(id, true).catch(() => undefined)));
    await this.life.drain();
  }

  /** Waits for the removals of --rm containers whose exit was already reported. */
  drain(): Promise<void> {
    return this.life.drain();
  }

  private view(e: Entry): ContainerView {
    return { record: e.record, state: e.state, ports: this.network?.ports(e.record.id) };
  }

  private emitChange(action: ContainerAction, e: Entry): void {
    this.emit('event', { action, container: this.view(e) } satisfies ContainerChange);
  }
}

/** `source` until `signal` aborts (the container is being removed): then the copy fails at once, even with no chunk coming. */
async function* untilAborted<T>(source: AsyncIterable<T>, signal: AbortSignal, name: string): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  const aborted = new Promise<never>((_, reject) => {
    const fail = (): void => reject(new ConflictError(`copy into container ${name} stopped: the container is being removed`));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
  aborted.catch(() => undefined);
  for (;;) {
    const r = await Promise.race([it.next(), aborted]);
    if (r.done) return;
    yield r.value;
  }
}
