import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildRunPlan, mergeEnv, overlayData, resolveArgs } from '../../server/runtime/spec';
import { encodePlan, MS } from '../../server/runtime/plan';
import { specInput } from '../helpers/spec';

const input = specInput;

test('the overlay lists layers top-most first, then upper and work', () => {
  const plan = buildRunPlan(input());
  assert.equal(plan.mounts[0].fstype, 'overlay');
  assert.equal(plan.mounts[0].target, '/');
  assert.equal(plan.mounts[0].data, 'lowerdir=/s/layers/sha256/bb:/s/layers/sha256/aa,upperdir=/c/upper,workdir=/c/work');
});

test('overlay paths with separators are refused rather than mis-parsed by the kernel', () => {
  assert.throws(() => overlayData(['/a:b'], '/u', '/w'), /cannot take/);
  assert.throws(() => overlayData([], '/u', '/w'), /no layers/);
});

test('the command is Entrypoint + Cmd, a run command replaces Cmd, --entrypoint clears Cmd', () => {
  assert.deepEqual(resolveArgs({ Entrypoint: ['/ep'], Cmd: ['a'] }), ['/ep', 'a']);
  assert.deepEqual(resolveArgs({ Entrypoint: ['/ep'], Cmd: ['a'] }, ['b']), ['/ep', 'b']);
  assert.deepEqual(resolveArgs({ Entrypoint: ['/ep'], Cmd: ['a'] }, undefined, ['/x']), ['/x']);
  assert.deepEqual(resolveArgs({ Entrypoint: null, Cmd: null }, ['true']), ['true']);
  assert.throws(() => resolveArgs({}), /no command specified/);
});

test('user environment overrides the image, which overrides defaults', () => {
  const plan = buildRunPlan(input({ env: ['LANG=en', 'NEW=1'], tty: true }));
  assert.ok(plan.env.includes('PATH=/bin'));
  assert.ok(plan.env.includes('LANG=en'));
  assert.ok(!plan.env.includes('LANG=C'));
  assert.ok(plan.env.includes('HOSTNAME=abc123'));
  assert.ok(plan.env.includes('TERM=xterm'));
  assert.throws(() => mergeEnv(['=x']), /empty name/);
});

test('runc defaults: /proc, /dev, devpts, shm, mqueue, read-only /sys, masked and read-only paths, devices', () => {
  const plan = buildRunPlan(input());
  const targets = plan.mounts.map((m) => m.target);
  for (const t of ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf']) assert.ok(targets.includes(t), t);
  assert.ok(plan.mounts.find((m) => m.target === '/sys')!.flags & MS.RDONLY);
  assert.ok(plan.maskedPaths.includes('/proc/kcore'));
  assert.ok(plan.readonlyPaths.includes('/proc/sys'));
  assert.deepEqual(plan.devices.map((d) => d.path).sort(), ['/dev/full', '/dev/null', '/dev/random', '/dev/tty', '/dev/urandom', '/dev/zero']);
  assert.equal(plan.hostname, 'abc123');
  assert.equal(plan.loopbackUp, true);
});

test('a read-only bind is a bind with MS_RDONLY', () => {
  const plan = buildRunPlan(input({ binds: [{ source: '/src', target: '/data', readOnly: true }] }));
  const m = plan.mounts.find((x) => x.target === '/data')!;
  assert.ok(m.flags & MS.BIND && m.flags & MS.RDONLY);
});

test('relative working directories are refused', () => {
  assert.throws(() => buildRunPlan(input({ workdir: 'tmp' })), /absolute/);
});

test('the wire format is NUL-separated records ending with end, and refuses NUL inside fields', () => {
  const plan = buildRunPlan(input());
  const buf = encodePlan(plan).toString('utf8').split('\0');
  assert.equal(buf[0], 'ns');
  assert.equal(buf[buf.length - 2], 'end');
  assert.throws(() => encodePlan({ ...plan, args: ['a\0b'] }), /NUL/);
});
