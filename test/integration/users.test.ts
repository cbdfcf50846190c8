/**
 * The process's identity and settings: image USER, -u name, -u uid:gid,
 * supplementary groups and --group-add, --env-file, -w, --entrypoint,
 * --ulimit and --init, against an image built with its own /etc/passwd and
 * /etc/group; named volumes shared between containers.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { busyboxLayer, pushImage, seedBusybox, tarLayer } from '../helpers/oci';
import { type TestHelper, testHelper } from '../helpers/capsa';

let registry: TestRegistry;

before(async () => {
  registry = await startRegistry();
  await seedBusybox(registry);
  const etc = await tarLayer([
    { type: 'dir', path: 'etc' },
    { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\ndev:x:1000:1000:dev:/home/dev:/bin/sh\nsvc:x:1001:1001::/srv:/bin/sh\n' },
    { type: 'file', path: 'etc/group', content: 'root:x:0:\ndev:x:1000:\nsvc:x:1001:\ndocker:x:999:dev\naudio:x:29:dev,svc\n' },
    { type: 'dir', path: 'home' },
    { type: 'dir', path: 'home/dev', uid: 1000, gid: 1000 },
  ]);
  await pushImage(registry, 'library/devimage', 'latest', {
    layers: [await busyboxLayer(), etc],
    config: { Cmd: ['id'], User: 'dev', WorkingDir: '/home/dev', Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
  });
});
after(async () => {
  await registry?.stop();
});

async function helperFor(t: { after: (fn: () => Promise<void>) => void }): Promise<TestHelper> {
  return testHelper(t, registry.url);
}

test("the image's USER runs the command, with its supplementary groups, home and working directory", async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', 'devimage']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'uid=1000(dev) gid=1000(dev) groups=29(audio),999(docker),1000(dev)');
  const env = await h.cli(['run', '--rm', 'devimage', 'sh', '-c', 'echo $HOME; pwd']);
  assert.equal(env.stdout, '/home/dev\n/home/dev\n');
});

test('-u name, -u uid:gid, -u name:group and --group-add', async (t) => {
  const h = await helperFor(t);
  // the kernel keeps the group list sorted, so `id` prints it in numeric order
  const id = async (...flags: string[]): Promise<string> => {
    const r = await h.cli(['run', '--rm', ...flags, 'devimage', 'id']);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  };
  assert.equal(await id('-u', 'svc'), 'uid=1001(svc) gid=1001(svc) groups=29(audio),1001(svc)');
  assert.equal(await id('-u', '1234:5678'), 'uid=1234 gid=5678 groups=5678');
  assert.equal(await id('-u', 'root'), 'uid=0(root) gid=0(root) groups=0(root)');
  assert.equal(await id('-u', 'svc:docker'), 'uid=1001(svc) gid=999(docker) groups=29(audio),999(docker)');
  assert.equal(await id('-u', 'svc', '--group-add', 'docker', '--group-add', '4242'), 'uid=1001(svc) gid=1001(svc) groups=29(audio),999(docker),1001(svc),4242');
});

test('an unknown user or group fails with a message naming it, and leaves no container', async (t) => {
  const h = await helperFor(t);
  for (const [flags, err] of [
    [['-u', 'nobody-here'], /unable to find user nobody-here/],
    [['-u', 'dev:nogroup'], /unable to find group nogroup/],
    [['--group-add', 'wheel'], /unable to find group wheel/],
  ] as const) {
    const r = await h.cli(['run', '--rm', ...flags, 'devimage', 'true']);
    assert.equal(r.code, 125, r.stderr);
    assert.match(r.stderr, err);
  }
  assert.deepEqual(await fs.readdir(path.join(h.root, 'containers')).catch(() => []), []);
});

test('--env-file, -e, -w and --entrypoint', async (t) => {
  const h = await helperFor(t);
  const file = path.join(h.dir, 'env');
  await fs.writeFile(file, '# comment\nA=from-file\n\nB=two words\nC=overridden\n');
  const r = await h.cli(['run', '--rm', '--env-file', file, '-e', 'C=cli', '-w', '/tmp', '--entrypoint', '/bin/sh', 'busybox', '-c', 'echo "$A|$B|$C|$(pwd)"']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'from-file|two words|cli|/tmp\n');
  const bad = path.join(h.dir, 'bad-env');
  await fs.writeFile(bad, 'BAD KEY=1\n');
  const b = await h.cli(['run', '--rm', '--env-file', bad, 'busybox', 'true']);
  assert.equal(b.code, 125);
  assert.match(b.stderr, /line 1/);
  // (Node 20 itself may read --env-file from a script's arguments and fail first: either way it fails, naming the file)
  const missing = await h.cli(['run', '--rm', '--env-file', path.join(h.dir, 'none'), 'busybox', 'true']);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /none/);
});

test('--ulimit sets the rlimits the process sees', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', '--ulimit', 'nofile=321:654', '--ulimit', 'core=0', 'busybox', 'sh', '-c', 'ulimit -n; ulimit -Hn; ulimit -c']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '321\n654\n0\n');
});

test('--init runs an init as PID 1 that reaps orphaned zombies', async (t) => {
  const h = await helperFor(t);
  // The orphan's /proc entry goes only when it is reaped: wait for that (up to 5 s, a loaded machine is slow to
  // run it and reap it) rather than a fixed time, then count zombies; one that is never reaped stays and counts.
  const script = 'echo $$; o=$(sleep 0.1 >/dev/null 2>&1 & echo $!); i=0; while [ -e /proc/$o ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; grep -l "^State:.*Z" /proc/[0-9]*/status | wc -l';
  const r = await h.cli(['run', '--rm', '--init', 'busybox', 'sh', '-c', script]);
  assert.equal(r.code, 0, r.stderr);
  const [self, zombies] = r.stdout.trim().split('\n');
  assert.notEqual(self, '1', 'the command is not PID 1 under --init');
  assert.equal(zombies, '0');
});

test('a named volume is created on first use, shared between containers, listed on disk and kept after rm', async (t) => {
  const h = await helperFor(t);
  const w = await h.cli(['run', '--rm', '-v', 'shared:/data', 'busybox', 'sh', '-c', 'echo hello > /data/f']);
  assert.equal(w.code, 0, w.stderr);
  const r = await h.cli(['run', '--rm', '--mount', 'type=volume,source=shared,target=/v,readonly', 'busybox', 'sh', '-c', 'cat /v/f; touch /v/g 2>/dev/null; echo rc=$?']);
  assert.equal(r.stdout, 'hello\nrc=1\n');
  assert.equal(await fs.readFile(path.join(h.root, 'volumes', 'shared', '_data', 'f'), 'utf8'), 'hello\n');
});
