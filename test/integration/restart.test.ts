/**
 * Containers outlive the helper: each has its own monitor, detached from
 * the helper, that holds its stdio, writes its log and records its exit.
 * Kill -9 the helper while containers run, start another: it finds each
 * container with its true state, its complete logs and, for one that ended
 * meanwhile, its exit status.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { CLI, restartHelper, type TestHelper, ok, inspect, until, testHelper, fileRegistry } from '../helpers/capsa';

const registry = fileRegistry();

/** A helper with cgroups of its own (helpers that share a parent reconcile each other's away). */
async function helperFor(t: { after: (fn: () => Promise<void>) => void }): Promise<TestHelper> {
  return testHelper(t, registry.url);
}

function statusOf(pid: number): string {
  return readFileSync(`/proc/${pid}/status`, 'utf8');
}

test('kill -9 the helper while containers run: a new helper finds them running, with complete logs and exec; one that ended meanwhile shows its exit code', async (t) => {
  const h = await helperFor(t);
  // writes through the crash and the time without a helper
  await ok(h, ['run', '-d', '--name', 'writer', 'busybox', 'sh', '-c', 'i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo line$i; sleep 0.05; done; echo done; sleep 600']);
  await ok(h, ['run', '-d', '--name', 'ender', 'busybox', 'sh', '-c', 'sleep 1; echo bye; exit 42']);
  await ok(h, ['run', '-d', '--rm', '--name', 'tidy', 'busybox', 'sh', '-c', 'sleep 1']);
  await ok(h, ['run', '-d', '--name', 'sleeper', 'busybox', 'sleep', '600']);
  const writer = await inspect(h, 'writer');
  const monitorPid = JSON.parse(await fs.readFile(path.join(h.root, 'containers', writer.Id, 'state.json'), 'utf8')).monitorPid as number;
  // the monitor is no child of the helper, has a session of its own, and is small
  const stat = readFileSync(`/proc/${monitorPid}/stat`, 'utf8').split(') ')[1].split(' ');
  assert.notEqual(Number(stat[1]), h.process.pid, 'the monitor is not the helper\'s child');
  assert.equal(Number(stat[3]), monitorPid, 'the monitor leads its own session');
  const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(statusOf(monitorPid))![1]);
  assert.ok(rss < 2048, `monitor RSS ${rss} kB is under 2 MiB`);

  await h.crash();
  await new Promise((r) => setTimeout(r, 2500)); // writer finishes, ender and tidy end, all without a helper
  assert.ok(statusOf(writer.State.Pid), 'the container kept running without the helper');
  await restartHelper(h);

  const ps = await ok(h, ['ps']);
  assert.match(ps, /Up .*writer/);
  assert.match(ps, /Up .*sleeper/);
  assert.doesNotMatch(ps, /ender/);
  assert.match(await ok(h, ['ps', '-a']), /Exited \(42\) .*ender/);
  assert.doesNotMatch(await ok(h, ['ps', '-a']), /tidy/, 'an --rm container that ended meanwhile is removed');
  const ender = await inspect(h, 'ender');
  assert.equal(ender.State.ExitCode, 42);
  assert.equal(ender.State.Status, 'exited');
  assert.equal(await ok(h, ['logs', 'ender']), 'bye\n');

  const expected = Array.from({ length: 40 }, (_, i) => `line${i + 1}\n`).join('') + 'done\n';
  assert.equal(await ok(h, ['logs', 'writer']), expected, 'every line, also those written while no helper ran');
  const again = await inspect(h, 'writer');
  assert.equal(again.State.Pid, writer.State.Pid);
  assert.equal(again.State.Running, true);

  const exec = await h.cli(['exec', 'writer', 'sh', '-c', 'echo inside; exit 3']);
  assert.equal(exec.stdout, 'inside\n');
  assert.equal(exec.code, 3);

  // the new helper follows it to its end: stop, wait, logs -f of an ended one
  await ok(h, ['stop', '-t', '1', 'sleeper']);
  assert.equal((await inspect(h, 'sleeper')).State.ExitCode, 137);
  // (a shell as PID 1 ignores SIGTERM it has no handler for: the kernel shields PID 1)
  await ok(h, ['kill', 'writer']);
  assert.equal((await h.cli(['wait', 'writer'])).stdout, '137\n');
  await until('the monitor to end with its container', async () => {
    try {
      return readFileSync(`/proc/${monitorPid}/stat`, 'utf8').split(') ')[1].startsWith('Z');
    } catch {
      return true;
    }
  });
});

test('a crashed helper\'s attach session does not stop the container; a new helper attaches and sees new output', async (t) => {
  const h = await helperFor(t);
  await ok(h, ['run', '-d', '-i', '--name', 'cat', 'busybox', 'sh', '-c', 'while read l; do echo "got $l"; done; echo eof']);
  await h.crash();
  await restartHelper(h);
  const r = await h.cli(['attach', 'cat'], { input: 'after-restart\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'got after-restart\neof\n');
  assert.equal((await inspect(h, 'cat')).State.ExitCode, 0);
});

test('a container whose monitor was killed is reported, not left running unwatched', async (t) => {
  const h = await helperFor(t);
  await ok(h, ['run', '-d', '--name', 'orphan', 'busybox', 'sleep', '600']);
  const info = await inspect(h, 'orphan');
  const monitorPid = JSON.parse(await fs.readFile(path.join(h.root, 'containers', info.Id, 'state.json'), 'utf8')).monitorPid as number;
  process.kill(monitorPid, 'SIGKILL');
  await until('the helper to notice', async () => (await inspect(h, 'orphan')).State.Status === 'exited');
  const after = await inspect(h, 'orphan');
  assert.match(after.State.Error, /monitor/);
  await until('the container to go', async () => {
    try {
      process.kill(info.State.Pid, 0);
      return false;
    } catch {
      return true;
    }
  });
});

test('a helper killed after starting a container but before recording it as running: the next one finds it running, with its pids', async (t) => {
  const h = await helperFor(t);
  await ok(h, ['run', '-d', '--name', 'early', 'busybox', 'sh', '-c', 'echo up; sleep 600']);
  const info = await inspect(h, 'early');
  const stateFile = path.join(h.root, 'containers', info.Id, 'state.json');
  const recorded = JSON.parse(await fs.readFile(stateFile, 'utf8'));
  await h.crash();
  // what state.json holds when the kill lands between the monitor's start and the `running` record
  await fs.writeFile(stateFile, JSON.stringify({ state: 'created' }));
  await restartHelper(h);
  const found = await inspect(h, 'early');
  assert.equal(found.State.Status, 'running');
  assert.equal(found.State.Pid, recorded.pid, 'PID 1 found again through the monitor');
  assert.equal(JSON.parse(await fs.readFile(stateFile, 'utf8')).monitorPid, recorded.monitorPid);
  assert.equal((await h.cli(['exec', 'early', 'echo', 'in'])).stdout, 'in\n');
  assert.match((await h.cli(['logs', 'early'])).stdout, /^up$/m);
  await ok(h, ['rm', '-f', 'early']);
  assert.throws(() => process.kill(recorded.pid, 0), 'nothing left running');
});

test('clients that go away while attached (run, attach, start -a) leave the helper serving and the container running', async (t) => {
  const h = await helperFor(t);
  const chatter = ['sh', '-c', 'while true; do echo tick; sleep 0.05; done'];
  const killedMidStream = async (args: string[]) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: h.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    await until('output to flow', async () => out.includes('tick'));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  };
  await killedMidStream(['run', '--name', 'talker', 'busybox', ...chatter]);
  await killedMidStream(['attach', 'talker']);
  await ok(h, ['create', '--name', 'later', 'busybox', ...chatter]);
  await killedMidStream(['start', '-a', 'later']);
  // the containers kept writing to nobody for a while
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(h.process.exitCode, null, 'the helper is still running');
  for (const name of ['talker', 'later']) assert.equal((await inspect(h, name)).State.Status, 'running', name);
  assert.match((await h.cli(['logs', '--tail', '1', 'talker'])).stdout, /^tick$/m);
  await ok(h, ['rm', '-f', 'talker', 'later']);
});
