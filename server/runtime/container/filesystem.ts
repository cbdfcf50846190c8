/**
 * A container's file system as commit, diff and cp see it from the host:
 * its overlay's upper directory (what it changed), the image's unpacked
 * layers below it (top-most first, the plan's lowerdirs, before any idmap),
 * the id shift of its user namespace, and a way to hold its processes still
 * while the upper directory is read.
 *
 * The upper directory is a plain directory of the host
 * (`<root>/containers/<id>/upper`), written by overlayfs in the container's
 * own mount namespace: reading it needs no mount. In a user namespace
 * (every non-root owner's container, and `--userns auto`) the lower layers
 * are idmapped at mount time and stay as the image has them, while the
 * upper directory holds the kernel's ids: the container's id N is host id
 * start+N of its block (userns.ts).
 */
import * as path from 'node:path';
import { ConflictError } from '../../errors';
import type { CgroupManager } from '../cgroups';
import { ContainerRoot } from './inroot';
import { UnionRoot } from './unionroot';
import { sameProcess } from './proc';
import { planLayerDirs } from '../userns';
import type { Entry } from './entry';
import type { RunOptions } from './options';

export interface ContainerFilesystem {
  id: string;
  name: string;
  owner: number;
  imageId: string;
  /** The run options the container was created with (its Cmd, Env, … for a commit). */
  options: RunOptions;
  running: boolean;
  upper: string;
  /** The image's layer directories, top-most first. */
  lowers: string[];
  /**
   * Where the runtime mounts over the root filesystem (relative, no leading
   * slash): the plan's mounts and the run's binds. An empty file or
   * directory overlayfs got there is the mount point, not a change.
   */
  mountPoints: string[];
  /** Host id = start + container id, for each of uid and gid; absent without a user namespace. */
  idShift?: { uid: number; gid: number; size: number };
  /**
   * Freezes the container's processes (its cgroup's freezer) if it runs;
   * resolves to the thaw. A container that does not run, or a host without
   * a freezer, gets a thaw that does nothing.
   */
  pause(): Promise<() => Promise<void>>;
}

export function containerFilesystem(e: Entry, dir: string, cgroups: CgroupManager): ContainerFilesystem {
  const { record } = e;
  const running = !!e.live && e.state.state === 'running';
  const userns = record.plan.userns;
  return {
    id: record.id,
    name: record.name,
    owner: record.owner,
    imageId: record.imageId,
    options: record.options,
    running,
    upper: path.join(dir, 'upper'),
    lowers: planLayerDirs(record.plan),
    mountPoints: [...new Set([...record.plan.mounts.map((m) => m.target), ...(record.binds ?? []).map((b) => b.target)])]
      .map((t) => path.posix.normalize(t).replace(/^\/+|\/+$/g, ''))
      .filter((t) => t !== '' && t !== '.'),
    ...(userns ? { idShift: { uid: userns.uid, gid: userns.gid, size: userns.size } } : {}),
    async pause() {
      if (!running) return async () => undefined;
      const frozen = await cgroups.freeze(dir, true);
      return frozen ? async () => void (await cgroups.freeze(dir, false)) : async () => undefined;
    },
  };
}

/** Whether the container runs, with its first process still the one recorded (its `/proc/<pid>/root` is the container's). */
export function runsNow(e: Entry): boolean {
  const { state } = e;
  return !!e.live && state.state === 'running' && !!state.pid && sameProcess(state.pid, state.pidStartTime);
}

/**
 * Throws unless the container's upper directory may be written from the
 * host (unionwrite.ts): it is created or exited, with no process and no
 * start under way, so no overlay is mounted over it.
 */
export function assertStoppedForWrite(e: Entry): void {
  const { name } = e.record;
  // a create still under way has no plan (no layers) yet
  if (!e.record.plan) throw new ConflictError(`cannot copy into container ${name} now: it is being created`);
  if (e.live || e.startsPending || e.state.state === 'running') {
    throw new ConflictError(`cannot copy into container ${name} now: it is starting or stopping (copy again once it runs or once it stopped)`);
  }
  if (e.state.state !== 'created' && e.state.state !== 'exited') throw new ConflictError(`cannot copy into container ${name}: it is ${e.state.state}`);
}

/** The root of a running container, resolved through its first process (`/proc/<pid>/root`). */
export function openContainerRoot(e: Entry): ContainerRoot {
  const { record, state } = e;
  if (!runsNow(e) || !state.pid) {
    // callers come here once runsNow held: the container ended in between
    throw new ConflictError(`container ${record.name} stopped as the copy began: copy again`);
  }
  return ContainerRoot.open(state.pid, record.name);
}

/**
 * A stopped container's root read from its layers (unionroot.ts): its
 * upper directory over the image's, copied from as it is and into by
 * writing the upper directory (unionwrite.ts).
 */
export function openUnionRoot(e: Entry, dir: string): UnionRoot {
  return new UnionRoot([path.join(dir, 'upper'), ...planLayerDirs(e.record.plan)], e.record.name);
}
