/**
 * `--device`: Docker's parsing of HOST[:CTR][:PERMS] (declared once in
 * server/protocol/runoptions.ts, for the CLI and the helper), the host node
 * found as Docker's daemon finds it, the allow-list rules it adds (ahead of
 * the defaults, deciding their device alone) and the program bytes those
 * compile to, and the plan's `hostdevice` record.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { MAX_DEVICE_SPEC, parseDeviceSpec } from '../../server/protocol/runoptions';
import { resolveHostDevices, splitDev, withDeviceRules, type HostDevice } from '../../server/runtime/hostdevices';
import { deviceProgram, encodeProgram, formatDeviceRule, parseDeviceRule, type DeviceRule } from '../../server/runtime/devicebpf';
import { encodePlan } from '../../server/runtime/plan';
import { buildRunPlan } from '../../server/runtime/spec';
import { prepareRun } from '../../server/runtime/runsetup';

test("Docker's forms: HOST, HOST:PERMS, HOST:CTR, HOST:CTR:PERMS; rwm by default, the container path the host's unless given, cleaned", () => {
  const cases: Array<[string, [string, string, string]]> = [
    ['/dev/null', ['/dev/null', '/dev/null', 'rwm']],
    ['/dev/null:r', ['/dev/null', '/dev/null', 'r']],
    ['/dev/null:mw', ['/dev/null', '/dev/null', 'mw']],
    ['/dev/null:/dev/mynull', ['/dev/null', '/dev/mynull', 'rwm']],
    ['/dev/null:/dev/mynull:rw', ['/dev/null', '/dev/mynull', 'rw']],
    ['/dev/null:/dev/../x/./y//', ['/dev/null', '/x/y', 'rwm']],
    ['/dev/null:/../../dev/n', ['/dev/null', '/dev/n', 'rwm']],
    ['/dev/null:/rwm', ['/dev/null', '/rwm', 'rwm']],
  ];
  for (const [spec, [host, ctr, perms]] of cases) {
    assert.deepEqual(parseDeviceSpec(spec), { PathOnHost: host, PathInContainer: ctr, CgroupPermissions: perms }, spec);
  }
});

test('bad --device values are refused saying why: relative paths, bad or repeated letters, empty parts, too many parts, the root, NUL, length', () => {
  const cases: Array<[unknown, RegExp]> = [
    ['dev/null', /^invalid --device "dev\/null": host path "dev\/null" is not an absolute path$/],
    ['/dev/null:dev/n', /container path "dev\/n" is not an absolute path/],
    ['/dev/null:rwx', /container path "rwx" is not an absolute path/], // as Docker: not a mode, so a path
    ['/dev/null:/dev/n:rwx', /bad permissions "rwx" \(a combination of r, w and m, each once\)/],
    ['/dev/null:/dev/n:rr', /bad permissions "rr"/],
    ['/dev/null:/dev/n:', /empty part/],
    ['/dev/null::r', /empty part/],
    [':/dev/n', /empty part/],
    ['', /empty part/],
    ['/dev/null:/dev/n:r:w', /too many ':'/],
    ['/dev/null:/', /is the container's root/],
    ['/dev/null:/dev/..', /is the container's root/],
    ['/dev/null\0:/x', /NUL byte/],
    [`/${'a'.repeat(MAX_DEVICE_SPEC)}`, /longer than 8200 characters/],
    [42, /^invalid --device 42: expected HOST_PATH/],
  ];
  for (const [spec, re] of cases) {
    const got = parseDeviceSpec(spec);
    assert.equal(typeof got, 'string', String(spec).slice(0, 40));
    assert.match(got as string, re, String(spec).slice(0, 40));
    assert.ok((got as string).length < 400, 'a long value is cut in the message');
  }
});

test("dev_t splits as glibc's major/minor: 12+20 bits", () => {
  assert.deepEqual(splitDev(statSync('/dev/null').rdev), { major: 1, minor: 3 });
  assert.deepEqual(splitDev(0x00000103), { major: 1, minor: 3 });
  assert.deepEqual(splitDev(0x0001f00d), { major: 0x1f0, minor: 13 });
  // gnu_dev_makedev: minor's low 8 bits, major's 12 above them, minor's high 12 at bit 20, major's rest at bit 44
  const makedev = (ma: bigint, mi: bigint) => (mi & 0xffn) | ((ma & 0xfffn) << 8n) | ((mi & ~0xffn) << 12n) | ((ma & ~0xfffn) << 32n);
  assert.deepEqual(splitDev(makedev(259n, 0xfffffn)), { major: 259, minor: 0xfffff });
  assert.deepEqual(splitDev(makedev(0x12345n, 0x6789an)), { major: 0x12345, minor: 0x6789a });
});

test("the host node as Docker's daemon finds it: a symlink is followed, its node's type, numbers, mode and owner taken; a file, a directory or nothing refused", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-hostdev-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  symlinkSync('/dev/zero', path.join(dir, 'z'));
  writeFileSync(path.join(dir, 'file'), 'x');
  const host = statSync('/dev/zero');
  const [d] = await resolveHostDevices([`${dir}/z:/dev/z:r`]);
  assert.deepEqual(d.mapping, { PathOnHost: `${dir}/z`, PathInContainer: '/dev/z', CgroupPermissions: 'r' });
  assert.deepEqual(d.node, { path: '/dev/z', type: 'c', major: 1, minor: 5, mode: host.mode & 0o7777, uid: host.uid, gid: host.gid, hostPath: '/dev/zero' });
  await assert.rejects(resolveHostDevices([`${dir}/file`]), /host path .*\/file is not a character or block device: it is a regular file/);
  await assert.rejects(resolveHostDevices([dir]), /is not a character or block device: it is a directory/);
  await assert.rejects(resolveHostDevices([`${dir}/missing:/dev/m`]), /host path .*\/missing: no such file or directory/);
  await assert.rejects(resolveHostDevices([`${dir}/file/x`]), /a component of it is not a directory/);
  await assert.rejects(resolveHostDevices(['/dev/null:/dev/n', '/dev/zero:/dev/n']), /duplicate --device container path \/dev\/n/);
});

const dev = (spec: string, type: 'c' | 'b', major: number, minor: number): HostDevice => {
  const m = parseDeviceSpec(spec);
  if (typeof m === 'string') throw new Error(m);
  return { mapping: m, node: { path: m.PathInContainer, type, major, minor, mode: 0o666, uid: 0, gid: 0, hostPath: m.PathOnHost } };
};

test("a --device's rule comes ahead of the defaults, and anything more than it grants is denied: the device's whole grant", () => {
  const base = ['c *:* m', 'c 1:5 rwm'].map((r) => parseDeviceRule(r));
  const rules = withDeviceRules(base, [dev('/dev/zero:/dev/z:r', 'c', 1, 5)]);
  assert.deepEqual(rules.map((r) => `${r.allow ? 'allow' : 'deny'} ${formatDeviceRule(r)}`), ['allow c 1:5 r', 'deny c 1:5 rwm', 'allow c *:* m', 'allow c 1:5 rwm']);
  // rwm needs no deny after it; two paths of one device share its rule, their permissions joined
  const joined = withDeviceRules([], [dev('/dev/null:/dev/a:r', 'c', 1, 3), dev('/dev/null:/dev/b:mw', 'c', 1, 3), dev('/dev/sda:rwm', 'b', 8, 0)]);
  assert.deepEqual(joined.map((r) => `${r.allow ? 'allow' : 'deny'} ${formatDeviceRule(r)}`), ['allow c 1:3 rwm', 'allow b 8:0 rwm']);
});

/** r2 = type, r3 = access, r4 = major, r5 = minor (struct bpf_cgroup_dev_ctx). */
const PROLOGUE = ['6112000000000000', '54020000ffff0000', '6113000000000000', '7403000010000000', '6114040000000000', '6115080000000000'];
const ALLOW = ['b400000001000000', '9500000000000000'];
const DENY = ['b400000000000000', '9500000000000000'];

test('the v2 program of a --device r rule: its allow block, its deny block, then the defaults', () => {
  const rules = withDeviceRules([parseDeviceRule('c *:* m')], [dev('/dev/zero:/dev/z:r', 'c', 1, 5)]);
  assert.deepEqual(encodeProgram(deviceProgram(rules)).toString('hex').match(/.{16}/g), [
    ...PROLOGUE,
    // 6: allow c 1:5 r
    '5502070002000000', // jne r2, 2 (char), +7 → 14
    'bc31000000000000', // mov32 r1, r3
    '5401000002000000', // and32 r1, 2 (read)
    '5d31040000000000', // jne r1, r3, +4 → 14
    '5504030001000000', // jne r4, 1, +3 → 14
    '5505020005000000', // jne r5, 5, +2 → 14
    ...ALLOW,
    // 14: deny c 1:5 rwm
    '5502040002000000', // jne r2, 2, +4 → 19
    '5504030001000000', // jne r4, 1, +3 → 19
    '5505020005000000', // jne r5, 5, +2 → 19
    ...DENY,
    // 19: allow c *:* m
    '5502050002000000', // jne r2, 2, +5 → 25
    'bc31000000000000',
    '5401000001000000', // and32 r1, 1 (mknod)
    '5d31020000000000', // jne r1, r3, +2 → 25
    ...ALLOW,
    // 25: no rule matched
    ...DENY,
  ]);
});

/** Runs a program of the six instructions the generator uses on one device access, as the kernel would. */
function verdict(rules: DeviceRule[], type: 'b' | 'c', major: number, minor: number, access: string): boolean {
  const prog = encodeProgram(deviceProgram(rules));
  const acc = [...access].reduce((a, c) => a | ({ m: 1, r: 2, w: 4 } as Record<string, number>)[c], 0);
  const r = [0, 0, 0, 0, 0, 0];
  const ctx = [(acc << 16) | (type === 'b' ? 1 : 2), major, minor];
  for (let pc = 0; ; pc++) {
    const code = prog[pc * 8];
    const dst = prog[pc * 8 + 1] & 0xf;
    const src = prog[pc * 8 + 1] >> 4;
    const off = prog.readInt16LE(pc * 8 + 2);
    const imm = prog.readInt32LE(pc * 8 + 4);
    if (code === 0x61) r[dst] = ctx[off / 4];
    else if (code === 0x54) r[dst] = (r[dst] & imm) >>> 0;
    else if (code === 0x74) r[dst] = r[dst] >>> imm;
    else if (code === 0xb4) r[dst] = imm >>> 0;
    else if (code === 0xbc) r[dst] = r[src];
    else if (code === 0x55) pc += r[dst] !== imm >>> 0 ? off : 0;
    else if (code === 0x5d) pc += r[dst] !== r[src] ? off : 0;
    else if (code === 0x95) return r[0] === 1;
    else throw new Error(`unexpected opcode ${code.toString(16)}`);
  }
}

test('with the default list, --device /dev/zero:r reads only, /dev/full:rw cannot be mknod-ed, and other devices keep their defaults', async () => {
  const { DEFAULT_DEVICE_RULES } = await import('../../server/runtime/cgroups');
  const rules = withDeviceRules(DEFAULT_DEVICE_RULES, [dev('/dev/zero:/dev/z:r', 'c', 1, 5), dev('/dev/full:/dev/f:rw', 'c', 1, 7)]);
  assert.equal(verdict(rules, 'c', 1, 5, 'r'), true);
  assert.equal(verdict(rules, 'c', 1, 5, 'w'), false);
  assert.equal(verdict(rules, 'c', 1, 5, 'rw'), false);
  assert.equal(verdict(rules, 'c', 1, 5, 'm'), false);
  assert.equal(verdict(rules, 'c', 1, 7, 'rw'), true);
  assert.equal(verdict(rules, 'c', 1, 7, 'm'), false);
  assert.equal(verdict(rules, 'c', 1, 3, 'rw'), true, 'null keeps its default');
  assert.equal(verdict(rules, 'c', 4, 1, 'm'), true, 'mknod of another char device, as by default');
  assert.equal(verdict(rules, 'b', 8, 0, 'r'), false, 'block devices stay shut');
});

test('a --device node takes the place of a default node at its path, and is encoded with its host path for the bind', () => {
  const input = {
    layerDirs: ['/l'], image: { Cmd: ['true'] }, hostname: 'h', user: { uid: 0, gid: 0, additionalGids: [] }, tty: false, binds: [],
    paths: { dir: '/c', rootfs: '/c/rootfs', upper: '/c/u', work: '/c/w', hostname: '/c/hostname', hosts: '/c/hosts', resolvConf: '/c/resolv.conf' },
    devices: [dev('/dev/zero:/dev/null:r', 'c', 1, 5).node, dev('/dev/full:/dev/f', 'c', 1, 7).node],
  };
  const plan = buildRunPlan(input);
  const nulls = plan.devices.filter((d) => d.path === '/dev/null');
  assert.deepEqual(nulls.map((d) => [d.major, d.minor]), [[1, 5]]);
  const fields = encodePlan(plan).toString('utf8').split('\0');
  const at = fields.indexOf('hostdevice');
  assert.deepEqual(fields.slice(at, at + 9), ['hostdevice', '/dev/null', 'c', '1', '5', '438', '0', '0', '/dev/zero']);
  assert.ok(fields.includes('device') && fields[fields.indexOf('device') + 1] === '/dev/zero', 'the defaults stay device records');
});

test('the helper refuses bad --device values with the words the CLI uses, and a device path that is also a mount point', async () => {
  await assert.rejects(prepareRun({ image: 'busybox', devices: ['dev/null'] }, '/nonexistent'), (e: Error) => e.message === parseDeviceSpec('dev/null'));
  await assert.rejects(prepareRun({ image: 'busybox', devices: ['/dev/null:/t'], tmpfs: ['/t'] }, '/nonexistent'), /container path \/t is also a mount point/);
  const s = await prepareRun({ image: 'busybox', devices: ['/dev/zero:/dev/z:r'] }, '/nonexistent');
  assert.deepEqual(s.spec.devices?.map((d) => d.path), ['/dev/z']);
  assert.ok(Array.isArray(s.limits.devices) && formatDeviceRule(s.limits.devices[0]) === 'c 1:5 r');
  const p = await prepareRun({ image: 'busybox', devices: ['/dev/zero'], privileged: true }, '/nonexistent');
  assert.equal(p.limits.devices, 'all', '--privileged restricts no device, and still gets the node');
  assert.equal(p.spec.devices?.length, 1);
});
