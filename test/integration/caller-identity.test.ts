/**
 * The helper knows each client from the kernel (SO_PEERCRED, SO_PEERGROUPS),
 * and answers a caller other than root its handshake and the methods opened
 * to users (each scoped to the caller: owner-containers, owner-images and
 * owner-volumes-networks tests) only, even on a socket an administrator
 * opened to everyone; root's warm CLI processes refuse such a caller, whose
 * `capsa` calls go to warm processes of its own (warm-cli-users tests) or
 * the Node CLI. Root keeps the whole protocol.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT, connectProtocol, fileRegistry, startHelper, until, type TestHelper } from '../helpers/capsa';
import { asUser, createUser, type TestUser } from '../helpers/users';
import { ContainerListRequest, ImageEventNotification, ImagePullRequest, VersionRequest } from '../../server/protocol';
import { warmCliSocketPath, warmCliUserSocketPath } from '../../server/config';

/** A raw JSON-RPC client (no modules: the user may not read node_modules) that sends each request and prints each answer with its pid. */
const CLIENT = `
const net = require('net');
const [socket, ...methods] = process.argv.slice(2);
const s = net.connect(socket);
let buf = Buffer.alloc(0);
const answers = [];
s.on('connect', () => methods.forEach((method, id) => {
  const body = JSON.stringify({ jsonrpc: '2.0', id, method, params: method === 'capsa/container/list' ? { all: true } : undefined });
  s.write('Content-Length: ' + Buffer.byteLength(body) + '\\r\\n\\r\\n' + body);
}));
s.on('error', (e) => { console.log(JSON.stringify({ pid: process.pid, error: e.code })); process.exit(0); });
s.on('data', (d) => {
  buf = Buffer.concat([buf, d]);
  for (;;) {
    const end = buf.indexOf('\\r\\n\\r\\n');
    if (end < 0) break;
    const len = Number(/Content-Length: (\\d+)/.exec(buf.subarray(0, end).toString())[1]);
    if (buf.length < end + 4 + len) break;
    const m = JSON.parse(buf.subarray(end + 4, end + 4 + len).toString());
    if (m.id === undefined) notifications.push(m.method); else answers.push(m);
    buf = buf.subarray(end + 4 + len);
  }
  if (answers.length === methods.length && !done) {
    done = true;
    // with LINGER=1, it stays connected until its stdin closes, and reports the notifications it got meanwhile
    if (process.env.LINGER !== '1') finish();
    else { process.stdin.resume(); process.stdin.on('end', finish); console.error('answered'); }
  }
});
let done = false;
const notifications = [];
const finish = () => { console.log(JSON.stringify({ pid: process.pid, answers: answers.filter((a) => a.id !== undefined), notifications })); s.destroy(); };
`;

const registry = fileRegistry();

function run(argv: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(argv[0], argv.slice(1), { env, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function setup(t: { after: (fn: () => Promise<void> | void) => void }, access: NodeJS.ProcessEnv = { CAPSA_SOCKET_MODE: '0666' }): Promise<{ user: TestUser; h: TestHelper; log: () => string }> {
  const user = createUser(t);
  const h = await startHelper({ mirror: registry.url, env: access });
  t.after(() => h.stop());
  // the test's directory (0700 from mkdtemp) opened for the user to traverse, as /run/capsa is
  chmodSync(h.dir, 0o711);
  writeFileSync(path.join(h.dir, 'client.js'), CLIENT, { mode: 0o644 });
  const log = (): string => {
    try {
      return readFileSync(path.join(h.dir, 'helper.log'), 'utf8');
    } catch {
      return ''; // nothing logged yet
    }
  };
  // the socket is made 0600 and widened just after it listens
  const mode = parseInt(access.CAPSA_SOCKET_MODE ?? '666', 8);
  await until('the socket to take the configured mode', async () => (statSync(h.socket).mode & 0o777) === mode);
  return { user, h, log };
}

/** A method no user is given (none of the protocol's is left root-only: the gate denies by default what it does not list). */
const UNLISTED = 'capsa/unlisted/method';

test('a non-root caller on a 0666 socket is identified by the kernel, logged, answered its version and its own containers, and refused what is not opened to users; root is served', async (t) => {
  const { user, h, log } = await setup(t);
  const r = await run(asUser(user, [process.execPath, path.join(h.dir, 'client.js'), h.socket, VersionRequest.method, UNLISTED, ContainerListRequest.method]), { PATH: process.env.PATH });
  assert.equal(r.code, 0, r.stderr);
  const { pid, answers } = JSON.parse(r.stdout) as { pid: number; answers: Array<{ id: number; result?: { pid: number }; error?: { message: string; data?: { code: string } } }> };
  const version = answers.find((a) => a.id === 0)!;
  const pull = answers.find((a) => a.id === 1)!;
  const list = answers.find((a) => a.id === 2)!;
  assert.equal(version.result?.pid, h.process.pid, 'the handshake is answered');
  assert.equal(pull.error?.data?.code, 'E_PERMISSION_DENIED', JSON.stringify(pull));
  assert.match(pull.error!.message, /capsa\/unlisted\/method refused for uid \d+: not open to users other than root/);
  assert.deepEqual(list.result, [], 'its own containers (none) are listed');
  // the identity the kernel gave: uid, primary gid, both groups (setpriv --init-groups), the client's pid
  await until('the connect line in the log', async () => log().includes(`pid ${pid}`));
  const line = log().split('\n').find((l) => l.includes(`client connected: uid ${user.uid} gid ${user.gid} groups`) && l.includes(`pid ${pid}`));
  assert.ok(line, `no connect line for uid ${user.uid} pid ${pid} in:\n${log()}`);
  const groups = /groups ([0-9,]+) pid/.exec(line!)![1].split(',').map(Number).sort((a, b) => a - b);
  assert.deepEqual(groups, [user.gid, user.extraGid].sort((a, b) => a - b));

  const conn = await connectProtocol(h.socket);
  t.after(() => conn.dispose());
  assert.deepEqual(await conn.sendRequest(ContainerListRequest.type, { all: true }), [], 'root keeps the whole protocol');

  // root's events (here a pull's) are root's business: a connected caller without access hears none of them
  const [cmd, ...args] = asUser(user, [process.execPath, path.join(h.dir, 'client.js'), h.socket, VersionRequest.method]);
  const lingering = spawn(cmd, args, {
    env: { PATH: process.env.PATH, LINGER: '1' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  lingering.stdout.on('data', (d: Buffer) => (out += d));
  lingering.stderr.on('data', (d: Buffer) => (err += d));
  await until('the lingering client to be answered', async () => err.includes('answered') || lingering.exitCode !== null);
  const events: string[] = [];
  conn.onNotification(ImageEventNotification.type, (e) => void events.push(e.action));
  await conn.sendRequest(ImagePullRequest.type, { reference: 'busybox:latest' });
  await until('root to hear the pull', async () => events.length > 0);
  await new Promise((r) => setTimeout(r, 200));
  lingering.stdin.end();
  await new Promise((r) => lingering.once('close', r));
  assert.deepEqual((JSON.parse(out) as { notifications: string[] }).notifications, [], `the user's connection got no events (${err})`);
  assert.match(log(), /client connected: uid 0 gid 0 groups [0-9,a-z]+ pid \d+\n/);
  assert.equal((await conn.sendRequest(VersionRequest.type)).pid, h.process.pid, 'the same helper still answers');
});

test("root's warm CLI serves root alone: a user that reaches its socket (opened by mistake) is refused, and the user's capsa calls run as that user, warm in a pool of its own", async (t) => {
  const { user, h, log } = await setup(t);
  const warm = warmCliSocketPath(h.socket);
  await until('the warm CLI to be ready', async () => log().includes('warm CLI') && statSync(warm, { throwIfNoEntry: false }) !== undefined);
  assert.equal(statSync(warm).mode & 0o777, 0o600, 'the warm socket stays root-only whatever socketMode says');
  // as if an administrator opened it too: the warm process itself must refuse
  chmodSync(warm, 0o666);
  const probe = `try { require(${JSON.stringify(path.join(REPO_ROOT, 'out', 'server', 'util', 'seqpacket.js'))}).connectSeqpacket(process.argv[1]); console.log('connected'); } catch (e) { console.log(e.code); }`;
  const reached = await run(asUser(user, [process.execPath, '-e', probe, warm]), { PATH: process.env.PATH });
  assert.equal(reached.stdout.trim(), 'connected', reached.stderr);
  await until('the warm CLI to log its refusal', async () => new RegExp(`\\]: warm CLI \\d+ refused its call: uid ${user.uid} is not served by the warm CLI of uid 0`).test(log()));
  assert.doesNotMatch(log(), /took a call from pid/, 'no warm process took the call');
  // the refusal was no call: the process that refused stays, idle, for the next client
  const refuser = Number(new RegExp(`warm CLI (\\d+) refused its call: uid ${user.uid}`).exec(log())![1]);
  assert.doesNotThrow(() => process.kill(refuser, 0), `warm CLI ${refuser} still runs`);
  const env = { PATH: process.env.PATH, CAPSA_SOCKET: h.socket, CAPSA_CONFIG: h.env.CAPSA_CONFIG, CAPSA_AUTOSTART: '0' };
  const client = path.join(REPO_ROOT, 'native', 'build', 'capsa');
  // the user's client never tries root's socket: its first call runs the Node CLI, whose connection gives the user a pool
  const version = await run(asUser(user, [client, 'version']), env);
  assert.equal(version.code, 0, `capsa version as the user: ${version.stderr}`);
  await until("the user's pool", async () => statSync(warmCliUserSocketPath(h.socket, user.uid), { throwIfNoEntry: false }) !== undefined);
  const ps = await run(asUser(user, [client, 'ps']), env);
  assert.equal(ps.code, 0, `the user's own containers are listed: ${ps.stderr}`);
  const images = await run(asUser(user, [client, 'images']), env);
  assert.equal(images.code, 0, `the user's own images are listed: ${images.stderr}`);
  assert.doesNotMatch(images.stdout, /busybox/, "root's images are not the user's");
  await until("the user's warm CLI to take its calls", async () => new RegExp(`uid ${user.uid}: warm CLI \\d+ took a call from pid`).test(log()));
  assert.doesNotMatch(log(), /\]: warm CLI \d+ took a call from pid/, "root's warm CLI took none of the user's calls");
  // root's calls still go through root's warm CLI
  const rootPs = await run([client, 'ps'], { ...h.env });
  assert.equal(rootPs.code, 0, rootPs.stderr);
  await until("a warm process to take root's call", async () => /\]: warm CLI \d+ took a call from pid/.test(log()));
  assert.equal(h.process.exitCode, null, 'the helper is still running');
});

test('by default the socket is open to every local user (0666, group root), and each is still only itself', async (t) => {
  const { user, h } = await setup(t, {});
  const st = statSync(h.socket);
  assert.equal(st.mode & 0o777, 0o666, 'no configuration: every local user reaches the socket');
  assert.equal(st.uid, 0);
  assert.equal(st.gid, 0);
  const r = await run(asUser(user, [process.execPath, path.join(h.dir, 'client.js'), h.socket, VersionRequest.method, UNLISTED]), { PATH: process.env.PATH });
  assert.equal(r.code, 0, r.stderr);
  const { answers } = JSON.parse(r.stdout) as { answers: Array<{ id: number; result?: { pid: number }; error?: { data?: { code: string } } }> };
  assert.equal(answers.find((a) => a.id === 0)?.result?.pid, h.process.pid, 'a user with no group of its own reaches the helper');
  assert.equal(answers.find((a) => a.id === 1)?.error?.data?.code, 'E_PERMISSION_DENIED', 'and gets no more than a user gets');
});

test('socketGroup and socketMode 0660 let the group in (through a supplementary group) and no one else', async (t) => {
  // the group is the first user's own supplementary group, made before the helper starts
  const member = createUser(t);
  const { user: outsider, h, log } = await setup(t, { CAPSA_SOCKET_MODE: '0660', CAPSA_SOCKET_GROUP: member.extraGroup });
  const st = statSync(h.socket);
  assert.equal(st.gid, member.extraGid, 'the configured group owns the socket');
  assert.equal(st.uid, 0);
  const ask = (who: TestUser) => run(asUser(who, [process.execPath, path.join(h.dir, 'client.js'), h.socket, VersionRequest.method, UNLISTED]), { PATH: process.env.PATH });
  const inside = JSON.parse((await ask(member)).stdout) as { pid: number; answers: Array<{ id: number; result?: { pid: number }; error?: { data?: { code: string } } }> };
  assert.equal(inside.answers.find((a) => a.id === 0)?.result?.pid, h.process.pid, 'a member reaches the helper');
  assert.equal(inside.answers.find((a) => a.id === 1)?.error?.data?.code, 'E_PERMISSION_DENIED', 'and gets no more than a user gets');
  await until('the member\'s connect line', async () => log().includes(`client connected: uid ${member.uid} `));
  const outside = JSON.parse((await ask(outsider)).stdout) as { error?: string };
  assert.equal(outside.error, 'EACCES', 'a user outside the group cannot connect');
  assert.equal(h.process.exitCode, null);
});
