/**
 * Clients that would make the helper buffer without bound: a message whose
 * announced (and sent) length is above the protocol message limit, a
 * header block that never ends, a run with more labels than the label
 * limit. Each is refused, the helper's memory stays where it was, and the
 * same helper serves every other client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { connectProtocol, startHelper, type TestHelper } from '../helpers/capsa';
import { ContainerListRequest, ContainerRunRequest, VersionRequest } from '../../server/protocol';

const skip = process.getuid?.() !== 0 && 'the helper needs root';

async function rssKiB(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
}

/** Writes `bytes` in pieces until the helper closes the connection (or all is written); whether it closed early. */
async function sendUntilClosed(h: TestHelper, pieces: Iterable<Buffer>): Promise<{ closedEarly: boolean; sent: number }> {
  const s = net.connect(h.socket);
  s.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  let closed = false;
  s.once('close', () => (closed = true));
  let sent = 0;
  for (const p of pieces) {
    if (closed || s.destroyed) return { closedEarly: true, sent };
    if (!s.write(p)) await new Promise((r) => { s.once('drain', r); s.once('close', r); });
    sent += p.length;
  }
  await new Promise((r) => setTimeout(r, 500));
  const closedEarly = closed;
  s.destroy();
  return { closedEarly, sent };
}

async function stillServing(h: TestHelper, pid: number): Promise<void> {
  const c = await connectProtocol(h.socket);
  try {
    assert.equal((await c.sendRequest(VersionRequest.type)).pid, pid);
  } finally {
    c.dispose();
  }
}

test('a message above the protocol message limit, or a header that never ends, closes that connection without buffering it', { skip, timeout: 120_000 }, async (t) => {
  const h = await startHelper();
  t.after(() => h.stop());
  const pid = h.process.pid!;
  const before = await rssKiB(pid);
  const MiB = 1 << 20;
  const piece = Buffer.alloc(MiB, 0x61);
  function* body(header: string, mib: number): Generator<Buffer> {
    yield Buffer.from(header);
    for (let i = 0; i < mib; i++) yield piece;
  }
  // 200 MiB announced and sent: refused at the header, long before the body is in
  const big = await sendUntilClosed(h, body(`Content-Length: ${200 * MiB}\r\n\r\n`, 200));
  assert.equal(big.closedEarly, true, 'the helper closed the connection');
  assert.ok(big.sent < 100 * MiB, `closed after ${big.sent} bytes`);
  // a header of endless lines, then one endless line
  const lines = await sendUntilClosed(h, (function* () { for (let i = 0; i < 100_000; i++) yield Buffer.from('X-Pad: ' + 'p'.repeat(100) + '\r\n'); })());
  assert.equal(lines.closedEarly, true);
  const line = await sendUntilClosed(h, body('X-Pad: ', 50));
  assert.equal(line.closedEarly, true);
  await stillServing(h, pid);
  const after = await rssKiB(pid);
  assert.ok(after - before < 64 * 1024, `the helper's memory stays where it was: ${before} kB before, ${after} kB after`);
  const log = await fs.readFile(path.join(h.dir, 'helper.log'), 'utf8');
  assert.match(log, /larger than the protocol message limit \(16 MiB\): 209715200 bytes/);
  assert.match(log, /protocol message header limit \(8 KiB\)/);
});

test('a message just under the protocol message limit is read and answered', { skip, timeout: 120_000 }, async (t) => {
  const h = await startHelper();
  t.after(() => h.stop());
  const c = await connectProtocol(h.socket);
  t.after(() => c.dispose());
  // 15 MiB of one unknown field: framed fine, refused by the params check
  await assert.rejects(c.sendRequest(ContainerListRequest.type, { all: false, pad: 'x'.repeat(15 << 20) } as never), /pad/);
  assert.equal((await c.sendRequest(VersionRequest.type)).pid, h.process.pid);
});

test('a run with more labels than the label limit is refused, naming it, and creates nothing', { skip, timeout: 120_000 }, async (t) => {
  const h = await startHelper();
  t.after(() => h.stop());
  const c = await connectProtocol(h.socket);
  t.after(() => c.dispose());
  const labels = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`l${i}`, 'v']));
  await assert.rejects(c.sendRequest(ContainerRunRequest.type, { image: 'busybox', labels }), /labels.*4096/);
  const big = { a: 'x'.repeat(300 << 10) };
  await assert.rejects(c.sendRequest(ContainerRunRequest.type, { image: 'busybox', labels: big }), /labels limit \(256 KiB\)/);
  assert.deepEqual(await c.sendRequest(ContainerListRequest.type, { all: true }), []);
  assert.equal((await c.sendRequest(VersionRequest.type)).pid, h.process.pid);
});
