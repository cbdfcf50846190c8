import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkCgroupParent, detectLayout, validateLimits } from '../../server/runtime/cgroups';
import { parseCpus, parseIntFlag, parseMemorySize } from '../../server/cli/limits';
import { parseMountSpec, parseTmpfs, checkVolumeName } from '../../server/runtime/volumes';
import { runNamespaces } from '../../server/runtime/spec';

const MOUNTINFO_V1 = [
  '30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw',
  '35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory',
  '36 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct',
  '37 30 0:33 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids',
  '38 30 0:34 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd',
  '39 30 0:35 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw',
].join('\n');

test('v1: one directory per hierarchy, under the helper own cgroup, co-mounted controllers once', () => {
  const layout = detectLayout(MOUNTINFO_V1, '4:memory:/svc/helper\n3:cpu,cpuacct:/\n2:pids:/\n1:name=systemd:/\n0::/', 'capsa');
  assert.equal(layout.version, 1);
  assert.deepEqual(
    layout.hierarchies.map((h) => h.base),
    ['/sys/fs/cgroup/memory/svc/helper/capsa', '/sys/fs/cgroup/cpu,cpuacct/capsa', '/sys/fs/cgroup/pids/capsa'],
  );
});

test('v2: the parent sits beside the helper cgroup (no internal processes), or at the root', () => {
  const mi = '30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw';
  assert.equal(detectLayout(mi, '0::/system.slice/capsa.service', 'capsa').hierarchies[0].base, '/sys/fs/cgroup/system.slice/capsa');
  assert.equal(detectLayout(mi, '0::/', 'capsa').hierarchies[0].base, '/sys/fs/cgroup/capsa');
});

test('cgroup parents are relative names, never escaping', () => {
  assert.equal(checkCgroupParent('capsa/test-1'), 'capsa/test-1');
  for (const bad of ['', '..', 'a/../b', 'a b', '/']) assert.throws(() => checkCgroupParent(bad), /invalid cgroup parent/);
});

test('Docker sizes and numbers for --memory, --cpus, --pids-limit', () => {
  assert.equal(parseMemorySize('memory', '512m'), 512 * 1024 * 1024);
  assert.equal(parseMemorySize('memory', '1g'), 1024 ** 3);
  assert.equal(parseMemorySize('memory', '100kb'), 102400);
  assert.equal(parseMemorySize('memory', '7340032'), 7340032);
  assert.equal(parseCpus('0.5'), 0.5);
  assert.equal(parseIntFlag('pids-limit', '-1'), -1);
});

for (const [flag, value, err] of [
  ['memory', '', /expected a size/],
  ['memory', '-1', /expected a size/],
  ['memory', '12x', /expected a size/],
  ['memory', '1e9', /expected a size/],
  ['memory', '99999999999t', /too large/],
  ['cpus', 'half', /expected a number of CPUs/],
  ['cpus', '-1', /expected a number of CPUs/],
  ['pids-limit', '1.5', /expected an integer/],
  ['pids-limit', 'ten', /expected an integer/],
] as const) {
  test(`--${flag} ${JSON.stringify(value)} is refused by the CLI`, () => {
    assert.throws(() => (flag === 'memory' ? parseMemorySize(flag, value) : flag === 'cpus' ? parseCpus(value) : parseIntFlag(flag, value)), err);
  });
}

for (const [limits, err] of [
  [{ memory: 1024 }, /minimum is 6m/],
  [{ memory: 1.5e7 + 0.5 }, /minimum is 6m/],
  [{ cpus: 0 }, /must be more than 0/],
  [{ cpus: 1000 }, /CPUs are available/],
  [{ cpus: 0.001 }, /minimum is 0.01/],
  [{ pidsLimit: -7 }, /invalid pids-limit/],
  [{ cpuShares: 1 }, /cpu-shares/],
  [{ memorySwap: 1e8 }, /needs a memory limit/],
  [{ memory: 1e8, memorySwap: 1e7 }, /at least the memory limit/],
  [{ memory: 'lots' }, /must be a number/],
] as const) {
  test(`limits ${JSON.stringify(limits)} are refused by the helper`, () => {
    assert.throws(() => validateLimits(limits as never, 4), err);
  });
}

test('--mount and --tmpfs specs parse as Docker reads them', () => {
  assert.deepEqual(parseMountSpec('type=bind,source=/srv,target=/data,readonly'), { type: 'bind', source: '/srv', target: '/data', readOnly: true });
  assert.deepEqual(parseMountSpec('type=volume,src=cache,dst=/c'), { type: 'volume', name: 'cache', source: '', target: '/c', readOnly: false });
  assert.deepEqual(parseMountSpec('type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770'), { type: 'tmpfs', source: 'tmpfs', target: '/t', readOnly: false, data: 'size=1m,mode=1770', noexec: true });
  assert.deepEqual(parseTmpfs('/run:exec,size=64m'), { type: 'tmpfs', source: 'tmpfs', target: '/run', readOnly: false, data: 'size=64m', noexec: false });
});

for (const [spec, err] of [
  ['', /expected type=/],
  ['type=bind,target=/x', /absolute source/],
  ['type=bind,source=rel,target=/x', /absolute source/],
  ['type=volume,source=../x,target=/x', /invalid volume name/],
  ['type=volume,source=a/b,target=/x', /invalid volume name/],
  ['type=volume,source=..,target=/x', /invalid volume name/],
  ['type=tmpfs,source=x,target=/x', /takes no source/],
  ['type=nfs,target=/x', /type must be bind, volume or tmpfs/],
  ['type=bind,source=/a,target=/', /cannot mount over/],
  ['type=bind,source=/a', /target is required/],
  ['type=bind,source=/a,target=/x,target=/y', /given twice/],
  ['type=bind,source=/a,target=/x,readonly=maybe', /readonly takes true or false/],
  ['type=tmpfs,target=/x,tmpfs-size=huge', /malformed option/],
  ['type=volume,source=v,target=/x,frobnicate=1', /unknown option/],
] as const) {
  test(`mount ${JSON.stringify(spec)} is refused`, () => assert.throws(() => parseMountSpec(spec), err));
}

for (const bad of ['/a:mode=999', '/a:size=big', 'rel', '/:size=1m', '/a:suid=1x=2,bogus']) {
  test(`tmpfs ${JSON.stringify(bad)} is refused`, () => assert.throws(() => parseTmpfs(bad)));
}

for (const bad of ['', '.', '..', 'a/b', '../etc', '-a', 'a b', 'x'.repeat(200)]) {
  test(`volume name ${JSON.stringify(bad.slice(0, 20))} is refused`, () => assert.throws(() => checkVolumeName(bad), /invalid volume name/));
}

test('--pid host and --ipc host leave those namespaces out; other values are refused', () => {
  assert.deepEqual(runNamespaces({}, true), ['mount', 'pid', 'uts', 'ipc', 'cgroup', 'net']);
  assert.deepEqual(runNamespaces({ pid: 'host', ipc: 'host' }, false), ['mount', 'uts', 'cgroup']);
  assert.throws(() => runNamespaces({ pid: 'container:x' }, false), /expected host/);
});

test('reconcile removes only stale cgroups of its own root, never another helper’s under the same parent', async () => {
  const { mkdtempSync, mkdirSync, existsSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const { CgroupManager } = await import('../../server/runtime/cgroups');
  const fsroot = mkdtempSync(path.join(tmpdir(), 'capsa-cgfs-'));
  try {
    const manager = new CgroupManager({ parent: 'capsa', mountinfo: () => `30 25 0:26 / ${fsroot} rw - cgroup2 cgroup2 rw`, selfCgroup: () => '0::/' });
    const [mineStale, mineLive, theirs] = ['a', 'b', 'c'].map((c) => c.repeat(64));
    for (const id of [mineStale, mineLive, theirs]) mkdirSync(path.join(fsroot, 'capsa', id), { recursive: true });
    await manager.reconcile(new Set([mineLive]), new Set([mineStale, mineLive]));
    assert.equal(existsSync(path.join(fsroot, 'capsa', mineStale)), false, 'a cgroup left by this root’s crashed create goes');
    assert.equal(existsSync(path.join(fsroot, 'capsa', mineLive)), true);
    assert.equal(existsSync(path.join(fsroot, 'capsa', theirs)), true, 'another root’s container keeps its cgroup');
  } finally {
    rmSync(fsroot, { recursive: true, force: true });
  }
});
