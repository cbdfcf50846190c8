/**
 * The helper's socket is an input surface: broken framing, broken JSON,
 * params of the wrong shape and unknown methods must each get a clear error
 * (or a closed connection), write nothing, and leave the helper serving
 * every other client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter, type MessageConnection } from 'vscode-jsonrpc/node';
import { startHelper, type TestHelper } from '../helpers/capsa';
import { VersionRequest } from '../../server/protocol';

async function rpc(h: TestHelper): Promise<{ c: MessageConnection; socket: net.Socket }> {
  const socket = net.connect(h.socket);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const c = createMessageConnection(new StreamMessageReader(socket), new StreamMessageWriter(socket));
  c.listen();
  return { c, socket };
}

async function stillServes(h: TestHelper): Promise<void> {
  const { c, socket } = await rpc(h);
  const v = await c.sendRequest(VersionRequest.type);
  assert.equal(v.protocol, 1);
  c.dispose();
  socket.destroy();
}

/**
 * Sends raw bytes on a fresh connection and collects what comes back until the helper closes it, or
 * `done(got)` holds (10 s at most: a loaded machine can be slow to answer). Without `done` no reply is
 * expected, and 500 ms pass at most: only whether the helper survived matters then, which stillServes checks.
 */
async function raw(h: TestHelper, bytes: Buffer | string, done?: (got: string) => boolean): Promise<string> {
  const socket = net.connect(h.socket);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let got = '';
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, done ? 10_000 : 500);
    const finish = () => {
      clearTimeout(timer);
      resolve();
    };
    socket.on('data', (d) => {
      got += d.toString();
      if (done?.(got)) finish();
    });
    socket.once('close', finish);
    socket.write(bytes);
  });
  socket.destroy();
  return got;
}

/** For raw(): true once what came back holds a whole framed message that answers request `id`. */
function replied(id: number): (got: string) => boolean {
  return (got) => {
    let rest = got;
    for (;;) {
      const head = /^Content-Length: (\d+)\r\n(?:[^\r\n]+\r\n)*\r\n/i.exec(rest);
      if (!head) return false;
      const length = Number(head[1]);
      const body = Buffer.from(rest.slice(head[0].length));
      if (body.length < length) return false;
      if ((JSON.parse(body.subarray(0, length).toString()) as { id?: unknown }).id === id) return true;
      rest = body.subarray(length).toString();
    }
  };
}

/** A version request with this id: sent after other messages on a connection, its reply shows the helper has handled them (it handles one connection's messages in order). */
function versionFrame(id: number): string {
  return frame(JSON.stringify({ jsonrpc: '2.0', id, method: VersionRequest.method }));
}

function frame(body: string): string {
  return `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

test('broken framing and broken JSON do not take the helper down', async (t) => {
  const h = await startHelper();
  t.after(() => h.stop());
  const cases: Array<[string, Buffer | string]> = [
    ['garbage without headers', 'hello\r\n\r\n'],
    ['a negative length', 'Content-Length: -5\r\n\r\n{}'],
    ['a non-numeric length', 'Content-Length: lots\r\n\r\n{}'],
    ['a huge announced length, then hang-up', 'Content-Length: 999999999999\r\n\r\n{'],
    ['invalid JSON', frame('{"jsonrpc":"2.0","id":1,"method":')],
    ['a JSON array', frame('[1,2,3]')],
    ['binary noise', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256))],
  ];
  for (const [what, bytes] of cases) {
    await raw(h, bytes);
    await stillServes(h).catch((err) => assert.fail(`helper stopped serving after ${what}: ${err}`));
  }
});

test('an unknown method gets a method-not-found error', async (t) => {
  const h = await startHelper();
  t.after(() => h.stop());
  const reply = await raw(h, frame(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'capsa/nope', params: {} })), replied(7));
  assert.match(reply, /"id":7/);
  assert.match(reply, /-32601/);
  await stillServes(h);
});

/**
 * Valid-looking references point at a closed loopback port: a case that got
 * as far as a pull fails at once, and no test ever looks up a public registry.
 */
const IMG = '127.0.0.1:9/busybox';

test('params of the wrong shape get clear errors and create nothing', async (t) => {
  const h = await startHelper();
  t.after(() => h.stop());
  const { c, socket } = await rpc(h);
  t.after(() => {
    c.dispose();
    socket.destroy();
  });
  const cases: Array<[string, unknown, RegExp]> = [
    ['capsa/container/run', null, /params must be an object|image reference is required/],
    ['capsa/container/run', [1, 2], /params must be an object/],
    ['capsa/container/run', { image: 42 }, /capsa\/container\/run: image must be a non-empty string .*got the number 42/],
    ['capsa/container/run', { image: IMG, cmd: 'sh' }, /cmd must be a list of strings/],
    ['capsa/container/run', { image: IMG, cmd: ['a\u0000b'] }, /without NUL bytes/],
    ['capsa/container/run', { image: IMG, name: '../evil' }, /invalid container name/],
    ['capsa/container/run', { image: IMG, name: '.' }, /invalid container name/],
    ['capsa/container/run', { image: IMG, hostname: 'a b' }, /invalid hostname/],
    ['capsa/container/run', { image: IMG, workdir: 'rel' }, /must be an absolute path/],
    ['capsa/container/run', { image: IMG, pull: 'sometimes' }, /pull must be one of "always", "missing", "never"/],
    ['capsa/container/run', { image: IMG, size: { rows: -1, cols: 5 } }, /size\.rows must be a whole number from 1 to 10000, got the number -1/],
    ['capsa/container/run', { image: IMG, volumes: ['rel/ative:/x'] }, /must be absolute, or a volume name/],
    ['capsa/container/run', { image: IMG, attachId: 5 }, /attachId must be a non-empty string/],
    ['capsa/container/run', { image: 'BadRef!!' }, /invalid reference/],
    ['capsa/container/remove', { container: '' }, /container must be a non-empty string .*got an empty string/],
    ['capsa/container/remove', { container: 'nosuch' }, /no such container: nosuch/],
    ['capsa/container/stop', { container: 'x', timeout: -1 }, /timeout must be/],
    ['capsa/container/kill', { container: 'nosuch', signal: 'SIGNOPE' }, /no such container|invalid signal/],
    ['capsa/container/logs', { container: 'x', tail: 1.5 }, /tail must be a whole number/],
    ['capsa/container/exec', { container: 'nosuch', cmd: ['sh'] }, /no such container/],
    ['capsa/image/pull', { reference: 7 }, /reference must be a string/],
    ['capsa/image/pull', { reference: IMG, platform: 9 }, /platform must be a string/],
    ['capsa/image/pull', { reference: '' }, /invalid reference/],
    ['capsa/image/remove', { image: 'nosuch' }, /no such image/],
  ];
  for (const [method, params, err] of cases) {
    await assert.rejects(c.sendRequest(method, params as never), (e: Error) => {
      assert.match(e.message, err, `${method} ${JSON.stringify(params)}: ${e.message}`);
      return true;
    });
  }
  // Stream notifications for sessions that do not exist are ignored, not fatal.
  await c.sendNotification('capsa/stream/input', { attachId: 'nope', data: '!!!' });
  await c.sendNotification('capsa/stream/resize', { attachId: 'nope', rows: 'x' });
  await raw(h, frame(JSON.stringify({ jsonrpc: '2.0', method: 'capsa/stream/input', params: null })) + versionFrame(1), replied(1));
  await raw(h, frame(JSON.stringify({ jsonrpc: '2.0', method: 'capsa/stream/resize', params: [1, 2] })) + versionFrame(2), replied(2));
  await stillServes(h);
  assert.deepEqual(await fs.readdir(path.join(h.root, 'containers')).catch(() => []), [], 'no container directory was written');
});
