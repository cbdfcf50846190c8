/** The container lifecycle over a recording fake of the shim: no root, no kernel, no shim. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { rm } from 'node:fs/promises';
import { test } from 'node:test';
import type { CgroupManager } from '../../server/runtime/cgroups';
import { ContainerService, type ContainerChange, type ImageSource, type StreamSink } from '../../server/runtime/container';
import { ContainerStartError } from '../../server/runtime/errors';
import { ContainerSetupError, ShimError } from '../../server/runtime/native';
import type { RunOptions } from '../../server/runtime/container/options';
import { FakeLauncher } from '../helpers/fakeshim';
import { PhaseTrace } from '../../server/runtime/trace';

/** One empty layer: enough for a plan (users resolve to root, as in an image without /etc/passwd). */
const layer = mkdtempSync(path.join(tmpdir(), 'capsa-life-layer-'));
process.on('exit', () => rmSync(layer, { recursive: true, force: true }));
const images: ImageSource = {
  resolveForRun: async (reference) => ({ id: `sha256:${'a'.repeat(64)}`, reference, config: { Cmd: ['/bin/true'] }, layerDirs: [layer] }),
};

/** Records no cgroups: create, remove and reconcile do nothing; nothing was OOM-killed. */
const cgroups = {
  create: async () => [],
  remove: async () => undefined,
  oomKilled: async () => false,
  reconcile: async () => undefined,
} as unknown as CgroupManager;

function setup(root = mkdtempSync(path.join(tmpdir(), 'capsa-life-'))) {
  const launcher = new FakeLauncher();
  const service = new ContainerService(root, images, undefined, cgroups, launcher);
  const events: ContainerChange[] = [];
  service.on('event', (e: ContainerChange) => events.push(e));
  return { root, launcher, service, events, // a state write of a container that just ended may still be landing: retried, as rm -rf races it
    done: () => rm(root, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 }) };
}

function sink() {
  const out: string[] = [];
  let resolveExit!: (v: { code: number; error?: string }) => void;
  const exit = new Promise<{ code: number; error?: string }>((r) => (resolveExit = r));
  const s: StreamSink = { output: (_stream, data) => out.push(data.toString()), exit: (code, error) => resolveExit({ code, error }) };
  return { sink: s, out, exit };
}

const opts = (o: Partial<RunOptions> = {}): RunOptions => ({ image: 'busybox', network: 'none', ...o });

function stateOnDisk(root: string, id: string): { state: string; exitCode?: number; error?: string; startingAt?: string } {
  return JSON.parse(readFileSync(path.join(root, 'containers', id, 'state.json'), 'utf8'));
}

test('a setup failure at exec with ENOENT records the container exited 127 and emits die', async () => {
  const t = setup();
  try {
    await t.service.load();
    t.launcher.script.push({ kind: 'setup-error', step: 'exec', errno: 2, path: 'nosuch', message: 'exec: "nosuch": executable file not found in $PATH' });
    const err = await t.service.run(opts({ cmd: ['nosuch'] })).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof ContainerStartError);
    assert.equal(err.code, 'E_COMMAND_NOT_FOUND');
    assert.equal(err.exitCode, 127);
    assert.deepEqual([err.step, err.path, err.errno], ['exec', 'nosuch', 2]);
    assert.equal(err.message, 'exec: "nosuch": executable file not found in $PATH');
    assert.ok(err.cause instanceof ContainerSetupError);
    const [c] = t.service.list(true);
    assert.equal(c.state.state, 'exited');
    assert.equal(c.state.exitCode, 127);
    assert.equal(c.state.error, err.message);
    assert.deepEqual(t.events.map((e) => e.action), ['create', 'die']);
    assert.equal(stateOnDisk(t.root, c.record.id).exitCode, 127);
    assert.equal(t.launcher.calls.filter((x) => x.kind === 'monitor').length, 1);
  } finally {
    await t.done();
  }
});

test('a command that cannot be run is 126, any other setup step and a shim that never reported are 125', async () => {
  const t = setup();
  try {
    await t.service.load();
    t.launcher.script.push(
      { kind: 'setup-error', step: 'exec', errno: 13, path: '/etc/passwd' },
      { kind: 'setup-error', step: 'mount', errno: 1, path: '/proc' },
      { kind: 'shim-error' },
    );
    const codes = [];
    for (let i = 0; i < 3; i++) {
      const err = (await t.service.run(opts()).catch((e: unknown) => e)) as ContainerStartError;
      assert.ok(err instanceof ContainerStartError);
      codes.push([err.code, err.exitCode]);
    }
    assert.deepEqual(codes, [['E_COMMAND_NOT_EXECUTABLE', 126], ['E_CONTAINER_SETUP', 125], ['E_CONTAINER_SETUP', 125]]);
    const shimFailed = (await t.service.run(opts()).then(() => undefined, (e: unknown) => e)) as ContainerStartError | undefined;
    assert.equal(shimFailed, undefined, 'the next launch (unscripted) starts');
  } finally {
    await t.done();
  }
});

test('a failed start of an --rm container removes it', async () => {
  const t = setup();
  try {
    await t.service.load();
    t.launcher.script.push({ kind: 'setup-error', step: 'cwd', errno: 2, path: '/nowhere' });
    await assert.rejects(t.service.run(opts({ rm: true })), (e: unknown) => e instanceof ContainerStartError && e.exitCode === 125);
    assert.deepEqual(t.service.list(true), []);
    assert.deepEqual(t.events.map((e) => e.action), ['create', 'die', 'destroy']);
  } finally {
    await t.done();
  }
});

test('an --rm exit is reported with the container already out of the table: a run of the same name follows at once', async () => {
  const t = setup();
  try {
    await t.service.load();
    const s = sink();
    const { id } = await t.service.run(opts({ rm: true, name: 'same' }), s.sink);
    t.launcher.monitors[0].exit(0);
    assert.deepEqual(await s.exit, { code: 0, error: undefined });
    assert.deepEqual(t.service.list(true), [], 'gone from the table when its exit is reported');
    const again = sink();
    await t.service.run(opts({ rm: true, name: 'same' }), again.sink);
    t.launcher.monitors[1].exit(0);
    await again.exit;
    await t.service.drain();
    assert.ok(!existsSync(path.join(t.root, 'containers', id)), 'its directory is removed after the report');
    // the first removal may end before or after the second run starts: it is no longer on the run's path
    assert.deepEqual(t.events.map((e) => e.action).sort(), ['create', 'create', 'destroy', 'destroy', 'start', 'start']);
  } finally {
    await t.done();
  }
});

test('a traced run reports its phases in order with its exit; an untraced one none', async () => {
  const t = setup();
  try {
    await t.service.load();
    let timings: Array<{ phase: string; ms: number }> | undefined;
    let exited!: () => void;
    const done = new Promise<void>((r) => (exited = r));
    const s: StreamSink = { output: () => undefined, exit: (_c, _e, ph) => ((timings = ph), exited()) };
    const trace = new PhaseTrace();
    trace.mark('request parsed');
    await t.service.run(opts({ rm: true }), s, undefined, undefined, undefined, trace);
    t.launcher.monitors[0].exit(0);
    await done;
    const names = timings!.map((p) => p.phase);
    for (const phase of ['request parsed', 'image resolved', 'directory made', 'cgroup made', 'user resolved', 'plan built', 'record written', 'starting recorded', 'started reported', 'exit seen', 'exit reported']) {
      assert.ok(names.includes(phase), `${phase} in ${names.join(', ')}`);
    }
    assert.ok(names.indexOf('record written') < names.indexOf('started reported') && names.indexOf('exit seen') < names.indexOf('exit reported'));
    assert.ok(timings!.every((p, i) => p.ms >= 0 && (i === 0 || p.ms >= timings![i - 1].ms)));
    await t.service.drain();
    assert.ok(trace.phases().some((p) => p.phase === 'teardown done'));
    const plain = sink();
    let untraced: unknown = 'unset';
    await t.service.run(opts({ rm: true }), { ...plain.sink, exit: (c, e, ph) => ((untraced = ph), plain.sink.exit(c, e)) });
    t.launcher.monitors[1].exit(0);
    await plain.exit;
    assert.equal(untraced, undefined);
  } finally {
    await t.done();
  }
});

test('wait resolves at the exit, and the run sink and a die event report it', async () => {
  const t = setup();
  try {
    await t.service.load();
    const s = sink();
    const { id } = await t.service.run(opts(), s.sink);
    assert.equal(t.service.list(false).length, 1, 'running');
    let waited: number | undefined;
    const wait = t.service.wait(id).then((c) => (waited = c));
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(waited, undefined, 'wait is pending while the container runs');
    t.launcher.monitors[0].output('stdout', 'hello\n');
    t.launcher.monitors[0].exit(3);
    assert.equal(await wait, 3);
    assert.deepEqual(await s.exit, { code: 3, error: undefined });
    assert.deepEqual(s.out, ['hello\n']);
    assert.deepEqual(t.events.map((e) => e.action), ['create', 'start', 'die']);
    assert.equal(stateOnDisk(t.root, id).state, 'exited');
  } finally {
    await t.done();
  }
});

test('stop sends the stop signal to a running container and waits; stop of a stopped container sends nothing', async () => {
  const t = setup();
  try {
    await t.service.load();
    const { id } = await t.service.run(opts());
    await t.service.stop(id, 5);
    assert.deepEqual(t.launcher.monitors[0].signals, [15]);
    assert.equal(t.service.list(true)[0].state.exitCode, 143);
    await t.service.stop(id, 5);
    assert.deepEqual(t.launcher.monitors[0].signals, [15], 'no signal for a stopped container');
    await assert.rejects(t.service.kill(id, 'TERM'), /is not running/);
  } finally {
    await t.done();
  }
});

test('stop escalates to SIGKILL once the timeout passes', async () => {
  const t = setup();
  try {
    await t.service.load();
    t.launcher.exitOnSignal = new Set([9]);
    const { id } = await t.service.run(opts());
    await t.service.stop(id, 0);
    assert.deepEqual(t.launcher.monitors[0].signals, [15, 9]);
    assert.equal(await t.service.wait(id), 137);
  } finally {
    await t.done();
  }
});

test('a start a helper died in is recorded exited 125 by the next helper', async () => {
  const first = setup();
  try {
    await first.service.load();
    first.launcher.script.push({ kind: 'pending' });
    const { id } = await first.service.createContainer(opts());
    void first.service.startContainer(id);
    await new Promise((r) => setTimeout(r, 20));
    assert.ok(stateOnDisk(first.root, id).startingAt, 'the start is marked on disk');
    const next = setup(first.root);
    await next.service.load();
    assert.deepEqual(next.launcher.calls, [{ kind: 'connect', dir: path.join(first.root, 'containers', id) }]);
    const [c] = next.service.list(true);
    assert.equal(c.state.state, 'exited');
    assert.equal(c.state.exitCode, 125);
    assert.match(c.state.error ?? '', /the helper stopped while the container was starting/);
  } finally {
    await first.done();
  }
});

test('a restarted helper follows a container whose monitor still listens', async () => {
  const first = setup();
  try {
    await first.service.load();
    const { id } = await first.service.run(opts());
    const next = setup(first.root);
    next.launcher.listening.set(path.join(first.root, 'containers', id), first.launcher.monitors[0]);
    await next.service.load();
    assert.equal(next.service.list(false).length, 1, 'running again');
    first.launcher.monitors[0].exit(0);
    assert.equal(await next.service.wait(id), 0);
    assert.equal(await first.service.wait(id), 0, 'the first helper saw the same end');
  } finally {
    await first.done();
  }
});

test('a container whose config.json has no version (written before versions) still loads', async () => {
  const first = setup();
  try {
    await first.service.load();
    const { id } = await first.service.createContainer(opts({ name: 'old' }));
    const file = path.join(first.root, 'containers', id, 'config.json');
    const record = JSON.parse(readFileSync(file, 'utf8'));
    assert.equal(record.version, 2, 'a new record is written with its version');
    assert.equal(record.owner, 0, 'and its owner');
    delete record.version;
    delete record.owner;
    writeFileSync(file, JSON.stringify(record));
    const next = setup(first.root);
    await next.service.load();
    const [c] = next.service.list(true);
    assert.equal(c.record.name, 'old');
    assert.equal(c.record.owner, 0, 'a record from before owners is root\'s');
    assert.equal(c.state.state, 'created');
  } finally {
    await first.done();
  }
});

test('exec launches through the launcher and reports its exit; its setup error is the shim\'s', async () => {
  const t = setup();
  try {
    await t.service.load();
    const { id } = await t.service.run(opts());
    const s = sink();
    const session = await t.service.exec({ container: id, cmd: ['sh'], interactive: true }, s.sink, 'x1');
    const call = t.launcher.calls.at(-1);
    assert.equal(call?.kind, 'exec');
    assert.equal(call?.kind === 'exec' && call.stdin, true);
    assert.equal(call?.kind === 'exec' && call.plan.joinPid, 1000);
    session.hangup();
    t.launcher.script.push({ kind: 'setup-error', step: 'exec', errno: 2, path: 'nosuch' });
    await assert.rejects(t.service.exec({ container: id, cmd: ['nosuch'] }, sink().sink), (e: unknown) => e instanceof ContainerSetupError);
    t.launcher.script.push({ kind: 'shim-error' });
    await assert.rejects(t.service.exec({ container: id, cmd: ['x'] }, sink().sink), (e: unknown) => e instanceof ShimError);
  } finally {
    await t.done();
  }
});

test('restart stops a running container and launches its monitor again with the same plan', async () => {
  const t = setup();
  try {
    await t.service.load();
    const { id } = await t.service.run(opts());
    await t.service.restart(id, 5);
    const launches = t.launcher.calls.filter((c) => c.kind === 'monitor');
    assert.equal(launches.length, 2);
    assert.deepEqual(launches[1], launches[0]);
    assert.deepEqual(t.launcher.monitors[0].signals, [15]);
    assert.equal(t.service.list(false).length, 1, 'running again');
    assert.deepEqual(t.events.map((e) => e.action), ['create', 'start', 'die', 'start']);
  } finally {
    await t.done();
  }
});

test('start of a running container with a sink attaches it instead of launching', async () => {
  const t = setup();
  try {
    await t.service.load();
    const { id } = await t.service.run(opts());
    const s = sink();
    await t.service.startContainer(id, s.sink);
    assert.equal(t.launcher.calls.filter((c) => c.kind === 'monitor').length, 1);
    t.launcher.monitors[0].output('stderr', 'late\n');
    t.service.input(id, Buffer.from('in'), true);
    t.service.resize(id, 24, 80);
    assert.throws(() => t.service.resize(id, 0, 80), /invalid terminal size/);
    t.launcher.monitors[0].exit(0);
    assert.deepEqual(await s.exit, { code: 0, error: undefined });
    assert.deepEqual(s.out, ['late\n']);
    assert.deepEqual(t.launcher.monitors[0].inputs, [{ data: 'in', eof: true }]);
    assert.deepEqual(t.launcher.monitors[0].resizes, [[24, 80]]);
  } finally {
    await t.done();
  }
});

test('a monitor that goes away without an exit records 255 and the reason', async () => {
  const t = setup();
  try {
    await t.service.load();
    const s = sink();
    const { id } = await t.service.run(opts(), s.sink);
    t.launcher.monitors[0].lose();
    assert.equal(await t.service.wait(id), 255);
    assert.match((await s.exit).error ?? '', /monitor ended unexpectedly/);
  } finally {
    await t.done();
  }
});

test('a container of a newer record version is left on disk, unlisted', async () => {
  const first = setup();
  try {
    await first.service.load();
    const { id } = await first.service.createContainer(opts());
    const file = path.join(first.root, 'containers', id, 'config.json');
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), version: 99 }));
    const next = setup(first.root);
    await next.service.load();
    assert.deepEqual(next.service.list(true), []);
    assert.ok(existsSync(file), 'its directory is kept');
  } finally {
    await first.done();
  }
});
