import { test } from 'node:test';
import assert from 'node:assert/strict';
import { idmapsFor } from '../../server/runtime/idmap';
import { encodePlan, MS, type Plan, type PlanMount } from '../../server/runtime/plan';

const mounts: PlanMount[] = [
  { source: 'proc', target: '/proc', fstype: 'proc', flags: 0, data: '' },
  { source: '/home/u/project', target: '/workspaces/project', fstype: '', flags: MS.BIND | MS.REC, data: '' },
];

test('idmapMounts become idmap records for binds: container ids default to root', () => {
  assert.deepEqual(idmapsFor([{ target: '/workspaces/project/', uid: 1000, gid: 1001 }], mounts), [{ path: '/workspaces/project', uid: [0, 1000], gid: [0, 1001] }]);
  assert.deepEqual(idmapsFor([{ target: '/workspaces/project', uid: 1000, gid: 1000, containerUid: 1000, containerGid: 1000 }], mounts), [
    { path: '/workspaces/project', uid: [1000, 1000], gid: [1000, 1000] },
  ]);
  assert.equal(idmapsFor(undefined, mounts), undefined);
});

test('idmapMounts that are not binds, repeat, or carry bad ids are refused', () => {
  for (const [bad, re] of [
    [[{ target: '/proc', uid: 1, gid: 1 }], /not a bind mount/],
    [[{ target: 'workspaces/project', uid: 1, gid: 1 }], /absolute container path/],
    [[{ target: '/workspaces/project', uid: -1, gid: 1 }], /uid must be a whole number/],
    [[{ target: '/workspaces/project', uid: 1, gid: 2 ** 32 - 1 }], /gid must be a whole number/],
    [[{ target: '/workspaces/project', uid: 1.5, gid: 1 }], /uid must be/],
    [[{ target: '/workspaces/project', uid: 1, gid: 1 }, { target: '/workspaces/project/', uid: 2, gid: 2 }], /given twice/],
    ['nope', /must be a list/],
  ] as const) {
    assert.throws(() => idmapsFor(bad as never, mounts), re, JSON.stringify(bad));
  }
});

test('encodePlan writes idmap records before end', () => {
  const plan: Plan = {
    namespaces: ['mount'], rootfs: '/r', mounts, devices: [], symlinks: [], maskedPaths: [], readonlyPaths: [], cwd: '/', env: [], args: ['sh'],
    uid: 0, gid: 0, additionalGids: [], terminal: false, loopbackUp: false, cgroupProcs: [],
    idmaps: [{ path: '/workspaces/project', uid: [0, 1000], gid: [0, 1001] }],
  };
  const fields = encodePlan(plan).toString().split('\0');
  const at = fields.indexOf('idmap');
  assert.deepEqual(fields.slice(at, at + 6), ['idmap', '/workspaces/project', '0', '1000', '0', '1001']);
  assert.equal(fields[at + 6], 'end');
});
