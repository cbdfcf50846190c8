/**
 * Who is at the other end of a unix socket, as the kernel says: the uid,
 * gid and pid the peer had when it connected (SO_PEERCRED) and its
 * supplementary groups (SO_PEERGROUPS, Linux 4.13+). Nothing a client sends
 * can change these: they are recorded by the kernel at connect(2) and are
 * what a connection may act as.
 */
import { readFileSync } from 'node:fs';
import type * as net from 'node:net';
import { constants as osConstants } from 'node:os';
import { CapsaError } from '../errors';
import { errno, errnoName, libcFunctions } from './libc';

/** The identity a connection acts as. */
export interface Caller {
  readonly uid: number;
  readonly gid: number;
  /** Supplementary groups (the primary gid may or may not be among them, as getgroups(2) returns them). */
  readonly groups: readonly number[];
  /** The connecting process at connect time; for the log only (a pid may be reused once it exits). */
  readonly pid: number;
}

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const SO_PEERGROUPS = 59;
/** Room for this many groups at the first try (NGROUPS_MAX is 65536; ERANGE says how many there are). */
const FIRST_GROUPS = 64;

let lib: ReturnType<typeof declare> | undefined;
function declare() {
  return libcFunctions({ getsockopt: 'int getsockopt(int fd, int level, int name, _Out_ void *value, _Inout_ uint32_t *len)' });
}

/** The kernel could not say who a client is: the connection is not served. */
export class PeerCredentialsError extends CapsaError {
  constructor(message: string) {
    super('E_PEER_CREDENTIALS', message);
  }
}

/** The fd Node holds for a connected (or listening) net.Socket's handle. */
export function socketFd(socket: net.Socket | net.Server): number {
  // Node exposes no public fd for a socket it accepted; its handle (a Pipe or TCP
  // wrap) has a read-only `fd` getter (uv_fileno). It is read here only, and the
  // contract test in test/unit/peercred.test.ts pins it for each Node upgrade.
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    throw new PeerCredentialsError(`cannot identify the client: this Node (${process.version}) no longer exposes a socket's descriptor as _handle.fd`);
  }
  return fd;
}

/** The Caller of the peer of `fd`, a connected AF_UNIX socket. */
export function peerCaller(fd: number): Caller {
  const cred = Buffer.alloc(12);
  if (getsockopt(fd, SO_PEERCRED, cred, 12) < 0) throw sysError('SO_PEERCRED', errno());
  const pid = cred.readInt32LE(0);
  const uid = cred.readUInt32LE(4);
  const gid = cred.readUInt32LE(8);
  return { uid, gid, pid, groups: peerGroups(fd, pid, uid) };
}

/** The Caller of this process itself (the helper's own, for a client on its stdio: whoever could start it as root is root). */
export function ownCaller(): Caller {
  // the kernel's list, as SO_PEERGROUPS gives it (process.getgroups() adds the egid when it is missing)
  const uid = process.getuid!();
  return { uid, gid: process.getgid!(), groups: groupsFromProc(process.pid, uid), pid: process.pid };
}

/** `uid 1000 gid 1000 groups 1000,27 pid 4242`, for the log. */
export function describeCaller(c: Caller): string {
  return `uid ${c.uid} gid ${c.gid} groups ${c.groups.length ? c.groups.join(',') : 'none'} pid ${c.pid}`;
}

function peerGroups(fd: number, pid: number, uid: number): number[] {
  let room = FIRST_GROUPS * 4;
  for (let tries = 0; tries < 3; tries++) {
    const buf = Buffer.alloc(room);
    const len = [room];
    if (getsockopt(fd, SO_PEERGROUPS, buf, len) === 0) {
      const out: number[] = [];
      for (let off = 0; off + 4 <= len[0]; off += 4) out.push(buf.readUInt32LE(off));
      return out;
    }
    const e = errno();
    // the kernel wrote the size it needs into len
    if (e === osConstants.errno.ERANGE && len[0] > room) room = len[0];
    else if (e === osConstants.errno.ENOPROTOOPT) return groupsFromProc(pid, uid);
    else throw sysError('SO_PEERGROUPS', e);
  }
  throw new PeerCredentialsError('getsockopt(SO_PEERGROUPS) kept asking for a larger buffer');
}

function getsockopt(fd: number, name: number, buf: Buffer, len: number | number[]): number {
  lib ??= declare();
  return lib.getsockopt(fd, SOL_SOCKET, name, buf, Array.isArray(len) ? len : [len]);
}

/**
 * Before Linux 4.13 (no SO_PEERGROUPS): the groups in /proc/PID/status.
 * Acceptable only because it is read at accept, while the peer has just
 * connected, and checked: a pid is reused once its process exits, so the
 * process's start time must be the same before and after reading, and its
 * real uid the one SO_PEERCRED gave; otherwise the caller gets no
 * supplementary groups (less reach, never more).
 */
export function groupsFromProc(pid: number, uid: number): number[] {
  try {
    const before = startTime(pid);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    if (startTime(pid) !== before) return [];
    const realUid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    if (realUid === undefined || Number(realUid) !== uid) return [];
    const groups = /^Groups:[ \t]*([0-9 \t]*)$/m.exec(status)?.[1] ?? '';
    return groups.split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // gone already: no groups are better than a stranger's
    return [];
  }
}

/** Field 22 of /proc/PID/stat (after the parenthesised command, which may hold spaces). */
function startTime(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
}

function sysError(what: string, e: number): PeerCredentialsError {
  return new PeerCredentialsError(`cannot identify the client: getsockopt(${what}) failed: ${errnoName(e) ?? `errno ${e}`}`);
}
