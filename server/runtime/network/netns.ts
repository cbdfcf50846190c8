/**
 * Network namespaces the helper prepares before a container starts, kept
 * alive by a bind mount of the nsfs file on `<root>/netns/<id>` (as
 * `ip netns add` does under /run/netns), so the namespace outlives the
 * container's processes until the container is removed.
 */
import { closeSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { CapsaError } from '../../errors';
import { CLONE_NEWNET, errnoName, libc, MNT_DETACH, MS_BIND, sysErrno } from './sys';
import { Netlink } from './netlink';

export class NetnsError extends CapsaError {
  constructor(step: string, file: string, errno: number) {
    super('E_NETNS', `network namespace ${file}: ${step} failed: ${errnoName(errno) ?? `errno ${errno}`}`, { fields: { step, path: file, errno } });
  }
}

/** The main thread's own namespace, so it can always step back into it. */
let hostNsFd = -1;

function hostNs(): number {
  if (hostNsFd < 0) hostNsFd = openSync('/proc/thread-self/ns/net', 'r');
  return hostNsFd;
}

/**
 * Creates a network namespace pinned on `file` and hands `inside` a netlink
 * socket of it plus an fd naming it, while the main thread is back in its
 * own namespace. Synchronous from unshare to setns, on purpose.
 */
export function createNetns<T>(file: string, inside: (nl: Netlink, nsFd: number) => T): T {
  const c = libc();
  const host = hostNs();
  writeFileSync(file, '', { mode: 0o444 });
  let nl: Netlink | undefined;
  let nsFd = -1;
  if (c.unshare(CLONE_NEWNET) !== 0) {
    const e = sysErrno();
    rmSync(file, { force: true });
    throw new NetnsError('unshare', file, e);
  }
  let failure: Error | undefined;
  try {
    if (c.mount('/proc/thread-self/ns/net', file, null, MS_BIND, null) !== 0) throw new NetnsError('bind mount', file, sysErrno());
    nsFd = openSync('/proc/thread-self/ns/net', 'r');
    nl = Netlink.open();
  } catch (err) {
    failure = err as Error;
  } finally {
    if (c.setns(host, CLONE_NEWNET) !== 0) {
      // The main thread would keep creating every socket in the container's namespace: nothing sane is left to do.
      process.stderr.write(`capsa-helper: cannot return to the host network namespace (errno ${sysErrno()}); aborting\n`);
      process.abort();
    }
  }
  try {
    if (failure) throw failure;
    return inside(nl!, nsFd);
  } catch (err) {
    removeNetns(file);
    throw err;
  } finally {
    nl?.close();
    if (nsFd >= 0) closeSync(nsFd);
  }
}

/** Unmounts and deletes a namespace file; quiet when it is already gone. */
export function removeNetns(file: string): void {
  // EINVAL: not a mount point (a helper restarted in a new mount namespace); ENOENT: gone
  libc().umount2(file, MNT_DETACH);
  rmSync(file, { force: true });
}
