/** What a container of a caller other than root may not have, and how its binds are written (runtime/container/unprivileged.ts). */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { PermissionDeniedError } from '../../server/errors';
import type { RunOptions } from '../../server/runtime/container/options';
import { ownerCaller, ownerIdmaps, refuseUnprivileged, withinCeilings, unprivilegedPortStart, UNPRIVILEGED_CAPABILITIES } from '../../server/runtime/container/unprivileged';
import { userName } from '../../server/util/passwd';
import { idmapsInBlock, UsernsAllocator } from '../../server/runtime/userns';
import { loadConfig } from '../../server/config';

/** A scratch directory, removed when the file's tests end. */
function scratch(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-unpriv-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const base: RunOptions = { image: 'busybox' };
const U = { uid: 1000, gid: 1000, groups: [1000, 1500] };

function refusedWith(o: Partial<RunOptions>, flag: string): void {
  assert.throws(() => refuseUnprivileged({ ...base, ...o }, U, 1024), (e: unknown) => {
    assert.ok(e instanceof PermissionDeniedError, String(e));
    assert.equal(e.code, 'E_PERMISSION_DENIED');
    assert.ok(e.message.startsWith(`${flag} refused for uid 1000: `), e.message);
    return true;
  });
}

test('each option that reaches past the user namespace is refused, naming its flag', () => {
  refusedWith({ privileged: true }, '--privileged');
  refusedWith({ userns: 'host' }, '--userns host');
  refusedWith({ pid: 'host' }, '--pid host');
  refusedWith({ ipc: 'host' }, '--ipc host');
  refusedWith({ network: 'host' }, '--network host');
  refusedWith({ securityOpt: ['seccomp=unconfined'] }, '--security-opt seccomp=unconfined');
  refusedWith({ securityOpt: ['seccomp:unconfined'] }, '--security-opt seccomp=unconfined');
  refusedWith({ capAdd: ['SYS_ADMIN'] }, '--cap-add SYS_ADMIN');
  refusedWith({ capAdd: ['cap_net_admin'] }, '--cap-add NET_ADMIN');
  refusedWith({ capAdd: ['ALL'] }, '--cap-add ALL');
  refusedWith({ publish: ['80:80'] }, '--publish 80:80');
  refusedWith({ publish: ['127.0.0.1:1023:80/udp'] }, '--publish 127.0.0.1:1023:80/udp');
  refusedWith({ idmapMounts: [{ target: '/w', uid: 0, gid: 0 }] }, 'idmapMounts 0:0');
  refusedWith({ idmapMounts: [{ target: '/w', uid: 1000, gid: 0 }] }, 'idmapMounts 1000:0');
  refusedWith({ idmapMounts: [{ target: '/w', uid: 1000, gid: 1000, containerUid: 65536 }] }, 'idmapMounts containerUid 65536');
  refusedWith({ devices: ['/dev/null'] }, '--device "/dev/null"');
  refusedWith({ devices: ['/dev/zero:/dev/z:r', '/dev/null'] }, '--device "/dev/zero:/dev/z:r"');
});

test("what stays inside the user namespace is allowed: default capabilities, high and random ports, no-new-privileges, userns auto", () => {
  refuseUnprivileged({ ...base, capAdd: ['chown', 'CAP_NET_BIND_SERVICE'], publish: ['1024:80', '80', '127.0.0.1::80'], securityOpt: ['no-new-privileges'], userns: 'auto', network: 'bridge' }, U, 1024);
  refuseUnprivileged({ ...base, publish: ['80:80'] }, U, 0);
  refuseUnprivileged({ ...base, idmapMounts: [{ target: '/w', uid: 1000, gid: 1500, containerUid: 1000, containerGid: 65535 }] }, U, 1024);
  assert.ok(UNPRIVILEGED_CAPABILITIES.has('NET_BIND_SERVICE'));
  assert.ok(!UNPRIVILEGED_CAPABILITIES.has('SYS_ADMIN'));
});

test("an idmapMount of the user's own maps the container user it names, by its host id in the block; the other binds map root", () => {
  const range = { uid: 100_000_000, gid: 200_000_000, size: 65536 };
  const maps = ownerIdmaps(
    [
      { source: '/home/u/w', target: '/w', readOnly: false },
      { source: '/home/u/x', target: '/x', readOnly: false },
    ],
    range,
    { uid: 1000, gid: 1000 },
    [{ path: '/w/', uid: [1000, 1000], gid: [1000, 1500] }],
  );
  assert.deepEqual(maps, [
    { path: '/w/', uid: [100_001_000, 1000], gid: [200_001_000, 1500] },
    { path: '/x', uid: [100_000_000, 1000], gid: [200_000_000, 1000] },
  ]);
});

test('the unprivileged port boundary is read from procfs, 1024 when it cannot be', () => {
  const dir = scratch();
  writeFileSync(path.join(dir, 'p'), '80\n');
  assert.equal(unprivilegedPortStart(path.join(dir, 'p')), 80);
  assert.equal(unprivilegedPortStart(path.join(dir, 'missing')), 1024);
});

test("a user's host binds and volumes are idmapped to that user from the container root's host ids; tmpfs is not", () => {
  const maps = ownerIdmaps(
    [
      { source: '/home/u/w', target: '/w', readOnly: false },
      { type: 'bind', source: '/home/u/x', target: '/x', readOnly: true },
      { type: 'volume', source: '/var/lib/capsa/volumes/v/_data', target: '/v', readOnly: false, name: 'v' },
      { type: 'tmpfs', source: 'tmpfs', target: '/t', readOnly: false },
    ],
    { uid: 100_000_000, gid: 100_065_536, size: 65536 },
    { uid: 1000, gid: 1001 },
  );
  assert.deepEqual(maps, [
    { path: '/w', uid: [100_000_000, 1000], gid: [100_065_536, 1001] },
    { path: '/x', uid: [100_000_000, 1000], gid: [100_065_536, 1001] },
    { path: '/v', uid: [100_000_000, 1000], gid: [100_065_536, 1001] },
  ]);
});

test('a uid is named from a passwd file; an unknown one has no name', () => {
  const dir = scratch();
  writeFileSync(path.join(dir, 'passwd'), 'root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n');
  assert.equal(userName(1000, path.join(dir, 'passwd')), 'alice');
  assert.equal(userName(1001, path.join(dir, 'passwd')), undefined);
  assert.equal(userName(0, path.join(dir, 'missing')), undefined);
});

test("a container's start opens its binds with its owner's uid, primary gid and login groups (from /etc/group), never root's", () => {
  const dir = scratch();
  const passwd = path.join(dir, 'passwd');
  const group = path.join(dir, 'group');
  writeFileSync(passwd, 'root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n');
  writeFileSync(group, 'root:x:0:\nalice:x:1000:\ndev:x:2000:bob,alice\nops:x:2001:bob\nweb:x:2002:alicex\n');
  const c = ownerCaller(1000, passwd, group);
  assert.equal(c.uid, 1000);
  assert.equal(c.gid, 1000);
  assert.deepEqual([...c.groups].sort(), [1000, 2000], 'the member groups, not a group of a name that merely starts the same');
  const gone = ownerCaller(1500, passwd, group);
  assert.deepEqual([gone.gid, gone.groups], [65534, [65534]], "a uid /etc/passwd no longer names: nobody's group alone");
  assert.equal(ownerCaller(0, passwd, group).uid, 0);
});

test("a user's container takes a block of that user's subuid entries, then the default's; no block is handed out twice", async () => {
  const dir = scratch();
  writeFileSync(path.join(dir, 'subuid'), 'capsa:300000:65536\nalice:500000:65536\n');
  writeFileSync(path.join(dir, 'subgid'), 'capsa:300000:65536\nalice:600000:65536\n');
  const a = new UsernsAllocator(dir, { subuid: path.join(dir, 'subuid'), subgid: path.join(dir, 'subgid'), user: 'capsa' });
  assert.deepEqual(await a.allocate('c1', 'alice'), { uid: 500000, gid: 600000, size: 65536 });
  assert.deepEqual(await a.allocate('c2', 'alice'), { uid: 300000, gid: 300000, size: 65536 }, "alice's own block is in use: the default source's");
  await assert.rejects(a.allocate('c3', 'bob'), /no free block of 65536 ids left in .*subuid and .*subgid for capsa/, 'bob has no entries: the default source, now full');
  await a.release('c2');
  assert.deepEqual(await a.allocate('c3', 'bob'), { uid: 300000, gid: 300000, size: 65536 });
  await assert.rejects(a.allocate('c4'), /for capsa/, "root's --userns auto shares the default blocks, and none is free");
});

test('a block overlapping a recorded one is not handed out, though it starts elsewhere', async () => {
  const dir = scratch();
  writeFileSync(path.join(dir, 'subuid'), 'capsa:300000:196608\nalice:330000:65536\n');
  writeFileSync(path.join(dir, 'subgid'), 'capsa:300000:196608\nalice:330000:65536\n');
  const a = new UsernsAllocator(dir, { subuid: path.join(dir, 'subuid'), subgid: path.join(dir, 'subgid'), user: 'capsa' });
  assert.equal((await a.allocate('c1', 'alice')).uid, 330000);
  assert.equal((await a.allocate('c2')).uid, 431072, "capsa's first two blocks overlap alice's 330000-395535");
});

test("a user's ceilings: no limit asked gets the ceiling, more than it is refused naming the flag, less is kept", () => {
  const c = { memory: 64 << 20, pidsLimit: 100 };
  assert.deepEqual(withinCeilings(base, 1000, c), { ...base, memory: 64 << 20, pidsLimit: 100 });
  assert.deepEqual(withinCeilings({ ...base, memory: 1 << 20, pidsLimit: 10 }, 1000, c), { ...base, memory: 1 << 20, pidsLimit: 10 });
  assert.equal(withinCeilings({ ...base, pidsLimit: -1 }, 1000, c).pidsLimit, 100, 'unlimited is the ceiling');
  assert.throws(() => withinCeilings({ ...base, memory: 128 << 20 }, 1000, c), /^PermissionDeniedError: --memory 134217728 refused for uid 1000: above this helper's ceiling/);
  assert.throws(() => withinCeilings({ ...base, pidsLimit: 101 }, 1000, c), /--pids-limit 101 refused for uid 1000/);
  assert.deepEqual(withinCeilings(base, 1000, {}), base, 'no ceilings, nothing changed');
});

test('userLimits in the config file: whole numbers of known ceilings, anything else refused naming the field', () => {
  const dir = scratch();
  const file = path.join(dir, 'config.json');
  const load = (o: unknown) => {
    writeFileSync(file, JSON.stringify(o));
    return loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv);
  };
  assert.deepEqual(load({ userLimits: { containers: 5, memory: 1 << 30, pidsLimit: 200 } }).userLimits, { containers: 5, memory: 1 << 30, pidsLimit: 200 });
  assert.equal(load({}).userLimits, undefined);
  assert.throws(() => load({ userLimits: { cpus: 1 } }), /userLimits\.cpus is not a known ceiling/);
  assert.throws(() => load({ userLimits: { containers: 0 } }), /userLimits\.containers must be a whole number of at least 1/);
  assert.throws(() => load({ userLimits: [] }), /userLimits must be an object/);
});

test("a plan's idmaps in a user namespace map the block's host ids of the container ids they name", () => {
  assert.deepEqual(idmapsInBlock([{ path: '/b', uid: [0, 4242], gid: [10, 4343] }], { uid: 300000, gid: 400000, size: 65536 }), [
    { path: '/b', uid: [300000, 4242], gid: [400010, 4343] },
  ]);
  assert.equal(idmapsInBlock(undefined, { uid: 1, gid: 1, size: 65536 }), undefined);
});
