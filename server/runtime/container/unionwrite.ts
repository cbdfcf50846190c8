/**
 * Copying into a container that does not run (created, or exited), as
 * `docker cp` and the Engine API's PUT /containers/{id}/archive allow: the
 * tar is written straight into the container's upper directory, in the
 * form overlayfs itself writes there, so that the next start (and commit,
 * diff, cp out) sees the union the copy made. No mount is made: overlayfs
 * allows changes to an upper directory while it is not mounted, and the
 * caller holds the container still (Lifecycle.whileStopped).
 *
 * What overlayfs would have done, done by hand:
 * - paths resolve in the union (unionroot.ts), symlinks followed inside the
 *   container's root, never the host's; every write is then beneath the
 *   upper directory with no symlink on the way (openat2);
 * - a directory that only the image's layers have is copied up (made in
 *   the upper directory with its mode, owner and times) before anything is
 *   written in it; a file a hard link names is copied up the same way;
 * - a name the container deleted (a 0/0 character device, the whiteout) is
 *   replaced; a directory made where the union had a deleted or
 *   non-directory entry is marked opaque (trusted.overlay.opaque=y), so
 *   nothing of the image's shows through it;
 * - ids: the upper directory holds the kernel's ids. In a user namespace
 *   the container's id N is host id start+N of its block: the tar's
 *   entries (0:0, or their own ids in archive mode) are written shifted
 *   into the block, and so are a copied-up directory's ids, which the
 *   image's layers hold unshifted (the runtime idmaps them at mount time).
 *
 * The entries refused are those extractInto (archive.ts) refuses for a
 * running container: `..` names, devices and fifos, a non-directory over a
 * directory; and, as the container is not running, anything beneath one of
 * its mount points (its volumes and binds, /dev, /proc, the /etc files the
 * runtime provides): what is there while it runs is not its root file
 * system, and a file written below would be hidden by the mount.
 */
import * as fsCb from 'node:fs';
import { promises as fs, constants, type Stats } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { InvalidArgumentError } from '../../errors';
import type { IdShift } from '../../image/layer/capture';
import { lsetxattr } from '../../image/libc';
import { TarReader } from '../../image/tar';
import { OVERLAY_OPAQUE_XATTR } from '../../image/whiteout';
import { O_PATH, openBeneath } from '../../util/openat2';
import { safeEntryName, setDirMeta, writeNewFile } from './archive';
import { ContainerPathNotFoundError, Fd } from './inroot';
import type { UnionEntry, UnionRoot } from './unionroot';

const fstat = promisify(fsCb.fstat) as (fd: number) => Promise<Stats>;
const fchown = promisify(fsCb.fchown);
const fchmod = promisify(fsCb.fchmod);
const futimes = promisify(fsCb.futimes);
const write = (fd: number, b: Uint8Array, off: number, len: number): Promise<number> =>
  new Promise((resolve, reject) => fsCb.write(fd, b, off, len, null, (err, n) => (err ? reject(err) : resolve(n))));

const OVERFLOW = 65534;

function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

/** Host id for the container's id `id`: itself without a user namespace, else its place in the block (overflow outside it). */
function inBlock(id: number, start: number | undefined, sh: IdShift | undefined): number {
  if (start === undefined || !sh) return id;
  return start + (id >= 0 && id < sh.size ? id : OVERFLOW);
}

/** The upper directory of a stopped container, written as overlayfs would. */
class UpperWriter {
  constructor(
    private readonly u: UnionRoot,
    private readonly sh: IdShift | undefined,
  ) {}

  /** Directory `rel` of the upper directory (a path of real directories), opened beneath it with no symlink on the way. */
  openDir(rel: string): Fd {
    return new Fd(openBeneath(this.u.upperFd, rel, O_PATH | constants.O_DIRECTORY));
  }

  /** lstat of `dir`'s entry `name` in the upper directory; undefined when absent. */
  async lstat(dir: Fd, name: string): Promise<Stats | undefined> {
    return fs.lstat(dir.child(name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
  }

  /**
   * Owner, mode, extended attributes and times of the copy `fd` (named
   * `at`, through its parent) of the lower layer's entry `e`, as overlayfs's
   * copy-up gives them: ids shifted into the block, overlayfs's own
   * attributes left out. In a user namespace a file capability is left out
   * too: its meaning depends on the namespace, and the kernel's copy-up
   * through an idmapped layer rewrites it, which this does not attempt.
   */
  async copyMeta(fd: number, at: string, e: UnionEntry): Promise<void> {
    await fchown(fd, inBlock(e.stat.uid, this.sh?.uid, this.sh), inBlock(e.stat.gid, this.sh?.gid, this.sh));
    await fchmod(fd, e.stat.mode & 0o7777);
    // after the chown, which drops a file capability
    for (const x of this.u.xattrs(e)) {
      if (x.name.startsWith('trusted.overlay.') || (this.sh && x.name === 'security.capability')) continue;
      lsetxattr(at, x.name, x.value);
    }
    await futimes(fd, e.stat.atime, e.stat.mtime);
  }

  /**
   * Makes sure every directory of `rel` (a union path of real directories,
   * as UnionRoot.resolve gives) is in the upper directory: those only the
   * image's layers have are copied up, top-down, not opaque (their lower
   * content stays visible), as overlayfs copies up a file's parents.
   */
  async copyUpDirs(rel: string): Promise<void> {
    const parts = rel === '' ? [] : rel.split('/');
    for (let i = 0; i < parts.length; i++) {
      const parentRel = parts.slice(0, i).join('/');
      const dir = this.openDir(parentRel);
      try {
        const up = await this.lstat(dir, parts[i]);
        if (up?.isDirectory()) continue;
        const prefix = parts.slice(0, i + 1).join('/');
        const e = await this.u.lookup(prefix);
        // the union showed a directory there a moment ago: the upper directory changed under the copy
        if (up || !e || !e.stat.isDirectory() || e.layer === 0) throw new InvalidArgumentError(`/${prefix} in container ${this.u.label} changed while files were copied into it`);
        await fs.mkdir(dir.child(parts[i]), 0o700);
        const d = await dir.openChild(parts[i], constants.O_RDONLY | constants.O_DIRECTORY);
        try {
          await this.copyMeta(d.fd, dir.child(parts[i]), e);
        } finally {
          d.close();
        }
      } finally {
        dir.close();
      }
    }
  }

  /** A non-directory of a lower layer copied up into `dir` (its parent, in the upper directory already) as `name`. */
  async copyUpFile(e: UnionEntry, dir: Fd, name: string): Promise<void> {
    if (e.stat.isSymbolicLink()) {
      const target = dir.child(name);
      await fs.symlink(await this.u.readlink(e), target);
      await fs.lchown(target, inBlock(e.stat.uid, this.sh?.uid, this.sh), inBlock(e.stat.gid, this.sh?.gid, this.sh));
      return;
    }
    if (!e.stat.isFile()) throw new InvalidArgumentError(`cannot link to /${e.rel} in container ${this.u.label}: not a regular file`);
    const src = this.u.openFile(e);
    try {
      const st = await fstat(src);
      if (!st.isFile()) throw new InvalidArgumentError(`/${e.rel} in container ${this.u.label} changed while it was copied`);
      const f = await dir.openChild(name, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL);
      try {
        const buf = Buffer.alloc(256 * 1024);
        for (let pos = 0; ; ) {
          const n = fsCb.readSync(src, buf, 0, buf.length, pos);
          if (n === 0) break;
          for (let off = 0; off < n; ) off += await write(f.fd, buf, off, n - off);
          pos += n;
        }
        await this.copyMeta(f.fd, dir.child(name), e);
      } finally {
        f.close();
      }
    } finally {
      fsCb.closeSync(src);
    }
  }

  /** The union path of the directory at container path `p`, symlinks followed inside the root. */
  async resolveDir(p: string): Promise<string> {
    const e = await this.u.resolve(p, true);
    if (!e.stat.isDirectory()) throw new ContainerPathNotFoundError(p, this.u.label);
    return e.rel;
  }

  /** Union directory `rel` copied up, opened in the upper directory. */
  async prepare(rel: string): Promise<Fd> {
    await this.copyUpDirs(rel);
    return this.openDir(rel);
  }
}

/**
 * extractInto (archive.ts) for a container that does not run: the tar
 * `source` is written into the directory `dest` of the union (which must
 * exist), in the upper directory `u` has as its first layer.
 */
export async function extractIntoUnion(
  u: UnionRoot,
  dest: string,
  source: AsyncIterable<Uint8Array>,
  opts: { copyIds: boolean; idShift?: IdShift; mountPoints?: readonly string[] },
): Promise<{ entries: number }> {
  const sh = opts.idShift;
  const w = new UpperWriter(u, sh);
  const mounts = opts.mountPoints ?? [];
  // `rel` (a union path) at a mount point (`at`: allowed only for the directory the mount covers) or beneath one
  const refuseMounted = (rel: string, at: boolean, shown: string): void => {
    const m = mounts.find((x) => rel.startsWith(x + '/') || (!at && rel === x));
    if (m !== undefined) throw new InvalidArgumentError(`cannot copy into ${JSON.stringify(shown)} of container ${u.label} while it is not running: /${m} is one of its mount points (copy while it runs)`);
  };
  const destE = await u.resolve(dest, true);
  if (!destE.stat.isDirectory()) throw new ContainerPathNotFoundError(dest, u.label);
  refuseMounted(destE.rel, false, dest);
  let entries = 0;
  for await (const e of new TarReader(source)) {
    const h = e.header;
    if (h.type === 'pax-global-header') continue;
    const rel = safeEntryName(h.name);
    entries++;
    if (rel === '') {
      if (h.type !== 'directory') throw new InvalidArgumentError('tar entry refused: the destination itself must be a directory');
      continue;
    }
    const full = path.posix.join('/', dest, rel);
    const uid = inBlock(opts.copyIds ? h.uid : 0, sh?.uid, sh);
    const gid = inBlock(opts.copyIds ? h.gid : 0, sh?.gid, sh);
    const mtime = h.mtime;
    const name = path.posix.basename(full);
    // the parent as the container sees it: symlinks (the tar's own too) followed inside its root
    const parentRel = await w.resolveDir(path.posix.dirname(full));
    const crel = parentRel === '' ? name : `${parentRel}/${name}`;
    refuseMounted(crel, h.type === 'directory', full);
    const dir = await w.prepare(parentRel);
    try {
      const seen = await u.lookup(crel);
      const up = await w.lstat(dir, name);
      const target = dir.child(name);
      if (h.type === 'directory') {
        if (!seen?.stat.isDirectory()) {
          // a deleted name, or a file of the image's, made a directory: nothing below it may show through
          const opaque = (!!up && isWhiteout(up)) || (!!seen && seen.layer > 0);
          if (up) await fs.unlink(target);
          await fs.mkdir(target, 0o700);
          if (opaque) lsetxattr(target, OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
        } else if (seen.layer > 0) await fs.mkdir(target, 0o700); // copied up: the image's content of it stays
        await setDirMeta(dir, name, { uid, gid, mode: h.mode, mtime });
        continue;
      }
      if (seen?.stat.isDirectory()) throw new InvalidArgumentError(`cannot overwrite directory ${JSON.stringify(full)} with a non-directory`);
      if (h.type !== 'file' && h.type !== 'contiguous-file' && h.type !== 'symlink' && h.type !== 'link') {
        throw new InvalidArgumentError(`tar entry ${JSON.stringify(rel)} refused: ${h.type} entries are not copied into containers`);
      }
      // a file of the upper directory, or its whiteout: the new entry takes its place (one of a lower layer is hidden by it)
      if (up) await fs.unlink(target);
      if (h.type === 'file' || h.type === 'contiguous-file') {
        await writeNewFile(dir, name, e.body(), { uid, gid, mode: h.mode, mtime });
      } else if (h.type === 'symlink') {
        await fs.symlink(h.linkname ?? '', target);
        await fs.lchown(target, uid, gid);
      } else {
        const linked = path.posix.join('/', dest, safeEntryName(h.linkname ?? ''));
        const fromRel = await w.resolveDir(path.posix.dirname(linked));
        const fromName = path.posix.basename(linked);
        const fe = await u.lookup(fromRel === '' ? fromName : `${fromRel}/${fromName}`);
        if (!fe) throw new ContainerPathNotFoundError(linked, u.label);
        if (fe.stat.isDirectory()) throw new InvalidArgumentError(`tar entry ${JSON.stringify(rel)} refused: a hard link to a directory`);
        const from = await w.prepare(fromRel);
        try {
          // overlayfs copies a lower file up before linking it
          if (fe.layer > 0) await w.copyUpFile(fe, from, fromName);
          await fs.link(from.child(fromName), target);
        } finally {
          from.close();
        }
      }
    } finally {
      dir.close();
    }
  }
  return { entries };
}
