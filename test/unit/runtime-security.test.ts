import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capabilityMasks, DEFAULT_CAPABILITIES, maskOf, normalizeCapability, resolveCapabilities } from '../../server/runtime/capabilities';
import { compileProfile, defaultProfile, parseProfile } from '../../server/runtime/seccomp';
import { SYSCALLS_X86_64 } from '../../server/runtime/syscalls';
import { parseSecurityOpts, parseUlimit, securitySettings } from '../../server/runtime/security';
import { RLIMIT, encodePlan } from '../../server/runtime/plan';

test("the default capability set is Docker's: CapEff 0x00000000a80425fb", () => {
  assert.equal(maskOf(DEFAULT_CAPABILITIES), 0xa80425fbn);
  assert.equal(maskOf(resolveCapabilities({})), 0xa80425fbn);
});

test('--cap-add and --cap-drop take Docker spellings; ALL works both ways; --privileged is every capability the helper has', () => {
  const caps = resolveCapabilities({ capAdd: ['net_admin', 'CAP_SYS_PTRACE'], capDrop: ['MKNOD'] });
  assert.ok(caps.includes('NET_ADMIN') && caps.includes('SYS_PTRACE') && !caps.includes('MKNOD'));
  assert.deepEqual(resolveCapabilities({ capDrop: ['ALL'], capAdd: ['CHOWN'] }), ['CHOWN']);
  assert.ok(resolveCapabilities({ capAdd: ['ALL'], capDrop: ['SYS_ADMIN'] }).length > 30);
  assert.ok(!resolveCapabilities({ capAdd: ['ALL'], capDrop: ['SYS_ADMIN'] }).includes('SYS_ADMIN'));
  const withoutResource = resolveCapabilities({ privileged: true }, 0x1fffeffffffn);
  assert.ok(!withoutResource.includes('SYS_RESOURCE') && withoutResource.includes('SYS_ADMIN'));
});

for (const bad of ['NET_ADMINX', 'CAP_', '', 'sys admin', '../x']) {
  test(`capability ${JSON.stringify(bad)} is refused`, () => {
    assert.throws(() => normalizeCapability(bad), /unknown capability/);
  });
}

test('capability masks survive the JSON of a container record and encode the same', () => {
  const masks = capabilityMasks(DEFAULT_CAPABILITIES);
  assert.equal(masks.inheritable, 0n);
  const plan = { namespaces: [], rootfs: '/r', mounts: [], devices: [], symlinks: [], maskedPaths: [], readonlyPaths: [], cwd: '/', env: [], args: ['x'], uid: 0, gid: 0, additionalGids: [], terminal: false, loopbackUp: false, cgroupProcs: [], capabilities: masks, rlimits: [{ resource: RLIMIT.NOFILE, soft: Infinity, hard: Infinity }], seccomp: Buffer.alloc(8) };
  const revived = JSON.parse(JSON.stringify(plan));
  assert.deepEqual(encodePlan(revived), encodePlan(plan as never));
});

/** Runs a compiled filter in a tiny classic-BPF interpreter, for an x86_64 call with the given args. */
function runFilter(prog: Buffer, nr: number, args: bigint[] = [], arch = 0xc000003e): number {
  const data = Buffer.alloc(64);
  data.writeUInt32LE(nr, 0);
  data.writeUInt32LE(arch, 4);
  args.forEach((a, i) => data.writeBigUInt64LE(a, 16 + 8 * i));
  let acc = 0;
  for (let pc = 0; pc < prog.length / 8; ) {
    const code = prog.readUInt16LE(pc * 8);
    const jt = prog[pc * 8 + 2];
    const jf = prog[pc * 8 + 3];
    const k = prog.readUInt32LE(pc * 8 + 4);
    pc++;
    switch (code) {
      case 0x20: acc = data.readUInt32LE(k); break;
      case 0x54: acc = (acc & k) >>> 0; break;
      case 0x15: pc += acc === k ? jt : jf; break;
      case 0x25: pc += acc > k ? jt : jf; break;
      case 0x35: pc += acc >= k ? jt : jf; break;
      case 0x06: return k;
      default: throw new Error(`opcode ${code}`);
    }
  }
  throw new Error('fell off the program');
}

const ALLOW = 0x7fff0000;
const EPERM = 0x00050001;

test('the default filter allows everyday calls and refuses keyctl, mount, unshare, add_key with EPERM', () => {
  const prog = compileProfile(defaultProfile(), { capabilities: DEFAULT_CAPABILITIES.map((c) => `CAP_${c}`), arch: 'amd64', kernel: '6.1.0' });
  assert.ok(prog.length / 8 < 4096);
  for (const name of ['read', 'write', 'openat', 'execve', 'clone', 'chroot', 'ptrace', 'arch_prctl']) assert.equal(runFilter(prog, SYSCALLS_X86_64[name]), ALLOW, name);
  for (const name of ['keyctl', 'add_key', 'mount', 'unshare', 'setns', 'init_module', 'reboot', 'bpf', 'kexec_load']) assert.equal(runFilter(prog, SYSCALLS_X86_64[name]), EPERM, name);
  // clone3 answers ENOSYS so libc falls back to clone, whose flags a filter can read
  assert.equal(runFilter(prog, SYSCALLS_X86_64.clone3), 0x00050000 | 38);
  assert.equal(runFilter(prog, SYSCALLS_X86_64.clone, [0x10000000n]), EPERM, 'clone with CLONE_NEWUSER');
  assert.equal(runFilter(prog, SYSCALLS_X86_64.clone, [0x01200011n]), ALLOW, 'a fork-like clone');
  assert.equal(runFilter(prog, SYSCALLS_X86_64.socket, [40n]), EPERM, 'AF_VSOCK');
  assert.equal(runFilter(prog, SYSCALLS_X86_64.socket, [2n]), ALLOW);
  assert.equal(runFilter(prog, SYSCALLS_X86_64.personality, [8n]), ALLOW);
  assert.equal(runFilter(prog, SYSCALLS_X86_64.personality, [0x0040000n]), EPERM);
  assert.equal(runFilter(prog, 0x40000000 + 1), EPERM, 'the x32 ABI');
  assert.equal(runFilter(prog, 1, [], 0x40000003), 0x80000000, 'another architecture is killed');
});

test('capabilities widen the default filter as in Docker: SYS_ADMIN brings mount and unshare back', () => {
  const caps = [...DEFAULT_CAPABILITIES, 'SYS_ADMIN'].map((c) => `CAP_${c}`);
  const prog = compileProfile(defaultProfile(), { capabilities: caps, arch: 'amd64', kernel: '6.1.0' });
  assert.equal(runFilter(prog, SYSCALLS_X86_64.mount), ALLOW);
  assert.equal(runFilter(prog, SYSCALLS_X86_64.clone, [0x10000000n]), ALLOW);
  assert.equal(runFilter(prog, SYSCALLS_X86_64.keyctl), EPERM);
});

test('a profile in Docker JSON format compiles, with argument comparisons on 64-bit values', () => {
  const prof = parseProfile(
    JSON.stringify({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        { names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
        { names: ['kill'], action: 'SCMP_ACT_ERRNO', args: [{ index: 1, value: 9, op: 'SCMP_CMP_EQ' }] },
        { names: ['write'], action: 'SCMP_ACT_ERRNO', args: [{ index: 2, value: 2 ** 33, op: 'SCMP_CMP_GT' }] },
        { names: ['nosuchcall'], action: 'SCMP_ACT_ERRNO' },
      ],
    }),
  );
  const prog = compileProfile(prof, { capabilities: [], arch: 'amd64' });
  assert.equal(runFilter(prog, SYSCALLS_X86_64.mkdir), 0x00050000 | 13);
  assert.equal(runFilter(prog, SYSCALLS_X86_64.kill, [1n, 9n]), EPERM);
  assert.equal(runFilter(prog, SYSCALLS_X86_64.kill, [1n, 15n]), ALLOW);
  assert.equal(runFilter(prog, SYSCALLS_X86_64.write, [1n, 0n, 2n ** 34n]), EPERM);
  assert.equal(runFilter(prog, SYSCALLS_X86_64.write, [1n, 0n, 2n ** 33n]), ALLOW);
  assert.equal(runFilter(prog, SYSCALLS_X86_64.write, [1n, 0n, 5n]), ALLOW);
});

const badProfiles: Array<[string, RegExp]> = [
  ['not json', /not JSON/],
  ['[]', /expected a JSON object/],
  ['{}', /defaultAction is required/],
  ['{"defaultAction":"SCMP_ACT_NOPE"}', /unsupported action/],
  ['{"defaultAction":"SCMP_ACT_ERRNO","syscalls":{}}', /syscalls must be a list/],
  ['{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"action":"SCMP_ACT_ALLOW"}]}', /needs names/],
  ['{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"]}]}', /needs an action/],
  ['{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}', /index must be 0 to 5/],
  ['{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":-1,"op":"SCMP_CMP_EQ"}]}]}', /non-negative integers/],
  ['{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_XOR"}]}]}', /unknown op/],
  ['{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}', /errnoRet must be/],
];
for (const [text, err] of badProfiles) {
  test(`seccomp profile ${text.slice(0, 60)} is refused`, () => {
    assert.throws(() => parseProfile(text), err);
  });
}

test('--ulimit takes NAME=SOFT[:HARD] with unlimited as -1', () => {
  assert.deepEqual(parseUlimit('nofile=1024:4096'), { resource: RLIMIT.NOFILE, soft: 1024, hard: 4096 });
  assert.deepEqual(parseUlimit('core=-1'), { resource: RLIMIT.CORE, soft: Infinity, hard: Infinity });
});

for (const [bad, err] of [
  ['nofile', /expected NAME=SOFT/],
  ['nofiles=1', /unknown resource/],
  ['nofile=abc', /not a non-negative integer/],
  ['nofile=10:5', /above hard limit/],
  ['nofile=1:2:3', /expected NAME=SOFT/],
  ['nofile=-5', /not a non-negative integer/],
] as const) {
  test(`ulimit ${bad} is refused`, () => assert.throws(() => parseUlimit(bad), err));
}

test('security options: seccomp=unconfined drops the filter, no-new-privileges sets it, unknown keys are refused', () => {
  assert.equal(securitySettings({}).seccomp !== undefined, true);
  assert.equal(securitySettings({ securityOpt: ['seccomp=unconfined'] }).seccomp, undefined);
  assert.equal(securitySettings({ privileged: true }).seccomp, undefined);
  assert.equal(securitySettings({ securityOpt: ['no-new-privileges'] }).noNewPrivileges, true);
  assert.equal(securitySettings({}).noNewPrivileges, false);
  assert.throws(() => parseSecurityOpts(['apparmor=x']), /invalid security option/);
  assert.throws(() => parseSecurityOpts(['seccomp=']), /seccomp=unconfined or seccomp=PROFILE/);
  assert.throws(() => parseSecurityOpts(['no-new-privileges=maybe']), /true or false/);
  assert.throws(() => securitySettings({ ulimits: ['nofile=1', 'nofile=2'] }), /given twice/);
});
