/**
 * `capsa run` end to end, against a real registry (Debian's docker-registry
 * seeded with busybox built from busybox-static), a real helper process and
 * the real kernel: what the container sees, what it leaves behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { hostname as hostHostname } from 'node:os';
import * as path from 'node:path';
import { startRegistry } from '../helpers/registry';
import { seedBusybox } from '../helpers/oci';
import { mountsUnder, startHelper, type TestHelper, testHelper, fileRegistry } from '../helpers/capsa';

const registry = fileRegistry();

async function helperFor(t: { after: (fn: () => Promise<void>) => void }): Promise<TestHelper> {
  return testHelper(t, registry.url);
}

test('run echo prints its output and exits 0, pulling the image first', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', 'busybox', 'echo', 'hi']);
  assert.equal(r.stdout, 'hi\n');
  assert.equal(r.code, 0, r.stderr);
});

test('the exit status of the container process is the exit status of capsa run', async (t) => {
  const h = await helperFor(t);
  for (const code of [0, 1, 7, 125, 255]) {
    const r = await h.cli(['run', '--rm', 'busybox', 'sh', '-c', `exit ${code}`]);
    assert.equal(r.code, code, r.stderr);
  }
  // PID 1 of a namespace cannot be killed from inside it; from outside, a kill shows as 128+signal.
  const started = await h.cli(['run', '-d', '--name', 'victim', 'busybox', 'sleep', '30']);
  assert.equal(started.code, 0, started.stderr);
  assert.equal((await h.cli(['kill', 'victim'])).code, 0);
  const waited = await h.cli(['wait', 'victim']);
  assert.equal(waited.stdout, '137\n');
  assert.equal(waited.code, 137);
});

test('the container command is PID 1 and no host process is visible', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', 'busybox', 'sh', '-c', 'echo $$; for p in /proc/[0-9]*; do echo ${p#/proc/}; done']);
  assert.equal(r.code, 0, r.stderr);
  const [self, ...pids] = r.stdout.trim().split('\n');
  assert.equal(self, '1');
  assert.deepEqual(pids, ['1'], 'only PID 1 exists in the container');
});

test('the hostname is the short container id, not the host name', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--name', 'hn', 'busybox', 'hostname']);
  assert.equal(r.code, 0, r.stderr);
  const name = r.stdout.trim();
  assert.notEqual(name, hostHostname());
  const ps = await h.cli(['ps', '-a', '-q']);
  assert.equal(name, ps.stdout.trim(), 'hostname is the 12-digit id');
});

test('mountinfo holds only the container mounts, none of the host', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', 'busybox', 'cat', '/proc/self/mountinfo']);
  assert.equal(r.code, 0, r.stderr);
  const points = r.stdout.trim().split('\n').map((l) => l.split(' ')[4]);
  const allowed = /^(\/|\/proc(\/.*)?|\/dev(\/(pts|shm|mqueue|console|null))?|\/sys(\/.*)?|\/etc\/(hostname|hosts|resolv\.conf))$/;
  for (const p of points) assert.match(p, allowed, `unexpected mount ${p}`);
  assert.ok(!points.some((p) => p.startsWith('/work') || p.startsWith('/tmp') || p === '/sys/fs/cgroup/memory'));
});

test('the host root is not reachable from the container', async (t) => {
  const h = await helperFor(t);
  const marker = path.join(h.dir, 'host-only-marker');
  await fs.writeFile(marker, 'x');
  const r = await h.cli(['run', '--rm', 'busybox', 'sh', '-c', `cd /; cd ..; cd ../..; ls -a; test -e ${marker} && echo REACHED; test -e /root/../${marker} && echo REACHED2; true`]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(!r.stdout.includes('REACHED'));
  assert.ok(r.stdout.split('\n').includes('bin'));
  assert.ok(!r.stdout.split('\n').includes('work'), 'the host /work is not listed');
});

test('a file written in one container is neither in the image nor in another container', async (t) => {
  const h = await helperFor(t);
  const a = await h.cli(['run', '--name', 'writer', 'busybox', 'sh', '-c', 'echo data > /written && cat /written']);
  assert.equal(a.stdout, 'data\n');
  const b = await h.cli(['run', '--rm', 'busybox', 'test', '-e', '/written']);
  assert.equal(b.code, 1, 'the second container does not see the file');
  const layers = await fs.readdir(path.join(h.root, 'layers', 'sha256'));
  for (const l of layers) await assert.rejects(fs.access(path.join(h.root, 'layers', 'sha256', l, 'written')));
});

test('--rm removes the container: gone from ps at its exit, its directory and mounts right after', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', 'busybox', 'true']);
  assert.equal(r.code, 0, r.stderr);
  const ps = await h.cli(['ps', '-a', '-q']);
  assert.equal(ps.stdout, '');
  // the removal runs after the exit is reported (it is not the client's to wait for)
  let left = await fs.readdir(path.join(h.root, 'containers'));
  for (let i = 0; i < 100 && left.length; i++) {
    await new Promise((res) => setTimeout(res, 20));
    left = await fs.readdir(path.join(h.root, 'containers'));
  }
  assert.deepEqual(left, []);
  assert.deepEqual(await mountsUnder(h.root), []);
});

test('without --rm the exited container is listed with its exit code and can be removed', async (t) => {
  const h = await helperFor(t);
  await h.cli(['run', '--name', 'keep', 'busybox', 'sh', '-c', 'exit 4']);
  const ps = await h.cli(['ps', '-a']);
  assert.match(ps.stdout, /Exited \(4\)/);
  assert.match(ps.stdout, /keep/);
  const rm = await h.cli(['rm', 'keep']);
  assert.equal(rm.code, 0, rm.stderr);
  assert.deepEqual(await fs.readdir(path.join(h.root, 'containers')), []);
});

test('an unknown image gives a clear error and leaves nothing behind', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', 'library/nosuchimage', 'true']);
  assert.equal(r.code, 125);
  assert.match(r.stderr, /nosuchimage/);
  assert.match(r.stderr, /not found|unknown/i);
  assert.deepEqual(await fs.readdir(path.join(h.root, 'containers')).catch(() => []), []);
  const images = await h.cli(['images', '-q']);
  assert.equal(images.stdout, '');
});

test('a missing command gives Docker\'s message and exit 127, and leaves no container process', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', 'busybox', 'pyhton']);
  assert.equal(r.code, 127);
  assert.match(r.stderr, /exec: "pyhton": executable file not found in \$PATH/);
  assert.deepEqual(await fs.readdir(path.join(h.root, 'containers')), []);
});

test('with the image present, run works with the registry gone (--pull missing)', async (t) => {
  const own = await startRegistry();
  await seedBusybox(own);
  const h = await startHelper({ mirror: own.url });
  t.after(() => h.stop());
  assert.equal((await h.cli(['pull', 'busybox'])).code, 0);
  await own.stop();
  const r = await h.cli(['run', '--rm', 'busybox', 'echo', 'offline']);
  assert.equal(r.stdout, 'offline\n', r.stderr);
  const never = await h.cli(['run', '--rm', '--pull', 'never', 'library/other', 'true']);
  assert.equal(never.code, 125);
  assert.match(never.stderr, /not present locally/);
});

test('stdin is passed with -i and closed at EOF', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', '-i', 'busybox', 'sh', '-c', 'cat; echo done'], { input: 'line1\nline2\n' });
  assert.equal(r.stdout, 'line1\nline2\ndone\n', r.stderr);
});

test('stdout and stderr stay separate without a tty', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', 'busybox', 'sh', '-c', 'echo out; echo err >&2']);
  assert.equal(r.stdout, 'out\n');
  assert.equal(r.stderr, 'err\n');
});
