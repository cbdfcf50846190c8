/**
 * Containers belong to the uid that created them: two users (created by the
 * test) run containers side by side against one root helper, each sees and
 * acts on its own only (another's is "no such container", as a missing one
 * is), hears only its own events, and gets an unprivileged container: a user
 * namespace of its own, binds written as the user, host-reaching options
 * refused naming the flag. Root sees both, with their owners, and its own
 * runs are as before.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileRegistry, startHelper, until, type TestHelper } from '../helpers/capsa';
import { createUser, type TestUser } from '../helpers/users';
import { rawRequest, rawSession, writeRawClient, type Answer, type Step } from '../helpers/rawclient';

const registry = fileRegistry();

interface World {
  h: TestHelper;
  client: string;
  a: TestUser;
  b: TestUser;
  /** One request as `user` (root when absent). */
  req(method: string, params: unknown, user?: TestUser): Promise<Answer>;
  /** Runs a detached `sleep` container as `user`; its id. */
  sleeper(user: TestUser | undefined, name: string): Promise<string>;
}

async function world(t: { after: (fn: () => Promise<void> | void) => void }, config?: Record<string, unknown>): Promise<World> {
  const a = createUser(t);
  const b = createUser(t);
  const h = await startHelper({ mirror: registry.url, env: { CAPSA_SOCKET_MODE: '0666' }, config });
  t.after(() => h.stop());
  chmodSync(h.dir, 0o711);
  const client = writeRawClient(h.dir);
  await until('the socket to be opened to users', async () => (statSync(h.socket).mode & 0o777) === 0o666);
  const pulled = await h.cli(['pull', 'busybox']);
  assert.equal(pulled.code, 0, pulled.stderr);
  const req = (method: string, params: unknown, user?: TestUser): Promise<Answer> => rawRequest(client, h.socket, method, params, user);
  const sleeper = async (user: TestUser | undefined, name: string): Promise<string> => {
    const r = await req('capsa/container/run', { image: 'busybox', name, network: 'none', cmd: ['sleep', '120'] }, user);
    assert.ok(r.result?.id, `run ${name} as ${user?.name ?? 'root'}: ${JSON.stringify(r)}`);
    return r.result.id as string;
  };
  return { h, client, a, b, req, sleeper };
}

const ids = (r: Answer): string[] => (r.result as Array<{ id: string }>).map((c) => c.id).sort();

test('two users each run a container named web side by side; each lists only its own; root sees both with their owners', async (t) => {
  const w = await world(t);
  const [ida, idb] = await Promise.all([w.sleeper(w.a, 'web'), w.sleeper(w.b, 'web')]);
  assert.notEqual(ida, idb);
  assert.deepEqual(ids(await w.req('capsa/container/list', { all: true }, w.a)), [ida]);
  assert.deepEqual(ids(await w.req('capsa/container/list', { all: true }, w.b)), [idb]);
  const mine = (await w.req('capsa/container/list', { all: true }, w.a)).result[0];
  assert.equal('owner' in mine, false, 'a user is not told owners: every container it sees is its own');
  const all = (await w.req('capsa/container/list', { all: true })).result as Array<{ id: string; name: string; owner: number }>;
  assert.deepEqual(all.map((c) => [c.id, c.name, c.owner]).sort(), [[ida, 'web', w.a.uid], [idb, 'web', w.b.uid]].sort());
  assert.deepEqual(ids(await w.req('capsa/container/list', { all: true }, w.a)), [ida], "still a's own only");
  assert.equal((await w.req('capsa/container/inspect', { container: ida })).result.owner, w.a.uid, 'root inspects with the owner');
  const ambiguous = await w.req('capsa/container/inspect', { container: 'web' });
  assert.match(ambiguous.error!.message, new RegExp(`container name web is used by 2 owners, none of them root: name one by id: .*(${ida.slice(0, 12)}.*${idb.slice(0, 12)}|${idb.slice(0, 12)}.*${ida.slice(0, 12)})`));
  const rootWeb = await w.sleeper(undefined, 'web');
  assert.equal((await w.req('capsa/container/inspect', { container: 'web' })).result.id, rootWeb, "root's own web first: a user taking the name changes nothing for root");
  // root's CLI labels each row with its owner's uid, root's own 0
  const ps = await w.h.cli(['ps', '-a']);
  assert.equal(ps.code, 0, ps.stderr);
  const [head, ...lines] = ps.stdout.trimEnd().split('\n');
  assert.match(head, /NAMES\s+OWNER$/);
  const owners = lines.map((l) => /\s(\d+)$/.exec(l)?.[1]).sort();
  assert.deepEqual(owners, [String(w.a.uid), String(w.b.uid), '0'].sort(), ps.stdout);
  assert.equal((await w.req('capsa/container/inspect', { container: 'web' }, w.a)).result.id, ida, "a user's name is its own");
  const dup = await w.req('capsa/container/run', { image: 'busybox', name: 'web', network: 'none', cmd: ['true'] }, w.a);
  assert.match(dup.error!.message, /container name "web" is already in use/, 'names are unique per owner');
});

test("another user's container is not found by name, full id or id prefix, for every method, with the text of a missing one", async (t) => {
  const w = await world(t);
  const ida = await w.sleeper(w.a, 'aweb');
  await w.sleeper(w.b, 'bweb');
  const missingId = 'f'.repeat(64);
  const calls: Array<[string, (ref: string) => unknown]> = [
    ['capsa/container/inspect', (c) => ({ container: c })],
    ['capsa/container/logs', (c) => ({ container: c })],
    ['capsa/container/exec', (c) => ({ container: c, cmd: ['true'] })],
    ['capsa/container/stop', (c) => ({ container: c, timeout: 0 })],
    ['capsa/container/kill', (c) => ({ container: c })],
    ['capsa/container/remove', (c) => ({ container: c, force: true })],
    ['capsa/container/wait', (c) => ({ container: c })],
    ['capsa/container/top', (c) => ({ container: c })],
    ['capsa/container/attach', (c) => ({ container: c, attachId: 'x1' })],
    ['capsa/container/start', (c) => ({ container: c })],
    ['capsa/container/restart', (c) => ({ container: c, timeout: 0 })],
  ];
  const steps: Step[] = [];
  const expected: Array<[string, string]> = [];
  for (const [method, params] of calls) {
    for (const [theirs, missing] of [['aweb', 'nosuchname'], [ida, missingId], [ida.slice(0, 12), missingId.slice(0, 12)]]) {
      steps.push({ method, params: params(theirs) }, { method, params: params(missing) });
      expected.push([theirs, missing]);
    }
  }
  // joining another's network namespace is naming it too
  steps.push({ method: 'capsa/container/run', params: { image: 'busybox', network: 'container:aweb', cmd: ['true'] } });
  steps.push({ method: 'capsa/container/run', params: { image: 'busybox', network: 'container:nosuchname', cmd: ['true'] } });
  expected.push(['aweb', 'nosuchname']);
  const { answers } = await rawSession(w.client, w.h.socket, steps, w.b);
  for (let i = 0; i < expected.length; i++) {
    const [theirs, missing] = expected[i];
    const got = answers[2 * i];
    const gone = answers[2 * i + 1];
    const what: string = `${(steps[2 * i] as { method: string }).method} ${theirs}`;
    assert.ok(got.error, `${what}: ${JSON.stringify(got)}`);
    assert.equal(got.error.data?.code, gone.error?.data?.code, what);
    assert.equal(got.error.data?.code, 'E_CONTAINER_NOT_FOUND', what);
    assert.equal(got.error.message.replace(theirs, 'REF'), gone.error!.message.replace(missing, 'REF'), what);
  }
  // prune of b's leaves a's exited container alone
  const ended = await w.req('capsa/container/run', { image: 'busybox', name: 'done', network: 'none', cmd: ['true'] }, w.a);
  const waited = await w.req('capsa/container/wait', { container: 'done' }, w.a);
  assert.equal(waited.result?.exitCode, 0, `${JSON.stringify(ended)} ${JSON.stringify(waited)}`);
  assert.deepEqual((await w.req('capsa/container/prune', {}, w.b)).result, { deleted: [] });
  const left = await w.req('capsa/container/list', { all: true }, w.a);
  assert.deepEqual(ids(left), [ida, ended.result.id].sort());
  assert.equal((left.result as Array<{ id: string; state: string }>).find((c) => c.id === ida)!.state, 'running', "a's container still runs after all of b's tries");
});

test("one user's container events do not reach another user; root hears them; a user hears its own", async (t) => {
  const w = await world(t);
  const listening = rawSession(w.client, w.h.socket, [
    { method: 'capsa/container/list', params: {} },
    { waitMs: 4000 },
    { method: 'capsa/container/run', params: { image: 'busybox', name: 'mine', network: 'none', cmd: ['true'], rm: true } },
    { waitMs: 1500 },
  ], w.a);
  const rootListening = rawSession(w.client, w.h.socket, [{ method: 'capsa/container/list', params: {} }, { waitMs: 5000 }]);
  await new Promise((r) => setTimeout(r, 1000));
  const theirs = await w.req('capsa/container/run', { image: 'busybox', name: 'theirs', network: 'none', cmd: ['true'], rm: true }, w.b);
  assert.ok(theirs.result?.id, JSON.stringify(theirs));
  const [heard, rootHeard] = await Promise.all([listening, rootListening]);
  const mine = heard.answers[2].result.id as string;
  const of = (r: typeof heard): Set<string> => new Set(r.notifications.filter((n) => n.method === 'capsa/event/container').map((n) => n.params.container.id as string));
  assert.deepEqual([...of(heard)], [mine], "a hears its own container's events and none of b's");
  assert.ok(of(rootHeard).has(theirs.result.id), "root hears b's");
});

test("a stream id is its connection's own: another user's input and close with it reach nothing", async (t) => {
  const w = await world(t);
  const b64 = (text: string): string => Buffer.from(text).toString('base64');
  const owner = rawSession(w.client, w.h.socket, [
    { method: 'capsa/container/run', params: { image: 'busybox', name: 'reader', network: 'none', interactive: true, attachId: 's1', cmd: ['sh', '-c', 'read x; echo got:$x'] } },
    { waitMs: 3000 },
    { notify: 'capsa/stream/input', params: { attachId: 's1', data: b64('mine\n') } },
    { waitMs: 2000 },
  ], w.a);
  await new Promise((r) => setTimeout(r, 1500));
  await rawSession(w.client, w.h.socket, [
    { notify: 'capsa/stream/input', params: { attachId: 's1', data: b64('pwned\n') } },
    { notify: 'capsa/stream/close', params: { attachId: 's1' } },
    { method: 'capsa/container/list', params: {} },
  ], w.b);
  const { answers, notifications } = await owner;
  assert.ok(answers[0].result?.id, JSON.stringify(answers[0]));
  const out = notifications.filter((n) => n.method === 'capsa/stream/output' && n.params.attachId === 's1').map((n) => Buffer.from(n.params.data, 'base64').toString()).join('');
  assert.equal(out.trim(), 'got:mine', 'only the owner\'s input reached the container');
});

test("a user's container has its own user namespace, and what its root writes in the user's bind belongs to the user on the host", async (t) => {
  const w = await world(t);
  const ws = path.join(w.h.dir, 'ws');
  mkdirSync(ws, { mode: 0o755 });
  chownSync(ws, w.a.uid, w.a.gid);
  writeFileSync(path.join(ws, 'theirs'), 'x');
  chownSync(path.join(ws, 'theirs'), w.a.uid, w.a.gid);
  const run = await w.req('capsa/container/run', {
    image: 'busybox', name: 'ns', network: 'none', volumes: [`${ws}:/w`],
    cmd: ['sh', '-c', 'cat /proc/self/uid_map > /w/uid_map; id -u > /w/id; stat -c %u:%g /w/theirs > /w/seen; touch /w/made'],
  }, w.a);
  assert.ok(run.result?.id, JSON.stringify(run));
  assert.equal((await w.req('capsa/container/wait', { container: 'ns' }, w.a)).result?.exitCode, 0);
  const map = readFileSync(path.join(ws, 'uid_map'), 'utf8').trim().split(/\s+/).map(Number);
  assert.notDeepEqual(map, [0, 0, 4294967295], 'not the host identity map');
  assert.equal(map[0], 0);
  assert.ok(map[1] >= 65536 && map[2] === 65536, `container ids 0..65535 on a block of host ids: ${map}`);
  assert.equal(readFileSync(path.join(ws, 'id'), 'utf8').trim(), '0', 'root inside');
  assert.equal(readFileSync(path.join(ws, 'seen'), 'utf8').trim(), '0:0', "the user's own files appear as the container root's");
  const made = statSync(path.join(ws, 'made'));
  assert.deepEqual([made.uid, made.gid], [w.a.uid, w.a.gid], 'a file the container root made is the user\'s on the host');
  const config = (await w.req('capsa/container/inspect', { container: 'ns' }, w.a)).result.config;
  assert.equal(config.userns, 'auto', 'inspect shows the user namespace');
  // an idmapMount of the user's own picks the container user that writes as the user (a dev container's non-root user)
  const asDev = await w.req('capsa/container/run', {
    image: 'busybox', name: 'dev', network: 'none', user: '1000:1000', volumes: [`${ws}:/w`],
    idmapMounts: [{ target: '/w', uid: w.a.uid, gid: w.a.gid, containerUid: 1000, containerGid: 1000 }],
    cmd: ['sh', '-c', 'stat -c %u /w > /w/dev-sees; touch /w/dev-made'],
  }, w.a);
  assert.ok(asDev.result?.id, JSON.stringify(asDev));
  assert.equal((await w.req('capsa/container/wait', { container: 'dev' }, w.a)).result?.exitCode, 0);
  assert.equal(readFileSync(path.join(ws, 'dev-sees'), 'utf8').trim(), '1000', "the user's directory is the container user's");
  const devMade = statSync(path.join(ws, 'dev-made'));
  assert.deepEqual([devMade.uid, devMade.gid], [w.a.uid, w.a.gid]);
  // a named volume of the user's is written as the user too
  const vol = await w.req('capsa/container/run', { image: 'busybox', name: 'vol', network: 'none', volumes: ['data:/d'], cmd: ['sh', '-c', 'touch /d/made && stat -c %u /d'] }, w.a);
  assert.ok(vol.result?.id, JSON.stringify(vol));
  assert.equal((await w.req('capsa/container/wait', { container: 'vol' }, w.a)).result?.exitCode, 0, 'the container root writes its volume');
  const volMount = (await w.req('capsa/container/inspect', { container: 'vol' }, w.a)).result.mounts.find((m: { destination: string }) => m.destination === '/d').source as string;
  const volMade = statSync(path.join(volMount, 'made'));
  assert.deepEqual([volMade.uid, volMade.gid], [w.a.uid, w.a.gid]);
  // exec in the user's own container runs in that namespace too
  await w.sleeper(w.a, 'live');
  const session = await rawSession(w.client, w.h.socket, [
    { method: 'capsa/container/exec', params: { container: 'live', cmd: ['cat', '/proc/self/uid_map'], attachId: 'e1' } },
    { waitMs: 2000 },
  ], w.a);
  assert.equal(session.answers[0].result?.execId, 'e1', JSON.stringify(session.answers[0]));
  const out = session.notifications.filter((n) => n.method === 'capsa/stream/output' && n.params.attachId === 'e1').map((n) => Buffer.from(n.params.data, 'base64').toString()).join('');
  const execMap = out.trim().split(/\s+/).map(Number);
  assert.equal(execMap.length, 3, out);
  assert.ok(execMap[0] === 0 && execMap[1] >= 65536 && execMap[2] === 65536, `the exec is in the container's user namespace: ${out}`);
  assert.notEqual(execMap[1], map[1], "'ns' still holds its block: 'live' has another");
});

test("a user's bind of a single file of theirs is mounted, read-only or read-write, and what the container writes to it stays the user's", async (t) => {
  const w = await world(t);
  const ws = path.join(w.h.dir, 'files');
  mkdirSync(ws, { mode: 0o755 });
  chownSync(ws, w.a.uid, w.a.gid);
  const tool = path.join(ws, 'tool');
  const out = path.join(ws, 'out');
  writeFileSync(tool, 'from the host\n');
  writeFileSync(out, '');
  chownSync(tool, w.a.uid, w.a.gid);
  chownSync(out, w.a.uid, w.a.gid);
  // the file's target is idmapped like a directory's: no "not a directory" at setup
  const run = await w.req('capsa/container/run', {
    image: 'busybox', name: 'files', network: 'none', volumes: [`${tool}:/tool:ro`, `${out}:/out`],
    cmd: ['sh', '-c', 'cat /tool > /out; stat -c %u:%g /tool >> /out; echo x >> /tool || echo read-only >> /out'],
  }, w.a);
  assert.ok(run.result?.id, JSON.stringify(run));
  const waited = await w.req('capsa/container/wait', { container: 'files' }, w.a);
  assert.equal(waited.result?.exitCode, 0, JSON.stringify(waited));
  assert.equal(readFileSync(out, 'utf8'), 'from the host\n0:0\nread-only\n', "the user's file appears as the container root's, and :ro holds");
  assert.equal(readFileSync(tool, 'utf8'), 'from the host\n');
  const st = statSync(out);
  assert.deepEqual([st.uid, st.gid], [w.a.uid, w.a.gid], 'the file the container wrote is still the user\'s');
});

test('every option that reaches past the user namespace is refused for a user, naming the flag, and nothing is created', async (t) => {
  const w = await world(t);
  const ws = path.join(w.h.dir, 'ws');
  mkdirSync(ws, { mode: 0o700 });
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ privileged: true }, /^--privileged refused for uid/],
    [{ userns: 'host' }, /^--userns host refused/],
    [{ pid: 'host' }, /^--pid host refused/],
    [{ ipc: 'host' }, /^--ipc host refused/],
    [{ network: 'host' }, /^--network host refused/],
    [{ securityOpt: ['seccomp=unconfined'] }, /^--security-opt seccomp=unconfined refused/],
    [{ capAdd: ['SYS_ADMIN'] }, /^--cap-add SYS_ADMIN refused/],
    [{ capAdd: ['NET_ADMIN'] }, /^--cap-add NET_ADMIN refused/],
    [{ publish: ['80:80'] }, /^--publish 80:80 refused .*ip_unprivileged_port_start/],
    [{ devices: ['/dev/null:/dev/mynull'] }, /^--device "\/dev\/null:\/dev\/mynull" refused for uid \d+: .*only root may use it/],
    [{ devices: ['/dev/zero:/dev/z:r'] }, /^--device "\/dev\/zero:\/dev\/z:r" refused for uid/],
    [{ idmapMounts: [{ target: '/w', uid: 0, gid: 0 }], volumes: ['/tmp:/w'] }, /^idmapMounts 0:0 refused/],
    [{ volumes: ['/root:/r'] }, /bind source path \/root/],
    [{ volumes: [`${ws}:/w`] }, /may not open bind source path/],
  ];
  const before = readdirOrEmpty(path.join(w.h.root, 'containers'));
  const steps = cases.map(([o]) => ({ method: 'capsa/container/run', params: { image: 'busybox', network: 'none', cmd: ['true'], ...o } }));
  steps.push(...cases.map(([o]) => ({ method: 'capsa/container/create', params: { image: 'busybox', network: 'none', cmd: ['true'], ...o } })));
  const { answers } = await rawSession(w.client, w.h.socket, steps, w.a);
  answers.forEach((r, i) => {
    const [o, re] = cases[i % cases.length];
    assert.equal(r.error?.data?.code, 'E_PERMISSION_DENIED', `${JSON.stringify(o)}: ${JSON.stringify(r)}`);
    assert.match(r.error!.message, re, JSON.stringify(o));
  });
  // an owner is the kernel's word, never a message's
  const forged = await rawSession(w.client, w.h.socket, [
    { method: 'capsa/container/run', params: { image: 'busybox', network: 'none', cmd: ['true'], owner: 0 } },
    { method: 'capsa/container/list', params: { all: true, owner: 0 } },
  ], w.a);
  for (const r of forged.answers) assert.match(r.error?.message ?? '', /: owner is not a known field/, JSON.stringify(r));
  assert.deepEqual((await w.req('capsa/container/list', { all: true })).result, [], 'nothing was created');
  assert.deepEqual(readdirOrEmpty(path.join(w.h.root, 'containers')), before);
});

test("root's runs are as before: no user namespace, a bind written as root, and root may use --privileged", async (t) => {
  const w = await world(t);
  const dir = path.join(w.h.dir, 'rootws');
  mkdirSync(dir);
  const r = await w.h.cli(['run', '--rm', '--network', 'none', '-v', `${dir}:/w`, 'busybox', 'sh', '-c', 'cat /proc/self/uid_map; touch /w/made']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split(/\s+/), ['0', '0', '4294967295']);
  const st = statSync(path.join(dir, 'made'));
  assert.deepEqual([st.uid, st.gid], [0, 0]);
  const p = await w.h.cli(['run', '--rm', '--network', 'none', '--privileged', 'busybox', 'true']);
  assert.equal(p.code, 0, p.stderr);
});

test("the config's userLimits cap each user's containers, memory and pids; root has none", async (t) => {
  const w = await world(t, { userLimits: { containers: 1, memory: 64 << 20, pidsLimit: 64 } });
  await w.sleeper(w.a, 'one');
  const got = (await w.req('capsa/container/inspect', { container: 'one' }, w.a)).result.config;
  assert.deepEqual([got.memory, got.pidsLimit], [64 << 20, 64], 'a container that asked for no limit gets the ceilings');
  const second = await w.req('capsa/container/run', { image: 'busybox', network: 'none', cmd: ['true'] }, w.a);
  assert.equal(second.error?.data?.code, 'E_PERMISSION_DENIED', JSON.stringify(second));
  assert.match(second.error!.message, /it has 1 containers, this helper's ceiling for users/);
  const big = await w.req('capsa/container/run', { image: 'busybox', network: 'none', cmd: ['true'], memory: 128 << 20 }, w.b);
  assert.match(big.error?.message ?? '', /^--memory 134217728 refused for uid \d+: above this helper's ceiling/);
  await w.sleeper(w.b, 'other');
  assert.equal((await w.req('capsa/container/list', { all: true }, w.b)).result.length, 1, "each user's count is its own");
  const r = await w.h.cli(['run', '--rm', '--network', 'none', '--memory', '256m', 'busybox', 'true']);
  assert.equal(r.code, 0, `root is not capped: ${r.stderr}`);
});

function readdirOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}
