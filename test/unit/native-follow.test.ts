/** followShimStatus: the one reading of the shim's status pipe, for run and exec alike. */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { ContainerSetupError, ShimError, followShimStatus } from '../../server/runtime/native';

/** A connected socket pair: what the shim writes on `shim`, the helper reads on `ours`. */
async function pipe(): Promise<{ ours: net.Socket; shim: net.Socket; done: () => void }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-status-'));
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(path.join(dir, 's'), r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const ours = net.connect(path.join(dir, 's'));
  const shim = await accepted;
  return { ours, shim, done: () => { server.close(); rmSync(dir, { recursive: true, force: true }); } };
}

function exitLater() {
  let exit!: (v: { code: number | null; signal: number | null }) => void;
  const exited = new Promise<{ code: number | null; signal: number | null }>((r) => (exit = r));
  return { exited, exit };
}

test('started carries the pid of the monitor line before it, and the exit line is the outcome', async () => {
  const p = await pipe();
  try {
    const child = exitLater();
    const s = followShimStatus(p.ours, child.exited);
    p.shim.write('monitor 5\nsta');
    p.shim.write('rted 9\n');
    assert.deepEqual(await s.started, { pid: 9, monitorPid: 5 });
    p.shim.end('exit 3\n');
    child.exit({ code: 0, signal: null });
    const out = await s.ended;
    assert.equal(out.reported, 3);
    assert.equal(out.setupError, undefined);
  } finally {
    p.done();
  }
});

test('an error line rejects started with the setup error, which the outcome keeps', async () => {
  const p = await pipe();
  try {
    const child = exitLater();
    const s = followShimStatus(p.ours, child.exited);
    p.shim.end('error exec\tnosuch\t2\texec failed\n');
    await assert.rejects(s.started, (e: unknown) => e instanceof ContainerSetupError && e.step === 'exec' && e.errno === 2);
    child.exit({ code: 125, signal: null });
    const out = await s.ended;
    assert.ok(out.setupError instanceof ContainerSetupError);
    assert.equal(out.code, 125);
  } finally {
    p.done();
  }
});

test('a shim that ends without reporting rejects started with a ShimError naming how it ended', async () => {
  const p = await pipe();
  try {
    const child = exitLater();
    const s = followShimStatus(p.ours, child.exited);
    p.shim.end();
    child.exit({ code: null, signal: 9 });
    await assert.rejects(s.started, (e: unknown) => e instanceof ShimError && /ended without reporting \(signal 9\)/.test(e.message));
    assert.equal((await s.ended).reported, undefined);
  } finally {
    p.done();
  }
});
