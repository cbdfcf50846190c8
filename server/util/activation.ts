/**
 * systemd socket activation, as sd_listen_fds(3) describes it: the service
 * manager (or systemd-socket-activate) creates the listening socket, starts
 * the program on the first connection and passes the socket as fd 3, with
 * LISTEN_PID naming the program's pid and LISTEN_FDS the number of sockets.
 * The socket, its path and its mode then belong to the unit, not to the
 * helper (packaging/systemd/capsa.socket).
 */
import { fstatSync } from 'node:fs';
import { CapsaError } from '../errors';
import { errno, errnoName, libcFunctions } from './libc';

const SD_LISTEN_FDS_START = 3;
const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SO_ACCEPTCONN = 30;
const SO_DOMAIN = 39;
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

let lib: ReturnType<typeof declare> | undefined;
function declare() {
  return libcFunctions({
    getsockopt: 'int getsockopt(int fd, int level, int name, _Out_ void *value, _Inout_ uint32_t *len)',
    getsockname: 'int getsockname(int fd, _Out_ void *addr, _Inout_ uint32_t *len)',
    fcntl: 'int fcntl(int fd, int cmd, ...)',
  });
}

export class ActivationError extends CapsaError {
  constructor(message: string) {
    super('E_SOCKET_ACTIVATION', message);
  }
}

/**
 * The listening socket passed by systemd, or undefined when this process
 * was not socket-activated. Like sd_listen_fds(1), it removes LISTEN_PID,
 * LISTEN_FDS and LISTEN_FDNAMES from `env`, so that no program the helper
 * starts takes them as its own, and marks the socket close-on-exec (systemd
 * passes it inheritable). It must be an AF_UNIX stream socket, listening.
 */
export function activationSocket(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number | undefined {
  const listenPid = env.LISTEN_PID;
  const listenFds = env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (listenPid === undefined || listenFds === undefined) return undefined;
  // meant for another process (an ancestor's variables that reached us)
  if (listenPid !== String(pid)) return undefined;
  if (listenFds !== '1') throw new ActivationError(`socket activation passed LISTEN_FDS=${JSON.stringify(listenFds)}: the helper takes exactly one socket, its own`);
  const fd = SD_LISTEN_FDS_START;
  let isSocket = false;
  try {
    isSocket = fstatSync(fd).isSocket();
  } catch {
    // not open: refused below
  }
  if (!isSocket) throw new ActivationError(`socket activation: fd ${fd} is not a socket`);
  const l = (lib ??= declare());
  const opt = (name: number, what: string): number => {
    const v = Buffer.alloc(4);
    if (l.getsockopt(fd, SOL_SOCKET, name, v, [4]) < 0) throw new ActivationError(`socket activation: getsockopt(${what}) on fd ${fd} failed: ${errnoName(errno()) ?? errno()}`);
    return v.readInt32LE(0);
  };
  if (opt(SO_DOMAIN, 'SO_DOMAIN') !== AF_UNIX || opt(SO_TYPE, 'SO_TYPE') !== SOCK_STREAM) {
    throw new ActivationError(`socket activation: fd ${fd} is not a unix stream socket (the unit needs ListenStream=/path)`);
  }
  if (opt(SO_ACCEPTCONN, 'SO_ACCEPTCONN') !== 1) throw new ActivationError(`socket activation: fd ${fd} is not listening (the unit must not use Accept=yes)`);
  if (l.fcntl(fd, F_SETFD, 'int', FD_CLOEXEC) < 0) throw new ActivationError(`socket activation: cannot mark fd ${fd} close-on-exec: ${errnoName(errno()) ?? errno()}`);
  return fd;
}

/** The filesystem path a unix socket is bound to (getsockname), or undefined for an abstract or unbound one. */
export function boundPath(fd: number): string | undefined {
  const l = (lib ??= declare());
  const addr = Buffer.alloc(110);
  const len = [addr.length];
  if (l.getsockname(fd, addr, len) < 0) throw new ActivationError(`getsockname on fd ${fd} failed: ${errnoName(errno()) ?? errno()}`);
  if (addr.readUInt16LE(0) !== AF_UNIX || len[0] <= 2 || addr[2] === 0) return undefined;
  const path = addr.subarray(2, Math.min(len[0], addr.length));
  const nul = path.indexOf(0);
  return path.subarray(0, nul < 0 ? path.length : nul).toString();
}
