/**
 * Paths inside a running container's root, resolved by the kernel in that
 * root: `openat2(2)` with RESOLVE_IN_ROOT on a descriptor of
 * `/proc/<pid>/root`, so `..` stops at the container's `/` and a symlink
 * (`/x -> /etc/shadow`, `../../..`) means the container's file, never the
 * host's; RESOLVE_NO_MAGICLINKS keeps the container's `/proc/self/...`
 * links from reaching out. What is then done to the last component goes
 * through the parent directory's descriptor (`/proc/self/fd/N/NAME`: the
 * opened directory itself, not a path looked up again), never following
 * that component.
 *
 * The root is the container's mount namespace's view: its overlay, its
 * volumes and binds, with the ids the kernel stores (a user namespace's
 * block, see filesystem.ts).
 */
import { close as closeCb, closeSync, constants, open as openCb, openSync } from 'node:fs';
import { promisify } from 'node:util';
import * as path from 'node:path';
import { NotFoundError } from '../../errors';
import { O_CLOEXEC, O_PATH, openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS } from '../../util/openat2';

/** A path in a container that is not there. */
export class ContainerPathNotFoundError extends NotFoundError {
  constructor(p: string, container: string) {
    super('E_CONTAINER_PATH_NOT_FOUND', `no such file or directory in container ${container}: ${JSON.stringify(p)}`);
  }
}

/** A container's `/`, held open: every lookup starts from it. */
export class ContainerRoot {
  private constructor(
    readonly fd: number,
    readonly label: string,
  ) {}

  /** The root of process `pid` (the container's first process; the caller checked it is the container's). */
  static open(pid: number, label: string): ContainerRoot {
    return new ContainerRoot(openSync(`/proc/${pid}/root`, O_PATH | constants.O_DIRECTORY | O_CLOEXEC), label);
  }

  close(): void {
    closeSync(this.fd);
  }

  /** openat2 of `p` (absolute or relative: both from the container's `/`) in the root; the descriptor is the caller's to close. */
  openat(p: string, flags: number, mode = 0): number {
    const rel = p.replace(/^\/+/, '') || '.';
    try {
      return openat2(this.fd, rel, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, mode);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new ContainerPathNotFoundError(p, this.label);
      throw err;
    }
  }

  /**
   * The parent directory of `p` (resolved in the root, symlinks in it
   * followed inside the root) and `p`'s last component, which is never
   * followed: `{ dir, name }` where `name` is '' for the root itself.
   */
  parent(p: string): { dir: Fd; name: string } {
    const clean = path.posix.normalize('/' + p);
    if (clean === '/') return { dir: new Fd(this.openat('/', O_PATH | constants.O_DIRECTORY)), name: '' };
    const name = path.posix.basename(clean);
    return { dir: new Fd(this.openat(path.posix.dirname(clean), O_PATH | constants.O_DIRECTORY)), name };
  }
}

/** An open descriptor and the `/proc/self/fd` paths that reach it and its entries without a lookup of any other path. */
export class Fd {
  constructor(readonly fd: number) {}
  get path(): string {
    return `/proc/self/fd/${this.fd}`;
  }
  /** The entry `name` (one component) of this directory. */
  child(name: string): string {
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) throw new Error(`not a file name: ${JSON.stringify(name)}`);
    return `${this.path}/${name}`;
  }
  /** A directory entry of this one, opened without following a symlink (O_PATH when `flags` is omitted). */
  async openChild(name: string, flags = O_PATH): Promise<Fd> {
    return new Fd(await openAsync(this.child(name), flags | constants.O_NOFOLLOW | O_CLOEXEC));
  }
  close(): void {
    closeCb(this.fd, () => undefined);
  }
}

const openAsync = promisify(openCb) as (p: string, flags: number, mode?: number) => Promise<number>;

export { O_PATH };
