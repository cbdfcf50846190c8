/**
 * `--device HOST[:CTR][:PERMS]` against the real kernel, with harmless
 * character devices only (null, zero, full): the node is the host's device
 * at the container path, the permissions are that device's whole grant on
 * both paths this host has (v1 `devices.allow` and the v2 program on its
 * hybrid cgroup2), and hostile values are refused before anything is made.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileRegistry, inspect, newCgroupParent, ok, processesOf, removeCgroupParent, testHelper, type TestHelper } from '../helpers/capsa';
import { rawRequest, writeRawClient } from '../helpers/rawclient';
import { CgroupManager, DEFAULT_DEVICE_RULES } from '../../server/runtime/cgroups';
import { resolveHostDevices, withDeviceRules } from '../../server/runtime/hostdevices';

const registry = fileRegistry();
const root = process.getuid?.() === 0;
const skip = !root && 'the helper needs root';
const layout = root ? new CgroupManager().layout() : undefined;

/** Opens PATH read-write from the container's shell: `PATH ok`, or `PATH <the shell's error>`. */
const PROBE = 'probe() { if (exec 3<>"$1") 2>/tmp/probe.$$; then echo "$1 ok"; else echo "$1 $(cat /tmp/probe.$$)"; fi; rm -f /tmp/probe.$$; }';

async function helperFor(t: { after: (fn: () => Promise<void>) => void }): Promise<TestHelper & { cgroups: CgroupManager }> {
  const h = await testHelper(t, registry.url);
  const cgroups = new CgroupManager({ parent: h.cgroupParent });
  t.after(async () => assert.deepEqual(await cgroups.list(), [], 'no container cgroup is left'));
  return Object.assign(h, { cgroups });
}

async function run(h: TestHelper, flags: string[], script: string): Promise<string> {
  const r = await h.cli(['run', '--rm', '--network', 'none', ...flags, 'busybox', 'sh', '-c', `${PROBE}; ${script}`]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

test('--device /dev/null:/dev/mynull: the host null device at /dev/mynull, with its mode and owner, written and read; inspect shows HostConfig.Devices', { skip }, async (t) => {
  const h = await helperFor(t);
  const host = statSync('/dev/null');
  const out = await run(h, ['--device', '/dev/null:/dev/mynull'], 'stat -c "%F %t:%T %a %u:%g" /dev/mynull; echo hello > /dev/mynull && echo write=ok; head -c5 /dev/mynull | wc -c; probe /dev/mynull');
  assert.match(out, new RegExp(`^character special file 1:3 ${(host.mode & 0o7777).toString(8)} ${host.uid}:${host.gid}$`, 'm'), out);
  assert.match(out, /^write=ok$/m, out);
  assert.match(out, /^0$/m, 'reads end at once, as null does');
  assert.match(out, /^\/dev\/mynull ok$/m, out);
  const created = await ok(h, ['create', '--name', 'dev', '--device', '/dev/null:/dev/mynull', '--device', '/dev/zero:r', 'busybox', 'true']);
  assert.match(created.trim(), /^[0-9a-f]{64}$/);
  const info = await inspect(h, 'dev');
  assert.deepEqual(info.HostConfig.Devices, [
    { PathOnHost: '/dev/null', PathInContainer: '/dev/mynull', CgroupPermissions: 'rwm' },
    { PathOnHost: '/dev/zero', PathInContainer: '/dev/zero', CgroupPermissions: 'r' },
  ]);
  await ok(h, ['rm', 'dev']);
});

test('--device with a user namespace (--userns auto): the node at the container path, read only as asked', { skip }, async (t) => {
  const h = await helperFor(t);
  const out = await run(h, ['--userns', 'auto', '--device', '/dev/zero:/dev/myzero:r'], 'stat -c "%F %t:%T" /dev/myzero; head -c3 /dev/myzero | wc -c; probe /dev/myzero');
  assert.match(out, /^character special file 1:5$/m, out);
  assert.match(out, /^3$/m, out);
  assert.match(out, /^\/dev\/myzero .*Operation not permitted/m, 'read only, as asked');
});

test('a --device host node swapped for another file after create is not bound at the next start (without m the host node is bound, mknod being refused)', { skip }, async (t) => {
  const h = await helperFor(t);
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-devswap-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const node = path.join(dir, 'mynull');
  // a second null device node of the host's: harmless, and its own path to swap
  const made = spawnSync('mknod', ['-m', '666', node, 'c', '1', '3']);
  assert.equal(made.status, 0, made.stderr?.toString());
  const id = (await ok(h, ['create', '--network', 'none', '--device', `${node}:/dev/n:rw`, 'busybox', 'sh', '-c', 'echo x > /dev/n && echo bound'])).trim();
  assert.match(await ok(h, ['start', '-a', id]), /^bound$/m);
  rmSync(node);
  writeFileSync(node, 'not a device');
  const r = await h.cli(['start', '-a', id]);
  assert.notEqual(r.code, 0, r.stdout);
  assert.match(r.stderr, /no longer the character device 1:3/, r.stderr);
  rmSync(node);
  // a symlink to a file of the test's own: were it followed, the write would land there, never in a host file that matters
  writeFileSync(path.join(dir, 'target'), 'untouched');
  symlinkSync(path.join(dir, 'target'), node);
  const l = await h.cli(['start', '-a', id]);
  assert.notEqual(l.code, 0, l.stdout);
  assert.match(l.stderr, /no longer the character device 1:3/, l.stderr);
  assert.equal(readFileSync(path.join(dir, 'target'), 'utf8'), 'untouched');
  await ok(h, ['rm', '-f', id]);
});

test('--device /dev/zero:/dev/z:r reads zeros, and a write is refused with EPERM, on the whole container and on v1 and v2 alone', { skip }, async (t) => {
  const h = await helperFor(t);
  const out = await run(h, ['--device', '/dev/zero:/dev/z:r'], 'head -c4 /dev/z | od -An -tx1; probe /dev/z; echo x > /dev/z; echo write=$?');
  assert.match(out, /^ 00 00 00 00$/m, out);
  assert.match(out, /^\/dev\/z .*Operation not permitted/m, out);
  assert.match(out, /^write=1$/m, out);

  // v1 alone: the kernel's own list of the container's devices cgroup has the narrowed rule, and no other for 1:5
  const v1 = h.cgroups.layout().hierarchies.find((x) => x.controllers.includes('devices'));
  const r = await h.cli(['run', '-d', '--network', 'none', '--device', '/dev/zero:/dev/z:r', 'busybox', 'sleep', '300']);
  assert.equal(r.code, 0, r.stderr);
  const id = r.stdout.trim();
  if (v1) {
    const list = readFileSync(path.join(v1.base, id, 'devices.list'), 'utf8').split('\n');
    assert.ok(list.includes('c 1:5 r'), list.join(', '));
    assert.ok(!list.some((l) => l.startsWith('c 1:5 ') && l !== 'c 1:5 r'), list.join(', '));
    assert.ok(list.includes('c 1:3 rwm'), 'the other defaults stay');
  }
  // v2 alone: the v1 devices cgroup opened to every device, so what refuses is the program
  if (layout?.unified) {
    if (v1) writeFileSync(path.join(v1.base, id, 'devices.allow'), 'a');
    const e = await h.cli(['exec', id, 'sh', '-c', `${PROBE}; probe /dev/z; head -c2 /dev/z | wc -c; probe /dev/null`]);
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /^\/dev\/z .*Operation not permitted/m, e.stdout);
    assert.match(e.stdout, /^2$/m, e.stdout);
    assert.match(e.stdout, /^\/dev\/null ok$/m, e.stdout);
  }
  await ok(h, ['rm', '-f', id]);
});

test('a --device without m cannot be made again with mknod, while its node opens; with m it can', { skip: skip || (!layout?.unified && 'no cgroup2 hierarchy: v1 keeps c *:* m') }, async (t) => {
  const h = await helperFor(t);
  const out = await run(h, ['--device', '/dev/full:/dev/f:rw'], 'mknod /tmp/f c 1 7 2>&1; echo mknod=$?; probe /dev/f; echo x > /dev/f; echo write=$?');
  assert.match(out, /^mknod=1$/m, out);
  assert.match(out, /Operation not permitted/, out);
  assert.match(out, /^\/dev\/f ok$/m, 'the node itself is there (the host node bound, mknod being refused) and opens');
  assert.match(out, /^write=1$/m, 'full says ENOSPC: the write reached the device');
  const withM = await run(h, ['--device', '/dev/full:/dev/f:rwm'], 'mknod /tmp/f c 1 7 && echo mknod=ok; probe /tmp/f');
  assert.match(withM, /^mknod=ok$/m, withM);
  assert.match(withM, /^\/tmp\/f ok$/m, withM);
});

test('a default container still cannot open a block device it makes with mknod', { skip }, async (t) => {
  const h = await helperFor(t);
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === '/')!;
  const [major, minor] = line.split(' ')[2].split(':');
  const out = await run(h, [], `mknod /tmp/disk b ${major} ${minor} && echo mknod=ok; probe /tmp/disk`);
  assert.match(out, /^\/tmp\/disk .*Operation not permitted/m, out);
});

test('v1 alone, against the kernel: a process in a devices cgroup with the --device rules reads the device and cannot write it', { skip: skip || (!layout?.v1Devices && 'no v1 devices controller') }, async (t) => {
  // the container's cgroups without the unified hierarchy: only v1's devices.allow confines
  const noUnified = () => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => !/ - cgroup2 /.test(l)).join('\n');
  const parent = newCgroupParent();
  const cgroups = new CgroupManager({ parent, mountinfo: noUnified });
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-devflag-'));
  t.after(async () => {
    await cgroups.remove(dir);
    rmSync(dir, { recursive: true, force: true });
    await removeCgroupParent(parent);
  });
  const devices = withDeviceRules(DEFAULT_DEVICE_RULES, await resolveHostDevices(['/dev/zero:/dev/z:r']));
  const procs = await cgroups.create(randomBytes(32).toString('hex'), dir, { devices });
  const v1procs = procs.find((p) => p.includes('/devices/'))!;
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('sh', ['-c', `echo $$ > ${v1procs} || exit 99; ${PROBE}; head -c3 /dev/zero | wc -c; probe /dev/zero; probe /dev/null`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`exit ${code}: ${text}`))));
  });
  assert.match(out, /^3$/m, out);
  assert.match(out, /^\/dev\/zero .*Operation not permitted/m, out);
  assert.match(out, /^\/dev\/null ok$/m, out);
});

const LONG = `/dev/${'a'.repeat(9000)}`;

/** [what, the --device value, stderr must match]. Every case must fail and create nothing. */
const HOSTILE: Array<[string, string, RegExp]> = [
  ['a relative host path', 'dev/null', /invalid --device "dev\/null": host path "dev\/null" is not an absolute path/],
  ['a relative container path', '/dev/null:mynull', /container path "mynull" is not an absolute path/],
  ['a regular file', '/etc/passwd', /invalid --device "\/etc\/passwd": host path \/etc\/passwd is not a character or block device: it is a regular file/],
  ['a .. path to a regular file', '/dev/../etc/shadow:/dev/s', /host path \/dev\/..\/etc\/shadow is not a character or block device: it is a regular file/],
  ['a directory', '/dev', /host path \/dev is not a character or block device: it is a directory/],
  ['a missing path', '/dev/capsa-no-such-device', /host path \/dev\/capsa-no-such-device: no such file or directory/],
  ['bad permission letters', '/dev/null:/dev/n:rwx', /bad permissions "rwx"/],
  ['a repeated permission letter', '/dev/null:/dev/n:rr', /bad permissions "rr"/],
  ['empty parts', '/dev/null::r', /empty part/],
  ['an empty value', '', /empty part/],
  ['four parts', '/dev/null:/dev/n:r:w', /too many ':'/],
  ['the container root', '/dev/null:/dev/..', /is the container's root/],
  ['a very long value', LONG, /longer than 8200 characters/],
];

test('hostile --device values are refused with a clear error, nothing is created, and the helper still serves', { skip }, async (t) => {
  const h = await helperFor(t);
  await ok(h, ['pull', 'busybox']);
  const before = readdirSync(path.join(h.root, 'containers'));
  for (const [what, value, re] of HOSTILE) {
    for (const verb of ['run', 'create']) {
      const r = await h.cli([verb, '--network', 'none', '--device', value, 'busybox', 'true']);
      assert.equal(r.code, 125, `${verb} ${what}: exit ${r.code}`);
      assert.match(r.stderr, re, `${verb} ${what}: ${r.stderr}`);
      assert.ok(r.stderr.length < 1000, `${what}: the message stays short`);
    }
  }
  assert.deepEqual(readdirSync(path.join(h.root, 'containers')), before, 'nothing was created');
  // the helper's own checks, for a client other than the CLI: the same words
  const client = writeRawClient(h.dir);
  for (const [what, value, re] of HOSTILE) {
    const a = await rawRequest(client, h.socket, 'capsa/container/run', { image: 'busybox', network: 'none', cmd: ['true'], devices: [value] });
    assert.equal(a.error?.data?.code, 'E_INVALID_ARGUMENT', `${what}: ${JSON.stringify(a).slice(0, 300)}`);
    assert.match(a.error!.message, re, what);
  }
  assert.deepEqual(await h.cgroups.list(), []);
  assert.deepEqual(await processesOf(h), []);
  assert.equal(h.process.exitCode, null, 'the helper is the same process');
  assert.match(await run(h, [], 'echo alive'), /^alive$/m);
});
