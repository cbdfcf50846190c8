/**
 * Users' warm CLI pools (server/warmusers.ts): a user that has connected to
 * the helper gets warm processes of its own, running as that user with its
 * groups and no capability, on a socket only that user can reach; its
 * `capsa` calls (the compiled client) are served by them, and the helper
 * knows them as that user by SO_PEERCRED alone. A pool ends after its idle
 * time. Root's pool is unchanged. Real helper, real users, real containers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { warmCliUserDir, warmCliUserSocketPath } from '../../server/config';
import { REPO_ROOT, fileRegistry, startHelper, until, type TestHelper } from '../helpers/capsa';
import { asUser, createUser, type TestUser } from '../helpers/users';

const CLIENT = path.join(REPO_ROOT, 'native', 'build', 'capsa');
const registry = fileRegistry();

interface Ctx {
  after: (fn: () => unknown) => void;
}

/** A helper whose socket users may reach (as an administrator opens it), the test directory traversable by them. */
async function userHelper(t: Ctx, env: NodeJS.ProcessEnv = {}): Promise<{ h: TestHelper; log: () => string }> {
  const h = await startHelper({ mirror: registry.url, env: { CAPSA_SOCKET_MODE: '0666', ...env } });
  t.after(() => h.stop());
  chmodSync(h.dir, 0o711);
  const log = (): string => {
    try {
      return readFileSync(path.join(h.dir, 'helper.log'), 'utf8');
    } catch {
      return '';
    }
  };
  await until('the socket to take mode 0666', async () => (statSync(h.socket).mode & 0o777) === 0o666);
  return { h, log };
}

interface Result {
  pid: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `argv` run to its end, with `env` alone. */
function run(argv: string[], env: NodeJS.ProcessEnv): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ pid: child.pid!, code, stdout, stderr });
    });
  });
}

/** `capsa ARGS…` as `user` (setpriv execs the client: the pid is the client's), with a user's environment. */
function capsaAs(user: TestUser, h: TestHelper, args: string[]): Promise<Result> {
  return run(asUser(user, [CLIENT, ...args]), { PATH: process.env.PATH, CAPSA_SOCKET: h.socket, CAPSA_CONFIG: h.env.CAPSA_CONFIG, CAPSA_AUTOSTART: '0' });
}

/** The warm process of `uid`'s pool that served client `pid`, from the helper's log. */
async function servedBy(log: () => string, uid: number, pid: number): Promise<number> {
  const re = new RegExp(`uid ${uid}: warm CLI (\\d+) took a call from pid ${pid}\\n`);
  await until(`uid ${uid}'s warm CLI to take the call of pid ${pid}`, async () => re.test(log()));
  return Number(re.exec(log())![1]);
}

/** A user's first call runs the Node CLI (no pool yet) and makes the pool; resolves once its socket is there. */
async function warmUp(user: TestUser, h: TestHelper, log: () => string): Promise<void> {
  const r = await capsaAs(user, h, ['version']);
  assert.equal(r.code, 0, r.stderr);
  await until(`uid ${user.uid}'s pool`, async () => existsSync(warmCliUserSocketPath(h.socket, user.uid)) && new RegExp(`uid ${user.uid}: warm CLI \\d+ started`).test(log()));
}

function status(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

const ids = (text: string): number[] => text.split(/\s+/).filter(Boolean).map(Number).sort((a, b) => a - b);

test("a user's capsa call is served warm by a process of the user's own: its uid, gid and groups, no capability, a minimal environment, known to the helper as that user", async (t) => {
  const { h, log } = await userHelper(t);
  const user = createUser(t);
  await warmUp(user, h, log);
  const sock = warmCliUserSocketPath(h.socket, user.uid);
  const st = statSync(sock);
  assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [user.uid, user.gid, 0o600], "the socket is the user's, 0600");
  const dir = statSync(warmCliUserDir(h.socket));
  assert.deepEqual([dir.uid, dir.mode & 0o777], [0, 0o755], "its directory is root's, 0755");

  const r = await capsaAs(user, h, ['version']);
  assert.equal(r.code, 0, r.stderr);
  const warm = await servedBy(log, user.uid, r.pid);
  const s = status(warm);
  assert.deepEqual(ids(s.Uid), Array(4).fill(user.uid), s.Uid);
  assert.deepEqual(ids(s.Gid), Array(4).fill(user.gid), s.Gid);
  assert.deepEqual([...new Set([...ids(s.Groups), user.gid])].sort((a, b) => a - b), [user.gid, user.extraGid].sort((a, b) => a - b), 'the groups /etc/group gives the user');
  for (const cap of ['CapEff', 'CapPrm', 'CapAmb']) assert.match(s[cap], /^0+$/, `${cap} ${s[cap]}`);
  const env = readFileSync(`/proc/${warm}/environ`, 'utf8').split('\0').filter(Boolean).map((e) => e.slice(0, e.indexOf('=')));
  assert.deepEqual(env.sort(), ['CAPSA_AUTOSTART', 'CAPSA_SOCKET', 'HOME', 'LOGNAME', 'PATH', 'USER'], "none of root's environment");
  // the helper knows the process by the kernel's word: the user's uid and both groups
  const line = log().split('\n').find((l) => l.includes(`client connected: uid ${user.uid} gid ${user.gid} groups`) && l.includes(`pid ${warm}`));
  assert.ok(line, `no connection of warm CLI ${warm} as uid ${user.uid} in:\n${log()}`);

  // root's calls still go to root's pool, as before
  const root = await run([CLIENT, 'version'], h.env);
  assert.equal(root.code, 0, root.stderr);
  await until("root's warm CLI to take root's call", async () => new RegExp(`\\]: warm CLI \\d+ took a call from pid ${root.pid}\\n`).test(log()));

  // the helper's end ends the user's pool: its process, its socket, the directory
  h.process.kill('SIGTERM');
  await new Promise((r) => h.process.once('exit', r));
  await until(`warm CLI ${warm} to end with the helper`, async () => !existsSync(`/proc/${warm}`) || status(warm).State.startsWith('Z'));
  assert.equal(existsSync(warmCliUserDir(h.socket)), false);
});

test("a second user cannot connect to the first's warm socket and gets its own pool; the first's process refuses it even on a socket opened by mistake", async (t) => {
  const { h, log } = await userHelper(t);
  const first = createUser(t);
  const second = createUser(t);
  await warmUp(first, h, log);
  const sock = warmCliUserSocketPath(h.socket, first.uid);
  const probe = `try { const fd = require(${JSON.stringify(path.join(REPO_ROOT, 'out', 'server', 'util', 'seqpacket.js'))}).connectSeqpacket(process.argv[1]); console.log('connected'); } catch (e) { console.log(e.code); }`;
  const tryConnect = () => run(asUser(second, [process.execPath, '-e', probe, sock]), { PATH: process.env.PATH });
  assert.equal((await tryConnect()).stdout.trim(), 'EACCES');

  await warmUp(second, h, log);
  const r1 = await capsaAs(first, h, ['version']);
  const r2 = await capsaAs(second, h, ['version']);
  assert.equal(r1.code, 0, r1.stderr);
  assert.equal(r2.code, 0, r2.stderr);
  const w1 = await servedBy(log, first.uid, r1.pid);
  const w2 = await servedBy(log, second.uid, r2.pid);
  assert.notEqual(w1, w2);
  assert.deepEqual(ids(status(w2).Uid), Array(4).fill(second.uid));

  // as if an administrator opened the first user's socket: its process itself refuses the second user
  chmodSync(sock, 0o666);
  assert.equal((await tryConnect()).stdout.trim(), 'connected');
  await until('the refusal in the log', async () => new RegExp(`uid ${first.uid}: warm CLI \\d+ refused its call: uid ${second.uid} is not served by the warm CLI of uid ${first.uid}`).test(log()));
  assert.equal(h.process.exitCode, null);
});

test("a user's supplementary group reaches the helper through the warm path: a bind of a file only that group can read is accepted, one of a group it is not in is refused", async (t) => {
  const { h, log } = await userHelper(t);
  const user = createUser(t);
  const other = createUser(t);
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-warm-users-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const groupFile = (name: string, gid: number): string => {
    const file = path.join(dir, name);
    writeFileSync(file, 'for the group\n');
    chownSync(file, 0, gid);
    chmodSync(file, 0o640);
    return file;
  };
  const ours = groupFile('ours', user.extraGid);
  const theirs = groupFile('theirs', other.extraGid);
  await warmUp(user, h, log);
  const pull = await capsaAs(user, h, ['pull', '-q', 'busybox']);
  assert.equal(pull.code, 0, pull.stderr);
  await servedBy(log, user.uid, pull.pid);
  // create checks a bind source with the caller's rights, groups included, and a start opens it with the
  // owner's uid, primary gid and login groups (server/runtime/container/unprivileged.ts ownerCaller)
  // (inside, the group is not one of the container's ids, as with rootless podman without keep-groups: the
  // file is there, bound, and what the container may do with it is the mount's mapping's business)
  const ran = await capsaAs(user, h, ['run', '--rm', '--network', 'none', '-v', `${ours}:/secret:ro`, 'busybox', 'sh', '-c', 'test -e /secret && echo bound']);
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal(ran.stdout, 'bound\n', 'a file only a supplementary group of the user reads is bound at the start');
  await servedBy(log, user.uid, ran.pid);
  const created = await capsaAs(user, h, ['create', '-v', `${ours}:/secret:ro`, 'busybox', 'cat', '/secret']);
  assert.equal(created.code, 0, created.stderr);
  await servedBy(log, user.uid, created.pid);
  const refused = await capsaAs(user, h, ['create', '-v', `${theirs}:/secret:ro`, 'busybox', 'cat', '/secret']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, new RegExp(`uid ${user.uid} may not open bind source path ${theirs}`));
  await servedBy(log, user.uid, refused.pid);
});

test("a user's pool ends after its idle time without a call (process and socket), and the user's next connection makes a new one", async (t) => {
  const { h, log } = await userHelper(t, { CAPSA_WARM_CLI_IDLE: '2' });
  const user = createUser(t);
  await warmUp(user, h, log);
  const r = await capsaAs(user, h, ['version']);
  assert.equal(r.code, 0, r.stderr);
  const warm = await servedBy(log, user.uid, r.pid);
  const sock = warmCliUserSocketPath(h.socket, user.uid);
  await until('the pool to retire', async () => new RegExp(`uid ${user.uid}: warm CLI pool retired after 2 s without a call`).test(log()), 10_000);
  await until(`warm CLI ${warm} to end`, async () => !existsSync(`/proc/${warm}`));
  assert.equal(existsSync(sock), false, 'its socket is gone');
  // the next call runs the Node CLI, whose connection makes a new pool
  const again = await capsaAs(user, h, ['version']);
  assert.equal(again.code, 0, again.stderr);
  await until('a new pool', async () => existsSync(sock));
});

test("a user's warm process killed outright costs the helper nothing: a replacement starts, and the next call is served warm", async (t) => {
  const { h, log } = await userHelper(t);
  const user = createUser(t);
  await warmUp(user, h, log);
  const r = await capsaAs(user, h, ['version']);
  const warm = await servedBy(log, user.uid, r.pid);
  process.kill(warm, 'SIGKILL');
  await until('a replacement', async () => new RegExp(`uid ${user.uid}: warm CLI \\d+ started \\(${warm} ended`).test(log()));
  const next = await capsaAs(user, h, ['version']);
  assert.equal(next.code, 0, next.stderr);
  assert.notEqual(await servedBy(log, user.uid, next.pid), warm);
  assert.equal(h.process.exitCode, null, 'the helper still runs');
});
