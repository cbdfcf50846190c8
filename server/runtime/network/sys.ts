/**
 * The libc calls networking needs, through koffi, on the helper's main
 * thread. unshare(CLONE_NEWNET) and setns(CLONE_NEWNET) act on the calling
 * thread only and, unlike mount or user namespaces, are allowed in a
 * multithreaded process; the helper uses that to step its main thread into a
 * new namespace and straight back, synchronously, with no JavaScript running
 * in between (the approach of Go's netns packages with a locked OS thread).
 */
import { constants as osConstants } from 'node:os';

type Fn = (...args: unknown[]) => number;

export interface Libc {
  socket: Fn;
  sendto: Fn;
  recv: Fn;
  close: Fn;
  unshare: Fn;
  setns: Fn;
  mount: Fn;
  umount2: Fn;
}

let lib: Libc | undefined;
let koffiErrno: (() => number) | undefined;

export function libc(): Libc {
  if (lib) return lib;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const koffi = require('koffi') as typeof import('koffi');
  const l = koffi.load('libc.so.6');
  koffiErrno = () => koffi.errno();
  lib = {
    socket: l.func('int socket(int domain, int type, int protocol)') as Fn,
    sendto: l.func('long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)') as Fn,
    recv: l.func('long recv(int fd, _Out_ void *buf, size_t len, int flags)') as Fn,
    close: l.func('int close(int fd)') as Fn,
    unshare: l.func('int unshare(int flags)') as Fn,
    setns: l.func('int setns(int fd, int nstype)') as Fn,
    mount: l.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)') as Fn,
    umount2: l.func('int umount2(const char *target, int flags)') as Fn,
  };
  return lib;
}

export function sysErrno(): number {
  libc();
  return koffiErrno!();
}

const names = new Map<number, string>(Object.entries(osConstants.errno).map(([n, v]) => [v as number, n]));

export function errnoName(errno: number): string | undefined {
  return names.get(errno);
}

export const CLONE_NEWNET = 0x40000000;
export const MS_BIND = 0x1000;
export const MNT_DETACH = 2;
