/**
 * Applies a layer's tar entries to a directory, in archive order.
 *
 * Safety follows umoci's oci/layer/tar_extract.go: every entry name is
 * cleaned lexically; absolute names and names escaping with `..` are refused;
 * the parent of each entry is resolved inside the layer directory without
 * following any symlink (each component is lstat'ed, and must be a real
 * directory); the final component is never followed but replaced; hard-link
 * targets are scoped the same way. The layer directory is private to this
 * unpack (a fresh temporary directory in a 0700 tree), so nothing races these
 * checks.
 */
import { constants as fsc, promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { InvalidLayerError, UnsafeLayerError } from './errors';
import { lsetxattr, mknod, S_IFBLK, S_IFCHR, S_IFIFO } from './libc';
import { classifyWhiteout, OVERLAY_OPAQUE_XATTR } from './whiteout';
import type { SmallFile } from './filewriter';
import { WriteQueue } from './writequeue';
import type { TarEntry, TarHeader } from './tar';

/**
 * Cleans a tar entry name lexically into a path relative to the layer root
 * ('' for the root itself). Refuses absolute names, names that escape with
 * `..`, and NUL bytes.
 */
export function cleanEntryName(name: string): string {
  if (name.includes('\0')) throw new UnsafeLayerError(`entry ${JSON.stringify(name)}: name contains a NUL byte`, name);
  if (name.startsWith('/')) throw new UnsafeLayerError(`entry ${JSON.stringify(name)}: absolute path`, name);
  const cleaned = path.posix.normalize(name).replace(/\/+$/, '');
  if (cleaned === '..' || cleaned.startsWith('../')) {
    throw new UnsafeLayerError(`entry ${JSON.stringify(name)}: path escapes the layer`, name);
  }
  return cleaned === '.' || cleaned === '' ? '' : cleaned;
}

interface DeferredDir {
  abs: string;
  atime: Date;
  mtime: Date;
}

const EMPTY = Buffer.alloc(0);
/** Names a large file open in the file writer, which serves every unpack in the process at once. */
let nextOpenFileId = 0;

/** The ids new files get from open(2) (the helper's effective ids). */
const OWN_IDS = { uid: process.geteuid?.() ?? -1, gid: process.getegid?.() ?? -1 };
/** The process umask, read without changing it (process.umask() sets it to read it); undefined if unknown. */
function currentUmask(): number | undefined {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? parseInt(m[1], 8) : undefined;
  } catch {
    return undefined;
  }
}

/** Regular files up to this size are written in the background, several at once. */
const SMALL_FILE = 256 * 1024;
/**
 * Applies tar entries to a layer directory in archive order. Every entry
 * costs a few syscalls, so directories, symlinks, directory attributes and
 * times, and small regular files are handed in batches to the file writer's
 * thread (filewriter.ts), which runs them in the order queued, up to
 * a bounded number at once (writequeue.ts), while the archive moves on. The rare rest (large
 * files, hard links, devices, fifos, whiteouts, xattrs) is done here once
 * the directory it goes into is made. Any later entry that touches a path
 * with an operation in flight (replacing it, hard-linking to it, whiting it
 * out, resolving through it) waits for that operation first, so the result
 * is the same as applying entries one by one.
 */
export class Applier {
  /** Directories (relative) known to be real directories, not symlinks. */
  private readonly dirs = new Set<string>(['']);
  /** Every path this unpack created: the layer directory starts empty, so nothing else can exist. */
  private readonly created = new Set<string>(['']);
  private readonly writes = new WriteQueue();
  private readonly deferred = new Map<string, DeferredDir>();
  /** Directories (relative) whose setgid bit is set: files created in them take their group. */
  private readonly setgidDirs = new Set<string>();
  /** Read once per layer: it is the process's, and the helper sets it only briefly at start. */
  private readonly umask = currentUmask();
  fileBytes = 0;
  entries = 0;

  constructor(
    private readonly root: string,
    private readonly label: string,
    private readonly maxEntry: number,
    /** Whether `.wh.` names are whiteouts (a layer) or plain names (an archive extracted by ADD, as BuildKit extracts it). */
    private readonly whiteouts = true,
  ) {}

  private unsafe(entry: string, why: string): UnsafeLayerError {
    return new UnsafeLayerError(`${this.label}: entry ${JSON.stringify(entry)}: ${why}`, entry);
  }

  async apply(entry: TarEntry): Promise<void> {
    if (this.writes.error) throw this.writes.error;
    const h = entry.header;
    this.entries++;
    // What the handler does not read of the body, the reader skips.
    await this.applyHeader(h, entry);
  }

  private async applyHeader(h: TarHeader, entry: TarEntry): Promise<void> {
    const size = h.size;
    if (!Number.isSafeInteger(size) || size < 0 || size > this.maxEntry) {
      throw this.unsafe(h.name, `absurd size ${String(h.size)} in its header`);
    }
    const name = cleanEntryName(h.name);
    const wh = this.whiteouts ? classifyWhiteout(name) : undefined;
    if (wh) {
      if (wh.kind === 'meta') return;
      const dir = await this.resolveDir(h.name, wh.dir, true);
      // made here, not by the writer: it must exist first
      await this.writes.settled(wh.dir);
      if (wh.kind === 'opaque') {
        lsetxattr(dir, OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
        return;
      }
      const target = path.join(dir, wh.name);
      await this.clear(joinRel(wh.dir, wh.name), target);
      mknod(target, S_IFCHR, 0);
      this.created.add(joinRel(wh.dir, wh.name));
      return;
    }
    if (name === '') {
      if (h.type !== 'directory') throw this.unsafe(h.name, 'the layer root must be a directory');
      this.deferDir('', this.root, h);
      await this.setDirOwnerMode('', this.root, h);
      return;
    }
    const slash = name.lastIndexOf('/');
    const parentRel = slash < 0 ? '' : name.slice(0, slash);
    const parent = await this.resolveDir(h.name, parentRel, true);
    const target = path.join(parent, name.slice(slash + 1));
    const type = h.type === 'contiguous-file' ? 'file' : h.type;

    switch (type) {
      case 'directory': {
        if (!this.dirs.has(name)) {
          await this.writes.settled(name);
          const existing = this.created.has(name) ? await lstatOrUndefined(target) : undefined;
          if (existing && !existing.isDirectory()) await this.clear(name, target);
          if (!existing || !existing.isDirectory()) await this.writes.enqueue(name, { kind: 'mkdir', path: target, createMode: 0o700 });
        }
        this.dirs.add(name);
        this.created.add(name);
        await this.setDirOwnerMode(name, target, h);
        this.deferDir(name, target, h);
        return;
      }
      case 'file': {
        await this.clear(name, target);
        if (size <= SMALL_FILE) {
          const chunks: Buffer[] = [];
          let got = 0;
          for await (const chunk of entry.body()) {
            chunks.push(chunk as Buffer);
            got += (chunk as Buffer).length;
          }
          if (got !== size) throw new InvalidLayerError(`${this.label}: truncated tar archive in entry ${JSON.stringify(h.name)}`);
          this.checkOwner(h);
          this.created.add(name);
          this.fileBytes += size;
          const inheritsGroup = this.setgidDirs.has(parentRel);
          const data = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
          if (hasXattrs(h)) {
            await this.writes.settled(parentRel);
            await this.writes.background(name, () => this.writeSmallFile(target, data, h, inheritsGroup));
          } else await this.writes.enqueue(name, this.smallFile(target, data, h, inheritsGroup));
          return;
        }
        // Larger files stream through the writer too, piece by piece, so that
        // one thread does all of the layer's file system work: threads
        // creating inodes side by side contend in ext4's allocator.
        const id = nextOpenFileId++;
        const attrs = this.smallFile(target, EMPTY, h, this.setgidDirs.has(parentRel));
        await this.writes.enqueue(name, { kind: 'open', id, path: target, mode: attrs.mode });
        let written = 0;
        let closed = false;
        try {
          for await (const chunk of entry.body()) {
            written += (chunk as Buffer).length;
            await this.writes.enqueue(name, { kind: 'append', id, data: chunk as Buffer });
          }
          if (written !== size) throw new InvalidLayerError(`${this.label}: truncated tar archive in entry ${JSON.stringify(h.name)}`);
          await this.writes.enqueue(name, { kind: 'close', id, owner: attrs.owner, chmod: attrs.chmod, mode: attrs.mode, atime: attrs.atime, mtime: attrs.mtime });
          closed = true;
        } finally {
          if (!closed) await this.writes.enqueue(name, { kind: 'close', id, discard: true });
        }
        this.created.add(name);
        this.fileBytes += size;
        if (hasXattrs(h)) {
          await this.writes.settled(name);
          this.setXattrs(target, h);
        }
        return;
      }
      case 'symlink': {
        await this.clear(name, target);
        if (!h.linkname) throw this.unsafe(h.name, 'symlink without a target');
        const { uid, gid } = this.checkOwner(h);
        const { atime, mtime } = times(h);
        const chown = this.setgidDirs.has(parentRel) || uid !== OWN_IDS.uid || gid !== OWN_IDS.gid;
        // The target is stored as is: it is resolved inside the container's root at run time.
        await this.writes.enqueue(name, {
          kind: 'symlink',
          path: target,
          target: h.linkname,
          owner: chown ? { uid, gid } : undefined,
          atime: atime.getTime() / 1000,
          mtime: mtime.getTime() / 1000,
        });
        this.created.add(name);
        if (hasXattrs(h)) {
          await this.writes.settled(name);
          this.setXattrs(target, h);
        }
        return;
      }
      case 'link': {
        if (!h.linkname) throw this.unsafe(h.name, 'hard link without a target');
        let linkRel: string;
        try {
          linkRel = cleanEntryName(h.linkname);
        } catch {
          throw this.unsafe(h.name, `hard link target ${JSON.stringify(h.linkname)} is outside the layer`);
        }
        if (linkRel === '') throw this.unsafe(h.name, 'hard link to the layer root');
        const ls = linkRel.lastIndexOf('/');
        const linkParent = await this.resolveDir(h.name, ls < 0 ? '' : linkRel.slice(0, ls), false, h.linkname);
        const linkAbs = path.join(linkParent, linkRel.slice(ls + 1));
        await this.writes.settled(linkRel);
        const st = await lstatOrUndefined(linkAbs);
        if (!st) throw this.unsafe(h.name, `hard link target ${JSON.stringify(h.linkname)} does not exist in this layer`);
        if (st.isDirectory()) throw this.unsafe(h.name, `hard link target ${JSON.stringify(h.linkname)} is a directory`);
        if (linkAbs === target) return;
        await this.clear(name, target);
        await this.writes.settled(parentRel);
        // link(2) does not follow a symlink target: the new name is the same inode.
        await fs.link(linkAbs, target);
        this.created.add(name);
        // Metadata belongs to the shared inode, set by the entry that created it.
        return;
      }
      case 'character-device':
      case 'block-device':
        await this.clear(name, target);
        await this.writes.settled(parentRel);
        mknod(target, type === 'block-device' ? S_IFBLK : S_IFCHR, 0o600, h.devmajor, h.devminor);
        this.created.add(name);
        break;
      case 'fifo':
        await this.clear(name, target);
        await this.writes.settled(parentRel);
        mknod(target, S_IFIFO, 0o600);
        this.created.add(name);
        break;
      default:
        throw this.unsafe(h.name, `unsupported tar entry type ${JSON.stringify(h.type ?? 'unknown')}`);
    }
    await this.setOwnerModeXattrs(target, h, type);
    const { atime, mtime } = times(h);
    await fs.lutimes(target, atime, mtime);
  }

  /**
   * Resolves `rel` (a cleaned relative directory path) to an absolute path
   * inside the layer, checking each component is a real directory and not a
   * symlink; missing components are created (0755, root-owned) when `create`.
   */
  private async resolveDir(entry: string, rel: string, create: boolean, linkTarget?: string): Promise<string> {
    const abs = rel === '' ? this.root : path.join(this.root, rel);
    if (this.dirs.has(rel)) return abs;
    const parts = rel.split('/');
    let cur = this.root;
    let curRel = '';
    for (const part of parts) {
      cur = path.join(cur, part);
      curRel = curRel === '' ? part : `${curRel}/${part}`;
      if (this.dirs.has(curRel)) continue;
      await this.writes.settled(curRel);
      const st = this.created.has(curRel) ? await lstatOrUndefined(cur) : undefined;
      const what = linkTarget !== undefined ? `hard link target ${JSON.stringify(linkTarget)}: ` : '';
      if (!st) {
        if (!create) throw this.unsafe(entry, `${what}${JSON.stringify(curRel)} does not exist in this layer`);
        this.created.add(curRel);
        await this.writes.enqueue(curRel, { kind: 'mkdir', path: cur, createMode: 0o755 });
      } else if (st.isSymbolicLink()) {
        throw this.unsafe(entry, `${what}path goes through symlink ${JSON.stringify(curRel)}`);
      } else if (!st.isDirectory()) {
        throw this.unsafe(entry, `${what}${JSON.stringify(curRel)} is not a directory`);
      }
      this.dirs.add(curRel);
    }
    return abs;
  }

  /** Removes whatever is at `abs` (never following it), so a new entry can take its place. */
  private async clear(rel: string, abs: string): Promise<void> {
    if (!this.created.has(rel)) return;
    await this.writes.settled(rel);
    const st = await lstatOrUndefined(abs);
    this.created.delete(rel);
    if (!st) return;
    if (st.isDirectory()) {
      // Writes in flight may be inside it.
      await this.drain();
      await fs.rm(abs, { recursive: true, force: true });
      for (const c of [...this.created]) if (c.startsWith(rel + '/')) this.created.delete(c);
      for (const d of [...this.dirs]) if (d === rel || d.startsWith(rel + '/')) this.dirs.delete(d);
      for (const d of [...this.deferred.keys()]) if (d === rel || d.startsWith(rel + '/')) this.deferred.delete(d);
    } else {
      await fs.unlink(abs);
    }
  }

  /** The entry's numeric owner, refused if it is not a valid id. */
  private checkOwner(h: TarHeader): { uid: number; gid: number } {
    const { uid, gid } = h;
    if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid) || uid < 0 || gid < 0 || uid > 0xfffffffe || gid > 0xfffffffe) {
      throw this.unsafe(h.name, `invalid owner ${h.pax.get('uid')?.toString('latin1') ?? uid}:${h.pax.get('gid')?.toString('latin1') ?? gid}`);
    }
    return { uid, gid };
  }

  /** What the file writer needs to create a small file (see writeSmallFile for the owner and mode rules). */
  private smallFile(abs: string, data: Buffer, h: TarHeader, inheritsGroup: boolean): SmallFile {
    const { uid, gid } = this.checkOwner(h);
    const mode = h.mode & 0o7777;
    const chown = inheritsGroup || uid !== OWN_IDS.uid || gid !== OWN_IDS.gid;
    const chmod = chown || this.umask === undefined || (mode & 0o7000) !== 0 || (mode & this.umask) !== 0;
    const { atime, mtime } = times(h);
    return { kind: 'file', path: abs, data, mode, owner: chown ? { uid, gid } : undefined, chmod, atime: atime.getTime() / 1000, mtime: mtime.getTime() / 1000 };
  }

  /** Waits for every background write; rethrows the first failure. */
  drain(): Promise<void> {
    return this.writes.drain();
  }

  /**
   * A small regular file in one go on one descriptor: create (never
   * following), write, owner, mode, xattrs, times. Most files need only four
   * system calls: created with their mode, by the owner they should have, so
   * fchown and fchmod are skipped when open(2) already gave the right result
   * (the owner is the helper's own ids, the parent is not setgid, and the
   * mode has no bit the umask clears and no setuid, setgid or sticky bit).
   */
  private async writeSmallFile(abs: string, data: Buffer, h: TarHeader, inheritsGroup: boolean): Promise<void> {
    const { uid, gid } = this.checkOwner(h);
    const mode = h.mode & 0o7777;
    const fh = await fs.open(abs, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode & 0o777);
    try {
      let off = 0;
      while (off < data.length) off += (await fh.write(data, off, data.length - off)).bytesWritten;
      const chown = inheritsGroup || uid !== OWN_IDS.uid || gid !== OWN_IDS.gid;
      if (chown) await fh.chown(uid, gid);
      // chmod after chown: chown clears setuid/setgid bits.
      if (chown || this.umask === undefined || (mode & 0o7000) !== 0 || (mode & this.umask) !== 0) await fh.chmod(mode);
      this.setXattrs(abs, h);
      const { atime, mtime } = times(h);
      await fh.utimes(atime, mtime);
    } finally {
      await fh.close();
    }
  }

  /**
   * A directory's owner and mode. Whether it is setgid decides the group of
   * files created in it, which smallFile() relies on to skip fchown.
   */
  private async setDirOwnerMode(rel: string, abs: string, h: TarHeader): Promise<void> {
    const setgid = (h.mode & 0o2000) !== 0;
    // The writer keeps the archive's order: files queued before this see the
    // directory's old bits, as the inheritsGroup they were queued with says.
    if (setgid) this.setgidDirs.add(rel);
    else this.setgidDirs.delete(rel);
    // chmod after chown: chown clears setuid/setgid bits.
    await this.writes.enqueue(rel, { kind: 'attrs', path: abs, owner: this.checkOwner(h), mode: h.mode & 0o7777 });
    if (hasXattrs(h)) {
      await this.writes.settled(rel);
      this.setXattrs(abs, h);
    }
  }

  private async setOwnerModeXattrs(abs: string, h: TarHeader, type: string): Promise<void> {
    const { uid, gid } = this.checkOwner(h);
    await fs.lchown(abs, uid, gid);
    // chmod after chown: chown clears setuid/setgid bits.
    if (type !== 'symlink') await fs.chmod(abs, h.mode & 0o7777);
    this.setXattrs(abs, h);
  }

  private setXattrs(abs: string, h: TarHeader): void {
    for (const [name, value] of h.xattrs) {
      // trusted.* (overlay's own whiteout, opaque, redirect markers among them)
      // is for the kernel and the store to set, never for layer content.
      if (name.startsWith('trusted.') || name === '') continue;
      try {
        lsetxattr(abs, name, value);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOTSUP' || (name.startsWith('security.') && code !== 'ENOENT')) continue;
        throw this.unsafe(h.name, `cannot set xattr ${JSON.stringify(name)}: ${code}`);
      }
    }
  }

  private deferDir(rel: string, abs: string, h: TarHeader): void {
    this.deferred.set(rel, { abs, ...times(h) });
  }

  /** Sets directory times last, deepest first, since creating entries in a directory changes its mtime. */
  async finish(): Promise<void> {
    const dirs = [...this.deferred.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [rel, d] of dirs) await this.writes.enqueue(rel, { kind: 'utimes', path: d.abs, atime: d.atime.getTime() / 1000, mtime: d.mtime.getTime() / 1000 });
    await this.drain();
  }
}

function hasXattrs(h: TarHeader): boolean {
  return h.xattrs.length > 0;
}

function depth(rel: string): number {
  return rel === '' ? 0 : rel.split('/').length;
}

function joinRel(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

function times(h: TarHeader): { atime: Date; mtime: Date } {
  const mtime = new Date(h.mtime * 1000);
  return { atime: h.atime !== undefined ? new Date(h.atime * 1000) : mtime, mtime };
}

async function lstatOrUndefined(p: string): Promise<import('node:fs').Stats | undefined> {
  try {
    return await fs.lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

