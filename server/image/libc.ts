/**
 * The few libc calls the image store needs that Node's fs lacks: mknod
 * (device nodes, fifos, overlay whiteouts), the l*xattr family (never
 * following a final symlink) and the inode-flag ioctl (setTopDir). Declared
 * on first use.
 */
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { errno, errnoName, libcFunctions } from '../util/libc';

let fns: ReturnType<typeof declare> | undefined;
const load = () => (fns ??= declare());

function declare() {
  return libcFunctions({
    mknod: 'int mknod(const char *path, uint32_t mode, uint64_t dev)',
    lsetxattr: 'int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)',
    lgetxattr: 'long lgetxattr(const char *path, const char *name, _Out_ void *value, size_t size)',
    llistxattr: 'long llistxattr(const char *path, _Out_ void *list, size_t size)',
    ioctl: 'int ioctl(int fd, unsigned long request, ...)',
  });
}

/** A failed libc call, shaped like Node's fs errors (code, errno, syscall, path). */
export function sysError(syscall: string, file: string, err = errno()): NodeJS.ErrnoException {
  const code = errnoName(err) ?? `E${err}`;
  const e = new Error(`${code}: ${syscall} ${JSON.stringify(file)} failed (errno ${err})`) as NodeJS.ErrnoException;
  e.code = code;
  e.errno = err;
  e.syscall = syscall;
  e.path = file;
  return e;
}

export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

/** glibc's makedev. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return ((ma & 0xfffn) << 8n) | ((ma & 0xfffff000n) << 32n) | (mi & 0xffn) | ((mi & 0xffffff00n) << 12n);
}

const FS_IOC_GETFLAGS = 0x80086601;
const FS_IOC_SETFLAGS = 0x40086602;
const FS_TOPDIR_FL = 0x00020000;

/**
 * Sets the TOPDIR inode flag (`chattr +T`) on directory `dir`, so the
 * directories made in it are spread over the file system's block groups as
 * top-level ones are, each into a group of its own choosing, instead of
 * next to their parent. For the store's layers this matters: a layer
 * unpacked where thousands of inodes were just freed (an image removed
 * before it is pulled again) is several times slower on ext4, whose
 * allocator skips recently deleted inodes one by one. False where the file
 * system has no such flag (ENOTTY, EOPNOTSUPP): nothing else changes there.
 */
export function setTopDir(dir: string): boolean {
  let fd: number;
  try {
    fd = openSync(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | fsConstants.O_NOFOLLOW);
  } catch {
    return false;
  }
  try {
    const flags = new Int32Array(1);
    const c = load();
    if (c.ioctl(fd, FS_IOC_GETFLAGS, 'int *', flags) !== 0) return false;
    if (flags[0] & FS_TOPDIR_FL) return true;
    flags[0] |= FS_TOPDIR_FL;
    return c.ioctl(fd, FS_IOC_SETFLAGS, 'int *', flags) === 0;
  } finally {
    closeSync(fd);
  }
}

/** mknod(2); `type` is S_IFCHR, S_IFBLK or S_IFIFO. Synchronous: it is one quick syscall. */
export function mknod(file: string, type: number, mode: number, major = 0, minor = 0): void {
  if (load().mknod(file, (type | (mode & 0o7777)) >>> 0, makedev(major, minor)) !== 0) throw sysError('mknod', file);
}

/** lsetxattr(2): sets an extended attribute without following a final symlink. */
export function lsetxattr(file: string, name: string, value: Buffer): void {
  if (load().lsetxattr(file, name, value, value.length, 0) !== 0) throw sysError('lsetxattr', file);
}

/** One buffer for the xattr calls' answers (they are synchronous, and copied out before the next): a zeroed 64 KiB a call was most of a layer walk's time. */
let scratch: Buffer | undefined;
const xattrBuffer = (): Buffer => (scratch ??= Buffer.allocUnsafe(64 * 1024));

/** lgetxattr(2); undefined when the attribute is absent. */
export function lgetxattr(file: string, name: string): Buffer | undefined {
  const buf = xattrBuffer();
  const n = load().lgetxattr(file, name, buf, buf.length);
  if (n < 0) {
    const e = errno();
    if (errnoName(e) === 'ENODATA') return undefined;
    throw sysError('lgetxattr', file, e);
  }
  return Buffer.from(buf.subarray(0, n));
}

/** llistxattr(2): the names of a file's extended attributes. */
export function llistxattr(file: string): string[] {
  const buf = xattrBuffer();
  const n = load().llistxattr(file, buf, buf.length);
  if (n < 0) throw sysError('llistxattr', file);
  return buf
    .subarray(0, n)
    .toString('latin1')
    .split('\0')
    .filter((s) => s !== '');
}
