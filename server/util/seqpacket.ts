/**
 * AF_UNIX SOCK_SEQPACKET sockets with file-descriptor passing, through libc
 * calls made with koffi: what the warm CLI needs and Node's `net` lacks
 * (message boundaries, SCM_RIGHTS, SO_PEERCRED, a listening socket that the
 * helper creates but never accepts on). Every call is synchronous.
 *
 * The structures are laid out by hand for 64-bit Linux (x86_64 and arm64,
 * the platforms koffi is shipped for): msghdr is 56 bytes, cmsghdr 16,
 * pollfd 8, sockaddr_un 110 (see recvmsg(2), cmsg(3), unix(7)).
 */
import { constants as osConstants } from 'node:os';

type Fn = (...args: unknown[]) => number;
type Koffi = typeof import('koffi');

interface Libc {
  socket: Fn;
  bind: Fn;
  listen: Fn;
  connect: Fn;
  accept4: Fn;
  poll: Fn;
  recvmsg: Fn;
  sendmsg: Fn;
  socketpair: Fn;
  getsockopt: Fn;
  setsockopt: Fn;
  close: Fn;
  dup2: Fn;
  fcntl: Fn;
}

let koffi: Koffi | undefined;
let lib: Libc | undefined;

function libc(): Libc {
  if (lib) return lib;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  koffi = require('koffi') as Koffi;
  const l = koffi.load('libc.so.6');
  lib = {
    socket: l.func('int socket(int domain, int type, int protocol)') as Fn,
    bind: l.func('int bind(int fd, const void *addr, uint32_t len)') as Fn,
    listen: l.func('int listen(int fd, int backlog)') as Fn,
    connect: l.func('int connect(int fd, const void *addr, uint32_t len)') as Fn,
    accept4: l.func('int accept4(int fd, void *addr, void *len, int flags)') as Fn,
    poll: l.func('int poll(_Inout_ void *fds, unsigned long nfds, int timeout)') as Fn,
    recvmsg: l.func('long recvmsg(int fd, void *msg, int flags)') as Fn,
    sendmsg: l.func('long sendmsg(int fd, void *msg, int flags)') as Fn,
    socketpair: l.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)') as Fn,
    getsockopt: l.func('int getsockopt(int fd, int level, int name, _Out_ void *value, _Inout_ uint32_t *len)') as Fn,
    setsockopt: l.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)') as Fn,
    close: l.func('int close(int fd)') as Fn,
    dup2: l.func('int dup2(int from, int to)') as Fn,
    fcntl: l.func('int fcntl(int fd, int cmd, ...)') as Fn,
  };
  return lib;
}

const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_PEERCRED = 17;
const SO_RCVTIMEO = 20;
const SCM_RIGHTS = 1;
const MSG_TRUNC = 0x20;
const MSG_CTRUNC = 0x8;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
export const POLLIN = 0x1;

const MSGHDR = 56;
const IOVEC = 16;
const CMSGHDR = 16;
const cmsgSpace = (n: number): number => CMSGHDR + ((n + 7) & ~7);

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([n, v]) => [v as number, n]));

/** A failed libc call, shaped like Node's own errors: `code` is the errno name. */
export class SysError extends Error {
  readonly code: string;
  constructor(
    readonly syscall: string,
    readonly errno: number,
    what?: string,
  ) {
    const code = ERRNO_NAMES.get(errno) ?? `E${errno}`;
    super(`${syscall}${what ? ` ${what}` : ''} failed: ${code}`);
    this.code = code;
  }
}

function check(syscall: string, r: number, what?: string): number {
  if (r < 0) throw new SysError(syscall, koffi!.errno(), what);
  return r;
}

function sockaddr(path: string): Buffer {
  const addr = Buffer.alloc(110);
  addr.writeUInt16LE(AF_UNIX, 0);
  const bytes = Buffer.from(path);
  if (bytes.length > 107) throw new SysError('bind', osConstants.errno.ENAMETOOLONG, path);
  bytes.copy(addr, 2);
  return addr;
}

/**
 * A listening SOCK_SEQPACKET socket at `path`, close-on-exec and
 * non-blocking (several processes may poll it; the ones that lose the race
 * for a connection get EAGAIN). The caller chmods the file before anyone can
 * connect: a unix socket takes connections only once `listen` ran.
 */
export function listenSeqpacket(path: string, beforeListen: () => void, backlog = 64): number {
  const l = libc();
  const fd = check('socket', l.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  try {
    const addr = sockaddr(path);
    check('bind', l.bind(fd, addr, addr.length), path);
    beforeListen();
    check('listen', l.listen(fd, backlog), path);
    return fd;
  } catch (err) {
    l.close(fd);
    throw err;
  }
}

/** Connects a blocking, close-on-exec SOCK_SEQPACKET socket to `path`. */
export function connectSeqpacket(path: string): number {
  const l = libc();
  const fd = check('socket', l.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  const addr = sockaddr(path);
  if (l.connect(fd, addr, addr.length) < 0) {
    const err = new SysError('connect', koffi!.errno(), path);
    l.close(fd);
    throw err;
  }
  return fd;
}

/** A connected pair of blocking, close-on-exec SOCK_SEQPACKET sockets. */
export function seqpacketPair(): [number, number] {
  const sv = new Int32Array(2);
  check('socketpair', libc().socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
  return [sv[0], sv[1]];
}

/** accept4 on a non-blocking listening socket: a blocking, close-on-exec connection, or undefined when another process took it first. */
export function acceptConnection(listenFd: number): number | undefined {
  const fd = libc().accept4(listenFd, null, null, SOCK_CLOEXEC);
  if (fd >= 0) return fd;
  const errno = koffi!.errno();
  const { EAGAIN, EWOULDBLOCK, EINTR, ECONNABORTED } = osConstants.errno;
  if (errno === EAGAIN || errno === EWOULDBLOCK || errno === EINTR || errno === ECONNABORTED) return undefined;
  throw new SysError('accept4', errno);
}

/** poll(2) on a few descriptors, blocking the calling thread for up to `timeoutMs`: the revents of each, 0 for none. */
export function pollFds(fds: Array<{ fd: number; events: number }>, timeoutMs: number): number[] {
  const buf = Buffer.alloc(8 * fds.length);
  fds.forEach((f, i) => {
    buf.writeInt32LE(f.fd, i * 8);
    buf.writeInt16LE(f.events, i * 8 + 4);
  });
  const r = libc().poll(buf, fds.length, timeoutMs);
  if (r < 0) {
    const errno = koffi!.errno();
    if (errno === osConstants.errno.EINTR) return fds.map(() => 0);
    throw new SysError('poll', errno);
  }
  return fds.map((_, i) => buf.readUInt16LE(i * 8 + 6));
}

/** The peer's credentials at connect time (SO_PEERCRED). */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } {
  const buf = Buffer.alloc(12);
  check('getsockopt(SO_PEERCRED)', libc().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, buf, [12]));
  return { pid: buf.readInt32LE(0), uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) };
}

/** Makes a blocking receive on `fd` give up with EAGAIN after `ms`. */
export function setReceiveTimeout(fd: number, ms: number): void {
  const tv = Buffer.alloc(16);
  tv.writeBigInt64LE(BigInt(Math.floor(ms / 1000)), 0);
  tv.writeBigInt64LE(BigInt((ms % 1000) * 1000), 8);
  check('setsockopt(SO_RCVTIMEO)', libc().setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, tv.length));
}

/** Raises the send buffer so one message of `bytes` fits (the kernel caps it at net.core.wmem_max, then doubles it). */
export function setSendBuffer(fd: number, bytes: number): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(bytes);
  check('setsockopt(SO_SNDBUF)', libc().setsockopt(fd, SOL_SOCKET, SO_SNDBUF, v, 4));
}

export interface ReceivedMessage {
  /** The message, at most `maxBytes` of it; empty when the peer hung up (or sent an empty message). */
  data: Buffer;
  /** Descriptors that came with it (SCM_RIGHTS), already close-on-exec; the caller owns them. */
  fds: number[];
  /** The message was longer than `maxBytes` (MSG_TRUNC); the rest is gone. */
  truncated: boolean;
  /** More descriptors came than fit; the kernel closed those (MSG_CTRUNC). */
  fdsTruncated: boolean;
  /** Control messages other than SCM_RIGHTS, by level/type (nothing sent them on purpose). */
  otherControl: number;
}

/**
 * One recvmsg(2) of a message and the descriptors sent with it. Blocks
 * (subject to setReceiveTimeout). Every SCM_RIGHTS header is walked, so no
 * received descriptor is left open unaccounted for.
 */
export function receiveMessage(fd: number, maxBytes: number, maxFds: number): ReceivedMessage {
  const l = libc();
  const control = cmsgSpace(4 * maxFds);
  const size = MSGHDR + IOVEC + control + maxBytes;
  const mem = koffi!.alloc('uint8_t', size);
  try {
    const { view, controlAt, dataAt } = layOutMessage(mem, size, control, maxBytes);
    const n = l.recvmsg(fd, mem, MSG_CMSG_CLOEXEC);
    if (n < 0) throw new SysError('recvmsg', koffi!.errno());
    const flags = view.readInt32LE(48);
    const controlLen = Number(view.readBigUInt64LE(40));
    const fds: number[] = [];
    let otherControl = 0;
    // CMSG_FIRSTHDR / CMSG_NXTHDR: headers 8-aligned, each cmsg_len long
    for (let off = 0; off + CMSGHDR <= controlLen; ) {
      const len = Number(view.readBigUInt64LE(controlAt + off));
      if (len < CMSGHDR || off + len > controlLen) break;
      const level = view.readInt32LE(controlAt + off + 8);
      const type = view.readInt32LE(controlAt + off + 12);
      if (level === SOL_SOCKET && type === SCM_RIGHTS) {
        for (let p = CMSGHDR; p + 4 <= len; p += 4) fds.push(view.readInt32LE(controlAt + off + p));
      } else otherControl++;
      off += (len + 7) & ~7;
    }
    return {
      data: Buffer.from(view.subarray(dataAt, dataAt + Math.min(n, maxBytes))),
      fds,
      truncated: (flags & MSG_TRUNC) !== 0,
      fdsTruncated: (flags & MSG_CTRUNC) !== 0,
      otherControl,
    };
  } finally {
    koffi!.free(mem);
  }
}

/**
 * Lays out, in `mem` (`size` bytes), a msghdr, one iovec over `dataLen`
 * bytes and `control` bytes of control buffer (none when 0), in that order.
 */
function layOutMessage(mem: unknown, size: number, control: number, dataLen: number): { view: Buffer; controlAt: number; dataAt: number } {
  const base = koffi!.address(mem);
  const view = Buffer.from(koffi!.view(mem, size));
  view.fill(0, 0, MSGHDR + IOVEC + control);
  const iovAt = MSGHDR;
  const controlAt = MSGHDR + IOVEC;
  const dataAt = controlAt + control;
  view.writeBigUInt64LE(base + BigInt(dataAt), iovAt);
  view.writeBigUInt64LE(BigInt(dataLen), iovAt + 8);
  view.writeBigUInt64LE(base + BigInt(iovAt), 16); // msg_iov
  view.writeBigUInt64LE(1n, 24); // msg_iovlen
  if (control) {
    view.writeBigUInt64LE(base + BigInt(controlAt), 32); // msg_control
    view.writeBigUInt64LE(BigInt(control), 40); // msg_controllen
  }
  return { view, controlAt, dataAt };
}

/** One sendmsg(2) of `data` with `fds` attached (SCM_RIGHTS); never raises SIGPIPE. */
export function sendMessage(fd: number, data: Buffer, fds: number[] = []): void {
  const l = libc();
  const control = fds.length ? cmsgSpace(4 * fds.length) : 0;
  const size = MSGHDR + IOVEC + control + data.length;
  const mem = koffi!.alloc('uint8_t', Math.max(size, 1));
  try {
    const { view, controlAt, dataAt } = layOutMessage(mem, size, control, data.length);
    data.copy(view, dataAt);
    if (control) {
      view.writeBigUInt64LE(BigInt(CMSGHDR + 4 * fds.length), controlAt);
      view.writeInt32LE(SOL_SOCKET, controlAt + 8);
      view.writeInt32LE(SCM_RIGHTS, controlAt + 12);
      fds.forEach((f, i) => view.writeInt32LE(f, controlAt + CMSGHDR + 4 * i));
    }
    check('sendmsg', l.sendmsg(fd, mem, MSG_NOSIGNAL));
  } finally {
    koffi!.free(mem);
  }
}

export function closeFd(fd: number): void {
  libc().close(fd);
}

/** dup2(2): `from` also becomes descriptor `to` (not close-on-exec). */
export function dupTo(from: number, to: number): void {
  check('dup2', libc().dup2(from, to));
}

const F_SETFD = 2;
const FD_CLOEXEC = 1;

/** Marks `fd` close-on-exec (fcntl F_SETFD), so that programs this process runs do not inherit it. */
export function setCloseOnExec(fd: number): void {
  check('fcntl', libc().fcntl(fd, F_SETFD, 'int', FD_CLOEXEC));
}
