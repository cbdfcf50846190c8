/**
 * The helper's own life, as a hostile or unlucky machine shapes it.
 *
 * - The CLI tells the truth when the helper is lost: a helper SIGKILLed
 *   under any long verb (pull, run, start -a, attach, exec, logs -f, wait,
 *   stop), through the Node CLI and through the warm CLI, leaves the CLI to
 *   exit 125 with an error naming the lost helper, never 0; a start that the
 *   helper's death interrupted is recorded as an error with its cause.
 * - A root helper trusts only root-owned state: a Capsa root or socket
 *   directory, or a parent of either, that another user owns or may write
 *   is refused with an error naming it, and nothing is created there.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { CLI, HELPER_MAIN, inspect, ok, restartHelper, testHelper, until, type TestHelper } from '../helpers/capsa';
import { startFaultProxy, startRegistry, type TestRegistry } from '../helpers/registry';
import { seedBusybox } from '../helpers/oci';

let registry: TestRegistry;
before(async () => {
  registry = await startRegistry();
  await seedBusybox(registry);
});
after(async () => registry?.stop());

function helperLog(h: TestHelper): string {
  try {
    return readFileSync(path.join(h.dir, 'helper.log'), 'utf8');
  } catch {
    return '';
  }
}

/** The helper that `h` names runs and answers with its own pid. */
async function assertAnswers(h: TestHelper): Promise<void> {
  assert.equal(h.process.exitCode, null, 'the helper runs');
  assert.equal(h.process.signalCode, null, 'the helper runs');
  assert.match(await ok(h, ['version']), new RegExp(`pid ${h.process.pid}\\b`), 'the same helper answers');
}

/** `capsa ARGS` started in the background, its output collected as it comes. */
function background(h: TestHelper, args: string[]): { pid: number; out: () => string; done: Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> } {
  const child = spawn(CLI, args, { env: h.env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  void done.then(() => clearTimeout(timer));
  return { pid: child.pid!, out: () => stdout, done };
}

interface LostCase {
  verb: string;
  /** Pulls go through a proxy that sends blobs at 2 kB/s. */
  slow?: boolean;
  setup?: string[][];
  args: string[];
  /** The call is in flight: its output shows, or the slow blob is on its way. */
  inFlight: 'output' | 'blob' | 'a second';
}

const LOST: LostCase[] = [
  { verb: 'pull', slow: true, args: ['pull', 'busybox'], inFlight: 'blob' },
  { verb: 'run (still pulling, --pull always)', slow: true, args: ['run', '--rm', '--pull', 'always', 'busybox', 'true'], inFlight: 'blob' },
  { verb: 'run (attached to a running container)', args: ['run', '--name', 'c', 'busybox', 'sh', '-c', 'echo up; sleep 600'], inFlight: 'output' },
  { verb: 'start -a', setup: [['create', '--name', 'c', 'busybox', 'sh', '-c', 'echo up; sleep 600']], args: ['start', '-a', 'c'], inFlight: 'output' },
  { verb: 'attach', setup: [['run', '-d', '--name', 'c', 'busybox', 'sh', '-c', 'while :; do echo up; sleep 0.1; done']], args: ['attach', 'c'], inFlight: 'output' },
  { verb: 'exec', setup: [['run', '-d', '--name', 'c', 'busybox', 'sleep', '600']], args: ['exec', 'c', 'sh', '-c', 'echo up; sleep 600'], inFlight: 'output' },
  { verb: 'logs -f', setup: [['run', '-d', '--name', 'c', 'busybox', 'sh', '-c', 'echo up; sleep 600']], args: ['logs', '-f', 'c'], inFlight: 'output' },
  { verb: 'wait', setup: [['run', '-d', '--name', 'c', 'busybox', 'sleep', '600']], args: ['wait', 'c'], inFlight: 'a second' },
  { verb: 'stop', setup: [['run', '-d', '--name', 'c', 'busybox', 'sh', '-c', 'trap "" TERM; while :; do sleep 0.1; done']], args: ['stop', '-t', '60', 'c'], inFlight: 'a second' },
];

for (const warm of [false, true]) {
  const through = warm ? 'the warm CLI' : 'the Node CLI';
  for (const c of LOST) {
    test(`helper SIGKILLed during ${c.verb}: ${through} exits 125 naming the lost helper; the next helper serves`, { timeout: 120_000 }, async (t) => {
      const proxy = c.slow ? await startFaultProxy(registry, { bytesPerSecond: 2000 }) : undefined;
      t.after(() => proxy?.stop());
      const h = await testHelper(t, proxy?.url ?? registry.url);
      if (!warm) {
        // a helper without warm CLI processes: the client runs the Node CLI
        await h.crash();
        h.env = { ...h.env, CAPSA_WARM_CLI: '0' };
        await restartHelper(h);
      }
      for (const s of c.setup ?? []) await ok(h, s);
      const call = background(h, c.args);
      if (c.inFlight === 'blob') await until('a blob on its way', async () => proxy!.count(/^GET \/v2\/.+\/blobs\//) > 0, 20_000);
      else if (c.inFlight === 'output') await until(`output from ${c.verb}`, async () => call.out().includes('up'), 20_000);
      else await new Promise((r) => setTimeout(r, 1000));
      if (warm) await until('a warm CLI to take the call', async () => new RegExp(`took a call from pid ${call.pid}\\n`).test(helperLog(h)));
      await h.crash();
      const r = await call.done;
      assert.equal(r.code, 125, `capsa ${c.args.join(' ')} exited ${r.code} (${r.signal}) after the helper died: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`lost the connection to the capsa helper at ${h.socket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      await restartHelper(h);
      await assertAnswers(h);
      // nothing the lost call started is recorded as a success it never had
      for (const line of (await ok(h, ['ps', '-a'])).split('\n').slice(1).filter(Boolean)) assert.doesNotMatch(line, /Exited \(0\)/);
    });
  }
}

test('a start interrupted by the helper dying is recorded as exited with an error, not as created nor as its earlier exit 0', async (t) => {
  const h = await testHelper(t, registry.url);
  await ok(h, ['create', '--name', 'fresh', 'busybox', 'sh', '-c', 'exit 0']);
  await ok(h, ['run', '--name', 'again', 'busybox', 'sh', '-c', 'exit 0']);
  await ok(h, ['create', '--name', 'never', 'busybox', 'true']);
  const ids = { fresh: (await inspect(h, 'fresh')).Id as string, again: (await inspect(h, 'again')).Id as string };
  assert.equal((await inspect(h, 'again')).State.ExitCode, 0);
  await h.crash();
  // state.json as a start leaves it before it launches the monitor: a helper killed then,
  // with the monitor gone too (the machine went down), leaves it so
  for (const id of Object.values(ids)) {
    const file = path.join(h.root, 'containers', id, 'state.json');
    const state = JSON.parse(await fs.readFile(file, 'utf8'));
    await fs.writeFile(file, JSON.stringify({ ...state, startingAt: new Date().toISOString() }));
    await fs.rm(path.join(h.root, 'containers', id, 'exit.json'), { force: true });
  }
  await restartHelper(h);
  for (const name of ['fresh', 'again']) {
    const s = (await inspect(h, name)).State;
    assert.equal(s.Status, 'exited', `${name}: ${JSON.stringify(s)}`);
    assert.notEqual(s.ExitCode, 0, `${name}: ${JSON.stringify(s)}`);
    assert.match(s.Error, /the helper stopped while the container was starting/, name);
  }
  assert.equal((await inspect(h, 'never')).State.Status, 'created', 'a container never started stays created');
  assert.match(await ok(h, ['ps', '-a']), /Exited \(125\) .*again/);
  // it can be started again, and then runs as any other
  await ok(h, ['start', 'again']);
  assert.equal((await ok(h, ['wait', 'again'])).trim(), '0');
  assert.equal((await inspect(h, 'again')).State.Error, '');
  await assertAnswers(h);
});

// ---------------------------------------------------------------------------
// A root helper trusts only root-owned state

let user: string | undefined;
let uid = 0;
before(() => {
  user = `capsa-h${process.pid % 100000}`;
  execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', user]);
  uid = Number(execFileSync('id', ['-u', user]).toString().trim());
});
after(() => {
  if (user) execFileSync('userdel', [user]);
});

/** A fresh test directory (root's, 0700, under /tmp) with an empty config.json, removed after the test. */
async function scratch(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-trust-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  await fs.writeFile(path.join(dir, 'config.json'), '{}');
  return dir;
}

/** Runs the helper to its end (it must refuse, not listen): its status, and what it wrote to stderr. */
function helperRefuses(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HELPER_MAIN], { env: { ...process.env, CAPSA_WARM_CLI: '0', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the helper did not refuse within 15 s: ${stderr}`));
    }, 15_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** Every path under dir (the planted ones included), to compare before and after. */
function tree(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).sort();
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface TrustCase {
  name: string;
  /** Makes the hostile layout in dir; returns the helper's root and socket and the directory the error must name. */
  make(dir: string): Promise<{ root: string; socket: string; names: string }>;
  why: RegExp;
}

const UNTRUSTED: TrustCase[] = [
  {
    name: 'a Capsa root owned by another user, with helper.log planted as a link to a host file',
    async make(dir) {
      const root = path.join(dir, 'root');
      await fs.mkdir(root, { mode: 0o700 });
      await fs.chown(root, uid, uid);
      await fs.symlink(path.join(dir, 'victim'), path.join(root, 'helper.log'));
      return { root, socket: path.join(dir, 'capsa.sock'), names: root };
    },
    why: /owned by uid \d+, not root/,
  },
  {
    name: 'a Capsa root of mode 0777 (not sticky)',
    async make(dir) {
      const root = path.join(dir, 'root');
      await fs.mkdir(root);
      await fs.chmod(root, 0o777);
      return { root, socket: path.join(dir, 'capsa.sock'), names: root };
    },
    why: /writable by others \(mode 0777\)/,
  },
  {
    name: 'a Capsa root, even a sticky one, of mode 1777',
    async make(dir) {
      const root = path.join(dir, 'root');
      await fs.mkdir(root);
      await fs.chmod(root, 0o1777);
      return { root, socket: path.join(dir, 'capsa.sock'), names: root };
    },
    why: /writable by others \(mode 1777\)/,
  },
  {
    name: 'a Capsa root (not made yet) in a parent writable by others',
    async make(dir) {
      const parent = path.join(dir, 'shared');
      await fs.mkdir(parent);
      await fs.chmod(parent, 0o777);
      return { root: path.join(parent, 'state', 'root'), socket: path.join(dir, 'capsa.sock'), names: parent };
    },
    why: /its parent .* is writable by others \(mode 0777\) and not sticky/,
  },
  {
    name: 'a Capsa root in a parent owned by another user',
    async make(dir) {
      const parent = path.join(dir, 'home');
      await fs.mkdir(parent, { mode: 0o755 });
      await fs.chown(parent, uid, uid);
      return { root: path.join(parent, 'root'), socket: path.join(dir, 'capsa.sock'), names: parent };
    },
    why: /its parent .* is owned by uid \d+, not root/,
  },
  {
    name: 'a Capsa root reached through a link into a directory of another user',
    async make(dir) {
      const theirs = path.join(dir, 'theirs');
      await fs.mkdir(theirs, { mode: 0o755 });
      await fs.chown(theirs, uid, uid);
      await fs.symlink(theirs, path.join(dir, 'link'));
      return { root: path.join(dir, 'link', 'root'), socket: path.join(dir, 'capsa.sock'), names: theirs };
    },
    why: /owned by uid \d+, not root/,
  },
  {
    name: 'a socket directory owned by another user',
    async make(dir) {
      const run = path.join(dir, 'run');
      await fs.mkdir(run, { mode: 0o755 });
      await fs.chown(run, uid, uid);
      return { root: path.join(dir, 'root'), socket: path.join(run, 'capsa.sock'), names: run };
    },
    why: /socket directory .* owned by uid \d+, not root/,
  },
  {
    name: 'a socket directory writable by its group',
    async make(dir) {
      const run = path.join(dir, 'run');
      await fs.mkdir(run);
      await fs.chmod(run, 0o775);
      return { root: path.join(dir, 'root'), socket: path.join(run, 'capsa.sock'), names: run };
    },
    why: /socket directory .* writable by its group \(mode 0775\)/,
  },
];

for (const c of UNTRUSTED) {
  test(`a root helper refuses ${c.name}, naming it, and creates nothing there`, async (t) => {
    const dir = await scratch(t);
    const { root, socket, names } = await c.make(dir);
    const before = tree(dir);
    const r = await helperRefuses({ CAPSA_ROOT: root, CAPSA_SOCKET: socket, CAPSA_CONFIG: path.join(dir, 'config.json') });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`refusing the (capsa root|socket directory) [^\\n]*${escape(names)}`), r.stderr);
    assert.match(r.stderr, c.why, r.stderr);
    assert.deepEqual(tree(dir), before, 'nothing was created');
    assert.equal(existsSync(path.join(dir, 'victim')), false, 'no planted link was followed');
    assert.equal(existsSync(socket), false, 'no socket');
  });
}

test("the CLI's autostart refuses a Capsa root owned by another user before it opens helper.log, and follows no planted link", async (t) => {
  const dir = await scratch(t);
  const root = path.join(dir, 'root');
  await fs.mkdir(root, { mode: 0o700 });
  await fs.chown(root, uid, uid);
  await fs.symlink(path.join(dir, 'victim'), path.join(root, 'helper.log'));
  const env = { ...process.env, CAPSA_ROOT: root, CAPSA_SOCKET: path.join(dir, 'capsa.sock'), CAPSA_CONFIG: path.join(dir, 'config.json'), CAPSA_AUTOSTART: '1' };
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(CLI, ['version'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stderr }));
  });
  assert.equal(r.code, 125, r.stderr);
  assert.match(r.stderr, new RegExp(`refusing the capsa root ${escape(root)}: it is owned by uid ${uid}, not root`));
  assert.equal(existsSync(path.join(dir, 'victim')), false, 'the planted helper.log link was not followed');
  assert.equal(existsSync(path.join(dir, 'capsa.sock')), false, 'no helper was started');
});

test('a root helper keeps working under a sticky shared parent (as /tmp), and makes its root 0700', async (t) => {
  const dir = await scratch(t);
  const shared = path.join(dir, 'shared');
  await fs.mkdir(shared);
  await fs.chmod(shared, 0o1777);
  const root = path.join(shared, 'root');
  const socket = path.join(dir, 'capsa.sock');
  const child = spawn(process.execPath, [HELPER_MAIN], { env: { ...process.env, CAPSA_ROOT: root, CAPSA_SOCKET: socket, CAPSA_CONFIG: path.join(dir, 'config.json'), CAPSA_WARM_CLI: '0' }, stdio: 'ignore' });
  t.after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
  await until('the helper to listen', async () => existsSync(socket));
  const stat = await fs.stat(root);
  assert.equal(stat.mode & 0o7777, 0o700);
  const v = await new Promise<string>((resolve) => {
    const c = spawn(CLI, ['version'], { env: { ...process.env, CAPSA_ROOT: root, CAPSA_SOCKET: socket, CAPSA_CONFIG: path.join(dir, 'config.json'), CAPSA_AUTOSTART: '0' }, stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', () => resolve(out));
  });
  assert.match(v, new RegExp(`pid ${child.pid}\\b`));
});
