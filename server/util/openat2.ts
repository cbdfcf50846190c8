/**
 * openat2(2) (Linux 5.6): a path opened relative to a directory descriptor
 * under `resolve` rules the kernel enforces on every component:
 * RESOLVE_IN_ROOT treats the descriptor as `/` (a container's root),
 * RESOLVE_BENEATH with RESOLVE_NO_SYMLINKS refuses any symlink and any
 * step outside (a directory a container can write, read from the host).
 * Synchronous through koffi: the kernel answers from its caches, and the
 * flags callers pass (O_PATH, O_NONBLOCK) keep an open from ever waiting.
 */
import { constants } from 'node:fs';
import { errno, errnoName, libcFunctions } from './libc';

export const O_PATH = 0o10000000;
export const O_CLOEXEC = 0o2000000;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;
export const RESOLVE_IN_ROOT = 0x10;
const SYS_OPENAT2 = 437;

let fns: { syscall: (...a: unknown[]) => number } | undefined;
const libc = () => (fns ??= libcFunctions({ syscall: 'long syscall(long nr, ...)' }));

/** A failed openat2, shaped like Node's fs errors (code, errno, syscall, path). */
export function openat2Error(p: string, n: number): NodeJS.ErrnoException {
  const code = errnoName(n) ?? `E${n}`;
  return Object.assign(new Error(`${code}: openat2 ${JSON.stringify(p)} failed`), { code, errno: n, syscall: 'openat2', path: p });
}

/** The descriptor of `rel` (relative to `dirFd`) opened with `flags` under `resolve`; throws openat2Error. */
export function openat2(dirFd: number, rel: string, flags: number, resolve: number, mode = 0): number {
  const how = Buffer.alloc(24);
  how.writeBigUInt64LE(BigInt(flags | O_CLOEXEC), 0);
  how.writeBigUInt64LE(BigInt(mode), 8);
  how.writeBigUInt64LE(BigInt(resolve), 16);
  const fd = Number(libc().syscall(SYS_OPENAT2, 'int', dirFd, 'str', rel === '' ? '.' : rel, 'void *', how, 'size_t', 24));
  if (fd < 0) throw openat2Error(rel, errno());
  return fd;
}

/** `rel` beneath `dirFd` with no symlink anywhere on the way (the last component included). */
export function openBeneath(dirFd: number, rel: string, flags: number): number {
  return openat2(dirFd, rel, flags | constants.O_NOFOLLOW, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}
