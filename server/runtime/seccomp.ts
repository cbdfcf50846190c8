/**
 * Seccomp: profiles in Docker's JSON format (what `--security-opt
 * seccomp=FILE` takes), the default profile (equivalent to Docker's: a
 * system-call allow-list, widened by the capabilities a container has), and a
 * compiler from a profile to the classic BPF program the shim loads
 * (struct sock_filter[], host byte order).
 */
import { arch as hostArch, release } from 'node:os';
import { InvalidArgumentError } from '../errors';
import { SYSCALLS_X86_64 } from './syscalls';

export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: 'SCMP_CMP_NE' | 'SCMP_CMP_LT' | 'SCMP_CMP_LE' | 'SCMP_CMP_EQ' | 'SCMP_CMP_GE' | 'SCMP_CMP_GT' | 'SCMP_CMP_MASKED_EQ';
}

export interface SeccompFilter {
  caps?: string[];
  arches?: string[];
  minKernel?: string;
}

export interface SeccompSyscall {
  names?: string[];
  /** Older profiles name one call per entry. */
  name?: string;
  action: string;
  errnoRet?: number;
  args?: SeccompArg[] | null;
  includes?: SeccompFilter;
  excludes?: SeccompFilter;
  comment?: string;
}

/** Docker's profile format (moby's `types.Seccomp`), the parts that decide anything. */
export interface SeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  archMap?: unknown;
  syscalls?: SeccompSyscall[] | null;
}

const EPERM = 1;
const ENOSYS = 38;

/**
 * The default allow-list. Calls left out are those Docker's default profile
 * leaves out: they reach kernel state shared with the host or other
 * containers (keyctl, add_key, request_key, mount, unshare, setns, bpf,
 * perf_event_open, kexec_*, init_module, reboot, swapon, acct, clock_settime,
 * userfaultfd, …); some come back with the capability that governs them.
 */
const ALLOWED = `
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 clock_adjtime clock_adjtime64
clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range
connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2
epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64
fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex
futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid
getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area
gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel
ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit
io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset
landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek
lsetxattr lstat lstat64 madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2
mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at
nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free
pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction
rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min
sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile
sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32
setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr shmat shmctl
shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64
statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink
unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
`;

const words = (s: string): string[] => s.split(/\s+/).filter(Boolean);

/** Calls a capability brings back, as Docker's profile has them. */
const BY_CAPABILITY: Array<[string, string]> = [
  ['CAP_DAC_READ_SEARCH', 'open_by_handle_at'],
  [
    'CAP_SYS_ADMIN',
    'bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare',
  ],
  ['CAP_SYS_BOOT', 'reboot'],
  ['CAP_SYS_CHROOT', 'chroot'],
  ['CAP_SYS_MODULE', 'delete_module init_module finit_module'],
  ['CAP_SYS_PACCT', 'acct'],
  ['CAP_SYS_PTRACE', 'kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace'],
  ['CAP_SYS_RAWIO', 'iopl ioperm'],
  ['CAP_SYS_TIME', 'settimeofday stime clock_settime clock_settime64'],
  ['CAP_SYS_TTY_CONFIG', 'vhangup'],
  ['CAP_SYS_NICE', 'get_mempolicy mbind set_mempolicy set_mempolicy_home_node'],
  ['CAP_SYSLOG', 'syslog'],
  ['CAP_BPF', 'bpf'],
  ['CAP_PERFMON', 'perf_event_open'],
];

/** CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET: clone may not make namespaces without CAP_SYS_ADMIN. */
const CLONE_NAMESPACE_FLAGS = 0x7e020000;

/** The default profile, in Docker's format (so it goes through the same compiler as a user's FILE). */
export function defaultProfile(): SeccompProfile {
  const syscalls: SeccompSyscall[] = [
    { names: words(ALLOWED), action: 'SCMP_ACT_ALLOW' },
    { names: ['process_vm_readv', 'process_vm_writev', 'ptrace'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '4.8' } },
    // AF_VSOCK reaches the hypervisor's host side
    { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 40, op: 'SCMP_CMP_NE' }] },
    // personality: only the harmless personas (PER_LINUX, PER_LINUX32, UNAME26 variants, query)
    ...[0, 8, 0x20000, 0x20008, 0xffffffff].map((v): SeccompSyscall => ({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: v, op: 'SCMP_CMP_EQ' }] })),
    { names: ['arch_prctl'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64', 'x32'] } },
    { names: ['modify_ldt'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64', 'x32', 'x86'] } },
    { names: ['arm_fadvise64_64', 'arm_sync_file_range', 'sync_file_range2', 'breakpoint', 'cacheflush', 'set_tls'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['arm', 'arm64'] } },
    ...BY_CAPABILITY.map(([cap, names]): SeccompSyscall => ({ names: words(names), action: 'SCMP_ACT_ALLOW', includes: { caps: [cap] } })),
    { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }], excludes: { caps: ['CAP_SYS_ADMIN'] } },
    // clone3's flags are behind a pointer a filter cannot read: ENOSYS makes libc fall back to clone
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS, excludes: { caps: ['CAP_SYS_ADMIN'] } },
  ];
  return { defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: EPERM, syscalls };
}

/** Parses and checks a profile's JSON text (from `--security-opt seccomp=FILE`). */
export function parseProfile(text: string, source = 'seccomp profile'): SeccompProfile {
  let p: unknown;
  try {
    p = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`invalid ${source}: not JSON: ${(err as Error).message}`);
  }
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw new InvalidArgumentError(`invalid ${source}: expected a JSON object`);
  const prof = p as SeccompProfile;
  if (typeof prof.defaultAction !== 'string') throw new InvalidArgumentError(`invalid ${source}: defaultAction is required`);
  if (prof.syscalls != null && !Array.isArray(prof.syscalls)) throw new InvalidArgumentError(`invalid ${source}: syscalls must be a list`);
  for (const [i, s] of (prof.syscalls ?? []).entries()) {
    if (typeof s !== 'object' || s === null) throw new InvalidArgumentError(`invalid ${source}: syscalls[${i}] must be an object`);
    const names = s.names ?? (s.name !== undefined ? [s.name] : undefined);
    if (!Array.isArray(names) || names.length === 0 || names.some((n) => typeof n !== 'string')) {
      throw new InvalidArgumentError(`invalid ${source}: syscalls[${i}] needs names, a list of system call names`);
    }
    if (typeof s.action !== 'string') throw new InvalidArgumentError(`invalid ${source}: syscalls[${i}] needs an action`);
    for (const [j, a] of (s.args ?? []).entries()) {
      if (typeof a !== 'object' || a === null || !Number.isInteger(a.index) || a.index < 0 || a.index > 5) {
        throw new InvalidArgumentError(`invalid ${source}: syscalls[${i}].args[${j}].index must be 0 to 5`);
      }
      for (const v of [a.value, a.valueTwo ?? 0]) {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > Number.MAX_SAFE_INTEGER) {
          throw new InvalidArgumentError(`invalid ${source}: syscalls[${i}].args[${j}] values must be non-negative integers`);
        }
      }
      if (!OPS.has(a.op)) throw new InvalidArgumentError(`invalid ${source}: syscalls[${i}].args[${j}] has unknown op ${JSON.stringify(a.op)}`);
    }
    actionCode(s.action, s.errnoRet ?? prof.defaultErrnoRet, `${source}: syscalls[${i}]`);
  }
  actionCode(prof.defaultAction, prof.defaultErrnoRet, source);
  return prof;
}

const OPS = new Set(['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ']);

/** seccomp return values (linux/seccomp.h). */
const RET = {
  KILL_PROCESS: 0x80000000,
  KILL_THREAD: 0x00000000,
  TRAP: 0x00030000,
  ERRNO: 0x00050000,
  TRACE: 0x7ff00000,
  LOG: 0x7ffc0000,
  ALLOW: 0x7fff0000,
};

function actionCode(action: string, errnoRet: number | undefined, where: string): number {
  const errno = errnoRet ?? EPERM;
  if (!Number.isInteger(errno) || errno < 0 || errno > 0xffff) throw new InvalidArgumentError(`invalid ${where}: errnoRet must be 0 to 65535`);
  switch (action) {
    case 'SCMP_ACT_ALLOW':
      return RET.ALLOW;
    case 'SCMP_ACT_ERRNO':
      return RET.ERRNO | errno;
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return RET.KILL_THREAD;
    case 'SCMP_ACT_KILL_PROCESS':
      return RET.KILL_PROCESS;
    case 'SCMP_ACT_TRAP':
      return RET.TRAP;
    case 'SCMP_ACT_TRACE':
      return RET.TRACE | errno;
    case 'SCMP_ACT_LOG':
      return RET.LOG;
    default:
      throw new InvalidArgumentError(`invalid ${where}: unsupported action ${JSON.stringify(action)}`);
  }
}

/** What the profile's includes/excludes are judged against. */
export interface SeccompContext {
  /** Capability names with the CAP_ prefix, e.g. CAP_SYS_ADMIN. */
  capabilities: string[];
  /** Docker's arch name: amd64, arm64, … */
  arch?: string;
  /** Kernel release, e.g. 6.1.0. */
  kernel?: string;
}

interface Target {
  /** Docker's names for this architecture and its 32-bit siblings. */
  arches: string[];
  auditArch: number;
  table: Record<string, number>;
  /** System call numbers at or above this belong to an ABI the filter refuses (x32). */
  abiLimit?: number;
}

const TARGETS: Record<string, Target> = {
  // AUDIT_ARCH_X86_64 = EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
  amd64: { arches: ['amd64'], auditArch: 0xc000003e, table: SYSCALLS_X86_64, abiLimit: 0x40000000 },
};

function nodeArchToDocker(a: string): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: 'x86', s390x: 's390x', ppc64: 'ppc64le', riscv64: 'riscv64' } as Record<string, string>)[a] ?? a;
}

function kernelAtLeast(kernel: string, min: string): boolean {
  const k = kernel.split(/[.-]/).map(Number);
  const m = min.split('.').map(Number);
  for (let i = 0; i < m.length; i++) {
    const a = k[i] || 0;
    if (a !== m[i]) return a > m[i];
  }
  return true;
}

function applies(s: SeccompSyscall, ctx: Required<SeccompContext>): boolean {
  const inc = s.includes ?? {};
  const exc = s.excludes ?? {};
  if (inc.caps?.length && !inc.caps.every((c) => ctx.capabilities.includes(c))) return false;
  if (inc.arches?.length && !inc.arches.includes(ctx.arch)) return false;
  if (inc.minKernel && !kernelAtLeast(ctx.kernel, inc.minKernel)) return false;
  if (exc.caps?.some((c) => ctx.capabilities.includes(c))) return false;
  if (exc.arches?.includes(ctx.arch)) return false;
  if (exc.minKernel && kernelAtLeast(ctx.kernel, exc.minKernel)) return false;
  return true;
}

// classic BPF opcodes (linux/bpf_common.h)
const LD_W_ABS = 0x20;
const ALU_AND_K = 0x54;
const JEQ_K = 0x15;
const JGT_K = 0x25;
const JGE_K = 0x35;
const RET_K = 0x06;

interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** A jump target not yet placed: resolved once the rule's block is laid out. */
type Label = 'next' | 'pass' | 'fail' | number;
interface PendingInsn {
  code: number;
  jt: Label;
  jf: Label;
  k: number;
}

const OFF_NR = 0;
const OFF_ARCH = 4;
const argLo = (i: number): number => 16 + 8 * i; // little-endian: the low word first
const argHi = (i: number): number => 16 + 8 * i + 4;

/** The checks for one argument condition; `fail` leaves the rule, `pass` goes on to the next condition. */
function argChecks(a: SeccompArg): PendingInsn[] {
  const hi = (v: number): number => Math.floor(v / 2 ** 32) >>> 0;
  const lo = (v: number): number => v >>> 0;
  const ld = (off: number): PendingInsn => ({ code: LD_W_ABS, jt: 0, jf: 0, k: off });
  const j = (code: number, k: number, jt: Label, jf: Label): PendingInsn => ({ code, jt, jf, k });
  const v = a.value;
  switch (a.op) {
    case 'SCMP_CMP_EQ':
      return [ld(argHi(a.index)), j(JEQ_K, hi(v), 0, 'fail'), ld(argLo(a.index)), j(JEQ_K, lo(v), 'pass', 'fail')];
    case 'SCMP_CMP_NE':
      return [ld(argHi(a.index)), j(JEQ_K, hi(v), 0, 'pass'), ld(argLo(a.index)), j(JEQ_K, lo(v), 'fail', 'pass')];
    case 'SCMP_CMP_MASKED_EQ': {
      const want = a.valueTwo ?? 0;
      return [
        ld(argHi(a.index)),
        { code: ALU_AND_K, jt: 0, jf: 0, k: hi(v) },
        j(JEQ_K, hi(want), 0, 'fail'),
        ld(argLo(a.index)),
        { code: ALU_AND_K, jt: 0, jf: 0, k: lo(v) },
        j(JEQ_K, lo(want), 'pass', 'fail'),
      ];
    }
    case 'SCMP_CMP_GT':
    case 'SCMP_CMP_GE':
      return [
        ld(argHi(a.index)),
        j(JGT_K, hi(v), 'pass', 0),
        j(JEQ_K, hi(v), 0, 'fail'),
        ld(argLo(a.index)),
        j(a.op === 'SCMP_CMP_GT' ? JGT_K : JGE_K, lo(v), 'pass', 'fail'),
      ];
    case 'SCMP_CMP_LT':
    case 'SCMP_CMP_LE':
      return [
        ld(argHi(a.index)),
        j(JGE_K, hi(v), 0, 'pass'),
        j(JEQ_K, hi(v), 0, 'fail'),
        ld(argLo(a.index)),
        j(a.op === 'SCMP_CMP_LT' ? JGE_K : JGT_K, lo(v), 'fail', 'pass'),
      ];
  }
}

/** Lays out one block: labels become relative offsets (bpf jumps count from the next instruction). */
function resolve(block: PendingInsn[], passTargets: number[]): Insn[] {
  const end = block.length; // 'fail' and 'next' jump past the block
  return block.map((insn, i) => {
    const target = (l: Label): number => {
      if (typeof l === 'number') return l;
      if (l === 'fail' || l === 'next') return end - i - 1;
      // 'pass': the start of the next condition (or the rule's return)
      const t = passTargets.find((p) => p > i);
      if (t === undefined) throw new Error('seccomp compiler: pass with no following condition');
      return t - i - 1;
    };
    const jt = target(insn.jt);
    const jf = target(insn.jf);
    if (jt > 255 || jf > 255) throw new InvalidArgumentError('seccomp rule too long: a jump exceeds 255 instructions');
    return { code: insn.code, jt, jf, k: insn.k };
  });
}

/**
 * Compiles a profile to a BPF program for the host's architecture. Rules are
 * checked in profile order and the first that matches decides, as with
 * libseccomp for rules of one call; everything else gets defaultAction.
 */
export function compileProfile(profile: SeccompProfile, context: SeccompContext): Buffer {
  const ctx: Required<SeccompContext> = { capabilities: context.capabilities, arch: context.arch ?? nodeArchToDocker(hostArch()), kernel: context.kernel ?? release() };
  const target = TARGETS[ctx.arch];
  if (!target) throw new InvalidArgumentError(`seccomp filters are not supported on ${ctx.arch} yet: run with --security-opt seccomp=unconfined`);
  const defaultRet = actionCode(profile.defaultAction, profile.defaultErrnoRet, 'seccomp profile');
  const out: Insn[] = [
    { code: LD_W_ABS, jt: 0, jf: 0, k: OFF_ARCH },
    { code: JEQ_K, jt: 1, jf: 0, k: target.auditArch },
    // another ABI (a 32-bit binary): its numbers mean other calls, so nothing of it is allowed
    { code: RET_K, jt: 0, jf: 0, k: RET.KILL_PROCESS },
    { code: LD_W_ABS, jt: 0, jf: 0, k: OFF_NR },
  ];
  if (target.abiLimit !== undefined) {
    out.push({ code: JGE_K, jt: 0, jf: 1, k: target.abiLimit }, { code: RET_K, jt: 0, jf: 0, k: RET.ERRNO | EPERM });
  }
  // Unconditional rules with the same action are grouped: one compare per call.
  const seen = new Set<number>();
  for (const s of profile.syscalls ?? []) {
    if (!applies(s, ctx)) continue;
    const ret = actionCode(s.action, s.errnoRet ?? profile.defaultErrnoRet, 'seccomp profile');
    const names = s.names ?? (s.name !== undefined ? [s.name] : []);
    for (const name of names) {
      const nr = target.table[name];
      if (nr === undefined) continue; // not a call of this architecture
      if (!s.args?.length) {
        if (seen.has(nr)) continue; // an earlier unconditional rule already decides it
        seen.add(nr);
        out.push({ code: JEQ_K, jt: 0, jf: 1, k: nr }, { code: RET_K, jt: 0, jf: 0, k: ret });
        continue;
      }
      if (seen.has(nr)) continue;
      // jeq nr; [conditions…]; ret; then reload nr (conditions clobber the accumulator)
      const block: PendingInsn[] = [{ code: JEQ_K, jt: 0, jf: 'next', k: nr }];
      const passTargets: number[] = [];
      for (const a of s.args) {
        passTargets.push(block.length);
        block.push(...argChecks(a));
      }
      passTargets.push(block.length);
      block.push({ code: RET_K, jt: 0, jf: 0, k: ret });
      const laid = resolve(block, passTargets.slice(1));
      out.push(...laid, { code: LD_W_ABS, jt: 0, jf: 0, k: OFF_NR });
    }
  }
  out.push({ code: RET_K, jt: 0, jf: 0, k: defaultRet });
  if (out.length > 4096) throw new InvalidArgumentError(`seccomp profile compiles to ${out.length} instructions, more than the kernel's 4096`);
  const buf = Buffer.alloc(out.length * 8);
  out.forEach((insn, i) => {
    buf.writeUInt16LE(insn.code, i * 8);
    buf.writeUInt8(insn.jt, i * 8 + 2);
    buf.writeUInt8(insn.jf, i * 8 + 3);
    buf.writeUInt32LE(insn.k >>> 0, i * 8 + 4);
  });
  return buf;
}
