/**
 * A stopped container's root, read without mounting it: the union of its
 * upper directory over the image's layers, as overlayfs would show it
 * (the first layer that has a name decides; a 0/0 character device hides
 * it, an opaque directory hides what is below it), for copying files out
 * of a container that does not run (`docker cp` works on stopped
 * containers). Read only: copying into a container that does not run
 * writes its upper directory as overlayfs would (unionwrite.ts), with this
 * class resolving the paths.
 *
 * Paths resolve as the kernel would inside the root: `..` stops at `/`,
 * symlinks are followed by this walk (absolute ones from the container's
 * `/`, at most 40), never by the host. Each layer is opened once and every
 * lookup is beneath it with no symlink on the way (openat2), so a
 * container started meanwhile cannot steer a read out of its layers.
 */
import { closeSync, constants, openSync, promises as fs, type Stats } from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError } from '../../errors';
import { lgetxattr, llistxattr } from '../../image/libc';
import { O_PATH, openBeneath } from '../../util/openat2';
import { ContainerPathNotFoundError } from './inroot';

const MAX_LINKS = 40;

export interface UnionEntry {
  /** Index of the layer that holds it: 0 is the upper directory. */
  layer: number;
  rel: string;
  stat: Stats;
}

function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

export class UnionRoot {
  private readonly fds: number[];

  /** `layers`: the upper directory first, then the image's layers, top-most first. */
  constructor(
    layers: string[],
    readonly label: string,
  ) {
    this.fds = [];
    try {
      for (const l of layers) this.fds.push(openSync(l, O_PATH | constants.O_DIRECTORY));
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** The upper directory's descriptor (O_PATH), for unionwrite.ts to write beneath. */
  get upperFd(): number {
    return this.fds[0];
  }

  close(): void {
    for (const fd of this.fds.splice(0)) closeSync(fd);
  }

  /** lstat of `rel` in one layer, through its parent opened beneath the layer; undefined when absent. */
  private async lstatIn(layer: number, rel: string): Promise<Stats | undefined> {
    const parent = path.posix.dirname(rel);
    let dfd: number;
    try {
      dfd = openBeneath(this.fds[layer], parent === '.' ? '' : parent, O_PATH | constants.O_DIRECTORY);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return undefined;
      throw err;
    }
    try {
      return await fs.lstat(`/proc/self/fd/${dfd}/${path.posix.basename(rel)}`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw err;
    } finally {
      closeSync(dfd);
    }
  }

  /** trusted.overlay.opaque=y on directory `rel` of `layer`: read through its parent's descriptor, never following `rel` itself. */
  private opaque(layer: number, rel: string): boolean {
    if (rel === '') return false;
    const parent = path.posix.dirname(rel);
    let fd: number;
    try {
      fd = openBeneath(this.fds[layer], parent === '.' ? '' : parent, O_PATH | constants.O_DIRECTORY);
    } catch {
      return false;
    }
    try {
      return lgetxattr(`/proc/self/fd/${fd}/${path.posix.basename(rel)}`, 'trusted.overlay.opaque')?.toString() === 'y';
    } finally {
      closeSync(fd);
    }
  }

  /** Whether `layer`, lacking `rel`, hides the layers below there (a parent that is a whiteout, not a directory, or opaque). */
  private async hides(layer: number, rel: string): Promise<boolean> {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const a = parts.slice(0, i).join('/');
      const st = await this.lstatIn(layer, a);
      if (!st) continue;
      if (!st.isDirectory() || this.opaque(layer, a)) return true;
    }
    return false;
  }

  /** The union's entry at `rel` (a path of real directories, no symlink resolved in it), not following it. */
  async lookup(rel: string): Promise<UnionEntry | undefined> {
    // overlayfs shows the upper directory's root
    if (rel === '') return { layer: 0, rel, stat: await this.fstatLayer(0) };
    for (let layer = 0; layer < this.fds.length; layer++) {
      const st = await this.lstatIn(layer, rel);
      if (st) return isWhiteout(st) ? undefined : { layer, rel, stat: st };
      if (await this.hides(layer, rel)) return undefined;
    }
    return undefined;
  }

  private async fstatLayer(layer: number): Promise<Stats> {
    return fs.stat(`/proc/self/fd/${this.fds[layer]}`);
  }

  /** `p` resolved in the root, symlinks on the way followed inside it (the last one too when `followLast`). */
  async resolve(p: string, followLast: boolean): Promise<UnionEntry> {
    let todo = p.split('/').filter((c) => c !== '' && c !== '.');
    let cur: string[] = [];
    let links = 0;
    let last: UnionEntry | undefined = await this.lookup('');
    while (todo.length) {
      const c = todo.shift()!;
      if (c === '..') {
        cur.pop();
        last = await this.lookup(cur.join('/'));
        continue;
      }
      const rel = [...cur, c].join('/');
      const e = await this.lookup(rel);
      if (!e) throw new ContainerPathNotFoundError(p, this.label);
      if (e.stat.isSymbolicLink() && (todo.length > 0 || followLast)) {
        if (++links > MAX_LINKS) throw new InvalidArgumentError(`too many levels of symbolic links at ${JSON.stringify(p)} in container ${this.label}`);
        const target = await this.readlink(e);
        if (target.startsWith('/')) cur = [];
        todo = [...target.split('/').filter((x) => x !== '' && x !== '.'), ...todo];
        continue;
      }
      if (todo.length > 0 && !e.stat.isDirectory()) throw new ContainerPathNotFoundError(p, this.label);
      cur.push(c);
      last = e;
    }
    return last!;
  }

  async readlink(e: UnionEntry): Promise<string> {
    const dfd = openBeneath(this.fds[e.layer], path.posix.dirname(e.rel) === '.' ? '' : path.posix.dirname(e.rel), O_PATH | constants.O_DIRECTORY);
    try {
      return await fs.readlink(`/proc/self/fd/${dfd}/${path.posix.basename(e.rel)}`);
    } finally {
      closeSync(dfd);
    }
  }

  /** The names of directory `rel` in the union, sorted. */
  async readdir(rel: string): Promise<string[]> {
    const names = new Set<string>();
    const hidden = new Set<string>();
    for (let layer = 0; layer < this.fds.length; layer++) {
      const st = rel === '' ? await this.fstatLayer(layer) : await this.lstatIn(layer, rel);
      if (!st) {
        if (rel !== '' && (await this.hides(layer, rel))) break;
        continue;
      }
      if (!st.isDirectory()) break;
      const fd = openBeneath(this.fds[layer], rel, constants.O_RDONLY | constants.O_DIRECTORY);
      try {
        for (const name of await fs.readdir(`/proc/self/fd/${fd}`)) {
          if (names.has(name) || hidden.has(name)) continue;
          const cst = await fs.lstat(`/proc/self/fd/${fd}/${name}`).catch(() => undefined);
          if (cst && isWhiteout(cst)) hidden.add(name);
          else if (cst) names.add(name);
        }
      } finally {
        closeSync(fd);
      }
      if (this.opaque(layer, rel)) break;
    }
    return [...names].sort();
  }

  /** The extended attributes of `e`, read through its parent's descriptor, never following `e` itself. */
  xattrs(e: UnionEntry): Array<{ name: string; value: Buffer }> {
    if (e.rel === '') return [];
    const parent = path.posix.dirname(e.rel);
    const fd = openBeneath(this.fds[e.layer], parent === '.' ? '' : parent, O_PATH | constants.O_DIRECTORY);
    try {
      const at = `/proc/self/fd/${fd}/${path.posix.basename(e.rel)}`;
      return llistxattr(at).flatMap((name) => {
        const value = lgetxattr(at, name);
        return value ? [{ name, value }] : [];
      });
    } finally {
      closeSync(fd);
    }
  }

  /** A regular file of the union opened for reading (non-blocking, beneath its layer). */
  openFile(e: UnionEntry): number {
    return openBeneath(this.fds[e.layer], e.rel, constants.O_RDONLY | constants.O_NONBLOCK);
  }
}
