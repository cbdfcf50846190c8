import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameGuard } from '../../server/util/frameguard';
import { LIMITS } from '../../server/limits';

function frame(body: string): Buffer {
  return Buffer.from(`Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

/** Feeds `chunks` through a guard; what came out, or the error it stopped with. */
async function through(chunks: Buffer[], limits: { message?: number; header?: number } = {}): Promise<{ out: Buffer; error?: Error }> {
  const g = new FrameGuard({ ...LIMITS.protocolMessage, bytes: limits.message ?? LIMITS.protocolMessage.bytes }, { ...LIMITS.protocolHeader, bytes: limits.header ?? LIMITS.protocolHeader.bytes });
  const out: Buffer[] = [];
  g.on('data', (d: Buffer) => out.push(d));
  const done = new Promise<Error | undefined>((resolve) => {
    g.once('error', resolve);
    g.once('end', () => resolve(undefined));
  });
  for (const c of chunks) if (!g.destroyed) g.write(c);
  if (!g.destroyed) g.end();
  return { out: Buffer.concat(out), error: await done };
}

test('the frame guard passes messages through unchanged, however the stream is cut', async () => {
  const stream = Buffer.concat([frame('{"a":1}'), frame('{"b":"' + 'x'.repeat(5000) + '"}'), Buffer.from('Content-Type: x\r\n'), frame('{}')]);
  for (const size of [1, 2, 3, 7, 100, 4096, stream.length]) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < stream.length; i += size) chunks.push(stream.subarray(i, i + size));
    const r = await through(chunks);
    assert.equal(r.error, undefined, `pieces of ${size}`);
    assert.ok(r.out.equals(stream), `pieces of ${size}`);
  }
});

test('the frame guard refuses a message announced above the protocol message limit, before its body', async () => {
  const r = await through([Buffer.from('Content-Length: 1001\r\n\r\n{')], { message: 1000 });
  assert.match(r.error!.message, /larger than the protocol message limit \(1000 bytes\): 1001 bytes/);
  const huge = await through([Buffer.from('Content-Length: 99999999999999999999999\r\n\r\n')]);
  assert.match(huge.error!.message, /protocol message limit \(16 MiB\)/);
  const ok = await through([frame('x'.repeat(1000))], { message: 1000 });
  assert.equal(ok.error, undefined);
});

test('the frame guard refuses a header block that never ends', async () => {
  const r = await through([Buffer.from('X-Junk: ' + 'a'.repeat(200) + '\r\n')], { header: 100 });
  assert.match(r.error!.message, /protocol message header limit \(100 bytes\)/);
  const lines = await through(Array.from({ length: 1000 }, () => Buffer.from('X: y\r\n')), { header: 1000 });
  assert.match(lines.error!.message, /header limit/);
});
