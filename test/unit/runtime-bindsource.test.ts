import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FIRST_BIND_FD, mayAccess, pinBindSources } from '../../server/runtime/bindsource';
import { encodePlan, MS, type Plan, type PlanMount } from '../../server/runtime/plan';
import type { Caller } from '../../server/util/peercred';

const user: Caller = { uid: 1000, gid: 1000, groups: [1000, 27], pid: 1 };

function planWith(mounts: PlanMount[]): Plan {
  return { mounts } as unknown as Plan;
}

test('mayAccess reads the owner, group (primary or supplementary) or other bits, and grants root everything', () => {
  assert.equal(mayAccess({ uid: 1000, gid: 0, mode: 0o700 }, user, 7), true);
  assert.equal(mayAccess({ uid: 0, gid: 0, mode: 0o700 }, user, 4), false);
  assert.equal(mayAccess({ uid: 0, gid: 27, mode: 0o750 }, user, 5), true);
  assert.equal(mayAccess({ uid: 0, gid: 27, mode: 0o750 }, user, 7), false);
  assert.equal(mayAccess({ uid: 0, gid: 42, mode: 0o640 }, user, 4), false); // /etc/shadow
  assert.equal(mayAccess({ uid: 0, gid: 0, mode: 0o755 }, user, 5), true);
  assert.equal(mayAccess({ uid: 0, gid: 0, mode: 0o000 }, { uid: 0, gid: 0, groups: [], pid: 1 }, 7), true);
});

test('pinBindSources replaces only caller-named bind sources by /proc/self/fd names of the descriptors, in order', async () => {
  const opened: Array<[string, boolean | undefined]> = [];
  const plan = planWith([
    { source: '/var/lib/capsa/hosts', target: '/etc/hosts', fstype: 'none', flags: MS.BIND, data: '' },
    { source: '/home/u/a', target: '/a', fstype: 'none', flags: MS.BIND | MS.REC, data: '', callerSource: true },
    { source: '/home/u/b', target: '/b', fstype: 'none', flags: MS.BIND | MS.REC | MS.RDONLY, data: '', callerSource: true },
  ]);
  const pinned = await pinBindSources(plan, user, async (_c, p, o) => {
    opened.push([p, o?.readOnly]);
    return 100 + opened.length;
  });
  assert.deepEqual(opened, [['/home/u/a', false], ['/home/u/b', true]]);
  assert.deepEqual(pinned.fds, [101, 102]);
  assert.deepEqual(pinned.plan.mounts.map((m) => m.source), ['/var/lib/capsa/hosts', `/proc/self/fd/${FIRST_BIND_FD}`, `/proc/self/fd/${FIRST_BIND_FD + 1}`]);
  assert.deepEqual(pinned.plan.bindFds, [FIRST_BIND_FD, FIRST_BIND_FD + 1]);
  // the recorded plan keeps its paths, for the next start
  assert.equal(plan.mounts[1].source, '/home/u/a');
  assert.equal(plan.bindFds, undefined);
});

test('pinBindSources leaves a plan without caller-named binds as it is', async () => {
  const plan = planWith([{ source: 'proc', target: '/proc', fstype: 'proc', flags: 0, data: '' }]);
  const pinned = await pinBindSources(plan, user, async () => assert.fail('nothing to open'));
  assert.equal(pinned.plan, plan);
  assert.deepEqual(pinned.fds, []);
});

test('pinBindSources stops at the first source the caller cannot open and gives that error', async () => {
  const plan = planWith([
    { source: '/home/u/a', target: '/a', fstype: 'none', flags: MS.BIND, data: '', callerSource: true },
    { source: '/root', target: '/r', fstype: 'none', flags: MS.BIND, data: '', callerSource: true },
  ]);
  await assert.rejects(
    pinBindSources(plan, user, async (_c, p) => {
      if (p === '/root') throw new Error('permission denied for /root');
      return -1; // closing -1 fails quietly: nothing real is opened here
    }),
    /permission denied for \/root/,
  );
});

test('encodePlan writes one bindfd record per inherited bind descriptor', () => {
  const text = (plan: Partial<Plan>) => encodePlan(plan as Plan).toString('latin1');
  const base: Partial<Plan> = { namespaces: [], rootfs: '/r', mounts: [], devices: [], symlinks: [], maskedPaths: [], readonlyPaths: [], cwd: '/', env: [], args: ['sh'], uid: 0, gid: 0, additionalGids: [], terminal: false, loopbackUp: false, cgroupProcs: [] } as Partial<Plan>;
  assert.ok(text({ ...base, bindFds: [6, 7] }).includes('bindfd\x006\x00bindfd\x007\x00'));
  assert.ok(!text(base).includes('bindfd'));
});
