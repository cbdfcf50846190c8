/**
 * The warm CLI: `bin/capsa` run as a program is the compiled client
 * (native/client/client.c), which hands its call — arguments, environment,
 * working directory and its stdin, stdout and stderr — to a Node CLI process
 * the helper started ahead of time, forwards signals to it and exits with
 * its status; with no warm CLI to talk to, it runs the Node CLI. Real helper,
 * real registry, real containers; hostile clients speak to the socket directly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { warmCliSocketPath } from '../../server/config';
import { encodeRequest, parseReply, type Reply } from '../../server/cli/warm/wire';
import { closeFd, connectSeqpacket, pollFds, POLLIN, receiveMessage, sendMessage, setSendBuffer } from '../../server/util/seqpacket';
import { REPO_ROOT, startHelper, until, type TestHelper, fileRegistry } from '../helpers/capsa';

/** `capsa` as a user runs it: the program, not `node` with a script. */
const CLIENT = path.join(REPO_ROOT, 'bin', 'capsa');

const registry = fileRegistry();

interface Ctx {
  after: (fn: () => unknown) => void;
}

async function helper(t: Ctx, env: NodeJS.ProcessEnv = {}, opts: { testVerbs?: boolean } = {}): Promise<TestHelper> {
  const h = await startHelper({ mirror: registry.url, env, testVerbs: opts.testVerbs });
  t.after(() => h.stop());
  // the helper makes the warm socket before its own: a client never finds the one without the other
  if (env.CAPSA_WARM_CLI !== '0') assert.ok(existsSync(warmCliSocketPath(h.socket)), 'the warm CLI socket exists once the helper accepts');
  return h;
}

interface Call {
  pid: number;
  /** Resolves when the client exits. */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  kill(signal: NodeJS.Signals): void;
}

/** Starts `capsa ARGS…` with the helper's environment plus `env`. */
function call(h: TestHelper | undefined, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}): Call {
  const child = spawn(CLIENT, args, { env: { ...h?.env, ...opts.env }, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  if (opts.input !== undefined) child.stdin.end(opts.input);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`capsa ${args.join(' ')} timed out; stdout: ${stdout} stderr: ${stderr}`));
    }, 60_000);
    // 'close', not 'exit': every byte of both pipes has been read
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { pid: child.pid!, done, kill: (s) => child.kill(s) };
}

const run = (h: TestHelper | undefined, args: string[], opts: Parameters<typeof call>[2] = {}) => call(h, args, opts).done;

function helperLog(h: TestHelper): string {
  try {
    return readFileSync(path.join(h.dir, 'helper.log'), 'utf8');
  } catch {
    return '';
  }
}

/** The warm process that served client `pid`, from the helper's log line. */
async function servedBy(h: TestHelper, pid: number): Promise<number> {
  const re = new RegExp(`warm CLI (\\d+) took a call from pid ${pid}\\n`);
  await until(`the helper to log that a warm CLI took the call of pid ${pid}`, async () => re.test(helperLog(h)));
  return Number(re.exec(helperLog(h))![1]);
}

test('a call through the warm CLI passes the exit status through and keeps stdout and stderr apart', async (t) => {
  const h = await helper(t);
  const c = call(h, ['run', '--rm', 'busybox', 'sh', '-c', 'echo to-stdout; echo to-stderr >&2; exit 7']);
  const r = await c.done;
  assert.equal(r.code, 7, r.stderr);
  assert.equal(r.stdout, 'to-stdout\n');
  assert.equal(r.stderr, 'to-stderr\n');
  await servedBy(h, c.pid);
});

test('a warm process serves call after call: two calls in a row go to the same process, each with its own output, status, environment and working directory', async (t) => {
  const h = await helper(t);
  // the first pull is slow (a replacement starts meanwhile): not part of what is measured here
  assert.equal((await run(h, ['pull', '-q', 'busybox'])).code, 0);
  await until('one ready warm process', async () => warmChildren(h).length === 1);
  const dirs = ['one', 'two'].map((d) => {
    const dir = path.join(h.dir, d);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `only-in-${d}`), '');
    return dir;
  });
  const script = 'echo "who=$WHO"; ls /here; echo oops >&2; exit $CODE';
  const first = call(h, ['run', '--rm', '-e', 'WHO', '-e', 'CODE', '-v', '.:/here', 'busybox', 'sh', '-c', script], { cwd: dirs[0], env: { WHO: 'first', CODE: '3' } });
  const r1 = await first.done;
  // if the first call was slow, a replacement started meanwhile; the process that served it retires that one when it comes back
  const p1 = await servedBy(h, first.pid);
  await until('only the process that served the first call to be left', async () => {
    const w = warmChildren(h);
    return w.length === 1 && w[0] === p1;
  });
  const second = call(h, ['run', '--rm', '-e', 'WHO', '-e', 'CODE', '-v', '.:/here', 'busybox', 'sh', '-c', script], { cwd: dirs[1], env: { WHO: 'second', CODE: '4' } });
  const r2 = await second.done;
  assert.deepEqual([r1.code, r1.stdout, r1.stderr], [3, 'who=first\nonly-in-one\n', 'oops\n']);
  assert.deepEqual([r2.code, r2.stdout, r2.stderr], [4, 'who=second\nonly-in-two\n', 'oops\n']);
  assert.equal(await servedBy(h, second.pid), p1, `the same warm process:\n${helperLog(h)}`);
});

test('calls with stdout on a pipe, then on a file, then on a pty, then on a pipe again, all come out right', async (t) => {
  const h = await helper(t);
  assert.equal((await run(h, ['pull', '-q', 'busybox'])).code, 0);
  const piped = call(h, ['run', '--rm', 'busybox', 'echo', 'to a pipe']);
  const r1 = await piped.done;
  assert.equal(r1.code, 0, r1.stderr);
  assert.equal(r1.stdout, 'to a pipe\n');
  const file = path.join(h.dir, 'out.txt');
  const fd = openSync(file, 'w');
  const toFile = spawn(CLIENT, ['run', '--rm', 'busybox', 'sh', '-c', 'echo to a file; exit 5'], { env: h.env, stdio: ['ignore', fd, 'pipe'] });
  closeSync(fd);
  const code2 = await new Promise((resolve) => toFile.on('close', resolve));
  assert.equal(code2, 5);
  assert.equal(readFileSync(file, 'utf8'), 'to a file\n');
  const pidFile = path.join(h.dir, 'client-pid');
  const pty = spawn('script', ['-qefc', `sh -c 'echo $$ > ${pidFile}; exec ${CLIENT} run --rm busybox echo on a pty'; echo "exit=$?"`, '/dev/null'], { env: h.env, stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => pty.kill('SIGKILL'));
  let screen = '';
  pty.stdout.on('data', (d: Buffer) => (screen += d.toString()));
  await new Promise((resolve) => pty.on('close', resolve));
  assert.match(screen, /on a pty\r?\n/);
  assert.match(screen, /exit=0/);
  const last = call(h, ['run', '--rm', 'busybox', 'echo', 'a pipe again']);
  const r4 = await last.done;
  assert.equal(r4.code, 0, r4.stderr);
  assert.equal(r4.stdout, 'a pipe again\n');
  const served = [];
  for (const pid of [piped.pid, toFile.pid!, Number(readFileSync(pidFile, 'utf8').trim()), last.pid]) served.push(await servedBy(h, pid));
  t.diagnostic(`served by ${served.join(', ')}`);
});

test('a call that leaves a timer running is not followed by another in the same process: the next call gets a new one', async (t) => {
  // __leave-timer is a verb of the test CLI entry (test/helpers/test-cli.ts) that this helper's warm processes run
  const h = await helper(t, {}, { testVerbs: true });
  const leaver = call(h, ['__leave-timer']);
  const r = await leaver.done;
  assert.equal(r.code, 0, r.stderr);
  const first = await servedBy(h, leaver.pid);
  await until('the helper to log why', async () => new RegExp(`warm CLI ${first} will not serve again: the call left active: Timeout`).test(helperLog(h)));
  const next = call(h, ['version']);
  const r2 = await next.done;
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stdout, /^capsa helper /);
  assert.notEqual(await servedBy(h, next.pid), first);
});

test('ten calls back to back start at most 2 warm processes in all', async (t) => {
  const h = await helper(t);
  const pids: number[] = [];
  for (let i = 0; i < 10; i++) {
    const c = call(h, ['version']);
    const r = await c.done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^capsa helper /);
    pids.push(c.pid);
  }
  for (const pid of pids) await servedBy(h, pid);
  // a call that is slow to come back (a loaded machine) rightly gets a replacement started; no other start may happen per call
  const started = helperLog(h).match(/warm CLI \d+ started \(.*\)/g) ?? [];
  const unforced = started.filter((l) => !/is late|a client waits/.test(l));
  assert.ok(started.length > 0 && unforced.length <= 2, `${unforced.length} warm processes started without a late call:\n${helperLog(h)}`);
});

test('stdin piped with -i reaches the container, and its end ends the container', async (t) => {
  const h = await helper(t);
  const r = await run(h, ['run', '-i', '--rm', 'busybox', 'sh', '-c', 'cat; echo after-eof'], { input: 'line one\nline two\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'line one\nline two\nafter-eof\n');
});

test("-e VAR takes the value from the client's environment", async (t) => {
  const h = await helper(t);
  assert.equal(h.env.CAPSA_TEST_ONLY_IN_CLIENT, undefined);
  const r = await run(h, ['run', '--rm', '-e', 'CAPSA_TEST_ONLY_IN_CLIENT', 'busybox', 'sh', '-c', 'echo "[$CAPSA_TEST_ONLY_IN_CLIENT]"'], {
    env: { CAPSA_TEST_ONLY_IN_CLIENT: 'from the client' },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '[from the client]\n');
});

test("a relative -v ./dir:/x resolves against the client's working directory", async (t) => {
  const h = await helper(t);
  const cwd = path.join(h.dir, 'project');
  mkdirSync(path.join(cwd, 'dir'), { recursive: true });
  writeFileSync(path.join(cwd, 'dir', 'file'), 'in the project\n');
  const r = await run(h, ['run', '--rm', '-v', './dir:/x', 'busybox', 'cat', '/x/file'], { cwd });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'in the project\n');
});

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  test(`${signal} to the client reaches the CLI, which passes it to the container: it ends at once with ${code} and is removed`, async (t) => {
    const h = await helper(t);
    const name = `sig-${code}`;
    const c = call(h, ['run', '--rm', '--init', '--name', name, 'busybox', 'sleep', '30']);
    await until('the container to be running', async () => {
      const r = await h.cli(['inspect', name]);
      return r.code === 0 && JSON.parse(r.stdout)[0].State?.Running === true;
    });
    const started = Date.now();
    c.kill(signal);
    const r = await c.done;
    assert.equal(r.code, code, r.stderr);
    assert.ok(Date.now() - started < 10_000, `ended within 10 s, not after the sleep (${Date.now() - started} ms)`);
    await until('the container to be removed', async () => (await h.cli(['inspect', name])).code !== 0);
  });
}

test('a warm CLI killed mid-call leaves its client to say so and exit 125', async (t) => {
  const h = await helper(t);
  const c = call(h, ['run', '--rm', '--name', 'orphan', 'busybox', 'sleep', '30']);
  const warm = await servedBy(h, c.pid);
  await until('the container to be running', async () => {
    const r = await h.cli(['inspect', 'orphan']);
    return r.code === 0 && JSON.parse(r.stdout)[0].State?.Running === true;
  });
  process.kill(warm, 'SIGKILL');
  const r = await c.done;
  assert.equal(r.code, 125);
  assert.match(r.stderr, /capsa: the CLI process ended without an exit status/);
  // and the next call is served, by another process
  const next = call(h, ['version']);
  const r2 = await next.done;
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stdout, /^capsa helper /);
  assert.notEqual(await servedBy(h, next.pid), warm);
});

test('with no helper running, the client runs the Node CLI, which reports it', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-nohelper-'));
  try {
    writeFileSync(path.join(dir, 'config.json'), '{}');
    const r = await run(undefined, ['ps'], {
      env: { ...process.env, CAPSA_SOCKET: path.join(dir, 'capsa.sock'), CAPSA_ROOT: path.join(dir, 'root'), CAPSA_CONFIG: path.join(dir, 'config.json'), CAPSA_AUTOSTART: '0' },
    });
    assert.equal(r.code, 125);
    assert.match(r.stderr, /cannot reach the capsa helper at .*capsa\.sock/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a client whose configuration does not load is handed to the Node CLI, which says what is wrong with it", async (t) => {
  const h = await helper(t);
  const broken = path.join(h.dir, 'broken.json');
  writeFileSync(broken, '{ not json');
  const c = call(h, ['ps'], { env: { CAPSA_CONFIG: broken } });
  const r = await c.done;
  assert.equal(r.code, 125);
  assert.match(r.stderr, /config .*broken\.json is not valid JSON/);
  await until('the helper to log the hand-over', async () => /refused its call: the client's configuration does not load: it runs the Node CLI/.test(helperLog(h)));
});

test('CAPSA_WARM_CLI=0: no warm socket and no warm processes; calls run the Node CLI', async (t) => {
  const h = await helper(t, { CAPSA_WARM_CLI: '0' });
  assert.equal(existsSync(warmCliSocketPath(h.socket)), false);
  const c = call(h, ['version']);
  const r = await c.done;
  assert.equal(r.code, 0, r.stderr);
  await new Promise((r) => setTimeout(r, 200));
  assert.doesNotMatch(helperLog(h), /warm CLI/);
});

test('a warm process that dies while idle is replaced, and the next call is served warm', async (t) => {
  const h = await helper(t);
  const first = call(h, ['version']);
  assert.equal((await first.done).code, 0);
  await servedBy(h, first.pid);
  const idle = await until('an idle warm process', async () => warmChildren(h).length === 1).then(() => warmChildren(h)[0]);
  // the process that served the call: it goes back to waiting a few ms after its client got the status
  await new Promise((r) => setTimeout(r, 300));
  process.kill(idle, 'SIGKILL');
  // (on a loaded machine it may still have been tidying up after the call)
  await until('the helper to notice', async () => new RegExp(`warm CLI ${idle} was killed by SIGKILL (while idle|before taking a call|during a call)`).test(helperLog(h)));
  const next = call(h, ['version']);
  assert.equal((await next.done).code, 0);
  assert.notEqual(await servedBy(h, next.pid), idle);
});

/** Pids of the helper's idle or loading warm processes. */
function warmChildren(h: TestHelper): number[] {
  const out: number[] = [];
  for (const pid of readFileSync(`/proc/${h.process.pid}/task/${h.process.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('--warm')) out.push(Number(pid));
    } catch {
      // gone
    }
  }
  return out;
}

/** One hostile conversation on the warm socket: connect, read the hello, do `act`, and collect the replies until the warm process hangs up. */
function converse(h: TestHelper, act: (fd: number) => void): Reply[] {
  const fd = connectSeqpacket(warmCliSocketPath(h.socket));
  const replies: Reply[] = [];
  try {
    for (;;) {
      if (!(pollFds([{ fd, events: POLLIN }], 15_000)[0] & POLLIN)) throw new Error(`no reply within 15 s; so far ${JSON.stringify(replies)}`);
      const m = receiveMessage(fd, 4096, 0);
      if (m.data.length === 0) return replies;
      const r = parseReply(m.data);
      assert.ok(r, `a well-formed reply, not ${JSON.stringify(m.data.toString('latin1'))}`);
      replies.push(r);
      if (r.tag === 'H' && replies.length === 1) act(fd);
    }
  } finally {
    closeFd(fd);
  }
}

const request = (over: Partial<Parameters<typeof encodeRequest>[0]> = {}) => encodeRequest({ argv: ['version'], env: ['PATH=/usr/bin:/bin'], cwd: '/', ...over });

const HOSTILE: Array<{ name: string; act: (fd: number) => void; error?: RegExp; log: RegExp }> = [
  { name: 'garbage', act: (fd) => sendMessage(fd, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), [0, 1, 2]), error: /not a capsa warm CLI request \(bad header\)/, log: /refused its call: not a capsa warm CLI request/ },
  { name: 'a request without file descriptors', act: (fd) => sendMessage(fd, request()), error: /expected the client's stdin, stdout and stderr as 3 file descriptors with the request, got 0/, log: /got 0/ },
  { name: 'a request with four file descriptors', act: (fd) => sendMessage(fd, request(), [0, 1, 2, 2]), error: /as 3 file descriptors with the request, got 4/, log: /got 4/ },
  { name: 'a request of another version', act: (fd) => sendMessage(fd, request({ version: 99 }), [0, 1, 2]), error: /warm CLI request version 99, this helper speaks 1/, log: /version 99/ },
  {
    name: 'a truncated request',
    act: (fd) => {
      const full = request({ argv: ['run', '--rm', 'busybox'] });
      sendMessage(fd, full.subarray(0, full.length - 12), [0, 1, 2]);
    },
    error: /truncated warm CLI request: the header announces 3 arguments and 1 environment entries, 3 of 5 strings are there/,
    log: /truncated/,
  },
  { name: 'bytes after the last string', act: (fd) => sendMessage(fd, Buffer.concat([request(), Buffer.from('tail')]), [0, 1, 2]), error: /4 bytes after its last string/, log: /after its last string/ },
  {
    name: 'an oversized request',
    act: (fd) => {
      const big = request({ argv: ['version', 'x'.repeat(300 * 1024)] });
      setSendBuffer(fd, big.length + 4096);
      sendMessage(fd, big, [0, 1, 2]);
    },
    error: /request larger than 262144 bytes/,
    log: /larger than/,
  },
  { name: 'a hang-up right after the hello', act: (fd) => closeFd(fd), log: /hung up without a request/ },
];

test('hostile input on the warm socket gets a clear refusal, the helper survives, and the next call is served warm', async (t) => {
  const h = await helper(t);
  for (const c of HOSTILE) {
    const replies = c.name.startsWith('a hang-up') ? hangUp(h, c.act) : converse(h, c.act);
    if (c.error) {
      assert.equal(replies.length, 2, `${c.name}: hello and one refusal, got ${JSON.stringify(replies)}`);
      const refusal = replies[1];
      assert.equal(refusal.tag, 'E', `${c.name}: ${JSON.stringify(refusal)}`);
      assert.match((refusal as { text: string }).text, c.error, c.name);
    }
    await until(`the helper to log the refusal of ${c.name}`, async () => c.log.test(helperLog(h)));
    assert.equal(h.process.exitCode, null, `the helper is alive after ${c.name}`);
    const next = call(h, ['version']);
    const r = await next.done;
    assert.equal(r.code, 0, `${c.name}, then a call: ${r.stderr}`);
    await servedBy(h, next.pid);
  }
});

/** Connects, reads the hello, and hangs up (the fd is closed by `act`). */
function hangUp(h: TestHelper, act: (fd: number) => void): Reply[] {
  const fd = connectSeqpacket(warmCliSocketPath(h.socket));
  assert.ok(pollFds([{ fd, events: POLLIN }], 15_000)[0] & POLLIN, 'the hello');
  const hello = parseReply(receiveMessage(fd, 64, 0).data);
  act(fd);
  return [hello!];
}

test('a client that connects and sends nothing is told so after 5 s, and the next call is served warm', async (t) => {
  const h = await helper(t);
  const replies = converse(h, () => undefined);
  assert.equal(replies[1]?.tag, 'E');
  assert.match((replies[1] as { text: string }).text, /no request within 5 s of connecting/);
  const next = call(h, ['version']);
  assert.equal((await next.done).code, 0);
  await servedBy(h, next.pid);
});

test('a command line and environment over 256 KiB run on the Node CLI, with a note saying why', async (t) => {
  const h = await helper(t);
  // one argument may be at most 128 KiB (MAX_ARG_STRLEN)
  const chunk = 'y'.repeat(100 * 1024);
  // version takes no arguments: the bulk goes in the environment, one big argument stays on the command line
  const r = await run(h, ['version'], { env: { CAPSA_TEST_PAD_A: chunk, CAPSA_TEST_PAD_B: chunk, CAPSA_TEST_PAD_C: chunk } });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /the command line and environment take \d+ bytes, more than the warm CLI's limit of 262144: running the slower Node CLI/);
  assert.match(r.stdout, /^capsa helper /);
});

test('run -it through a real pty: the size is right and follows a resize, the exit status comes back, and the terminal mode is restored', async (t) => {
  const h = await helper(t);
  const before = path.join(h.dir, 'stty-before');
  const afterFile = path.join(h.dir, 'stty-after');
  const pidFile = path.join(h.dir, 'client-pid');
  const ttyFile = path.join(h.dir, 'tty');
  const shell = `stty rows 30 cols 100; stty -g > ${before}; tty > ${ttyFile}; sh -c 'echo $$ > ${pidFile}; exec ${CLIENT} run -it --rm busybox sh'; echo "exit=$?"; stty -g > ${afterFile}`;
  const child = spawn('script', ['-qefc', shell, '/dev/null'], { env: h.env, stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise((r) => child.once('exit', r));
  t.after(() => child.kill('SIGKILL'));
  let screen = '';
  child.stdout.on('data', (d: Buffer) => (screen += d.toString()));
  const waitFor = (re: RegExp, what: string) => until(`${what}; screen so far:\n${screen}`, async () => re.test(screen), 15_000);
  await waitFor(/\/ # (\x1b\[6n)?$/, 'the shell prompt');
  child.stdin.write('stty size\n');
  await waitFor(/stty size\r*\n30 100\r*\n/, 'the terminal size');
  // A resize: the kernel signals the terminal's foreground job, the client, which passes SIGWINCH on.
  const tty = readFileSync(ttyFile, 'utf8').trim();
  await new Promise<void>((resolve, reject) => spawn('stty', ['-F', tty, 'rows', '40', 'cols', '120']).on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`stty exited ${c}`)))));
  await new Promise((r) => setTimeout(r, 300));
  child.stdin.write('stty size\n');
  await waitFor(/stty size\r*\n40 120\r*\n/, 'the new size after a resize');
  child.stdin.write('exit 3\n');
  await waitFor(/exit=3/, 'the exit status');
  await exited;
  assert.equal(readFileSync(afterFile, 'utf8'), readFileSync(before, 'utf8'), 'the terminal mode is what it was');
  await servedBy(h, Number(readFileSync(pidFile, 'utf8').trim()));
});

test('run -it started as a background job is stopped by the terminal until fg, then runs the shell and returns its status', async (t) => {
  const h = await helper(t);
  const rc = path.join(h.dir, 'bashrc');
  writeFileSync(rc, "PS1='host$ '\nbind 'set enable-bracketed-paste off'\n");
  const child = spawn('script', ['-qefc', `bash --rcfile ${rc} --noprofile -i`, '/dev/null'], { env: h.env, stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise((r) => child.once('exit', r));
  t.after(() => child.kill('SIGKILL'));
  let screen = '';
  child.stdout.on('data', (d: Buffer) => (screen += d.toString()));
  const waitFor = (re: RegExp, what: string) => until(`${what}; screen so far:\n${screen}`, async () => re.test(screen), 20_000);
  await waitFor(/host\$ $/, 'the host shell prompt');
  child.stdin.write(`${CLIENT} run -it --rm --name bg busybox sh &\n`);
  // the job control shell reports the job stopped once it takes the terminal
  await until(`the job to stop; screen so far:\n${screen}`, async () => {
    child.stdin.write('jobs\n');
    await new Promise((r) => setTimeout(r, 500));
    return /Stopped/.test(screen);
  }, 20_000);
  assert.doesNotMatch(screen, /\/ # /, 'no container prompt while in the background');
  child.stdin.write('fg\n');
  await waitFor(/\/ # (\x1b\[6n)?$/, 'the container shell prompt after fg');
  child.stdin.write('echo in-$((40+2))\n');
  await waitFor(/in-42/, 'the shell running');
  child.stdin.write('exit 4\n');
  await waitFor(/host\$ $/, 'the host prompt again');
  child.stdin.write('echo "status=$?"; exit\n');
  await waitFor(/status=4/, 'the exit status');
  await exited;
});

test('a warm CLI killed during run -it (its terminal in raw mode) leaves the terminal as it was', async (t) => {
  const h = await helper(t);
  const before = path.join(h.dir, 'stty-before');
  const afterFile = path.join(h.dir, 'stty-after');
  const pidFile = path.join(h.dir, 'client-pid');
  const shell = `stty -g > ${before}; sh -c 'echo $$ > ${pidFile}; exec ${CLIENT} run -it --name killed busybox sh'; echo "exit=$?"; stty -g > ${afterFile}`;
  const child = spawn('script', ['-qefc', shell, '/dev/null'], { env: h.env, stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise((r) => child.once('exit', r));
  t.after(() => child.kill('SIGKILL'));
  let screen = '';
  child.stdout.on('data', (d: Buffer) => (screen += d.toString()));
  await until(`the shell prompt; screen so far:\n${screen}`, async () => /\/ # (\x1b\[6n)?$/.test(screen), 15_000);
  const warm = await servedBy(h, Number(readFileSync(pidFile, 'utf8').trim()));
  process.kill(warm, 'SIGKILL');
  await until(`the client to exit; screen so far:\n${screen}`, async () => /exit=125/.test(screen), 15_000);
  await exited;
  assert.match(screen, /the CLI process ended without an exit status/);
  assert.equal(readFileSync(afterFile, 'utf8'), readFileSync(before, 'utf8'), 'the terminal is out of raw mode again');
});

test('idle warm processes end with a crashed helper, and the client then runs the Node CLI', async (t) => {
  const h = await helper(t);
  await until('an idle warm process', async () => warmChildren(h).length === 1);
  const idle = warmChildren(h)[0];
  await h.crash();
  await until(`warm process ${idle} to end`, async () => !existsSync(`/proc/${idle}`) || readFileSync(`/proc/${idle}/stat`, 'utf8').split(' ')[2] === 'Z');
  // the stale socket file is still there: the client finds nobody listening and runs the Node CLI
  assert.ok(existsSync(warmCliSocketPath(h.socket)));
  const r = await run(h, ['ps']);
  assert.equal(r.code, 125);
  assert.match(r.stderr, /cannot reach the capsa helper/);
});
