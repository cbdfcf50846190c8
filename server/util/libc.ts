/**
 * libc through koffi, loaded once for the whole process: the system calls
 * Node's own modules lack (netlink, namespaces, mknod, xattrs, posix_spawn,
 * fd passing). Each user declares the functions it needs, lazily, so code
 * that never makes such a call never loads koffi.
 */
import { constants as osConstants } from 'node:os';

/** A libc function; `async` runs it on a libuv pool thread (koffi), its callback gets (err, result). */
export type LibcFn = ((...args: unknown[]) => number) & { async(...args: unknown[]): void };

type Koffi = typeof import('koffi');
let koffi: Koffi | undefined;
let lib: ReturnType<Koffi['load']> | undefined;

function library(): ReturnType<Koffi['load']> {
  if (lib) return lib;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  koffi = require('koffi') as Koffi;
  lib = koffi.load('libc.so.6');
  return lib;
}

/** Declares libc functions by their C prototypes, e.g. `{ close: 'int close(int fd)' }`. */
export function libcFunctions<K extends string>(prototypes: Record<K, string>): Record<K, LibcFn> {
  const l = library();
  const out = {} as Record<K, LibcFn>;
  for (const name of Object.keys(prototypes) as K[]) out[name] = l.func(prototypes[name]) as unknown as LibcFn;
  return out;
}

/** koffi's event-loop helpers (`poll` on a descriptor). */
export function koffiNode(): Koffi['node'] {
  library();
  return koffi!.node;
}

/** errno of this thread's last libc call made through koffi. */
export function errno(): number {
  library();
  return koffi!.errno();
}

const names = new Map<number, string>(Object.entries(osConstants.errno).map(([n, v]) => [v as number, n]));

/** `EACCES` for 13; undefined for a number this platform does not name. */
export function errnoName(n: number): string | undefined {
  return names.get(n);
}

/** The address of a Buffer's bytes, for a pointer inside a struct a system call reads (the Buffer must stay referenced during the call). */
export function bufferAddress(buf: Buffer): bigint {
  library();
  return koffi!.address(buf);
}
