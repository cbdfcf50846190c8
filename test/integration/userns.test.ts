/**
 * `--userns auto` against the real kernel and helper: container root is a
 * host id from the container's own block, the image's files appear owned as
 * in the image through idmapped layers, blocks never overlap (also across a
 * killed helper) and go back on removal; exec joins the user namespace.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { busyboxLayer, pushImage, seedBusybox, tarLayer } from '../helpers/oci';
import { connectProtocol, inspect, restartHelper, type TestHelper, ok, testHelper } from '../helpers/capsa';
import { ContainerRunRequest, ContainerWaitRequest } from '../../server/protocol';

const START = 100_000_000;
const SIZE = 65536;
let registry: TestRegistry;

before(async () => {
  registry = await startRegistry();
  await seedBusybox(registry);
  const owned = await tarLayer([
    { type: 'dir', path: 'home' },
    { type: 'dir', path: 'home/dev', uid: 1000, gid: 1000 },
    { type: 'file', path: 'home/dev/mine', content: 'x', uid: 1000, gid: 1000 },
  ]);
  await pushImage(registry, 'library/owned', 'latest', { layers: [await busyboxLayer(), owned], config: { Cmd: ['sh'] } });
});
after(async () => {
  await registry?.stop();
});

async function helperFor(t: { after: (fn: () => Promise<void>) => void }): Promise<TestHelper> {
  return testHelper(t, registry.url);
}

async function records(h: TestHelper): Promise<Record<string, { uid: number; gid: number; size: number }>> {
  return JSON.parse(await fs.readFile(path.join(h.root, 'userns.json'), 'utf8').catch(() => '{}'));
}

test('root inside is a mapped host id; the image files appear owned as in the image; binds are written as the mapped id', async (t) => {
  const h = await helperFor(t);
  const dir = path.join(h.dir, 'bind');
  await fs.mkdir(dir);
  await fs.chmod(dir, 0o777);
  const out = await ok(h, ['run', '--rm', '--userns', 'auto', '-v', `${dir}:/b`, 'owned', 'sh', '-c',
    'id -u; cat /proc/self/uid_map /proc/self/gid_map; stat -c "%u:%g %n" / /bin/busybox /home/dev/mine; touch /b/made; echo new > /newfile; stat -c "%u:%g" /newfile']);
  const lines = out.trim().split('\n').map((l) => l.trim().split(/\s+/).join(' '));
  assert.deepEqual(lines, ['0', `0 ${START} ${SIZE}`, `0 ${START} ${SIZE}`, '0:0 /', '0:0 /bin/busybox', '1000:1000 /home/dev/mine', '0:0']);
  const st = await fs.stat(path.join(dir, 'made'));
  assert.deepEqual([st.uid, st.gid], [START, START], 'a file root made on a bind belongs to the mapped host id');
  // the --rm container's removal runs after its exit is reported
  let left = await records(h);
  for (let i = 0; i < 100 && Object.keys(left).length; i++) {
    await new Promise((res) => setTimeout(res, 20));
    left = await records(h);
  }
  assert.deepEqual(left, {}, 'the block goes back once the --rm container is gone');
});

test('with a user namespace, an idmapped bind maps the container user it names (by its id in the block) to the host user', async (t) => {
  const h = await helperFor(t);
  const dir = path.join(h.dir, 'idbind');
  await fs.mkdir(dir);
  await fs.chown(dir, 4242, 4343);
  const conn = await connectProtocol(h.socket);
  t.after(() => conn.dispose());
  const { id } = await conn.sendRequest(ContainerRunRequest.type, {
    image: 'busybox', network: 'none', userns: 'auto', volumes: [`${dir}:/b`],
    idmapMounts: [{ target: '/b', uid: 4242, gid: 4343 }],
    cmd: ['sh', '-c', 'stat -c %u:%g /b > /b/seen; touch /b/made'],
  });
  assert.equal((await conn.sendRequest(ContainerWaitRequest.type, { container: id })).exitCode, 0);
  assert.equal((await fs.readFile(path.join(dir, 'seen'), 'utf8')).trim(), '0:0', "the host user's directory is the container root's");
  const st = await fs.stat(path.join(dir, 'made'));
  assert.deepEqual([st.uid, st.gid], [4242, 4343], 'what the container root writes there is the host user\'s');
});

test('a container with a user namespace cannot mount, load modules or act as host root', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', '--userns', 'auto', '--cap-add', 'SYS_ADMIN', '--cap-add', 'SYS_MODULE', 'busybox', 'sh', '-c',
    'mount -t tmpfs none /mnt && echo mounted; insmod /nonexistent.ko 2>&1 | head -1; echo 1 > /proc/sys/kernel/modprobe 2>/dev/null && echo wrote; echo done']);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /mounted|wrote/);
  assert.match(r.stdout, /done/);
  const priv = await h.cli(['run', '--rm', '--userns', 'auto', '--privileged', 'busybox', 'true']);
  assert.notEqual(priv.code, 0);
  assert.match(priv.stderr, /--privileged cannot be combined with --userns auto/);
});

test('concurrent containers get disjoint blocks, freed by rm; exec joins the user namespace', async (t) => {
  const h = await helperFor(t);
  const ids = await Promise.all(['a', 'b', 'c'].map((n) => ok(h, ['run', '-d', '--name', n, '--userns', 'auto', 'busybox', 'sleep', '60']).then((s) => s.trim())));
  const recs = await records(h);
  const starts = ids.map((id) => recs[id]?.uid);
  assert.equal(new Set(starts).size, 3, `distinct blocks: ${JSON.stringify(recs)}`);
  for (const s of starts) assert.ok(s !== undefined && s >= START && (s - START) % SIZE === 0);

  const map = await ok(h, ['exec', 'b', 'sh', '-c', 'id -u; cat /proc/self/uid_map']);
  assert.equal(map.trim().split('\n').map((l) => l.trim().split(/\s+/).join(' ')).join('|'), `0|0 ${recs[ids[1]].uid} ${SIZE}`);
  const nsRun = await ok(h, ['exec', 'b', 'readlink', '/proc/1/ns/user']);
  const nsExec = await ok(h, ['exec', 'b', 'readlink', '/proc/self/ns/user']);
  assert.equal(nsExec, nsRun);

  await ok(h, ['rm', '-f', 'a']);
  assert.equal((await records(h))[ids[0]], undefined);
  const again = (await ok(h, ['run', '-d', '--userns', 'auto', 'busybox', 'sleep', '60'])).trim();
  assert.equal((await records(h))[again].uid, recs[ids[0]].uid, 'the freed block is handed out again');

  // a killed helper: the running containers keep their blocks, none is handed out twice
  await h.crash();
  await restartHelper(h);
  const fresh = (await ok(h, ['run', '-d', '--userns', 'auto', 'busybox', 'sleep', '60'])).trim();
  const after = await records(h);
  const used = Object.values(after).map((r) => r.uid);
  assert.equal(new Set(used).size, used.length, `no block twice: ${JSON.stringify(after)}`);
  assert.ok(after[fresh] && after[ids[1]] && after[ids[2]] && after[again]);
});

/** Pids of `parent`'s children, from /proc/PID/stat (the field after the command's closing parenthesis). */
async function childrenOf(parent: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await fs.readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === parent) out.push(Number(name));
  }
  return out;
}

test('making the user namespaces (the container\'s, an idmapped bind\'s) leaves no process behind: the monitor\'s one child is the container\'s first process', async (t) => {
  const h = await helperFor(t);
  const dir = path.join(h.dir, 'reaped');
  await fs.mkdir(dir);
  const conn = await connectProtocol(h.socket);
  t.after(() => conn.dispose());
  const { id } = await conn.sendRequest(ContainerRunRequest.type, {
    image: 'busybox', network: 'none', userns: 'auto', volumes: [`${dir}:/b`],
    idmapMounts: [{ target: '/b', uid: 4242, gid: 4343 }],
    cmd: ['sleep', '60'],
  });
  const pid = (await inspect(h, id)).State.Pid as number;
  assert.ok(pid > 0);
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  const monitor = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  assert.deepEqual(await childrenOf(monitor), [pid], `the monitor ${monitor}'s children`);
  // the bind's namespace is made by the container's first process, before its exec
  assert.deepEqual(await childrenOf(pid), [], `the container's first process ${pid}'s children`);
  await ok(h, ['rm', '-f', id]);
});
