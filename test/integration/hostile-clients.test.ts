/**
 * Clients that vanish. A connection closed, half-closed or cut mid-frame,
 * or a CLI killed (SIGKILL, SIGINT, SIGTERM), at any stage of any call —
 * before its reply, during a streamed pull, during wait, attach, logs -f,
 * exec, run, load and save — never ends or wedges the helper: the test ends
 * with the same helper process answering, its log free of crash lines, its
 * descriptors back to where they were, and the work of the vanished call
 * either finished or cancelled cleanly (a cancelled pull leaves no image, an
 * exec of a client that went away is hung up, a run's container keeps
 * running, as Docker leaves it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { CLI, connectProtocol, fileRegistry, ok, testHelper, until, type TestHelper } from '../helpers/capsa';
import { startFaultProxy, type FaultProxy } from '../helpers/registry';
import { busyboxLayer, pushImage, tarLayer } from '../helpers/oci';
import { ContainerListRequest, ImageListRequest, VersionRequest } from '../../server/protocol';

const root = process.getuid?.() === 0;
const skip = !root && 'the helper needs root';
const registry = fileRegistry();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function frame(message: object): Buffer {
  const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', ...message }));
  return Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n\r\n`), body]);
}

/** Lines of the helper's log that tell of a crash or of a write to a closed connection that nobody guarded. */
async function crashLines(h: TestHelper): Promise<string[]> {
  const log = await fs.readFile(path.join(h.dir, 'helper.log'), 'utf8').catch(() => '');
  // a warm CLI process reporting a call it refused (a client killed before the hello: EPIPE) is the expected outcome, not a crash
  return log.split('\n').filter((l) => /uncaught|unhandled|ConnectionError|ERR_STREAM_DESTROYED|EPIPE|fatal/i.test(l) && !/warm CLI \d+ refused its call: /.test(l));
}

async function openFds(pid: number): Promise<number> {
  return (await fs.readdir(`/proc/${pid}/fd`)).length;
}

/** The same helper process answers a fresh connection, and nothing in its log tells of a crash. */
async function stillServing(h: TestHelper, pid: number): Promise<void> {
  const log = await fs.readFile(path.join(h.dir, 'helper.log'), 'utf8').catch(() => '');
  assert.equal(h.process.exitCode, null, `the helper is still running; its log ends:\n${log.slice(-3000)}`);
  assert.equal(h.process.pid, pid);
  const c = await connectProtocol(h.socket);
  try {
    const v = await c.sendRequest(VersionRequest.type);
    assert.equal(v.pid, pid, 'the same helper process answers');
    await c.sendRequest(ImageListRequest.type);
  } finally {
    c.dispose();
  }
  assert.deepEqual(await crashLines(h), []);
}

/** Descriptors of the helper settle back to (about) the baseline: connections of clients that went away are let go. */
async function fdsSettle(h: TestHelper, baseline: number): Promise<void> {
  try {
    await until(`the helper's descriptors to settle back to ${baseline}`, async () => (await openFds(h.process.pid!)) <= baseline + 2, 15_000);
  } catch (err) {
    const dir = `/proc/${h.process.pid}/fd`;
    const targets = await Promise.all((await fs.readdir(dir)).map((fd) => fs.readlink(path.join(dir, fd)).catch(() => '?')));
    throw new Error(`${(err as Error).message}: ${targets.length} open: ${targets.sort().join(' ')}`);
  }
}

/** A raw connection that sends `bytes` and then goes away as `how` says. */
async function sendAndVanish(h: TestHelper, bytes: Buffer, how: 'destroy' | 'end' | 'after-reply'): Promise<void> {
  const s = net.connect(h.socket);
  s.on('error', () => undefined);
  try {
    await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  } catch (err) {
    await stillServing(h, h.process.pid!);
    throw err;
  }
  s.write(bytes);
  if (how === 'destroy') s.destroy();
  else if (how === 'end') s.end();
  else {
    // the first bytes of whatever comes back (a reply, or an event every client is sent), then gone while the rest is being written
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 3000);
      s.once('data', () => {
        clearTimeout(t);
        resolve();
      });
    });
    s.destroy();
  }
}

/** A CLI process of its own (the compiled client and the warm CLI, or the Node CLI), its output collected. */
function cliProcess(h: TestHelper, args: string[], node = false): { child: ChildProcess; out: () => string; closed: Promise<void> } {
  const child = node ? spawn(process.execPath, [CLI, ...args], { env: h.env, stdio: ['pipe', 'pipe', 'pipe'] }) : spawn(CLI, args, { env: h.env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  child.stdin!.on('error', () => undefined);
  const closed = new Promise<void>((r) => child.once('close', () => r()));
  return { child, out: () => out, closed };
}

/** An image whose one big layer a throttled proxy serves for many seconds: a pull that is still running when its client goes. */
async function slowImage(t: { after: (fn: () => Promise<void>) => void }): Promise<{ proxy: FaultProxy; ref: string }> {
  const big = await tarLayer([{ type: 'file', path: 'big.bin', content: randomBytes(4 << 20).toString('latin1') }]);
  const repo = `slow/${randomBytes(4).toString('hex')}`;
  await pushImage(registry, repo, 'latest', { layers: [await busyboxLayer(), big], compression: 'none' });
  const proxy = await startFaultProxy(registry, { bytesPerSecond: 256 << 10 });
  t.after(() => proxy.stop());
  return { proxy, ref: `${proxy.host}/${repo}:latest` };
}

test('a client that goes away right after any request, or mid-frame, leaves the same helper serving', { skip, timeout: 180_000 }, async (t) => {
  const h = await testHelper(t, registry.url);
  const pid = h.process.pid!;
  await ok(h, ['pull', 'busybox']);
  const id = (await ok(h, ['run', '-d', '--network', 'none', '--name', 'ticker', 'busybox', 'sh', '-c', 'while true; do echo tick; sleep 0.1; done'])).trim();
  const baseline = await openFds(pid);
  const archive = path.join(h.dir, 'busybox.tar');
  await ok(h, ['save', '-o', archive, 'busybox']);
  const requests: Array<{ method: string; params?: object }> = [
    { method: 'capsa/version' },
    { method: 'capsa/image/list' },
    { method: 'capsa/container/list', params: { all: true } },
    { method: 'capsa/container/inspect', params: { container: id } },
    { method: 'capsa/container/wait', params: { container: id } },
    { method: 'capsa/container/logs', params: { container: id, followAttachId: 'f' } },
    { method: 'capsa/container/logs', params: { container: id } },
    { method: 'capsa/container/attach', params: { container: id, attachId: 'a' } },
    { method: 'capsa/container/exec', params: { container: id, cmd: ['sleep', '1000'], attachId: 'e' } },
    { method: 'capsa/container/exec', params: { container: id, cmd: ['sh'], tty: true, interactive: true, size: { rows: 24, cols: 80 }, attachId: 't' } },
    { method: 'capsa/container/top', params: { container: id } },
    { method: 'capsa/container/run', params: { image: 'busybox', cmd: ['echo', 'hi'], rm: true, network: 'none', attachId: 'r' } },
    { method: 'capsa/image/pull', params: { reference: 'busybox', workDoneToken: 'p' } },
    { method: 'capsa/image/load', params: { input: archive, workDoneToken: 'l' } },
    { method: 'capsa/image/save', params: { images: ['busybox'], output: path.join(h.dir, 'out.tar') } },
    { method: 'capsa/system/df' },
    { method: 'capsa/container/stop', params: { container: 'nobody', timeout: 1 } },
  ];
  let n = 0;
  for (const how of ['destroy', 'end', 'after-reply'] as const) {
    for (const r of requests) {
      const bytes = frame({ id: ++n, ...r });
      await sendAndVanish(h, bytes, how);
      // the same request cut in its header and in its body
      await sendAndVanish(h, bytes.subarray(0, 10), 'destroy');
      await sendAndVanish(h, bytes.subarray(0, bytes.length - 3), how === 'after-reply' ? 'destroy' : how);
      if (h.process.exitCode !== null) await stillServing(h, pid);
    }
  }
  // A burst of waits from one client that then vanishes: nothing of them is left behind.
  const burst = Buffer.concat(Array.from({ length: 500 }, (_, i) => frame({ id: 10_000 + i, method: 'capsa/container/wait', params: { container: id } })));
  await sendAndVanish(h, burst, 'destroy');

  await stillServing(h, pid);
  await fdsSettle(h, baseline);
  // The container these clients attached to, followed and exec'd into keeps running (the `run --rm echo`
  // containers of vanished clients end and go by themselves); their execs were hung up.
  const c = await connectProtocol(h.socket);
  try {
    await until('only the watched container to be running', async () => {
      const list = await c.sendRequest(ContainerListRequest.type, { all: false });
      return list.length === 1 && list[0].id === id;
    });
  } finally {
    c.dispose();
  }
  await until('the execs of vanished clients to be hung up', async () => {
    const top = await h.cli(['top', id]);
    return !/sleep 1000/.test(top.stdout) && !/\bsh\s*$/m.test(top.stdout.split('\n').slice(2).join('\n'));
  });
  await stillServing(h, pid);
});

test('a pull whose client vanishes mid-stream is cancelled cleanly: no image, no partial blob, and the next pull works', { skip, timeout: 180_000 }, async (t) => {
  const h = await testHelper(t, registry.url);
  const pid = h.process.pid!;
  const { proxy, ref } = await slowImage(t);
  for (const [how, node] of [['SIGKILL', false], ['SIGINT', false], ['SIGKILL', true], ['SIGTERM', true]] as const) {
    const cli = cliProcess(h, ['pull', ref], node);
    await until('the pull to be under way', async () => proxy.count(/blobs/) > 0 && [...proxy.bytesSent.values()].reduce((a, b) => a + b, 0) > 64 << 10, 30_000);
    cli.child.kill(how);
    await cli.closed;
    await stillServing(h, pid);
    const images = await h.cli(['images']);
    assert.equal(images.code, 0, images.stderr);
    assert.match(images.stdout, /^REPOSITORY/);
    assert.doesNotMatch(images.stdout, /slow\//, `a pull cancelled by ${how} leaves no image`);
    proxy.bytesSent.clear();
  }
  // What a cancelled pull leaves in the store's ingest area (tmp/) is only the resumable part of a
  // download, never a file under a digest; the next pull resumes it and leaves nothing.
  await until('ingests to be closed', async () => {
    const left = await fs.readdir(path.join(h.root, 'tmp')).catch(() => [] as string[]);
    return left.every((f) => f.endsWith('.partial'));
  });
  proxy.setFault({});
  await ok(h, ['pull', ref]);
  assert.deepEqual(await fs.readdir(path.join(h.root, 'tmp')).catch(() => []), []);
  await stillServing(h, pid);
});

test('CLIs killed or interrupted during wait, logs -f, attach, exec and run leave the helper serving and the container as Docker leaves it', { skip, timeout: 240_000 }, async (t) => {
  const h = await testHelper(t, registry.url);
  const pid = h.process.pid!;
  await ok(h, ['pull', 'busybox']);
  const id = (await ok(h, ['run', '-d', '--network', 'none', 'busybox', 'sh', '-c', 'while true; do echo tick; sleep 0.1; done'])).trim();
  const baseline = await openFds(pid);
  // SIGKILL: the client vanishes at once, mid-call. SIGINT, as Ctrl-C: the CLI ends the call itself
  // (run and attach proxy it to the container instead, as Docker's sig-proxy does, so they are not asked to).
  const calls: Array<{ args: string[]; ready: (out: string) => boolean; signals: NodeJS.Signals[]; leaves?: string }> = [
    { args: ['wait', id], ready: () => true, signals: ['SIGKILL', 'SIGINT'] },
    { args: ['logs', '-f', id], ready: (o) => o.includes('tick'), signals: ['SIGKILL', 'SIGINT'] },
    { args: ['attach', id], ready: (o) => o.includes('tick'), signals: ['SIGKILL'] },
    { args: ['exec', id, 'sh', '-c', 'echo in; exec sleep 1001'], ready: (o) => o.includes('in'), signals: ['SIGKILL', 'SIGINT'] },
    { args: ['exec', '-i', id, 'sh', '-c', 'echo in; exec cat'], ready: (o) => o.includes('in'), signals: ['SIGKILL'] },
    { args: ['run', '--network', 'none', '--name', 'runner', 'busybox', 'sh', '-c', 'echo up; exec sleep 1002'], ready: (o) => o.includes('up'), signals: ['SIGKILL'], leaves: 'runner' },
  ];
  for (const node of [false, true]) {
    for (const call of calls) {
      for (const signal of call.signals) {
        const what = `capsa ${call.args.join(' ')} (${node ? 'the Node CLI' : 'the client and a warm CLI'}) sent ${signal}`;
        const cli = cliProcess(h, call.args, node);
        await until(`${what}: to be under way; it printed ${JSON.stringify(cli.out())}`, async () => call.ready(cli.out()), 30_000);
        if (call.args[0] === 'wait') await sleep(300);
        cli.child.kill(signal);
        const timer = setTimeout(() => cli.child.kill('SIGKILL'), 15_000);
        await cli.closed;
        clearTimeout(timer);
        assert.notEqual(cli.child.signalCode === 'SIGKILL' && signal !== 'SIGKILL', true, `${what}: it did not end within 15 s`);
        await stillServing(h, pid);
        // Docker's run without -d whose client vanished: the container keeps running, recorded by the helper
        if (call.leaves) {
          assert.equal((await inspectState(h, call.leaves)).Running, true, `${what}: the container keeps running`);
          await ok(h, ['rm', '-f', call.leaves]);
        }
      }
    }
  }
  await until('the execs of killed CLIs to be hung up', async () => {
    const top = await h.cli(['top', id]);
    return !/sleep 1001|cat/.test(top.stdout);
  }, 20_000);
  assert.equal((await inspectState(h, id)).Running, true, 'the container the CLIs watched keeps running');
  await fdsSettle(h, baseline);
  await stillServing(h, pid);
});

async function inspectState(h: TestHelper, id: string): Promise<{ Running: boolean }> {
  const r = await h.cli(['inspect', id]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Array<{ State: { Running: boolean } }>)[0].State;
}

test('a save or load whose client is killed part way either finishes or leaves nothing half-written', { skip, timeout: 180_000 }, async (t) => {
  const h = await testHelper(t, registry.url);
  const pid = h.process.pid!;
  const repo = `big/${randomBytes(4).toString('hex')}`;
  const big = await tarLayer([{ type: 'file', path: 'big.bin', content: randomBytes(24 << 20).toString('latin1') }]);
  await pushImage(registry, repo, 'latest', { layers: [await busyboxLayer(), big], compression: 'none' });
  const ref = `${registry.host}/${repo}:latest`;
  await ok(h, ['pull', ref]);
  const complete = path.join(h.dir, 'complete.tar');
  await ok(h, ['save', '-o', complete, ref]);
  await ok(h, ['rmi', ref]);
  const outDir = path.join(h.dir, 'saves');
  await fs.mkdir(outDir);
  for (const delay of [0, 20, 60, 150, 400]) {
    for (const node of [false, true]) {
      await ok(h, ['load', '-i', complete]);
      const out = path.join(outDir, `s-${delay}-${node}.tar`);
      const save = cliProcess(h, ['save', '-o', out, ref], node);
      await sleep(delay);
      save.child.kill('SIGKILL');
      await save.closed;
      await stillServing(h, pid);
      // finished (a whole archive, as the uninterrupted save wrote it) or cancelled (no file): never a part
      await until('the save to finish or be cancelled', async () => (await fs.readdir(outDir)).every((f) => !f.endsWith('.tmp')));
      const st = await fs.stat(out).catch(() => undefined);
      if (st) assert.equal(st.size, (await fs.stat(complete)).size, `a save killed after ${delay} ms wrote the whole archive or none`);

      await ok(h, ['rmi', ref]);
      const load = cliProcess(h, ['load', '-i', complete], node);
      await sleep(delay);
      load.child.kill('SIGKILL');
      await load.closed;
      await stillServing(h, pid);
      // loaded (tagged, and it runs) or not at all
      await until('the load to finish or be cancelled', async () => (await fs.readdir(path.join(h.root, 'tmp')).catch(() => [] as string[])).every((f) => f.endsWith('.partial')));
      const images = await ok(h, ['images']);
      if (images.includes(repo)) await ok(h, ['run', '--rm', '--network', 'none', ref, 'test', '-s', '/big.bin']);
      await h.cli(['rmi', ref]);
    }
  }
  await stillServing(h, pid);
});
