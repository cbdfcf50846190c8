/**
 * A container on disk, `<root>/containers/<id>/`: config.json, the record
 * written once at create, and state.json, the state rewritten on every
 * change. config.json carries a version; records written before it had one
 * are version 1. Version 2 added `owner`, the uid that created the
 * container: a version 1 record (every container made before containers
 * had owners, all by root) reads as owned by root.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CapsaError } from '../../errors';
import { writeFileAtomic } from '../../util/atomic';
import type { BindMount } from '../spec';
import type { Plan } from '../plan';
import type { RunOptions } from './options';

/** The version of config.json this helper writes. */
export const RECORD_VERSION = 2;

/** Persisted description of a container (config.json). Never changes after create. */
export interface ContainerRecord {
  version: typeof RECORD_VERSION;
  id: string;
  /** The uid that created the container (the kernel's word for its connection): it alone, and root, see and act on it. */
  owner: number;
  /** Unique among its owner's containers only: two users may each have a `web`. */
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

export type ContainerState = 'created' | 'running' | 'exited' | 'paused' | 'removing' | 'dead';

/** Persisted state (state.json), rewritten atomically on every change. */
export interface ContainerStateFile {
  state: ContainerState;
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

/** config.json of a version this helper cannot read (written by a newer one). */
export class ContainerRecordVersionError extends CapsaError {
  constructor(file: string, version: unknown) {
    super('E_CONTAINER_RECORD_VERSION', `cannot read ${file}: record version ${JSON.stringify(version)} is not one this helper knows (at most ${RECORD_VERSION})`);
  }
}

/**
 * Reads config.json's text as a record. A record without a version (written
 * before records had one) is version 1; version 1 has every field of 2 but
 * `owner`, and reads as owned by root (uid 0), who made every container then.
 */
export function parseRecord(text: string, file = 'config.json'): ContainerRecord {
  const raw = JSON.parse(text) as Omit<ContainerRecord, 'version' | 'owner'> & { version?: unknown; owner?: unknown };
  if (typeof raw !== 'object' || raw === null) throw new SyntaxError(`${file} does not hold an object`);
  const version = raw.version ?? 1;
  if (version === 1) return { ...raw, version: RECORD_VERSION, owner: 0 };
  if (version !== RECORD_VERSION) throw new ContainerRecordVersionError(file, version);
  if (typeof raw.owner !== 'number' || !Number.isInteger(raw.owner) || raw.owner < 0) throw new SyntaxError(`${file}: owner ${JSON.stringify(raw.owner)} is not a uid`);
  return { ...raw, version, owner: raw.owner };
}

/** The files of each container, under one directory. */
export class ContainerStore {
  constructor(readonly dir: string) {}

  /** A container's directory. */
  pathOf(id: string): string {
    return path.join(this.dir, id);
  }

  async init(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Ids of the container directories present. */
  async ids(): Promise<string[]> {
    return (await fs.readdir(this.dir)).filter((id) => /^[0-9a-f]{64}$/.test(id));
  }

  /** Both files of a container; rejects when either is missing or unreadable. */
  async read(id: string): Promise<{ record: ContainerRecord; state: ContainerStateFile }> {
    const cdir = this.pathOf(id);
    const file = path.join(cdir, 'config.json');
    const record = parseRecord(await fs.readFile(file, 'utf8'), file);
    const state = JSON.parse(await fs.readFile(path.join(cdir, 'state.json'), 'utf8')) as ContainerStateFile;
    return { record, state };
  }

  /** config.json: durable, except for --rm, whose record need not outlive the machine (it ends with its process). */
  async writeRecord(record: ContainerRecord): Promise<void> {
    const file = path.join(this.pathOf(record.id), 'config.json');
    if (record.options.rm) await replaceFile(file, JSON.stringify(record));
    else await writeFileAtomic(file, JSON.stringify(record, null, 2));
  }

  /**
   * state.json, replaced by rename (atomic for readers and a crashed
   * helper) without fsync: it must outlive the helper, not the machine —
   * after a reboot no container runs, and exit.json and config.json say the rest.
   */
  async writeState(id: string, state: ContainerStateFile): Promise<void> {
    await replaceFile(path.join(this.pathOf(id), 'state.json'), JSON.stringify(state));
  }

  /** Removes a container's directory: out of the namespace in one step, so a crash mid-delete leaves no half container under its id (sweepRemoved). */
  async removeDir(id: string): Promise<void> {
    const doomed = path.join(this.dir, `.removing-${id}`);
    await fs.rename(this.pathOf(id), doomed).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await fs.rm(doomed, { recursive: true, force: true });
  }

  /** Finishes removals a crash interrupted (removeDir renames a container's directory before deleting it). */
  async sweepRemoved(): Promise<void> {
    for (const name of await fs.readdir(this.dir)) {
      if (name.startsWith('.removing-')) await fs.rm(path.join(this.dir, name), { recursive: true, force: true });
    }
  }
}

/** Replaces file by rename: a reader or a crashed helper sees the old or the new content; no fsync. */
async function replaceFile(file: string, data: string): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await fs.writeFile(tmp, data, { mode: 0o600 });
  await fs.rename(tmp, file).catch(async (err) => {
    await fs.rm(tmp, { force: true });
    throw err;
  });
}
