/**
 * The device allow-list on the unified (v2) cgroup hierarchy, where there is
 * no `devices.allow` file: the kernel asks a `BPF_PROG_TYPE_CGROUP_DEVICE`
 * program attached to the cgroup instead, on every mknod and every open of a
 * device node by a process in it (kernel `devcgroup_check_permission`, which
 * also still consults a v1 devices controller when one is mounted).
 *
 * The program is generated here from the same rules v1 writes, with a
 * tiny assembler of the six instructions it needs, in the shape runc's
 * `devicefilter.go` and crun's `ebpf.c` use: load the context's type,
 * access, major and minor into r2..r5, then one block per rule that jumps
 * to the next block on the first field that differs and otherwise returns
 * the rule's verdict; after the last block, deny. The first matching rule
 * decides, so a list is read top to bottom.
 *
 * Loading and attaching are two bpf(2) calls through koffi; bpf(2), unlike
 * namespace changes, is as safe in the helper's threaded process as any
 * other system call.
 */
import { closeSync, openSync } from 'node:fs';
import { CapsaError } from '../errors';
import { bufferAddress, errno, errnoName, libcFunctions, type LibcFn } from '../util/libc';
import { SYSCALLS_X86_64 } from './syscalls';

/** One device rule: what a v1 `devices.allow` line says, as data. */
export interface DeviceRule {
  /** `c` char, `b` block, `a` either. */
  type: 'a' | 'b' | 'c';
  /** undefined: any (`*`). */
  major?: number;
  /** undefined: any (`*`). */
  minor?: number;
  /** Letters of `rwm` (read, write, mknod). */
  access: string;
  /** Allow (true) or deny (false) what matches. */
  allow: boolean;
}

/**
 * Majors and minors the program compares: a jump's immediate is a signed
 * 32-bit number, sign-extended against a zero-extended register, so a value
 * above this would never match (Linux's own are 12 and 20 bits).
 */
const MAX_DEVICE_NUMBER = 0x7fffffff;

/** Parses `c 1:3 rwm` (v1 `devices.allow` syntax) into an allowing rule. */
export function parseDeviceRule(text: string, allow = true): DeviceRule {
  const m = /^([abc]) (\*|\d+):(\*|\d+) ([rwm]{1,3})$/.exec(text);
  if (!m || new Set(m[4]).size !== m[4].length) throw new DeviceFilterError(`invalid device rule ${JSON.stringify(text)}: expected TYPE MAJOR:MINOR ACCESS, as "c 1:3 rwm"`, 'parse');
  const num = (s: string): number | undefined => {
    if (s === '*') return undefined;
    const n = Number(s);
    if (n > MAX_DEVICE_NUMBER) throw new DeviceFilterError(`invalid device rule ${JSON.stringify(text)}: ${s} is above ${MAX_DEVICE_NUMBER}`, 'parse');
    return n;
  };
  return { type: m[1] as DeviceRule['type'], major: num(m[2]), minor: num(m[3]), access: m[4], allow };
}

/** The rule back in v1 syntax (what `devices.allow`/`devices.deny` take). */
export function formatDeviceRule(r: DeviceRule): string {
  return `${r.type} ${r.major ?? '*'}:${r.minor ?? '*'} ${r.access}`;
}

export class DeviceFilterError extends CapsaError {
  constructor(
    message: string,
    /** `parse`, `load` (BPF_PROG_LOAD), `attach` (BPF_PROG_ATTACH) or `open` (the cgroup directory). */
    readonly step: string,
    readonly errnoName?: string,
    options?: { cause?: unknown },
  ) {
    super('E_DEVICE_FILTER', message, options);
  }
}

// ---- the assembler -------------------------------------------------------

/** One eBPF instruction (include/uapi/linux/bpf.h `struct bpf_insn`); `target` names a label a jump goes to. */
export interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
  target?: string;
}

// opcode = operation | source | class (include/uapi/linux/bpf_common.h, bpf.h)
const BPF_LDX = 0x01;
const BPF_ALU = 0x04; // 32-bit ALU: the upper half of dst is zeroed
const BPF_JMP = 0x05;
const BPF_W = 0x00;
const BPF_MEM = 0x60;
const BPF_K = 0x00; // operand: imm
const BPF_X = 0x08; // operand: src register
const BPF_AND = 0x50;
const BPF_RSH = 0x70;
const BPF_MOV = 0xb0;
const BPF_JNE = 0x50;
const BPF_EXIT = 0x90;

const R0 = 0;
const R1 = 1;
const R2 = 2;
const R3 = 3;
const R4 = 4;
const R5 = 5;

const insn = (code: number, dst: number, src: number, off: number, imm: number, target?: string): Insn => ({ code, dst, src, off, imm, target });
/** dst = *(u32 *)(src + off) */
const ldxw = (dst: number, src: number, off: number) => insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0);
const and32 = (dst: number, imm: number) => insn(BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, imm);
const rsh32 = (dst: number, imm: number) => insn(BPF_ALU | BPF_RSH | BPF_K, dst, 0, 0, imm);
const mov32 = (dst: number, imm: number) => insn(BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, imm);
const mov32reg = (dst: number, src: number) => insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0);
/** if (dst != imm) goto target */
const jne = (dst: number, imm: number, target: string) => insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, 0, imm, target);
/** if (dst != src) goto target */
const jneReg = (dst: number, src: number, target: string) => insn(BPF_JMP | BPF_JNE | BPF_X, dst, src, 0, 0, target);
const exit = () => insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);

// struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }
const DEV_BLOCK = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR = 2; // BPF_DEVCG_DEV_CHAR
const ACC = { m: 1, r: 2, w: 4 } as const; // BPF_DEVCG_ACC_MKNOD, _READ, _WRITE

/**
 * The program for `rules` (first match decides, no match denies), with
 * jumps still symbolic: each rule's block jumps to the label of the next.
 */
export function deviceProgram(rules: DeviceRule[]): { insns: Insn[]; labels: Map<string, number> } {
  const insns: Insn[] = [
    ldxw(R2, R1, 0),
    and32(R2, 0xffff), // r2 = type
    ldxw(R3, R1, 0),
    rsh32(R3, 16), // r3 = access
    ldxw(R4, R1, 4), // r4 = major
    ldxw(R5, R1, 8), // r5 = minor
  ];
  const labels = new Map<string, number>();
  for (const [i, rule] of rules.entries()) {
    for (const n of [rule.major, rule.minor]) {
      if (n !== undefined && !(Number.isInteger(n) && n >= 0 && n <= MAX_DEVICE_NUMBER)) throw new DeviceFilterError(`device rule ${formatDeviceRule(rule)}: ${n} is not a device number`, 'parse');
    }
    const next = `rule-${i + 1}`;
    labels.set(`rule-${i}`, insns.length);
    const start = insns.length;
    if (rule.type !== 'a') insns.push(jne(R2, rule.type === 'b' ? DEV_BLOCK : DEV_CHAR, next));
    let access = 0;
    for (const a of rule.access) access |= ACC[a as keyof typeof ACC] ?? 0;
    // only what the rule grants: every bit the kernel asks for must be in the rule (r1 is free once loaded)
    if (access !== (ACC.m | ACC.r | ACC.w)) insns.push(mov32reg(R1, R3), and32(R1, access), jneReg(R1, R3, next));
    if (rule.major !== undefined) insns.push(jne(R4, rule.major, next));
    if (rule.minor !== undefined) insns.push(jne(R5, rule.minor, next));
    const unconditional = insns.length === start;
    insns.push(mov32(R0, rule.allow ? 1 : 0), exit());
    // a rule that matches everything ends the program: the verifier refuses code it can never reach
    if (unconditional) return { insns, labels };
  }
  labels.set(`rule-${rules.length}`, insns.length);
  insns.push(mov32(R0, 0), exit());
  return { insns, labels };
}

/** The program as the kernel reads it: 8 bytes per instruction, little-endian, jumps relative to the next instruction. */
export function encodeProgram(program: { insns: Insn[]; labels: Map<string, number> }): Buffer {
  const out = Buffer.alloc(program.insns.length * 8);
  program.insns.forEach((x, i) => {
    let off = x.off;
    if (x.target !== undefined) {
      const at = program.labels.get(x.target);
      if (at === undefined) throw new DeviceFilterError(`device program: jump to an unknown label ${x.target}`, 'parse');
      off = at - (i + 1);
    }
    out.writeUInt8(x.code, i * 8);
    out.writeUInt8(((x.src & 0xf) << 4) | (x.dst & 0xf), i * 8 + 1);
    out.writeInt16LE(off, i * 8 + 2);
    out.writeInt32LE(x.imm, i * 8 + 4);
  });
  return out;
}

// ---- loading and attaching ----------------------------------------------

const BPF_PROG_LOAD = 5;
const BPF_PROG_ATTACH = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE = 15;
const BPF_CGROUP_DEVICE = 6;
/** Programs of ancestors and descendants all run and all must allow: a nested runtime can narrow the list, never widen it. */
const BPF_F_ALLOW_MULTI = 2;
/**
 * The kernel asks for a license only to gate GPL-only helpers, and this
 * program calls none; the string is the project's own.
 */
const LICENSE = 'MIT';

function bpfSyscallNumber(): number {
  if (process.arch === 'x64') return SYSCALLS_X86_64.bpf;
  if (process.arch === 'arm64') return 280; // asm-generic/unistd.h __NR_bpf
  throw new DeviceFilterError(`device filter: no bpf(2) system call number known for ${process.arch}`, 'load');
}

let lib: { syscall: LibcFn; close: LibcFn } | undefined;
function libc(): { syscall: LibcFn; close: LibcFn } {
  return (lib ??= libcFunctions({ syscall: 'long syscall(long number, ...)', close: 'int close(int fd)' }));
}

function bpf(cmd: number, attr: Buffer): number {
  return Number(libc().syscall(bpfSyscallNumber(), 'int', cmd, 'void *', attr, 'unsigned int', attr.length));
}

/** What the kernel's refusal means for a user, by step and errno. */
function refusalHint(step: 'load' | 'attach', e: number): string {
  switch (errnoName(e)) {
    case 'ENOSYS':
      return 'the kernel has no bpf(2) (CONFIG_BPF_SYSCALL)';
    case 'EINVAL':
      return step === 'load'
        ? 'the kernel does not know cgroup device programs (CONFIG_CGROUP_BPF), or its verifier refused this one'
        : 'the directory is not a cgroup v2 cgroup, or the kernel cannot attach device programs (CONFIG_CGROUP_BPF)';
    case 'EPERM':
      return 'the helper lacks CAP_BPF/CAP_SYS_ADMIN here, or bpf(2) is blocked (seccomp, LSM, a container around the helper)';
    default:
      return '';
  }
}

function refused(step: 'load' | 'attach', call: string, where: string, e: number, log = ''): DeviceFilterError {
  const name = errnoName(e) ?? `errno ${e}`;
  const hint = refusalHint(step, e);
  const verifier = log.replace(/\0[\s\S]*$/, '').trim();
  return new DeviceFilterError(
    `device allow-list for ${where}: bpf(${call}) failed: ${name}${hint ? ` (${hint})` : ''}${verifier ? `; verifier: ${verifier.split('\n').slice(-3).join(' | ')}` : ''}`,
    step,
    name,
  );
}

/**
 * Loads the allow-list as a cgroup device program and attaches it to the
 * cgroup v2 directory `cgroupDir`, before any process is in it; the
 * program's only reference then is the cgroup, so it goes when the cgroup
 * is removed.
 */
export function attachDeviceFilter(cgroupDir: string, rules: DeviceRule[]): void {
  const insns = encodeProgram(deviceProgram(rules));
  const license = Buffer.from(`${LICENSE}\0`);
  const log = Buffer.alloc(16 * 1024);
  // union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level, log_size, log_buf; the rest zero
  const load = Buffer.alloc(128);
  load.writeUInt32LE(BPF_PROG_TYPE_CGROUP_DEVICE, 0);
  load.writeUInt32LE(insns.length / 8, 4);
  load.writeBigUInt64LE(bufferAddress(insns), 8);
  load.writeBigUInt64LE(bufferAddress(license), 16);
  load.writeUInt32LE(0, 24); // log_level 0: the verifier writes a log only if asked, and is asked again below on failure
  const progFd = bpf(BPF_PROG_LOAD, load);
  if (progFd < 0) {
    const e = errno();
    // a second try with the log on, for the message: the first stays cheap on the path every run takes
    load.writeUInt32LE(1, 24);
    load.writeUInt32LE(log.length, 28);
    load.writeBigUInt64LE(bufferAddress(log), 32);
    const again = bpf(BPF_PROG_LOAD, load);
    if (again >= 0) libc().close(again);
    throw refused('load', 'BPF_PROG_LOAD', cgroupDir, e, log.toString('latin1'));
  }
  try {
    let cgFd: number;
    try {
      cgFd = openSync(cgroupDir, 'r');
    } catch (err) {
      throw new DeviceFilterError(`device allow-list for ${cgroupDir}: cannot open the cgroup: ${(err as Error).message}`, 'open', (err as NodeJS.ErrnoException).code, { cause: err });
    }
    try {
      // BPF_PROG_ATTACH: target_fd, attach_bpf_fd, attach_type, attach_flags
      const attach = Buffer.alloc(32);
      attach.writeUInt32LE(cgFd, 0);
      attach.writeUInt32LE(progFd, 4);
      attach.writeUInt32LE(BPF_CGROUP_DEVICE, 8);
      attach.writeUInt32LE(BPF_F_ALLOW_MULTI, 12);
      if (bpf(BPF_PROG_ATTACH, attach) < 0) throw refused('attach', 'BPF_PROG_ATTACH', cgroupDir, errno());
    } finally {
      closeSync(cgFd);
    }
  } finally {
    libc().close(progFd);
  }
}
