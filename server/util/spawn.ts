/**
 * Starts a short-lived native program (the shim) with posix_spawn instead of
 * child_process.spawn. Node forks: copying the page tables of a process with
 * V8's large mappings costs 8–10 ms on a small VM, most of a container
 * start. glibc's posix_spawn uses clone(CLONE_VM|CLONE_VFORK), which copies
 * nothing, and costs well under 1 ms (bench/run-startup.sh).
 *
 * The child gets /dev/null on 0–2, one end of a socketpair on each extra fd
 * from 3 up, default signal dispositions, an empty signal mask (Node ignores
 * SIGPIPE; an exec'd program must not inherit that) and, on request, a
 * session of its own (as spawn's `detached`).
 */
import * as net from 'node:net';
import { CapsaError } from '../errors';
import { errno, errnoName, libcFunctions } from './libc';

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
  /** Our end of the socketpair on the child's fd 3 + i. */
  sockets: net.Socket[];
  /** Settles when the child ends: its exit code, or the signal that killed it. */
  exited: Promise<{ code: number | null; signal: number | null }>;
}

/**
 * Runs file with args (argv[0] is file), `extraFds` socketpairs on fds
 * 3.., the helper's environment, and a new session when `setsid`.
 */
export function spawnProgram(file: string, args: string[], opts: { extraFds: number; setsid: boolean }): SpawnedProgram {
  const c = load();
  const ours: number[] = [];
  const theirs: number[] = [];
  const closeAll = (fds: number[]) => fds.forEach((fd) => c.close(fd));
  for (let i = 0; i < opts.extraFds; i++) {
    const sv = new Int32Array(2);
    if (c.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) !== 0) {
      const e = errno();
      closeAll([...ours, ...theirs]);
      throw new CapsaError('E_SPAWN', `cannot start ${file}: socketpair failed (errno ${e})`);
    }
    ours.push(sv[0]);
    theirs.push(sv[1]);
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
    for (let fd = 0; fd < 3; fd++) c.fa_addopen(actions, fd, '/dev/null', O_RDWR, 0);
    // dup2 clears close-on-exec on the copy; the originals close at exec
    theirs.forEach((fd, i) => c.fa_adddup2(actions, fd, 3 + i));
    c.sigfillset(all);
    c.sigemptyset(none);
    c.attr_setsigdefault(attr, all);
    c.attr_setsigmask(attr, none);
    c.attr_setflags(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (opts.setsid ? POSIX_SPAWN_SETSID : 0));
    const env = Object.entries(process.env).map(([k, v]) => `${k}=${v}`);
    rc = c.posix_spawn(pid, file, actions, attr, [file, ...args, null], [...env, null]);
  } finally {
    c.fa_destroy(actions);
    c.attr_destroy(attr);
    closeAll(theirs);
  }
  if (rc !== 0) {
    closeAll(ours);
    throw new CapsaError('E_SPAWN', `cannot start ${file}: ${errnoText(rc)}`);
  }
  const child = pid[0];
  const exited = new Promise<{ code: number | null; signal: number | null }>((resolve) => {
    const status = new Int32Array(1);
    // on a threadpool thread: the shim exits within milliseconds (it forks its monitor and leaves)
    c.waitpid.async(child, status, 0, (err: unknown, r: number) => {
      const s = status[0];
      if (err || r !== child) resolve({ code: null, signal: null });
      else if ((s & 0x7f) === 0) resolve({ code: (s >> 8) & 0xff, signal: null });
      else resolve({ code: null, signal: s & 0x7f });
    });
  });
  const sockets = ours.map((fd) => new net.Socket({ fd, readable: true, writable: true }));
  return { pid: child, sockets, exited };
}

function errnoText(n: number): string {
  const name = errnoName(n);
  return name === 'ENOENT' ? 'no such file (ENOENT)' : (name ?? `errno ${n}`);
}
