/**
 * Starts a short-lived native program (the shim) with posix_spawn instead of
 * child_process.spawn. Node forks: copying the page tables of a process with
 * V8's large mappings costs 8–10 ms on a small VM, most of a container
 * start. glibc's posix_spawn uses clone(CLONE_VM|CLONE_VFORK), which copies
 * nothing, and costs well under 1 ms (bench/run-startup.sh).
 *
 * The child gets /dev/null on 0–2 (or, on request, a socketpair or a
 * descriptor of ours, as spawn's 'pipe' and fd entries), one end of a
 * socketpair on each extra fd from 3 up, default signal dispositions, an
 * empty signal mask (Node ignores SIGPIPE; an exec'd program must not
 * inherit that) and, on request, a session of its own (as spawn's
 * `detached`).
 */
import * as net from 'node:net';
import { CapsaError } from '../errors';
import { errno, errnoName, koffiNode, libcFunctions } from './libc';

let lib: ReturnType<typeof declare> | undefined;
const load = () => (lib ??= declare());

function declare() {
  return libcFunctions({
    socketpair: 'int socketpair(int domain, int type, int protocol, _Out_ int *sv)',
    close: 'int close(int fd)',
    posix_spawn: 'int posix_spawn(_Out_ int *pid, const char *path, void *actions, void *attr, const char **argv, const char **envp)',
    fa_init: 'int posix_spawn_file_actions_init(void *actions)',
    fa_destroy: 'int posix_spawn_file_actions_destroy(void *actions)',
    fa_adddup2: 'int posix_spawn_file_actions_adddup2(void *actions, int fd, int newfd)',
    fa_addopen: 'int posix_spawn_file_actions_addopen(void *actions, int fd, const char *path, int oflag, uint32_t mode)',
    attr_init: 'int posix_spawnattr_init(void *attr)',
    attr_destroy: 'int posix_spawnattr_destroy(void *attr)',
    attr_setflags: 'int posix_spawnattr_setflags(void *attr, short flags)',
    attr_setsigmask: 'int posix_spawnattr_setsigmask(void *attr, const void *mask)',
    attr_setsigdefault: 'int posix_spawnattr_setsigdefault(void *attr, const void *set)',
    sigemptyset: 'int sigemptyset(void *set)',
    sigfillset: 'int sigfillset(void *set)',
    waitpid: 'int waitpid(int pid, _Out_ int *status, int options)',
    syscall: 'long syscall(long nr, ...)',
  });
}

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const O_RDWR = 2;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSID = 0x80;
// glibc x86_64/aarch64: posix_spawn_file_actions_t is 80 bytes, posix_spawnattr_t 336, sigset_t 128; room to spare
const ACTIONS_SIZE = 256;
const ATTR_SIZE = 512;
const SIGSET_SIZE = 128;

export interface SpawnedProgram {
  pid: number;
  /** For each of `fds`: our end of the socketpair for a 'socket' entry, undefined for a passed descriptor. */
  sockets: Array<net.Socket | undefined>;
  /** The same for `stdio`: our ends for the child's 0, 1 and 2. */
  stdio: Array<net.Socket | undefined>;
  /** Settles when the child ends: its exit code, or the signal that killed it. */
  exited: Promise<{ code: number | null; signal: number | null }>;
}

export interface SpawnOptions {
  /** The child's fds 3, 4, …: 'socket' for a new socketpair, or a descriptor of ours to pass on as it is. */
  fds: Array<'socket' | number>;
  /** The child's 0, 1 and 2 the same way, or 'null' for /dev/null (the default for each). */
  stdio?: Array<'null' | 'socket' | number>;
  /** A session of its own, as spawn's `detached`. */
  setsid: boolean;
  /** Default: the helper's. */
  env?: NodeJS.ProcessEnv;
  /**
   * How its end is noticed: `wait` holds a libuv pool thread in waitpid (for
   * a program that ends within moments, as the shim does once it has forked
   * its monitor), `pidfd` polls a pidfd in the event loop (for one that may
   * run for hours and must not hold a pool thread).
   */
  watch?: 'wait' | 'pidfd';
  /** With `pidfd`: the event loop stays alive until the child ends (as a child_process does). Default: it does not wait for it. */
  ref?: boolean;
}

/** Runs file with args (argv[0] is file), `opts.stdio` (else /dev/null) on 0-2 and `opts.fds` from 3 on. */
export function spawnProgram(file: string, args: string[], opts: SpawnOptions): SpawnedProgram {
  const c = load();
  const stdio = [0, 1, 2].map((i) => opts.stdio?.[i] ?? 'null');
  // the child's fds in order from 0; undefined: /dev/null
  const wanted = [...stdio, ...opts.fds];
  const ours: Array<number | undefined> = [];
  const theirs: Array<number | undefined> = [];
  const made: number[] = [];
  const closeAll = (fds: Array<number | undefined>) => fds.forEach((fd) => fd !== undefined && c.close(fd));
  for (const want of wanted) {
    if (want !== 'socket') {
      ours.push(undefined);
      theirs.push(want === 'null' ? undefined : want);
      continue;
    }
    const sv = new Int32Array(2);
    if (c.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) !== 0) {
      const e = errno();
      closeAll([...ours, ...made]);
      throw new CapsaError('E_SPAWN', `cannot start ${file}: socketpair failed (${errnoName(e) ?? `errno ${e}`})`);
    }
    ours.push(sv[0]);
    theirs.push(sv[1]);
    made.push(sv[1]);
  }
  const actions = Buffer.alloc(ACTIONS_SIZE);
  const attr = Buffer.alloc(ATTR_SIZE);
  const all = Buffer.alloc(SIGSET_SIZE);
  const none = Buffer.alloc(SIGSET_SIZE);
  c.fa_init(actions);
  c.attr_init(attr);
  const pid = new Int32Array(1);
  let rc: number;
  try {
    // dup2 clears close-on-exec on the copy; the originals close at exec.
    // (A passed descriptor below the last target would be overwritten by an
    // earlier action: what callers pass are their own, higher, descriptors.)
    theirs.forEach((fd, i) => (fd === undefined ? c.fa_addopen(actions, i, '/dev/null', O_RDWR, 0) : c.fa_adddup2(actions, fd, i)));
    c.sigfillset(all);
    c.sigemptyset(none);
    c.attr_setsigdefault(attr, all);
    c.attr_setsigmask(attr, none);
    c.attr_setflags(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (opts.setsid ? POSIX_SPAWN_SETSID : 0));
    const env = Object.entries(opts.env ?? process.env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]));
    rc = c.posix_spawn(pid, file, actions, attr, [file, ...args, null], [...env, null]);
  } finally {
    c.fa_destroy(actions);
    c.attr_destroy(attr);
    closeAll(made);
  }
  if (rc !== 0) {
    closeAll(ours);
    throw new CapsaError('E_SPAWN', `cannot start ${file}: ${errnoText(rc)}`);
  }
  const child = pid[0];
  const exited = opts.watch === 'pidfd' ? watchPidfd(child, !!opts.ref) : waitFor(child);
  const ends = ours.map((fd) => (fd === undefined ? undefined : new net.Socket({ fd, readable: true, writable: true })));
  return { pid: child, stdio: ends.slice(0, 3), sockets: ends.slice(3), exited };
}

type ExitStatus = { code: number | null; signal: number | null };

function decode(s: number): ExitStatus {
  return (s & 0x7f) === 0 ? { code: (s >> 8) & 0xff, signal: null } : { code: null, signal: s & 0x7f };
}

/** waitpid on a libuv pool thread. */
function waitFor(child: number): Promise<ExitStatus> {
  return new Promise((resolve) => {
    const status = new Int32Array(1);
    load().waitpid.async(child, status, 0, (err: unknown, r: number) => resolve(err || r !== child ? { code: null, signal: null } : decode(status[0])));
  });
}

const WNOHANG = 1;
const SYS_PIDFD_OPEN = 434; // the same number on x86_64 and arm64

/** A pidfd turns readable when the process ends (pidfd_open(2)); without pidfds (Linux < 5.3), a look every second. */
function watchPidfd(child: number, ref: boolean): Promise<ExitStatus> {
  const c = load();
  return new Promise((resolve) => {
    const reap = (): boolean => {
      const status = new Int32Array(1);
      if (c.waitpid(child, status, WNOHANG) !== child) return false;
      resolve(decode(status[0]));
      return true;
    };
    const pidfd = c.syscall(SYS_PIDFD_OPEN, 'int', child, 'uint', 0);
    if (pidfd < 0) {
      const timer = setInterval(() => reap() && clearInterval(timer), 1000);
      if (!ref) timer.unref();
      return;
    }
    const poll = koffiNode().poll(pidfd, { readable: true }, () => {
      if (!reap()) return;
      poll.close();
      c.close(pidfd);
    });
    if (!ref) poll.unref();
  });
}

function errnoText(n: number): string {
  const name = errnoName(n);
  return name === 'ENOENT' ? 'no such file (ENOENT)' : (name ?? `errno ${n}`);
}
