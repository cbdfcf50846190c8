/**
 * A container's life: create, start, stop (with its SIGKILL escalation),
 * kill, restart, rm, ps, inspect, logs (kept after the container, followed
 * live), wait, top, prune, attach, run -d; names unique under concurrent
 * creates. Real helper process, real registry, real kernel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CLI, mountsUnder, startHelper, type TestHelper, ok, inspect, until, fileRegistry } from '../helpers/capsa';

const registry = fileRegistry();

/**
 * A helper with cgroups of its own: helpers that share a cgroup parent treat
 * each other's container cgroups as stale at start, and tests run side by side.
 */
export async function helperFor(t: { after: (fn: () => Promise<void>) => void }): Promise<TestHelper> {
  const parent = `capsa-test-${randomBytes(4).toString('hex')}`;
  const h = await startHelper({ mirror: registry.url, env: { CAPSA_CGROUP_PARENT: parent } });
  t.after(async () => {
    await h.stop();
    assert.deepEqual(await mountsUnder(h.dir), [], 'no mount is left under the test root');
    await removeCgroupParent(parent);
  });
  return h;
}

async function removeCgroupParent(name: string): Promise<void> {
  const found: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    for (const d of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (!d.isDirectory()) continue;
      const p = path.join(dir, d.name);
      if (d.name === name) found.push(p);
      else if (depth > 0 && !/^[0-9a-f]{64}$/.test(d.name)) await walk(p, depth - 1);
    }
  };
  await walk('/sys/fs/cgroup', 3);
  for (const p of found) await fs.rmdir(p).catch(() => undefined);
}

test('stop sends SIGTERM, then SIGKILL after the timeout to a process that ignores SIGTERM', async (t) => {
  const h = await helperFor(t);
  await ok(h, ['run', '-d', '--name', 'stubborn', 'busybox', 'sh', '-c', "trap '' TERM; echo ready; while :; do sleep 1; done"]);
  await until('the trap', async () => (await ok(h, ['logs', 'stubborn'])).includes('ready'));
  const t0 = Date.now();
  await ok(h, ['stop', '-t', '1', 'stubborn']);
  const took = Date.now() - t0;
  assert.ok(took >= 900, `stop waited for the timeout (${took} ms)`);
  // Includes a Node CLI start, which can take seconds on a loaded machine; a stop that never escalated would hang.
  assert.ok(took < 8000, `then killed it (${took} ms)`);
  const info = await inspect(h, 'stubborn');
  assert.equal(info.State.Status, 'exited');
  assert.equal(info.State.ExitCode, 137);
});

test('stop of a process that handles SIGTERM ends it at once with its own status', async (t) => {
  const h = await helperFor(t);
  await ok(h, ['run', '-d', '--name', 'polite', 'busybox', 'sh', '-c', "trap 'exit 3' TERM; echo ready; while :; do sleep 0.1; done"]);
  await until('the trap', async () => (await ok(h, ['logs', 'polite'])).includes('ready'));
  const t0 = Date.now();
  await ok(h, ['stop', '-t', '10', 'polite']);
  // Includes a Node CLI start (slow on a loaded machine), and stays below the 10 s a wait for the timeout would take.
  const took = Date.now() - t0;
  assert.ok(took < 8000, `no wait for the timeout (${took} ms)`);
  assert.equal((await inspect(h, 'polite')).State.ExitCode, 3);
});

test('kill -s sends the named signal', async (t) => {
  const h = await helperFor(t);
  await ok(h, ['run', '-d', '--name', 'k', 'busybox', 'sh', '-c', "trap 'echo got-usr1; exit 5' USR1; echo ready; while :; do sleep 0.1; done"]);
  await until('the trap', async () => (await ok(h, ['logs', 'k'])).includes('ready'));
  await ok(h, ['kill', '-s', 'USR1', 'k']);
  assert.equal((await h.cli(['wait', 'k'])).stdout, '5\n');
  assert.match(await ok(h, ['logs', 'k']), /got-usr1/);
  const bad = await h.cli(['kill', '-s', 'NOPE', 'k']);
  assert.notEqual(bad.code, 0);
});

test('logs survive the container, keep stdout and stderr apart, and take --tail and --timestamps', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--name', 'talker', 'busybox', 'sh', '-c', 'for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; printf tail-without-newline']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'out1\nout2\nout3\nout4\nout5\ntail-without-newline');
  assert.equal(r.stderr, 'err1\nerr2\nerr3\nerr4\nerr5\n');
  const logs = await h.cli(['logs', 'talker']);
  assert.equal(logs.stdout, r.stdout);
  assert.equal(logs.stderr, r.stderr);
  // the two streams are read apart, so their interleaving is not the container's: tail one
  await ok(h, ['run', '--name', 'counter', 'busybox', 'sh', '-c', 'for i in 1 2 3 4 5; do echo line$i; done; printf tail-without-newline']);
  const tail = await h.cli(['logs', '--tail', '2', 'counter']);
  assert.equal(tail.stdout, 'line5\ntail-without-newline');
  const ts = await h.cli(['logs', '--timestamps', '--tail', '1', 'counter']);
  assert.match(ts.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z tail-without-newline$/);
  // the log is on disk, in the container's directory, written by its monitor
  const id = (await inspect(h, 'talker')).Id;
  const file = await fs.readFile(path.join(h.root, 'containers', id, 'container.log'), 'utf8');
  assert.match(file, /^\S+Z stdout F out1$/m);
  assert.match(file, /^\S+Z stderr F err1$/m);
  assert.match(file, /^\S+Z stdout P tail-without-newline$/m);
});

test('logs -f follows a running container to its end, missing nothing', async (t) => {
  const h = await helperFor(t);
  await ok(h, ['run', '-d', '--name', 'ticker', 'busybox', 'sh', '-c', 'echo start; read x </dev/null; i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo tick$i; sleep 0.05; done']);
  await until('start', async () => (await ok(h, ['logs', 'ticker'])).includes('start'));
  const f = await h.cli(['logs', '-f', 'ticker'], { timeoutMs: 20_000 });
  assert.equal(f.code, 0, f.stderr);
  const expected = ['start', ...Array.from({ length: 20 }, (_, i) => `tick${i + 1}`)].join('\n') + '\n';
  assert.equal(f.stdout, expected);
});

test('run -d prints the id and --rm removes the container when it exits', async (t) => {
  const h = await helperFor(t);
  // Long enough that `ps` (a Node CLI start) surely sees it running; the kill below ends it, so the test does not wait for it.
  const id = (await ok(h, ['run', '-d', '--rm', '--name', 'brief', 'busybox', 'sh', '-c', 'sleep 10'])).trim();
  assert.match(id, /^[0-9a-f]{64}$/);
  assert.match(await ok(h, ['ps']), /brief/);
  await ok(h, ['kill', 'brief']);
  await until('removal', async () => !(await ok(h, ['ps', '-a'])).includes('brief'));
  await until('its directory to go', async () => !(await fs.stat(path.join(h.root, 'containers', id)).catch(() => undefined)));
});

test('create, start, restart, ps -a status, wait', async (t) => {
  const h = await helperFor(t);
  const id = (await ok(h, ['create', '--name', 'later', 'busybox', 'sh', '-c', 'echo run; sleep 30'])).trim();
  assert.match(id, /^[0-9a-f]{64}$/);
  assert.match(await ok(h, ['ps', '-a']), /Created\s+later/);
  assert.doesNotMatch(await ok(h, ['ps']), /later/);
  assert.equal((await inspect(h, 'later')).State.StartedAt, '0001-01-01T00:00:00Z');
  await ok(h, ['start', 'later']);
  assert.match(await ok(h, ['ps']), /Up .*later/);
  const firstPid = (await inspect(h, 'later')).State.Pid;
  assert.ok(firstPid > 0);
  await ok(h, ['restart', '-t', '0', 'later']);
  const again = await inspect(h, 'later');
  assert.equal(again.State.Status, 'running');
  assert.notEqual(again.State.Pid, firstPid);
  await until('the second run', async () => (await ok(h, ['logs', 'later'])) === 'run\nrun\n');
  await ok(h, ['kill', 'later']);
  assert.equal((await h.cli(['wait', 'later'])).stdout, '137\n');
  assert.match(await ok(h, ['ps', '-a']), /Exited \(137\) .*later/);
  // start -a runs it again attached and returns its status
  const rerun = await h.cli(['create', '--name', 'once', 'busybox', 'sh', '-c', 'echo hello; exit 4']);
  assert.equal(rerun.code, 0, rerun.stderr);
  const sa = await h.cli(['start', '-a', 'once']);
  assert.equal(sa.stdout, 'hello\n');
  assert.equal(sa.code, 4);
});

test('rm refuses a running container; rm -f kills and removes it, leaving nothing', async (t) => {
  const h = await helperFor(t);
  const id = (await ok(h, ['run', '-d', '--name', 'victim', 'busybox', 'sleep', '60'])).trim();
  const pid = (await inspect(h, 'victim')).State.Pid;
  const r = await h.cli(['rm', 'victim']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /running/);
  await ok(h, ['rm', '-f', 'victim']);
  assert.throws(() => process.kill(pid, 0), 'the container process is gone');
  await assert.rejects(fs.stat(path.join(h.root, 'containers', id)));
  assert.doesNotMatch(await ok(h, ['ps', '-a']), /victim/);
});

test('inspect has Docker\'s fields', async (t) => {
  const h = await helperFor(t);
  await ok(h, ['run', '-d', '--name', 'insp', '-e', 'FOO=bar', '-w', '/tmp', '--label', 'a=b', 'busybox', 'sleep', '60']);
  const i = await inspect(h, 'insp');
  assert.match(i.Id, /^[0-9a-f]{64}$/);
  assert.equal(i.Name, '/insp');
  assert.equal(i.Path, 'sleep');
  assert.deepEqual(i.Args, ['60']);
  assert.equal(i.State.Status, 'running');
  assert.equal(i.State.Running, true);
  assert.ok(i.State.Pid > 0);
  assert.equal(i.State.OOMKilled, false);
  assert.equal(i.State.ExitCode, 0);
  assert.equal(i.State.Error, '');
  assert.ok(!Number.isNaN(Date.parse(i.State.StartedAt)));
  assert.equal(i.State.FinishedAt, '0001-01-01T00:00:00Z');
  assert.ok(i.Config.Env.includes('FOO=bar'));
  assert.equal(i.Config.WorkingDir, '/tmp');
  assert.deepEqual(i.Config.Labels, { a: 'b' });
  assert.equal(i.Config.Image, 'busybox');
  assert.match(i.Image, /^sha256:/);
  assert.ok(Array.isArray(i.Mounts));
  assert.equal(typeof i.NetworkSettings, 'object');
  await ok(h, ['kill', 'insp']);
  await h.cli(['wait', 'insp']);
  const after = await inspect(h, 'insp');
  assert.equal(after.State.Running, false);
  assert.equal(after.State.Pid, 0);
  assert.equal(after.State.ExitCode, 137);
  assert.ok(Date.parse(after.State.FinishedAt) >= Date.parse(after.State.StartedAt));
});

test('top lists the processes of the container, and only those', async (t) => {
  const h = await helperFor(t);
  await ok(h, ['run', '-d', '--name', 'busy', 'busybox', 'sh', '-c', 'sleep 61 & sleep 62 & wait']);
  const sleeps = (out: string): number => (out.match(/ sleep 6[12]$/gm) ?? []).length;
  await until('both sleeps', async () => sleeps(await ok(h, ['top', 'busy'])) === 2);
  const out = await ok(h, ['top', 'busy']);
  const lines = out.trim().split('\n');
  assert.match(lines[0], /UID\s+PID\s+PPID/);
  assert.equal(lines.length, 4, out); // header, sh, two sleeps
  assert.match(out, /sh -c sleep 61/);
});

test('container prune removes stopped containers and keeps running ones', async (t) => {
  const h = await helperFor(t);
  await ok(h, ['run', '--name', 'done1', 'busybox', 'true']);
  await ok(h, ['create', '--name', 'made', 'busybox', 'true']);
  await ok(h, ['run', '-d', '--name', 'alive', 'busybox', 'sleep', '60']);
  const out = await ok(h, ['container', 'prune', '-f']);
  assert.match(out, /Total: 2 containers removed/);
  const ps = await ok(h, ['ps', '-a']);
  assert.match(ps, /alive/);
  assert.doesNotMatch(ps, /done1|made/);
});

test('attach follows a detached container and sends it input', async (t) => {
  const h = await helperFor(t);
  await ok(h, ['run', '-d', '-i', '--name', 'echoer', 'busybox', 'sh', '-c', 'while read l; do echo "got $l"; done; echo bye']);
  const child = spawn(process.execPath, [CLI, 'attach', 'echoer'], { env: h.env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  // 'close', not 'exit': the output can still be in the pipe when the process has exited.
  const exited = new Promise<number>((r) => child.on('close', (c) => r(c ?? -1)));
  child.stdin.write('one\n');
  await until('the echo', async () => out.includes('got one'));
  child.stdin.end('two\n');
  assert.equal(await exited, 0);
  assert.equal(out, 'got one\ngot two\nbye\n');
});

test('names are unique under concurrent creates, and ids and names are validated', async (t) => {
  const h = await helperFor(t);
  const results = await Promise.all(Array.from({ length: 8 }, () => h.cli(['create', '--name', 'same', 'busybox', 'true'])));
  assert.equal(results.filter((r) => r.code === 0).length, 1, results.map((r) => r.stderr).join(''));
  for (const r of results.filter((x) => x.code !== 0)) assert.match(r.stderr, /already in use/);
  assert.equal((await ok(h, ['ps', '-a', '-q'])).trim().split('\n').length, 1);
  for (const bad of ['../x', 'a/b', '.', '..', '.hidden', '']) {
    const r = await h.cli(['create', '--name', bad, 'busybox', 'true']);
    assert.notEqual(r.code, 0, `name ${JSON.stringify(bad)} refused`);
  }
  for (const bad of ['../../etc', 'a/b', '..']) {
    const r = await h.cli(['inspect', bad]);
    assert.notEqual(r.code, 0);
  }
});
