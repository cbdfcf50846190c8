/**
 * `docker cp`'s container side: a tar of a path in a running container, and
 * a tar extracted into a directory of one, every path resolved in the
 * container's root (inroot.ts). The client does the host side with its own
 * rights; the helper never opens a host path a client names here.
 *
 * Ids: the tar carries them as the container sees them (a user
 * namespace's block shifted back, as commit does); extraction writes the
 * container's root (0:0 as the container sees it) unless the archive mode
 * asks for the tar's own ids, each mapped into the block.
 *
 * An entry that would climb out of the destination (`..`), a device node,
 * or a name that is a directory where a file must go is refused, and the
 * extraction stops there.
 */
import * as fsCb from 'node:fs';
import { promises as fs, constants, createReadStream, type Stats } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { InvalidArgumentError } from '../../errors';
import type { IdShift } from '../../image/layer/capture';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarEntryType } from '../../image/layer/tarwriter';
import { TarReader } from '../../image/tar';
import { ContainerPathNotFoundError, ContainerRoot, Fd, O_PATH } from './inroot';
import type { UnionEntry, UnionRoot } from './unionroot';

const fstat = promisify(fsCb.fstat) as (fd: number) => Promise<Stats>;
const fchown = promisify(fsCb.fchown);
const fchmod = promisify(fsCb.fchmod);
const futimes = promisify(fsCb.futimes);
const write = (fd: number, b: Uint8Array, off: number, len: number): Promise<number> =>
  new Promise((resolve, reject) => fsCb.write(fd, b, off, len, null, (err, n) => (err ? reject(err) : resolve(n))));

export interface PathStat {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  mode: number;
  size: number;
  linkTarget?: string;
}

const OVERFLOW = 65534;

function typeOf(st: Stats): PathStat['type'] {
  return st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other';
}

/** The id the container sees for host id `id`. */
function toContainer(id: number, start: number | undefined, size: number | undefined): number {
  if (start === undefined || size === undefined) return id;
  return id >= start && id < start + size ? id - start : OVERFLOW;
}

/** `p` in the container (its last component not followed unless `follow`): what the client needs for docker cp's path rules. */
export async function statPath(root: ContainerRoot, p: string, follow: boolean): Promise<PathStat> {
  const name = path.posix.basename(path.posix.normalize('/' + p)) || '/';
  if (follow) {
    const fd = new Fd(root.openat(p, O_PATH));
    try {
      const st = await fstat(fd.fd);
      return { name, type: typeOf(st), mode: st.mode & 0o7777, size: st.size };
    } finally {
      fd.close();
    }
  }
  const { dir, name: last } = root.parent(p);
  try {
    const st = last ? await lstatIn(dir, last, p, root) : await fstat(dir.fd);
    const out: PathStat = { name, type: typeOf(st), mode: st.mode & 0o7777, size: st.size };
    if (st.isSymbolicLink()) out.linkTarget = await fs.readlink(dir.child(last));
    return out;
  } finally {
    dir.close();
  }
}

/** lstat of `dir`'s entry `name`; a missing one is the container path `p` not found. */
async function lstatIn(dir: Fd, name: string, p: string, root: ContainerRoot): Promise<Stats> {
  try {
    return await fs.lstat(dir.child(name));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ContainerPathNotFoundError(p, root.label);
    throw err;
  }
}

/**
 * The tar of `p`: one entry named after its last component, with a
 * directory's whole tree below it (symlinks in it archived as symlinks).
 */
export async function* archivePath(root: ContainerRoot, p: string, opts: { follow: boolean; idShift?: IdShift }): AsyncGenerator<Buffer> {
  const clean = path.posix.normalize('/' + p);
  const topName = path.posix.basename(clean) || '.';
  const sh = opts.idShift;
  const header = (name: string, st: Stats, type: TarEntryType, extra: { size?: number; linkname?: string } = {}) =>
    encodeHeader({ name, type, mode: st.mode & 0o7777, uid: toContainer(st.uid, sh?.uid, sh?.size), gid: toContainer(st.gid, sh?.gid, sh?.size), size: extra.size ?? 0, mtime: Math.floor(st.mtimeMs / 1000), linkname: extra.linkname });
  async function* file(fd: number, name: string, st: Stats): AsyncGenerator<Buffer> {
    yield header(name, st, 'file', { size: st.size });
    yield* fileBody(fd, st.size);
  }
  async function* dir(d: Fd, name: string, st: Stats): AsyncGenerator<Buffer> {
    yield header(name, st, 'directory');
    for (const child of (await fs.readdir(d.path)).sort()) {
      const cname = `${name}/${child}`;
      const cst = await fs.lstat(d.child(child)).catch(() => undefined);
      if (!cst) continue;
      yield* entry(d, child, cname, cst);
    }
  }
  async function* entry(parent: Fd, child: string, name: string, st: Stats): AsyncGenerator<Buffer> {
    if (st.isSymbolicLink()) yield header(name, st, 'symlink', { linkname: await fs.readlink(parent.child(child)) });
    else if (st.isDirectory()) {
      const d = await parent.openChild(child, constants.O_RDONLY | constants.O_DIRECTORY);
      try {
        yield* dir(d, name, await fstat(d.fd));
      } finally {
        d.close();
      }
    } else if (st.isFile()) {
      // O_NONBLOCK: a FIFO swapped in since the lstat must not hold the read
      const f = await parent.openChild(child, constants.O_RDONLY | constants.O_NONBLOCK);
      try {
        const fst = await fstat(f.fd);
        if (!fst.isFile()) throw new InvalidArgumentError(`${JSON.stringify(name)} changed while it was copied`);
        yield* file(f.fd, name, fst);
      } finally {
        f.close();
      }
    } else if (st.isFIFO()) yield header(name, st, 'fifo');
    // devices and sockets of a running container: not copied out
  }
  if (opts.follow || clean === '/') {
    const fd = new Fd(root.openat(clean, constants.O_RDONLY | constants.O_NONBLOCK));
    try {
      const st = await fstat(fd.fd);
      if (st.isDirectory()) yield* dir(fd, topName, st);
      else if (st.isFile()) yield* file(fd.fd, topName, st);
      else throw new InvalidArgumentError(`cannot copy ${JSON.stringify(p)} from container ${root.label}: not a file or directory`);
    } finally {
      fd.close();
    }
  } else {
    const { dir: parent, name } = root.parent(clean);
    try {
      const st = await lstatIn(parent, name, p, root);
      yield* entry(parent, name, topName, st);
    } finally {
      parent.close();
    }
  }
  yield END_OF_ARCHIVE;
}

/** Owner, mode and times of a tar entry, as written in a container's tree. */
export interface EntryMeta {
  uid: number;
  gid: number;
  mode: number;
  mtime: Date | number;
}

/** Sets a directory's owner, mode and mtime through a descriptor (no path is followed twice). */
export async function setDirMeta(dir: Fd, name: string, m: EntryMeta): Promise<void> {
  const d = await dir.openChild(name, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fchown(d.fd, m.uid, m.gid);
    await fchmod(d.fd, m.mode & 0o7777);
    await futimes(d.fd, m.mtime, m.mtime);
  } finally {
    d.close();
  }
}

/** Creates `name` in `dir` (it must not exist) with `body`, then its owner, mode (after chown: it clears set-id bits) and mtime. */
export async function writeNewFile(dir: Fd, name: string, body: AsyncIterable<Uint8Array>, m: EntryMeta): Promise<void> {
  const f = await dir.openChild(name, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL);
  try {
    for await (const chunk of body) for (let off = 0; off < chunk.length; ) off += await write(f.fd, chunk, off, chunk.length - off);
    await fchown(f.fd, m.uid, m.gid);
    await fchmod(f.fd, m.mode & 0o7777);
    await futimes(f.fd, m.mtime, m.mtime);
  } finally {
    f.close();
  }
}

/** A tar entry's name as a relative path with no `..`; refused otherwise. */
export function safeEntryName(raw: string): string {
  const parts = raw.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.some((c) => c === '..')) throw new InvalidArgumentError(`tar entry ${JSON.stringify(raw.slice(0, 200))} refused: it names a parent directory (..)`);
  if (raw.includes('\0')) throw new InvalidArgumentError('tar entry refused: its name holds a NUL byte');
  return parts.join('/');
}

/**
 * Extracts `source` (a tar) into the directory `dest` of the container,
 * which must exist. Entries are written with the container's root as owner,
 * or with their own ids when `copyIds` (archive mode), mapped into the
 * container's block when it has one.
 */
export async function extractInto(root: ContainerRoot, dest: string, source: AsyncIterable<Uint8Array>, opts: { copyIds: boolean; idShift?: IdShift }): Promise<{ entries: number }> {
  const destFd = new Fd(root.openat(dest, O_PATH | constants.O_DIRECTORY));
  destFd.close();
  const sh = opts.idShift;
  const hostId = (id: number, start: number | undefined): number => {
    const own = opts.copyIds ? id : 0;
    if (start === undefined || !sh) return own;
    return start + (own >= 0 && own < sh.size ? own : OVERFLOW);
  };
  let entries = 0;
  for await (const e of new TarReader(source)) {
    const h = e.header;
    if (h.type === 'pax-global-header') continue;
    const rel = safeEntryName(h.name);
    entries++;
    const full = path.posix.join(dest, rel);
    const uid = hostId(h.uid, sh?.uid);
    const gid = hostId(h.gid, sh?.gid);
    const mtime = h.mtime;
    if (rel === '') {
      if (h.type !== 'directory') throw new InvalidArgumentError('tar entry refused: the destination itself must be a directory');
      continue;
    }
    const { dir, name } = root.parent(full);
    try {
      const target = dir.child(name);
      const existing = await fs.lstat(target).catch(() => undefined);
      if (h.type === 'directory') {
        if (existing && !existing.isDirectory()) await fs.unlink(target);
        if (!existing?.isDirectory()) await fs.mkdir(target, 0o700);
        await setDirMeta(dir, name, { uid, gid, mode: h.mode, mtime });
        continue;
      }
      if (existing?.isDirectory()) throw new InvalidArgumentError(`cannot overwrite directory ${JSON.stringify(full)} with a non-directory`);
      if (existing) await fs.unlink(target);
      if (h.type === 'file' || h.type === 'contiguous-file') {
        await writeNewFile(dir, name, e.body(), { uid, gid, mode: h.mode, mtime });
      } else if (h.type === 'symlink') {
        await fs.symlink(h.linkname ?? '', target);
        await fs.lchown(target, uid, gid);
      } else if (h.type === 'link') {
        const from = root.parent(path.posix.join(dest, safeEntryName(h.linkname ?? '')));
        try {
          await fs.link(from.dir.child(from.name), target);
        } finally {
          from.dir.close();
        }
      } else {
        throw new InvalidArgumentError(`tar entry ${JSON.stringify(rel)} refused: ${h.type} entries are not copied into containers`);
      }
    } finally {
      dir.close();
    }
  }
  return { entries };
}

/** statPath for a stopped container's union (unionroot.ts). */
export async function statUnion(u: UnionRoot, p: string, follow: boolean): Promise<PathStat> {
  const e = await u.resolve(p, follow);
  const name = path.posix.basename(path.posix.normalize('/' + p)) || '/';
  const out: PathStat = { name, type: typeOf(e.stat), mode: e.stat.mode & 0o7777, size: e.stat.size };
  if (e.stat.isSymbolicLink()) out.linkTarget = await u.readlink(e);
  return out;
}

/**
 * archivePath for a stopped container: the same tar, read from the union of
 * its upper directory (ids shifted back from its block) over the image's
 * layers (ids as the image has them).
 */
export async function* archiveUnion(u: UnionRoot, p: string, opts: { follow: boolean; idShift?: IdShift }): AsyncGenerator<Buffer> {
  const clean = path.posix.normalize('/' + p);
  const topName = path.posix.basename(clean) || '.';
  const sh = opts.idShift;
  const header = (name: string, e: UnionEntry, type: TarEntryType, extra: { size?: number; linkname?: string } = {}) => {
    const shifted = e.layer === 0 ? sh : undefined;
    return encodeHeader({ name, type, mode: e.stat.mode & 0o7777, uid: toContainer(e.stat.uid, shifted?.uid, shifted?.size), gid: toContainer(e.stat.gid, shifted?.gid, shifted?.size), size: extra.size ?? 0, mtime: Math.floor(e.stat.mtimeMs / 1000), linkname: extra.linkname });
  };
  async function* entry(e: UnionEntry, name: string): AsyncGenerator<Buffer> {
    if (e.stat.isSymbolicLink()) yield header(name, e, 'symlink', { linkname: await u.readlink(e) });
    else if (e.stat.isDirectory()) {
      yield header(name, e, 'directory');
      for (const child of await u.readdir(e.rel)) {
        const c = await u.lookup(e.rel ? `${e.rel}/${child}` : child);
        if (c) yield* entry(c, `${name}/${child}`);
      }
    } else if (e.stat.isFile()) {
      const fd = u.openFile(e);
      try {
        const st = await fstat(fd);
        if (!st.isFile()) throw new InvalidArgumentError(`${JSON.stringify(name)} changed while it was copied`);
        yield header(name, e, 'file', { size: st.size });
        yield* fileBody(fd, st.size);
      } finally {
        fsCb.closeSync(fd);
      }
    } else if (e.stat.isFIFO()) yield header(name, e, 'fifo');
  }
  yield* entry(await u.resolve(clean, opts.follow || clean === '/'), topName);
  yield END_OF_ARCHIVE;
}

/**
 * A file's `size` bytes as a tar entry's body, read from `fd`, then the
 * padding to the block: a file that shrank while it was read is filled with
 * zeros, so the entry keeps the size its header announced.
 */
async function* fileBody(fd: number, size: number): AsyncGenerator<Buffer> {
  let sent = 0;
  if (size > 0) {
    for await (const chunk of createReadStream('', { fd, autoClose: false, start: 0, end: size - 1, highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>) {
      sent += chunk.length;
      yield chunk;
    }
  }
  if (sent < size) yield Buffer.alloc(size - sent);
  yield padding(size);
}
