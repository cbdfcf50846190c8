/**
 * A real helper process for a test: its own Capsa root and socket under a
 * fresh temporary directory, a registry mirror for docker.io names, and a
 * way to run the real `capsa` CLI against it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import * as net from 'node:net';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter, type MessageConnection } from 'vscode-jsonrpc/node';
import * as sys from '../../server/runtime/network/sys';
import { after, before } from 'node:test';
import { seedBusybox, type PushedImage } from './oci';
import { startRegistry, type TestRegistry } from './registry';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const CLI = path.join(REPO_ROOT, 'bin', 'capsa');
export const HELPER_MAIN = path.join(REPO_ROOT, 'out', 'server', 'main.js');
/** The helper with test-only CLI verbs (test/helpers/test-helper.ts). */
const TEST_HELPER_MAIN = path.join(__dirname, 'test-helper.js');

export interface TestHelper {
  dir: string;
  root: string;
  socket: string;
  env: NodeJS.ProcessEnv;
  process: ChildProcess;
  /** Runs `capsa ARGS…` to completion. */
  cli(args: string[], opts?: { input?: string | Buffer; timeoutMs?: number }): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Kills the helper (SIGKILL) without cleaning up, like a crash. */
  crash(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `config`: the config file's content (default `{}`).
 * `netns`: a named network namespace (`ip netns add NAME`, made by the test)
 * that the helper and the CLI run in (nsenter --net): the bridge,
 * the veths and every packet then stay inside it. `testVerbs`: its warm CLI
 * processes serve the test-only verbs of test/helpers/test-cli.ts too.
 */
export async function startHelper(opts: { mirror?: string; env?: NodeJS.ProcessEnv; netns?: string; testVerbs?: boolean; config?: Record<string, unknown> } = {}): Promise<TestHelper> {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  const root = path.join(dir, 'root');
  const socket = path.join(dir, 'capsa.sock');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CAPSA_ROOT: root,
    CAPSA_SOCKET: socket,
    CAPSA_CONFIG: path.join(dir, 'config.json'),
    // The test owns the helper's life: a CLI call while it is down must fail, not start a detached helper that outlives the test.
    CAPSA_AUTOSTART: '0',
    ...(opts.mirror ? { CAPSA_REGISTRY_MIRROR: `docker.io=${opts.mirror}` } : {}),
    ...opts.env,
    ...(opts.netns ? { CAPSA_TEST_NETNS: opts.netns } : {}),
  };
  await fs.writeFile(env.CAPSA_CONFIG!, JSON.stringify(opts.config ?? {}));
  const child = spawnHelper(env, dir, opts.testVerbs ? TEST_HELPER_MAIN : HELPER_MAIN);
  await waitForSocket(socket, child, dir);
  const helper: TestHelper = {
    dir,
    root,
    socket,
    env,
    process: child,
    cli: (args, o = {}) => runCli(args, env, o),
    async crash() {
      helper.process.kill('SIGKILL');
      await new Promise((r) => helper.process.once('exit', r));
    },
    async stop() {
      const crashed = helper.process.exitCode !== null || helper.process.signalCode !== null;
      await removeAllContainers(helper);
      if (!crashed) {
        helper.process.kill('SIGTERM');
        await new Promise((r) => helper.process.once('exit', r));
      }
      // A helper that died (a test killed it, or a bug did) removed nothing: its containers'
      // netns pins stay mounted under the test root, and their veths with them. With a live
      // helper, tests assert that nothing is left (mountsUnder), so nothing is swept here.
      if (crashed) for (const m of await mountsUnder(dir)) sys.libc().umount2(m, sys.MNT_DETACH);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
  return helper;
}

/**
 * Containers outlive the helper by design, so a test's helper must not just
 * be stopped: remove every container through the CLI, then kill any
 * container process still recorded on disk (a helper that crashed cannot).
 */
async function removeAllContainers(h: TestHelper): Promise<void> {
  if (h.process.exitCode === null && h.process.signalCode === null) {
    const ids = await runCli(['ps', '-a', '-q'], h.env).catch(() => ({ stdout: '' }));
    const list = ids.stdout.split('\n').filter(Boolean);
    if (list.length) await runCli(['rm', '-f', ...list], h.env).catch(() => undefined);
  }
  const dir = path.join(h.root, 'containers');
  for (const id of await fs.readdir(dir).catch(() => [] as string[])) {
    try {
      const state = JSON.parse(await fs.readFile(path.join(dir, id, 'state.json'), 'utf8')) as { pid?: number };
      if (state.pid) process.kill(state.pid, 'SIGKILL');
    } catch {
      // no state, or the process is already gone
    }
  }
}

/** Starts another helper on the same root and socket (after a crash). */
export async function restartHelper(h: TestHelper): Promise<void> {
  h.process = spawnHelper(h.env, h.dir, HELPER_MAIN);
  await waitForSocket(h.socket, h.process, h.dir);
}

function spawnHelper(env: NodeJS.ProcessEnv, dir: string, entry: string): ChildProcess {
  const logFile = path.join(dir, 'helper.log');
  const child = spawn(...inNetns(env, [process.execPath, entry]), { env, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (d: Buffer) => void fs.appendFile(logFile, d).catch(() => undefined));
  return child;
}

async function waitForSocket(socket: string, child: ChildProcess, dir: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(socket);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  let log = '';
  try {
    log = readFileSync(path.join(dir, 'helper.log'), 'utf8');
  } catch {
    /* no log */
  }
  throw new Error(`helper did not listen on ${socket}: ${log}`);
}

export function runCli(args: string[], env: NodeJS.ProcessEnv, opts: { input?: string | Buffer; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // `--`: Node 20 would take a `capsa run --env-file F` for its own option (bin/capsa says why)
    const child = spawn(...inNetns(env, [process.execPath, '--', CLI, ...args]), { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`capsa ${args.join(' ')} timed out; stdout: ${stdout} stderr: ${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    // 'close', not 'exit': the pipes can still hold output when the process has exited.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128 + (signal ? 9 : 0), stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

/**
 * The command line, run in the test's network namespace when there is one.
 * nsenter switches the network namespace only (`ip netns exec` also makes a
 * new mount namespace and remounts /sys, which hides /sys/fs/cgroup from the
 * helper); it execs, so the pid stays the command's.
 */
function inNetns(env: NodeJS.ProcessEnv, argv: string[]): [string, string[]] {
  const ns = env.CAPSA_TEST_NETNS;
  return ns ? ['nsenter', [`--net=/run/netns/${ns}`, '--', ...argv]] : [argv[0], argv.slice(1)];
}

/** Mount points (from /proc/self/mountinfo of the host) that lie under `dir`. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p && p.startsWith(dir));
}

/** Runs `capsa ARGS…`, asserts it exited 0, and returns its stdout. */
export async function ok(h: TestHelper, args: string[]): Promise<string> {
  const r = await h.cli(args);
  assert.equal(r.code, 0, `capsa ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** `capsa inspect NAME`, parsed: the first (only) object. */
export async function inspect(h: TestHelper, name: string): Promise<Record<string, any>> {
  return JSON.parse(await ok(h, ['inspect', name]))[0];
}

/** Polls `check` every 25 ms until it holds, or fails naming `what`. */
export async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `take()` once it equals `want`, or the last one after 10 s (the assertion on it then shows what differs). */
export async function settled<T>(take: () => Promise<T>, want: T): Promise<T> {
  const deadline = Date.now() + 10_000;
  let got = await take();
  while (!isDeepStrictEqual(got, want) && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 50));
    got = await take();
  }
  return got;
}

/** A cgroup parent of a test's own: helpers that share one take each other's containers for a crashed helper's leftovers. */
export function newCgroupParent(): string {
  return `capsa-test-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Removes an (empty) cgroup parent from every v1 hierarchy and from the v2 root. */
export async function removeCgroupParent(parent: string): Promise<void> {
  for (const controller of await fs.readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    await fs.rmdir(path.join('/sys/fs/cgroup', controller, parent)).catch(() => undefined);
  }
  await fs.rmdir(path.join('/sys/fs/cgroup', parent)).catch(() => undefined);
}

/**
 * A test's own helper, on its own cgroup parent. After the test it is
 * stopped, nothing may be left mounted under its root (unless
 * `checkMounts: false`), and the cgroup parent goes.
 */
export async function testHelper(
  t: { after: (fn: () => Promise<void>) => void },
  mirror: string,
  opts: { checkMounts?: boolean } = {},
): Promise<TestHelper & { cgroupParent: string }> {
  const cgroupParent = newCgroupParent();
  const h = await startHelper({ mirror, env: { CAPSA_CGROUP_PARENT: cgroupParent } });
  t.after(async () => {
    await h.stop();
    if (opts.checkMounts !== false) assert.deepEqual(await mountsUnder(h.dir), [], 'no mount is left under the test root');
    await removeCgroupParent(cgroupParent);
  });
  return Object.assign(h, { cgroupParent });
}

/** Processes other than the helper whose command line or root is in the test's directory: monitors, containers. */
export async function processesOf(h: TestHelper): Promise<string[]> {
  const out: string[] = [];
  for (const pid of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === h.process.pid) continue;
    const cmd = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const root = await fs.readlink(`/proc/${pid}/root`).catch(() => '');
    if (cmd.includes(h.dir) || root.startsWith(h.dir)) out.push(`${pid} ${cmd.replace(/\0/g, ' ')}`);
  }
  return out;
}

/** A protocol connection on a helper's socket; dispose() also closes the socket (the helper's close waits for it). */
export async function connectProtocol(socket: string): Promise<MessageConnection> {
  const s = net.connect(socket);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  const conn = createMessageConnection(new StreamMessageReader(s), new StreamMessageWriter(s));
  conn.onDispose(() => s.destroy());
  conn.listen();
  return conn;
}

/**
 * A test's own registry with busybox in it, its own helper (testHelper) and
 * a protocol connection to that helper. After the test the connection
 * closes, then the helper stops, then the registry.
 */
export async function protocolSession(
  t: { after: (fn: () => Promise<void>) => void },
  opts: { checkMounts?: boolean } = {},
): Promise<{ helper: TestHelper & { cgroupParent: string }; conn: MessageConnection }> {
  const registry = await startRegistry();
  let conn: MessageConnection | undefined;
  // after-hooks run in the order they are added
  t.after(async () => conn?.dispose());
  const helper = await testHelper(t, registry.url, opts).catch(async (err: unknown) => {
    await registry.stop();
    throw err;
  });
  t.after(() => registry.stop());
  await seedBusybox(registry);
  conn = await connectProtocol(helper.socket);
  return { helper, conn };
}

/**
 * The registry of a whole test file, with busybox pushed to it: started
 * before the file's first test, stopped after its last. Call it once at the
 * file's top level; what it returns stands for the running registry.
 */
export function fileRegistry(): TestRegistry & { readonly busybox: PushedImage } {
  let running: { registry: TestRegistry; busybox: PushedImage } | undefined;
  before(async () => {
    const registry = await startRegistry();
    running = { registry, busybox: await seedBusybox(registry) };
  });
  after(async () => running?.registry.stop());
  const get = () => {
    if (!running) throw new Error("the file's registry is used before its before() hook ran");
    return running;
  };
  return {
    get host() {
      return get().registry.host;
    },
    get url() {
      return get().registry.url;
    },
    get dir() {
      return get().registry.dir;
    },
    get busybox() {
      return get().busybox;
    },
    stop: () => get().registry.stop(),
  };
}
