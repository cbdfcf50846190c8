/**
 * Bind sources, opened with the caller's rights and mounted through that
 * descriptor. The helper is root: a `-v SOURCE:…` path looked up by the
 * helper or the shim would reach any file of the machine, and a path looked
 * up twice (once to check, once to mount) can be a symlink swapped in
 * between. So each start opens every bind source the request named once,
 * O_PATH as the caller (server/util/opener.ts: the kernel checks every
 * component against the caller's uid and groups), passes those descriptors
 * to the shim, and the plan names them as `/proc/self/fd/N`: the shim mounts
 * the very object the caller's lookup found, never the path again (as runc
 * does for its mount sources).
 */
import { fstatSync } from 'node:fs';
import { InvalidArgumentError, PermissionDeniedError } from '../errors';
import { CallerOpenError, openAsCaller } from '../util/opener';
import type { Caller } from '../util/peercred';
import { closeFd } from '../util/seqpacket';
import { MS, type Plan } from './plan';

/** The shim's first descriptor after plan, status and control (3, 4, 5). */
export const FIRST_BIND_FD = 6;

/** The helper itself, for starts no client asked for as someone else (root's requests, restarts). */
export const ROOT_CALLER: Caller = { uid: 0, gid: 0, groups: [0], pid: process.pid };

/**
 * An O_PATH descriptor of `source` as `caller` reaches it (symlinks followed
 * as the caller's own lookup follows them), which the caller of this
 * function closes; or the error to report: a missing source as before
 * (E_INVALID_ARGUMENT), one the caller may not reach as E_PERMISSION_DENIED.
 */
export async function openBindSource(caller: Caller, source: string, opts: { readOnly?: boolean } = {}): Promise<number> {
  let fd: number;
  try {
    fd = await openAsCaller(caller, source, { how: 'path' });
  } catch (err) {
    if (!(err instanceof CallerOpenError) || err.step !== 'open') throw err;
    if (err.errno === 'ENOENT' || err.errno === 'ENOTDIR') throw new InvalidArgumentError(`bind source path ${source} does not exist`, { cause: err });
    if (err.errno === 'EACCES' || err.errno === 'EPERM') throw new PermissionDeniedError(`bind source path ${source}: permission denied for uid ${caller.uid}`);
    throw new InvalidArgumentError(`bind source path ${source} cannot be opened as uid ${caller.uid} (${err.errno})`, { cause: err });
  }
  // O_PATH proves only that the caller reaches the path; what the container
  // (root inside) does with it must be what the caller may do: read it (and
  // list a directory), and write it unless the bind is read-only
  const st = fstatSync(fd);
  const want = 4 | (st.isDirectory() ? 1 : 0) | (opts.readOnly ? 0 : 2);
  if (!mayAccess(st, caller, want)) {
    closeFd(fd);
    throw new PermissionDeniedError(`bind source path ${source}: permission denied for uid ${caller.uid} (${opts.readOnly ? 'read' : 'read and write'} access needed)`);
  }
  return fd;
}

/**
 * Whether the mode bits of st grant `want` (r=4, w=2, x=1) to caller, as the
 * kernel decides for the owner, the group (primary or supplementary) and
 * the others; root has every right. ACLs are not read: a file that grants
 * the caller more through one is refused (the safe side).
 */
export function mayAccess(st: { uid: number; gid: number; mode: number }, caller: Caller, want: number): boolean {
  if (caller.uid === 0) return true;
  const shift = st.uid === caller.uid ? 6 : st.gid === caller.gid || caller.groups.includes(st.gid) ? 3 : 0;
  return ((st.mode >> shift) & want) === want;
}

/** A plan whose caller-named bind sources are descriptors, and those descriptors (the shim's fds 6, 7, …, in order). */
export interface PinnedPlan {
  plan: Plan;
  fds: number[];
}

/**
 * Opens every bind source of `plan` the request named (`callerSource`) as
 * `caller` and returns a copy of the plan that mounts those descriptors;
 * the recorded plan keeps the paths, so a later start opens them again (as
 * whoever starts it then). On an error the descriptors opened so far are closed.
 */
export async function pinBindSources(plan: Plan, caller: Caller, open = openBindSource): Promise<PinnedPlan> {
  const fds: number[] = [];
  try {
    const mounts = [];
    for (const m of plan.mounts) {
      if (!m.callerSource) {
        mounts.push(m);
        continue;
      }
      fds.push(await open(caller, m.source, { readOnly: (m.flags & MS.RDONLY) !== 0 }));
      mounts.push({ ...m, source: `/proc/self/fd/${FIRST_BIND_FD + fds.length - 1}` });
    }
    if (fds.length === 0) return { plan, fds };
    return { plan: { ...plan, mounts, bindFds: fds.map((_, i) => FIRST_BIND_FD + i) }, fds };
  } catch (err) {
    closeAll(fds);
    throw err;
  }
}

/** Closes the helper's copies once the shim holds its own. */
export function closeAll(fds: number[]): void {
  for (const fd of fds) closeFd(fd);
}
