/**
 * The warm CLI's pure parts: where its socket is, how many processes the
 * configuration asks for, and the request format the compiled client sends.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadConfig, warmCliSocketPath } from '../../server/config';
import { encodeRequest, MAX_REQUEST, parseReply, parseRequest, reply } from '../../server/cli/warm/wire';

test('the warm CLI socket sits next to the helper socket', () => {
  assert.equal(warmCliSocketPath('/run/capsa/capsa.sock'), '/run/capsa/capsa-cli.sock');
  assert.equal(warmCliSocketPath('/tmp/x/helper'), '/tmp/x/helper.cli');
  assert.equal(warmCliSocketPath('/tmp/x.sock.d/s'), '/tmp/x.sock.d/s.cli');
});

test('warmCli defaults to 1, CAPSA_WARM_CLI and the config file set it, bad values are refused', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'c.json');
  writeFileSync(file, '{}');
  assert.equal(loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv).warmCli, 1);
  assert.equal(loadConfig({ CAPSA_CONFIG: file, CAPSA_WARM_CLI: '0' } as NodeJS.ProcessEnv).warmCli, 0);
  assert.equal(loadConfig({ CAPSA_CONFIG: file, CAPSA_WARM_CLI: '3' } as NodeJS.ProcessEnv).warmCli, 3);
  writeFileSync(file, '{"warmCli": 2}');
  assert.equal(loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv).warmCli, 2);
  assert.equal(loadConfig({ CAPSA_CONFIG: file, CAPSA_WARM_CLI: '0' } as NodeJS.ProcessEnv).warmCli, 0, 'the environment wins');
  for (const bad of ['-1', '9', 'yes', '1.5']) {
    assert.throws(() => loadConfig({ CAPSA_CONFIG: file, CAPSA_WARM_CLI: bad } as NodeJS.ProcessEnv), /CAPSA_WARM_CLI: expected a number of warm CLI processes from 0 to 8/, bad);
  }
  writeFileSync(file, '{"warmCli": "2"}');
  assert.throws(() => loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv), /warmCli: expected a number/);
});

test('a request round-trips: arguments, environment, working directory and umask', () => {
  const req = parseRequest(encodeRequest({ argv: ['run', '-e', 'A', 'busybox', ''], env: ['A=1=2', 'EMPTY=', 'PATH=/bin'], cwd: '/home/u', umask: 0o027 }));
  assert.deepEqual(req, { argv: ['run', '-e', 'A', 'busybox', ''], env: { A: '1=2', EMPTY: '', PATH: '/bin' }, cwd: '/home/u', umask: 0o027 });
});

test('environment entries without a name or "=" name nothing', () => {
  assert.deepEqual(parseRequest(encodeRequest({ argv: [], env: ['=x', 'noequals', 'K=v'], cwd: '/' })).env, { K: 'v' });
});

test('malformed requests are refused with a message that says what is wrong', () => {
  const good = encodeRequest({ argv: ['ps'], env: ['A=b'], cwd: '/' });
  const withUmask = Buffer.from(good);
  withUmask.writeUInt32LE(0o1777, 16);
  const cases: Array<[string, Buffer, RegExp, boolean?]> = [
    ['empty', Buffer.alloc(0), /bad header/],
    ['short', good.subarray(0, 10), /bad header/],
    ['wrong magic', Buffer.concat([Buffer.from('XXXX'), good.subarray(4)]), /bad header/],
    ['another version', encodeRequest({ argv: [], env: [], cwd: '/', version: 2 }), /version 2, this helper speaks 1/],
    ['missing strings', good.subarray(0, good.length - 2), /truncated warm CLI request: the header announces 1 arguments and 1 environment entries, 2 of 3 strings/],
    ['trailing bytes', Buffer.concat([good, Buffer.from('x')]), /1 bytes after its last string/],
    ['relative cwd', encodeRequest({ argv: [], env: [], cwd: 'home' }), /working directory "home" is not absolute/],
    ['umask out of range', withUmask, /invalid umask 1777/],
    ['cut by the kernel', good, /larger than 262144 bytes/, true],
  ];
  for (const [name, data, err, truncated] of cases) assert.throws(() => parseRequest(data, truncated), err, name);
  assert.equal(MAX_REQUEST, 262144);
});

test('replies decode to what was sent', () => {
  assert.deepEqual(parseReply(reply.hello()), { tag: 'H', value: 1 });
  assert.deepEqual(parseReply(reply.pid(4242)), { tag: 'P', value: 4242 });
  assert.deepEqual(parseReply(reply.status(130)), { tag: 'S', value: 130 });
  assert.deepEqual(parseReply(reply.error('no — ünïcode')), { tag: 'E', text: 'no — ünïcode' });
  assert.deepEqual(parseReply(reply.fallback('other helper')), { tag: 'F', text: 'other helper' });
  assert.equal(parseReply(Buffer.from('Z')), undefined);
});

test('the product CLI knows no test-only verb: __leave-timer is refused as any unknown command (it lives in test/helpers/test-cli.ts)', async (t) => {
  const { main } = await import('../../server/cli/main');
  let err = '';
  const write = process.stderr.write;
  t.after(() => (process.stderr.write = write));
  process.stderr.write = ((chunk: string | Uint8Array) => ((err += String(chunk)), true)) as typeof process.stderr.write;
  const code = await main(['__leave-timer']);
  process.stderr.write = write;
  assert.equal(code, 125);
  assert.match(err, /'__leave-timer' is not a capsa command/);
});
