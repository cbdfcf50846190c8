/**
 * The containers this helper knows, in memory: each one's record, its
 * state, and while it runs, the connection to its monitor.
 */
import { InvalidArgumentError, NotFoundError } from '../../errors';
import type { ExitInfo } from '../monitor';
import type { NetworkSettings } from '../network/manager';
import type { MonitorConnection } from './launcher';
import type { ContainerRecord, ContainerStateFile } from './record';
import type { StreamSink } from './streams';
import type { RunTrace } from '../trace';

export class ContainerNotFoundError extends NotFoundError {
  constructor(ref: string) {
    super('E_CONTAINER_NOT_FOUND', `no such container: ${ref}`);
  }
}

export interface Live {
  monitor: MonitorConnection;
  sinks: Set<StreamSink>;
  /** Settles once the monitor reported the end (or went away). */
  exited: Promise<ExitInfo | undefined>;
}

export interface Entry {
  record: ContainerRecord;
  state: ContainerStateFile;
  live?: Live;
  /** The write of the running state, while start() is at it. */
  starting?: Promise<void>;
  /** Settles once start() knows whether the command runs (and has set the state to say so), before `starting`. */
  launched?: Promise<void>;
  /** The phases of the run in progress, when it is traced (../trace.ts); its exit marks the last ones. */
  trace?: RunTrace;
  /** Starts under way, from their first step (before `starting` is set): a copy into the stopped root is refused meanwhile. */
  startsPending?: number;
  /**
   * A copy into the container while it does not run (unionwrite.ts), which
   * writes its upper directory: a start waits for it, a removal stops it.
   */
  copyIn?: { done: Promise<unknown>; abort: () => void };
}

/**
 * One container as the runtime sees it, for those above to render (the
 * protocol's summaries and Docker's inspect, server/views/containers.ts).
 * Record and state are replaced, never changed in place: a view stays as it
 * was taken.
 * `record.owner` is the uid that created it.
 */
export interface ContainerView {
  record: Readonly<ContainerRecord>;
  state: Readonly<ContainerStateFile>;
  /** Published ports, `127.0.0.1:8080->80/tcp`, as the network manager lists them. */
  ports?: string[];
}

/** A view with what only inspect shows. */
export interface ContainerDetails extends ContainerView {
  /** The container's network, when the network manager has it. */
  network?: NetworkSettings;
  /** The container's log file on this host. */
  logPath: string;
}

export type ContainerAction = 'create' | 'start' | 'die' | 'destroy' | 'update';

/** What ContainerService emits as `event`. */
export interface ContainerChange {
  action: ContainerAction;
  container: ContainerView;
}

/** The entries by id, and finding one by id, name or id prefix. */
export class ContainerTable {
  private readonly entries = new Map<string, Entry>();

  get(id: string): Entry | undefined {
    return this.entries.get(id);
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  set(e: Entry): void {
    this.entries.set(e.record.id, e);
  }

  delete(id: string): void {
    this.entries.delete(id);
  }

  ids(): Set<string> {
    return new Set(this.entries.keys());
  }

  all(): Entry[] {
    return [...this.entries.values()];
  }

  /**
   * By full id, name, or unambiguous id prefix, among the containers `viewer`
   * (a uid) may see: its own, or every one for root (0). Another owner's
   * container is not there at all for a viewer other than root, so naming
   * it by name, id or prefix fails exactly as naming a missing one does, and
   * a prefix it shares with one of the viewer's own is the viewer's.
   * Names are unique per owner only: a name root gives is root's own
   * container first, else the only owner's who uses it; one that several
   * other owners use is refused with the ids, to name one by id.
   */
  find(ref: string, viewer = 0): Entry {
    if (typeof ref !== 'string' || ref.length === 0) throw new InvalidArgumentError('a container id or name is required');
    const visible = (e: Entry): boolean => viewer === 0 || e.record.owner === viewer;
    const byId = this.entries.get(ref);
    if (byId && visible(byId)) return byId;
    const seen = this.all().filter(visible);
    const named = seen.filter((e) => e.record.name === ref);
    if (named.length === 1) return named[0];
    // root's own first: a user taking a name must not change what root's scripts act on
    const rootOwn = viewer === 0 ? named.find((e) => e.record.owner === 0) : undefined;
    if (rootOwn) return rootOwn;
    if (named.length > 1) {
      const ids = named.map((e) => `${e.record.id.slice(0, 12)} (uid ${e.record.owner})`).join(', ');
      throw new InvalidArgumentError(`container name ${ref} is used by ${named.length} owners, none of them root: name one by id: ${ids}`);
    }
    if (/^[0-9a-f]{1,63}$/.test(ref)) {
      const matches = seen.filter((e) => e.record.id.startsWith(ref));
      if (matches.length === 1) return matches[0];
      if (matches.length > 1) throw new InvalidArgumentError(`container id prefix ${ref} is ambiguous: ${matches.length} containers match`);
    }
    throw new ContainerNotFoundError(ref);
  }

  /** By full id or name only, and no error when there is none. */
  lookup(ref: string): Entry | undefined {
    return this.entries.get(ref) ?? this.all().find((x) => x.record.name === ref);
  }

  /** Whether `owner` has a container named `name` (names are per owner). */
  nameTaken(name: string, owner = 0): boolean {
    for (const e of this.entries.values()) if (e.record.name === name && e.record.owner === owner) return true;
    return false;
  }
}
