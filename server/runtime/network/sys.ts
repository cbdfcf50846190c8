/**
 * The libc calls networking needs, through koffi, on the helper's main
 * thread. unshare(CLONE_NEWNET) and setns(CLONE_NEWNET) act on the calling
 * thread only and, unlike mount or user namespaces, are allowed in a
 * multithreaded process; the helper uses that to step its main thread into a
 * new namespace and straight back, synchronously, with no JavaScript running
 * in between (the approach of Go's netns packages with a locked OS thread).
 */
import { errno, errnoName, libcFunctions, type LibcFn } from '../../util/libc';

export interface Libc {
  socket: LibcFn;
  sendto: LibcFn;
  recv: LibcFn;
  close: LibcFn;
  unshare: LibcFn;
  setns: LibcFn;
  mount: LibcFn;
  umount2: LibcFn;
}

let lib: Libc | undefined;

export function libc(): Libc {
  return (lib ??= libcFunctions({
    socket: 'int socket(int domain, int type, int protocol)',
    sendto: 'long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)',
    recv: 'long recv(int fd, _Out_ void *buf, size_t len, int flags)',
    close: 'int close(int fd)',
    unshare: 'int unshare(int flags)',
    setns: 'int setns(int fd, int nstype)',
    mount: 'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)',
    umount2: 'int umount2(const char *target, int flags)',
  }));
}

export const sysErrno = errno;
export { errnoName };

export const CLONE_NEWNET = 0x40000000;
export const MS_BIND = 0x1000;
export const MNT_DETACH = 2;
