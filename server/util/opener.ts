/**
 * Opening a file with a caller's rights, not the helper's. The helper is
 * root: a path a client names (a bind source, an --env-file, a tarball to
 * load or save) opened by the helper itself would let any client read or
 * write any file of the machine. Instead a short-lived child,
 * native/build/capsa-open (native/src/opener.c), takes the caller's uid,
 * gid and supplementary groups, opens the path, and hands the descriptor
 * back with SCM_RIGHTS: every component of the path is checked by the
 * kernel against the caller, symlinks and /proc magic links included.
 *
 * What a descriptor allows once received is then the helper's business: an
 * O_PATH one (`how: 'path'`) proves the caller can reach the path, not that
 * it may read it, so it must never be reopened through /proc/self/fd or
 * used as a directory to open under (that would be root's reach again).
 */
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import { CapsaError } from '../errors';
import { koffiNode } from './libc';
import type { Caller } from './peercred';
import { closeFd, receiveMessage, sendMessage, seqpacketPair } from './seqpacket';
import { spawnProgram } from './spawn';

export interface OpenAsCallerOptions {
  /**
   * `read` O_RDONLY, `create` O_WRONLY|O_CREAT|O_EXCL (a new file only),
   * `path` O_PATH. Always O_CLOEXEC; a FIFO does not block the open.
   */
  how: 'read' | 'create' | 'path';
  /** O_NOFOLLOW: a symlink as the last component is refused (ELOOP); for `path`, the link itself is opened. */
  noFollow?: boolean;
  /** Permission bits of a created file (before the umask the helper runs with). Default 0o644. */
  mode?: number;
}

/** The caller's open failed (`errno`: EACCES, ENOENT, ELOOP …), or capsa-open itself did (`step` other than `open`). */
export class CallerOpenError extends CapsaError {
  constructor(
    readonly step: string,
    readonly errno: string,
    message: string,
  ) {
    super(errno === 'EACCES' || errno === 'EPERM' ? 'E_PERMISSION_DENIED' : 'E_OPEN_AS_CALLER', message);
  }
}

/** capsa-open has this long to answer (it makes one open, which cannot block on a FIFO). */
const ANSWER_MS = 5000;
const MAX_ANSWER = 8192;

/** native/build/capsa-open, found as the shim is: from the directory that holds package.json. */
export function openerPath(): string {
  let dir = __dirname;
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return path.join(dir, 'native', 'build', 'capsa-open');
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return path.resolve(__dirname, '..', '..', '..', 'native', 'build', 'capsa-open');
}

/**
 * Opens `file` (absolute) as `caller` would: the descriptor, close-on-exec,
 * which the caller of this function owns; or a CallerOpenError naming the
 * path, the uid and the errno.
 */
export async function openAsCaller(caller: Caller, file: string, opts: OpenAsCallerOptions, program = openerPath()): Promise<number> {
  if (!path.isAbsolute(file)) throw new CallerOpenError('request', 'EINVAL', `cannot open ${JSON.stringify(file)} as uid ${caller.uid}: the path must be absolute`);
  if (file.includes('\0')) throw new CallerOpenError('request', 'EINVAL', `cannot open a path with a NUL byte as uid ${caller.uid}`);
  const fields = [caller.uid, caller.gid, caller.groups.join(','), opts.how, opts.noFollow ? 1 : 0, (opts.mode ?? 0o644).toString(8), file];
  const request = Buffer.from(fields.map((f) => `${f}\0`).join(''));
  const [ours, theirs] = seqpacketPair();
  let child: ReturnType<typeof spawnProgram>;
  try {
    // queued in the socket before the child starts: it reads it first, while still root
    sendMessage(ours, request);
    child = spawnProgram(program, [], { fds: [theirs], setsid: false, watch: 'wait', env: {} });
  } catch (err) {
    closeFd(ours);
    throw err;
  } finally {
    closeFd(theirs);
  }
  try {
    await readable(ours, ANSWER_MS, () => {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    });
    const msg = receiveMessage(ours, MAX_ANSWER, 1);
    const text = msg.data.toString('utf8');
    if (text === 'ok' && msg.fds.length === 1) return msg.fds[0];
    for (const fd of msg.fds) closeFd(fd);
    throw answerError(text, file, caller);
  } finally {
    closeFd(ours);
    await child.exited;
  }
}

function answerError(text: string, file: string, caller: Caller): CallerOpenError {
  if (!text.startsWith('error ')) return new CallerOpenError('answer', 'EIO', `cannot open ${file} as uid ${caller.uid}: capsa-open ended without an answer`);
  const [step = 'answer', where = '', errnum = '0', message = 'unknown error'] = text.slice(6).split('\t');
  const name = errnoNames.get(Number(errnum)) ?? `errno ${errnum}`;
  if (step === 'open') return new CallerOpenError(step, name, `cannot open ${where || file} as uid ${caller.uid}: ${message} (${name})`);
  return new CallerOpenError(step, name, `cannot open ${file} as uid ${caller.uid}: capsa-open failed at ${step}: ${message} (${name})`);
}

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([n, v]) => [v as number, n]));

/** Resolves when `fd` is readable (an answer, or its end hung up); after `ms` calls `onTimeout`, which makes it so. */
function readable(fd: number, ms: number, onTimeout: () => void): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(onTimeout, ms);
    const handle = koffiNode().poll(fd, { readable: true }, () => {
      clearTimeout(timer);
      handle.close();
      resolve();
    });
  });
}
