/**
 * Resource limits through the container's cgroup, on the real kernel (v1
 * controllers on this machine): an OOM kill is reported, a fork bomb stops at
 * --pids-limit, --cpus throttles; cgroups go with their container.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { type TestHelper, testHelper, fileRegistry } from '../helpers/capsa';
import { CgroupManager } from '../../server/runtime/cgroups';

const registry = fileRegistry();

async function helperFor(t: { after: (fn: () => Promise<void>) => void }): Promise<TestHelper & { cgroups: CgroupManager }> {
  const h = await testHelper(t, registry.url);
  const cgroups = new CgroupManager({ parent: h.cgroupParent });
  // after testHelper's clean-up (hooks run in the order registered): a container cgroup left behind keeps the parent
  t.after(async () => assert.deepEqual(await cgroups.list(), [], 'no container cgroup is left'));
  return Object.assign(h, { cgroups });
}

async function containerId(h: TestHelper, name: string): Promise<string> {
  const r = await h.cli(['ps', '-a', '-q', '--no-trunc']).catch(() => undefined);
  const inspect = JSON.parse((await h.cli(['inspect', name])).stdout) as Array<{ Id?: string; id?: string }> | { Id?: string; id?: string };
  const first = Array.isArray(inspect) ? inspect[0] : inspect;
  void r;
  return (first.Id ?? first.id)!;
}

function cgroupDir(h: { cgroups: CgroupManager }, controller: string, id: string): string {
  const hier = h.cgroups.layout().hierarchies.find((x) => x.controllers.includes(controller) || x.controllers.includes('unified'))!;
  return path.join(hier.base, id);
}

test('a memory hog is OOM-killed: exit 137 and OOMKilled in inspect; its cgroup goes with rm', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--name', 'hog', '--memory', '16m', 'busybox', 'sh', '-c', 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo survived']);
  assert.equal(r.code, 137, r.stderr);
  assert.doesNotMatch(r.stdout, /survived/);
  const inspect = JSON.parse((await h.cli(['inspect', 'hog'])).stdout);
  const c = Array.isArray(inspect) ? inspect[0] : inspect;
  assert.equal(c.State?.OOMKilled ?? c.oomKilled, true);
  assert.equal(c.State?.ExitCode ?? c.exitCode, 137);
  assert.equal((await h.cgroups.list()).length > 0, true, 'the exited container keeps its cgroup until removed');
  assert.equal((await h.cli(['rm', 'hog'])).code, 0);
  assert.deepEqual(await h.cgroups.list(), []);
  const ok = await h.cli(['run', '--rm', '--name', 'calm', '--memory', '64m', 'busybox', 'true']);
  assert.equal(ok.code, 0, ok.stderr);
});

test('the memory limit is the cgroup limit', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '-d', '--name', 'm', '--memory', '48m', 'busybox', 'sleep', '30']);
  assert.equal(r.code, 0, r.stderr);
  const id = await containerId(h, 'm');
  const dir = cgroupDir(h, 'memory', id);
  const limit = await fs.readFile(path.join(dir, 'memory.limit_in_bytes'), 'utf8').catch(() => fs.readFile(path.join(dir, 'memory.max'), 'utf8'));
  assert.equal(Number(limit), 48 * 1024 * 1024);
});

test('a fork bomb stops at --pids-limit', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '-d', '--name', 'bomb', '--pids-limit', '12', 'busybox', 'sh', '-c', 'bomb() { bomb | bomb & }; bomb; sleep 30']);
  assert.equal(r.code, 0, r.stderr);
  const dir = cgroupDir(h, 'pids', await containerId(h, 'bomb'));
  await new Promise((res) => setTimeout(res, 1000));
  const current = Number(await fs.readFile(path.join(dir, 'pids.current'), 'utf8'));
  const refused = Number(/^max (\d+)$/m.exec(await fs.readFile(path.join(dir, 'pids.events'), 'utf8'))?.[1]);
  assert.ok(current <= 12, `pids.current ${current}`);
  assert.ok(refused > 0, 'the kernel refused forks at the limit');
  assert.equal((await h.cli(['rm', '-f', 'bomb'])).code, 0);
  assert.deepEqual(await h.cgroups.list(), []);
});

test('--cpus 0.5 sets a 50 ms quota per 100 ms and a busy loop is throttled', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '-d', '--name', 'spin', '--cpus', '0.5', 'busybox', 'sh', '-c', 'while :; do :; done']);
  assert.equal(r.code, 0, r.stderr);
  const id = await containerId(h, 'spin');
  const dir = cgroupDir(h, 'cpu', id);
  const v1 = await fs.readFile(path.join(dir, 'cpu.cfs_quota_us'), 'utf8').catch(() => undefined);
  if (v1 !== undefined) {
    assert.equal(Number(v1), 50000);
    assert.equal(Number(await fs.readFile(path.join(dir, 'cpu.cfs_period_us'), 'utf8')), 100000);
  } else {
    assert.equal((await fs.readFile(path.join(dir, 'cpu.max'), 'utf8')).trim(), '50000 100000');
  }
  // The loop may get little CPU at first on a loaded machine: wait for the first throttled period rather than a fixed time.
  const throttled = (stat: string) => Number(/nr_throttled (\d+)/.exec(stat)?.[1]) > 0;
  const deadline = Date.now() + 10_000;
  let stat = await fs.readFile(path.join(dir, 'cpu.stat'), 'utf8');
  while (!throttled(stat) && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 50));
    stat = await fs.readFile(path.join(dir, 'cpu.stat'), 'utf8');
  }
  assert.ok(throttled(stat), stat);
  assert.equal((await h.cli(['rm', '-f', 'spin'])).code, 0);
  assert.deepEqual(await h.cgroups.list(), []);
});

test('exec joins the container cgroup; the monitor is not in it', async (t) => {
  const h = await helperFor(t);
  assert.equal((await h.cli(['run', '-d', '--name', 'c', '--pids-limit', '50', 'busybox', 'sleep', '30'])).code, 0);
  const id = await containerId(h, 'c');
  const procs = async (): Promise<number[]> => (await fs.readFile(path.join(cgroupDir(h, 'pids', id), 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean).map(Number);
  const before = await procs();
  assert.equal(before.length, 1, `only the container process: ${before}`);
  const e = await h.cli(['exec', 'c', 'sh', '-c', 'cat /proc/self/cgroup | grep pids']);
  assert.equal(e.code, 0, e.stderr);
  assert.match(e.stdout, /pids:\/$/m, 'exec sees the container cgroup as its root');
});
