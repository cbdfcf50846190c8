/**
 * The device allow-list on the unified (v2) cgroup hierarchy, against the
 * real kernel: a cgroup device BPF program attached to the container's v2
 * directory. On a hybrid host (v1 controllers plus a controller-less cgroup2,
 * as this one) the container's v1 devices cgroup is opened wide first, so
 * what refuses is the program alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileRegistry, newCgroupParent, removeCgroupParent, testHelper, type TestHelper } from '../helpers/capsa';
import { CgroupManager, DEFAULT_DEVICE_RULES } from '../../server/runtime/cgroups';
import type { DeviceRule } from '../../server/runtime/devicebpf';

const registry = fileRegistry();

/** The host's root filesystem's block device, `major:minor` (mountinfo's third field for "/"). */
function rootDevice(): { major: number; minor: number } {
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === '/');
  const [major, minor] = line!.split(' ')[2].split(':').map(Number);
  return { major, minor };
}
const ROOT = rootDevice();

/**
 * Block devices the host itself can open (unbound loop devices: opening and
 * reading one is harmless, it reads as empty), so that a refusal in a
 * container is the container's confinement. The host's root disk may be
 * refused to the test's own process by whatever confines it.
 */
function sentinels(): Array<{ major: number; minor: number }> {
  const out: Array<{ major: number; minor: number }> = [];
  for (const n of [6, 7]) {
    try {
      const rdev = statSync(`/dev/loop${n}`).rdev;
      closeSync(openSync(`/dev/loop${n}`, 'r+'));
      out.push({ major: (rdev >> 8) & 0xfff, minor: (rdev & 0xff) | ((rdev >> 12) & 0xfff00) });
    } catch {
      // absent or refused here: the tests that need two are skipped
    }
  }
  return out;
}
const LOOPS = sentinels();

const unified = (): string | undefined => new CgroupManager().layout().unified?.base;
const skip = !unified() ? 'no cgroup2 hierarchy is mounted here' : LOOPS.length < 2 ? 'no two loop devices the host can open' : false;

/** Opens PATH read-write from the container's shell: `PATH ok`, or `PATH <the shell's error>`. */
const PROBE = 'probe() { if (exec 3<>"$1") 2>/tmp/probe.$$; then echo "$1 ok"; else echo "$1 $(cat /tmp/probe.$$)"; fi; rm -f /tmp/probe.$$; }';

async function helperFor(t: { after: (fn: () => Promise<void>) => void }): Promise<TestHelper & { cgroups: CgroupManager }> {
  const h = await testHelper(t, registry.url);
  const cgroups = new CgroupManager({ parent: h.cgroupParent });
  t.after(async () => assert.deepEqual(await cgroups.list(), [], 'no container cgroup is left'));
  return Object.assign(h, { cgroups });
}

/** A running container (`sleep`), its v1 devices cgroup (if any) opened to every device, so only the v2 program confines it. */
async function runningWithoutV1Devices(h: TestHelper & { cgroups: CgroupManager }, flags: string[] = []): Promise<string> {
  const r = await h.cli(['run', '-d', ...flags, 'busybox', 'sleep', '300']);
  assert.equal(r.code, 0, r.stderr);
  const id = r.stdout.trim();
  const v1 = h.cgroups.layout().hierarchies.find((x) => x.controllers.includes('devices'));
  if (v1) writeFileSync(path.join(v1.base, id, 'devices.allow'), 'a');
  return id;
}

async function sh(h: TestHelper, id: string, script: string): Promise<string> {
  const r = await h.cli(['exec', id, 'sh', '-c', `${PROBE}; ${script}`]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

test("on the unified hierarchy a block device made with mknod cannot be opened: the host's root disk stays out of reach", { skip }, async (t) => {
  const h = await helperFor(t);
  const id = await runningWithoutV1Devices(h);
  const [loop] = LOOPS;
  const out = await sh(
    h,
    id,
    `mknod /tmp/disk b ${ROOT.major} ${ROOT.minor} && echo mknod=ok; probe /tmp/disk; head -c1 /tmp/disk >/dev/null 2>&1; echo read=$?; ` +
      `mknod /tmp/loop b ${loop.major} ${loop.minor}; probe /tmp/loop`,
  );
  assert.match(out, /^mknod=ok$/m, 'mknod itself is allowed (b *:* m), as runc does');
  assert.match(out, /^\/tmp\/disk .*Operation not permitted/m, out);
  assert.match(out, /^read=1$/m);
  // the host opens this one: refused here, it is the container's device program that refuses
  assert.match(out, /^\/tmp\/loop .*Operation not permitted/m, out);
});

test('on the unified hierarchy the default devices still open: null, zero, full, random, urandom, ptmx and a pts', { skip }, async (t) => {
  const h = await helperFor(t);
  const id = await runningWithoutV1Devices(h);
  const out = await sh(h, id, 'for d in /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/ptmx /dev/tty; do probe $d; done; head -c4 /dev/urandom | wc -c');
  for (const d of ['null', 'zero', 'full', 'random', 'urandom', 'ptmx']) assert.match(out, new RegExp(`^/dev/${d} ok$`, 'm'), out);
  // without a controlling terminal /dev/tty answers ENXIO from its driver: the device check let it through
  assert.doesNotMatch(out, /^\/dev\/tty .*Operation not permitted/m, out);
  assert.match(out, /^4$/m);
  const tty = await h.cli(['exec', '-t', id, 'sh', '-c', `${PROBE}; probe /dev/tty; probe $(tty)`]);
  assert.equal(tty.code, 0, tty.stderr);
  assert.match(tty.stdout, /^\/dev\/tty ok\r?$/m, tty.stdout);
  assert.match(tty.stdout, /^\/dev\/pts\/\d+ ok\r?$/m, tty.stdout);
});

test('--privileged restricts no device: a block device made with mknod opens', { skip }, async (t) => {
  const h = await helperFor(t);
  const [loop] = LOOPS;
  const r = await h.cli(['run', '--rm', '--privileged', 'busybox', 'sh', '-c', `${PROBE}; mknod /tmp/loop b ${loop.major} ${loop.minor}; probe /tmp/loop; head -c1 /tmp/loop >/dev/null; echo read=$?`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^\/tmp\/loop ok$/m, r.stdout);
  assert.match(r.stdout, /^read=0$/m);
});

/**
 * A process of the container's v2 cgroup alone (its v1 cgroups stay the
 * host's): `sh -c SCRIPT` after writing itself into `procs`.
 */
function inCgroup(procs: string, script: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', `echo $$ > ${procs} || exit 99; ${PROBE}; ${script}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}: ${out}`))));
  });
}

async function containerCgroup(t: { after: (fn: () => Promise<void>) => void }, opts: { cgroups?: CgroupManager; devices?: DeviceRule[] | 'all' } = {}) {
  const parent = newCgroupParent();
  const cgroups = opts.cgroups ?? new CgroupManager({ parent });
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-devbpf-'));
  const id = randomBytes(32).toString('hex');
  t.after(async () => {
    await cgroups.remove(dir);
    rmSync(dir, { recursive: true, force: true });
    await removeCgroupParent(parent);
  });
  const procs = await cgroups.create(id, dir, { devices: opts.devices });
  return { cgroups, id, dir, procs, parent };
}

test('one more rule in the allow-list allows that one device, with only its access, and nothing else', { skip }, async (t) => {
  const [a, b] = LOOPS;
  const { procs } = await containerCgroup(t, { devices: [...DEFAULT_DEVICE_RULES, { type: 'b', major: a.major, minor: a.minor, access: 'r', allow: true }] });
  const v2procs = procs.find((p) => p.startsWith(unified()!))!;
  const dev = `/tmp/capsa-devbpf-${process.pid}`;
  t.after(() => {
    for (const f of [`${dev}-a`, `${dev}-b`]) rmSync(f, { force: true });
  });
  const out = await inCgroup(
    v2procs,
    `mknod ${dev}-a b ${a.major} ${a.minor}; mknod ${dev}-b b ${b.major} ${b.minor}; ` +
      `head -c1 ${dev}-a >/dev/null && echo read-a=ok; probe ${dev}-a; head -c1 ${dev}-b >/dev/null 2>&1; echo read-b=$?; probe /dev/null; rm -f ${dev}-a ${dev}-b`,
  );
  assert.match(out, /^read-a=ok$/m, out);
  assert.match(out, /-a .*Operation not permitted/m, 'read-write is more than the rule grants');
  assert.match(out, /^read-b=1$/m, 'another device the host can open is refused');
  assert.match(out, /^\/dev\/null ok$/m);
});

test('a kernel that refuses the device program fails the container cgroup naming the cause, unless a v1 devices controller confines devices', { skip }, async (t) => {
  const refuse = () => {
    throw new Error('device allow-list for X: bpf(BPF_PROG_LOAD) failed: EPERM');
  };
  const noV1Devices = () =>
    readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => !/ - cgroup cgroup .*\bdevices\b/.test(l))
      .join('\n');
  const parent = newCgroupParent();
  t.after(() => removeCgroupParent(parent));
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-devbpf-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const id = randomBytes(32).toString('hex');
  const bare = new CgroupManager({ parent, mountinfo: noV1Devices, attachDeviceFilter: refuse });
  assert.equal(bare.layout().v1Devices, false);
  await assert.rejects(bare.create(id, dir, {}), /cannot confine the container's devices: .*BPF_PROG_LOAD.*EPERM.*no v1 devices controller/);
  assert.deepEqual(await bare.list(), [], 'nothing is left of the refused cgroup');
  assert.equal(existsSync(path.join(dir, 'cgroup.json')), false);
  const privileged = await bare.create(id, dir, { devices: 'all' });
  assert.ok(privileged.length > 0, '--privileged needs no program');
  await bare.remove(dir);
  const withV1 = new CgroupManager({ parent, attachDeviceFilter: refuse });
  if (withV1.layout().v1Devices) {
    await withV1.create(id, dir, {});
    await withV1.remove(dir);
  }
});
