/**
 * The cgroup device program generator: the bytes the kernel gets for small
 * allow-lists, worked out by hand from struct bpf_insn (opcode; dst in the
 * low nibble, src in the high one; 16-bit offset from the next instruction;
 * 32-bit immediate, all little-endian) in the block shape of runc's
 * devicefilter.go; and the layouts that decide where the program goes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deviceProgram, encodeProgram, formatDeviceRule, parseDeviceRule, type DeviceRule } from '../../server/runtime/devicebpf';
import { DEFAULT_DEVICE_RULES, DEVICE_RULES, detectLayout } from '../../server/runtime/cgroups';

const hex = (rules: DeviceRule[]): string[] => encodeProgram(deviceProgram(rules)).toString('hex').match(/.{16}/g)!;

/** r2 = type, r3 = access, r4 = major, r5 = minor (struct bpf_cgroup_dev_ctx). */
const PROLOGUE = [
  '6112000000000000', // ldxw r2, [r1+0]
  '54020000ffff0000', // and32 r2, 0xffff
  '6113000000000000', // ldxw r3, [r1+0]
  '7403000010000000', // rsh32 r3, 16
  '6114040000000000', // ldxw r4, [r1+4]
  '6115080000000000', // ldxw r5, [r1+8]
];
const ALLOW = ['b400000001000000', '9500000000000000']; // mov32 r0, 1; exit
const DENY = ['b400000000000000', '9500000000000000']; // mov32 r0, 0; exit

test('an allow-list compiles to one block per rule, each jumping to the next on a mismatch, then deny', () => {
  const rules = ['c *:* m', 'c 1:3 rwm', 'c 136:* rwm'].map((r) => parseDeviceRule(r));
  assert.deepEqual(hex(rules), [
    ...PROLOGUE,
    // 6: c *:* m — type, then "every access bit asked for is m"
    '5502050002000000', // jne r2, 2 (char), +5 → 12
    'bc31000000000000', // mov32 r1, r3
    '5401000001000000', // and32 r1, 1 (mknod)
    '5d31020000000000', // jne r1, r3, +2 → 12
    ...ALLOW,
    // 12: c 1:3 rwm — no access check for rwm
    '5502040002000000', // jne r2, 2, +4 → 17
    '5504030001000000', // jne r4, 1, +3 → 17
    '5505020003000000', // jne r5, 3, +2 → 17
    ...ALLOW,
    // 17: c 136:* rwm — no minor check for *
    '5502030002000000', // jne r2, 2, +3 → 21
    '5504020088000000', // jne r4, 136, +2 → 21
    ...ALLOW,
    // 21: nothing matched
    ...DENY,
  ]);
});

test('an empty allow-list denies every device', () => {
  assert.deepEqual(hex([]), [...PROLOGUE, ...DENY]);
});

test('a rule matching everything ends the program (the verifier refuses unreachable code)', () => {
  assert.deepEqual(hex([{ type: 'a', access: 'rwm', allow: true }, parseDeviceRule('c 1:3 rwm')]), [...PROLOGUE, ...ALLOW]);
});

test('a deny rule returns 0 on a match; block devices are type 1; partial access is masked', () => {
  const rules: DeviceRule[] = [
    { type: 'b', major: 8, minor: 0, access: 'rwm', allow: false },
    { type: 'b', major: 7, access: 'rw', allow: true },
  ];
  assert.deepEqual(hex(rules), [
    ...PROLOGUE,
    '5502040001000000', // jne r2, 1 (block), +4 → 11
    '5504030008000000', // jne r4, 8, +3
    '5505020000000000', // jne r5, 0, +2
    ...DENY,
    '5502060001000000', // 11: jne r2, 1, +6 → 18
    'bc31000000000000', // mov32 r1, r3
    '5401000006000000', // and32 r1, 6 (read | write)
    '5d31030000000000', // jne r1, r3, +3 → 18
    '5504020007000000', // jne r4, 7, +2 → 18
    ...ALLOW,
    ...DENY, // 18
  ]);
});

test('the default allow-list reads back as the v1 lines it came from, mknod of anything and rwm of the few devices a container gets', () => {
  assert.deepEqual(DEFAULT_DEVICE_RULES.map(formatDeviceRule), DEVICE_RULES);
  assert.deepEqual(DEFAULT_DEVICE_RULES.slice(0, 2), [
    { type: 'c', major: undefined, minor: undefined, access: 'm', allow: true },
    { type: 'b', major: undefined, minor: undefined, access: 'm', allow: true },
  ]);
  // 6 prologue + 2 × 6 (type, access) + 9 × 5 (type, major, minor) + pts 4 + deny 2
  assert.equal(encodeProgram(deviceProgram([...DEFAULT_DEVICE_RULES])).length / 8, 6 + 12 + 45 + 4 + 2);
});

test('device rules that are not TYPE MAJOR:MINOR ACCESS are refused', () => {
  for (const bad of ['', 'x 1:3 rwm', 'c 1:3', 'c 1:3 rwx', 'c 1:3 rr', 'c -1:3 r', 'c 4294967296:0 r', 'c 2147483648:0 r', 'c 1:3 rwm extra']) {
    assert.throws(() => parseDeviceRule(bad), /invalid device rule/, bad);
  }
  assert.throws(() => deviceProgram([{ type: 'c', major: -1, access: 'r', allow: true }]), /not a device number/);
});

const HYBRID = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
].join('\n');

test('hybrid v1: the device program goes in a directory of the controller-less cgroup2, under the helper cgroup; v1 devices noted', () => {
  const layout = detectLayout(HYBRID, '5:devices:/\n4:memory:/svc\n0::/svc', 'capsa');
  assert.equal(layout.version, 1);
  assert.deepEqual(layout.unified, { controllers: [], own: '/sys/fs/cgroup/unified/svc', base: '/sys/fs/cgroup/unified/svc/capsa' });
  assert.equal(layout.v1Devices, true);
  assert.ok(!layout.hierarchies.includes(layout.unified!), 'the limits hierarchies stay the controllers');
  const noDevices = detectLayout(HYBRID.split('\n').filter((l) => !l.includes('devices')).join('\n'), '4:memory:/\n0::/', 'capsa');
  assert.equal(noDevices.v1Devices, false);
  const noUnified = detectLayout(HYBRID.split('\n').filter((l) => !l.includes('cgroup2')).join('\n'), '4:memory:/\n0::/', 'capsa');
  assert.equal(noUnified.unified, undefined);
});

test('v2: the device program goes in the one unified directory, with no v1 devices controller to fall back on', () => {
  const layout = detectLayout('30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw', '0::/system.slice/capsa.service', 'capsa');
  assert.equal(layout.unified, layout.hierarchies[0]);
  assert.equal(layout.v1Devices, false);
});
