/**
 * Every protocol method, sent raw JSON-RPC by a client that does not follow
 * the protocol's types: each wrong type, unknown field and missing required
 * field is answered with an error that names the method and the field, and
 * nothing is created (no container, volume, network or image, no file under
 * the root); the helper stays the same process and keeps answering.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import {
  ContainerListRequest,
  ImageListRequest,
  NetworkListRequest,
  VersionRequest,
  VolumeListRequest,
  type Schema,
} from '../../server/protocol';
import { PARAMS } from '../../server/protocol/params';
import { connectProtocol, fileRegistry, ok, testHelper, type TestHelper } from '../helpers/capsa';
import { hostPlatform } from '../helpers/oci';

const registry = fileRegistry();

/** A closed loopback port: a request that got past the checks to a pull fails at once, and no public registry is ever asked. */
const IMG = '127.0.0.1:9/busybox';

/**
 * A well-formed params object per method: each case changes one thing in it.
 * Never sent as it is (image/prune would prune, container/run would run).
 */
const VALID: Record<string, Record<string, unknown> | undefined> = {
  'capsa/version': undefined,
  'capsa/image/pull': { reference: IMG, platform: 'linux/amd64', workDoneToken: 'p1' },
  'capsa/image/list': undefined,
  'capsa/image/remove': { image: 'nosuch', force: false },
  'capsa/image/load': { input: '/nonexistent/a.tar', workDoneToken: 1 },
  'capsa/image/save': { images: ['busybox'], output: '/nonexistent/a.tar' },
  'capsa/image/prune': { all: false },
  'capsa/image/push': { reference: 'nosuch:1', workDoneToken: 'p2', auth: { username: 'u', password: 'p' } },
  'capsa/image/login': { registry: '127.0.0.1:1', auth: { username: 'u', password: 'p' } },
  'capsa/builder/prune': {},
  'capsa/image/build': { context: '/nonexistent/context.tar', dockerfile: 'FROM busybox\n', tags: ['x:1'], secrets: { tok: 'aGk=' }, token: 'b1' },
  'capsa/system/df': undefined,
  'capsa/container/run': {
    image: 'busybox',
    cmd: ['true'],
    entrypoint: [],
    env: ['A=1'],
    name: 'n1',
    hostname: 'h',
    workdir: '/',
    user: '0',
    tty: false,
    interactive: false,
    rm: true,
    pull: 'never',
    platform: 'linux/amd64',
    size: { rows: 24, cols: 80 },
    volumes: [],
    network: 'none',
    publish: [],
    dns: [],
    labels: { a: 'b' },
    memory: 64 << 20,
    memorySwap: -1,
    cpus: 1,
    cpuShares: 512,
    pidsLimit: 100,
    capAdd: [],
    capDrop: [],
    privileged: false,
    securityOpt: [],
    ulimits: [],
    init: false,
    readOnly: false,
    mounts: [],
    tmpfs: [],
    groupAdd: [],
    pid: 'host',
    ipc: 'host',
    userns: 'host',
    idmapMounts: [{ target: '/w', uid: 1000, gid: 1000, containerUid: 0, containerGid: 0 }],
    attachId: 'a1',
    workDoneToken: 'w1',
  },
  'capsa/container/create': { image: 'busybox', cmd: ['true'], labels: { a: 'b' }, platform: 'linux/amd64', workDoneToken: 'w2' },
  'capsa/container/start': { container: 'nosuch', attachId: 'a2' },
  'capsa/container/restart': { container: 'nosuch', timeout: 1 },
  'capsa/container/exec': { container: 'nosuch', cmd: ['sh'], env: [], workdir: '/', user: '0', tty: false, interactive: false, size: { rows: 1, cols: 1 }, attachId: 'a3' },
  'capsa/container/attach': { container: 'nosuch', attachId: 'a4' },
  'capsa/container/list': { all: true },
  'capsa/container/inspect': { container: 'nosuch' },
  'capsa/container/top': { container: 'nosuch' },
  'capsa/container/stop': { container: 'nosuch', timeout: 1 },
  'capsa/container/kill': { container: 'nosuch', signal: 'KILL' },
  'capsa/container/remove': { container: 'nosuch', force: true },
  'capsa/container/prune': undefined,
  'capsa/container/logs': { container: 'nosuch', followAttachId: 'a5', tail: 1 },
  'capsa/container/wait': { container: 'nosuch' },
  'capsa/stream/input': { attachId: 'a6', data: '', eof: true },
  'capsa/stream/resize': { attachId: 'a7', rows: 1, cols: 1 },
  'capsa/stream/close': { attachId: 'a8' },
  'capsa/volume/create': { name: 'v1', labels: { a: 'b' } },
  'capsa/volume/list': undefined,
  'capsa/volume/inspect': { volume: 'nosuch' },
  'capsa/volume/remove': { volume: 'nosuch', force: true },
  'capsa/volume/prune': undefined,
  'capsa/network/create': { name: 'net1', subnet: '10.201.0.0/24', gateway: '10.201.0.1' },
  'capsa/network/list': undefined,
  'capsa/network/inspect': { network: 'nosuch' },
  'capsa/network/remove': { network: 'nosuch' },
  'capsa/container/commit': { container: 'nosuch', reference: 'x:1', author: 'a', message: 'm', changes: ['CMD ["x"]'], pause: true, sourceDateEpoch: 1 },
  'capsa/container/diff': { container: 'nosuch' },
  'capsa/image/history': { image: 'nosuch' },
  'capsa/image/inspect': { image: 'nosuch' },
  'capsa/image/tag': { source: 'nosuch', target: 'x:1' },
  'capsa/container/path-stat': { container: 'nosuch', path: '/', follow: false },
  'capsa/container/archive/open-read': { container: 'nosuch', path: '/', follow: false },
  'capsa/container/archive/read': { session: 'nosuch' },
  'capsa/container/archive/open-write': { container: 'nosuch', path: '/', copyIds: false },
  'capsa/container/archive/write': { session: 'nosuch', data: '', eof: true },
};

const NOTIFICATIONS = new Set(['capsa/stream/input', 'capsa/stream/resize', 'capsa/stream/close']);

interface Case {
  method: string;
  what: string;
  params: unknown;
  /** The error must start with this (after the method) … */
  starts: string;
  /** … and match this. */
  matches?: RegExp;
}

/** Values of another type than `expected` says. */
function wrongValues(expected: string): unknown[] {
  if (expected.includes(' or ')) return [true, null, {}];
  if (expected === 'a boolean') return ['yes', 0, null];
  if (/^a (non-empty )?string/.test(expected)) return [42, ['x'], null];
  if (/^a (whole )?number/.test(expected)) return ['5', true, null];
  return [true, null];
}

function generatedCases(): Case[] {
  const cases: Case[] = [];
  for (const [method, schema] of PARAMS) {
    const valid = VALID[method];
    const shape = (schema as Schema & { shape?: Record<string, Schema> }).shape;
    if (!shape) {
      // a method that takes no params
      cases.push({ method, what: 'an unknown field', params: { bogus: 1 }, starts: 'bogus is not a known field' });
      cases.push({ method, what: 'a list', params: [1, 2], starts: 'params must be absent or an empty object' });
      continue;
    }
    assert.ok(valid, `${method} has a VALID entry`);
    cases.push({ method, what: 'an unknown field', params: { ...valid, bogusField: 'x' }, starts: 'bogusField is not a known field' });
    cases.push({ method, what: 'a misspelt field', params: { ...valid, [`${Object.keys(shape)[0]}X`]: 'x' }, starts: `${Object.keys(shape)[0]}X is not a known field` });
    cases.push({ method, what: 'a list for params', params: [valid], starts: 'params must be an object' });
    for (const [field, s] of Object.entries(shape)) {
      for (const wrong of wrongValues(s.expected)) {
        cases.push({ method, what: `${field} = ${JSON.stringify(wrong)}`, params: { ...valid, [field]: wrong }, starts: `${field} must be`, matches: /, got / });
      }
      if (!s.optional) {
        const { [field]: _gone, ...rest } = valid;
        cases.push({ method, what: `no ${field}`, params: rest, starts: `${field} is required` });
      }
    }
  }
  return cases;
}

/** The shapes a careful attacker tries next: the issue's own case, nested paths, and platforms that are paths. */
const HANDWRITTEN: Case[] = [
  { method: 'capsa/container/run', what: 'labels as a string', params: { image: 'busybox', cmd: ['true'], labels: 'evil=1' }, starts: 'labels must be an object of strings, got a string' },
  { method: 'capsa/container/create', what: 'labels as a string', params: { image: 'busybox', labels: 'evil=1' }, starts: 'labels must be an object of strings' },
  { method: 'capsa/container/run', what: 'a label value that is a number', params: { image: 'busybox', labels: { foo: 1 } }, starts: 'labels.foo must be a string, got the number 1' },
  { method: 'capsa/container/run', what: 'a label value that is an object', params: { image: 'busybox', labels: { foo: { x: 'y' } } }, starts: 'labels.foo must be a string, got an object' },
  { method: 'capsa/container/run', what: 'a cmd item that is a number', params: { image: 'busybox', cmd: ['sh', 1] }, starts: 'cmd[1] must be a string' },
  { method: 'capsa/container/run', what: 'an extra field in size', params: { image: 'busybox', size: { rows: 1, cols: 1, px: 3 } }, starts: 'size.px is not a known field' },
  { method: 'capsa/container/run', what: 'a negative uid in idmapMounts', params: { image: 'busybox', idmapMounts: [{ target: '/w', uid: -1, gid: 0 }] }, starts: 'idmapMounts[0].uid must be a whole number from 0 to 4294967295' },
  { method: 'capsa/container/run', what: 'idmapMounts without a target', params: { image: 'busybox', idmapMounts: [{ uid: 1, gid: 1 }] }, starts: 'idmapMounts[0].target is required' },
  { method: 'capsa/container/run', what: 'a platform that is a path', params: { image: 'busybox', platform: '../../x' }, starts: 'platform has an unknown os ".."' },
  { method: 'capsa/container/run', what: 'a platform with a path after it', params: { image: 'busybox', platform: 'linux/amd64/../../x' }, starts: 'platform must be os/arch[/variant]' },
  { method: 'capsa/container/create', what: 'a platform with empty parts', params: { image: 'busybox', platform: 'linux//' }, starts: 'platform must be os/arch[/variant]' },
  { method: 'capsa/container/create', what: 'an empty platform', params: { image: 'busybox', platform: '' }, starts: 'platform must be os/arch[/variant]' },
  { method: 'capsa/image/pull', what: 'an unknown architecture', params: { reference: IMG, platform: 'linux/amd65' }, starts: 'platform has an unknown architecture "amd65"' },
  { method: 'capsa/image/pull', what: 'a variant for an architecture without variants', params: { reference: IMG, platform: 'linux/s390x/v2' }, starts: 'platform has a variant "v2", but s390x takes none' },
  { method: 'capsa/container/run', what: 'a pull policy that is not one', params: { image: 'busybox', pull: 'sometimes' }, starts: 'pull must be one of "always", "missing", "never"' },
  { method: 'capsa/container/exec', what: 'an empty command', params: { container: 'x', cmd: [] }, starts: 'cmd must be a non-empty list of strings' },
  { method: 'capsa/container/logs', what: 'a fractional tail', params: { container: 'x', tail: 1.5 }, starts: 'tail must be a whole number >= 0' },
  { method: 'capsa/volume/create', what: 'labels as a list', params: { name: 'v', labels: ['a=b'] }, starts: 'labels must be an object of strings, got a list' },
  { method: 'capsa/image/save', what: 'no images', params: { images: [], output: '/tmp/x.tar' }, starts: 'images must be a non-empty list' },
  { method: 'capsa/container/run', what: 'a prototype key', params: JSON.parse('{"image":"busybox","__proto__":{"privileged":true}}'), starts: '__proto__ is not a known field' },
  { method: 'capsa/container/run', what: 'a field name with escapes', params: { image: 'busybox', '\u001b]0;owned\u0007': 1 }, starts: '"\\u001b]0;owned\\u0007" is not a known field' },
];

async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      out.push(path.relative(dir, p) + (e.isDirectory() ? '/' : ''));
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return out.sort();
}

async function state(c: MessageConnection, h: TestHelper) {
  return {
    containers: (await c.sendRequest(ContainerListRequest.type, { all: true })).map((x) => x.id),
    images: (await c.sendRequest(ImageListRequest.type)).map((i) => `${i.id} ${i.references.join(',')}`),
    volumes: (await c.sendRequest(VolumeListRequest.type)).map((v) => v.name),
    networks: (await c.sendRequest(NetworkListRequest.type)).map((n) => n.name),
    files: await snapshot(h.root),
  };
}

async function fdCount(pid: number): Promise<number> {
  return (await fs.readdir(`/proc/${pid}/fd`)).length;
}

test('every protocol method refuses wrong types, unknown fields and missing fields with an error naming the field, and creates nothing', async (t) => {
  const h = await testHelper(t, registry.url);
  await ok(h, ['pull', 'busybox']);
  const c = await connectProtocol(h.socket);
  t.after(() => c.dispose());
  const before = await state(c, h);
  assert.equal(before.images.length, 1);
  const fds = await fdCount(h.process.pid!);

  const cases = [...generatedCases(), ...HANDWRITTEN];
  // every method of the protocol is exercised
  assert.deepEqual(new Set(cases.map((x) => x.method)), new Set(PARAMS.keys()));
  const failures: string[] = [];
  let requests = 0;
  for (const k of cases) {
    if (NOTIFICATIONS.has(k.method)) continue; // no reply to check; see the next test
    requests++;
    try {
      await c.sendRequest(k.method, k.params as never);
      failures.push(`${k.method} with ${k.what}: accepted`);
    } catch (err) {
      const message = (err as Error).message;
      const want = `${k.method}: ${k.starts}`;
      if (!message.startsWith(want) || (k.matches && !k.matches.test(message))) failures.push(`${k.method} with ${k.what}: ${JSON.stringify(message)}, wanted ${JSON.stringify(want)}…`);
      if ((err as { data?: { code?: string } }).data?.code !== 'E_INVALID_ARGUMENT') failures.push(`${k.method} with ${k.what}: code ${JSON.stringify((err as { data?: unknown }).data)}`);
      if (/[\u0000-\u001f\u007f-\u009f]/.test(message)) failures.push(`${k.method} with ${k.what}: raw control character in ${JSON.stringify(message)}`);
    }
  }
  t.diagnostic(`${requests} requests over ${new Set(cases.map((x) => x.method)).size} methods`);
  assert.deepEqual(failures, [], `${failures.length} of ${requests} cases`);
  assert.ok(requests > 300, `${requests} requests`);

  assert.deepEqual(await state(c, h), before, 'nothing was created, removed or written');
  const v = await c.sendRequest(VersionRequest.type);
  assert.equal(v.pid, h.process.pid, 'the same helper answers');
  assert.ok((await fdCount(h.process.pid!)) <= fds + 2, 'no descriptor leaked');
});

test('malformed stream notifications are dropped, and the helper still answers on that connection', async (t) => {
  const h = await testHelper(t, registry.url);
  const c = await connectProtocol(h.socket);
  t.after(() => c.dispose());
  const pid = (await c.sendRequest(VersionRequest.type)).pid;
  const cases = generatedCases().filter((k) => NOTIFICATIONS.has(k.method));
  assert.ok(cases.length > 15, `${cases.length} notification cases`);
  t.diagnostic(`${cases.length + 5} notifications`);
  for (const k of cases) await c.sendNotification(k.method, k.params as never);
  for (const p of [null, 'x', 7, [1, 2], { token: {} }]) await c.sendNotification('window/workDoneProgress/cancel', p as never);
  // the helper handles one connection's messages in order: this reply comes after all of them
  assert.equal((await c.sendRequest(VersionRequest.type)).pid, pid);
  assert.equal(pid, h.process.pid);
});

test('the CLI refuses a --platform that is not os/arch[/variant] before sending anything, and accepts upper case as Docker does', async (t) => {
  const h = await testHelper(t, registry.url);
  await ok(h, ['pull', 'busybox']);
  const files = await snapshot(h.root);
  const bad: Array<[string[], RegExp]> = [
    [['pull', '--platform', '../../x', 'busybox'], /--platform/],
    [['pull', '--platform', 'linux/amd64/../../x', 'busybox'], /--platform/],
    [['run', '--rm', '--platform', '../../x', 'busybox', 'true'], /--platform/],
    [['create', '--platform', 'linux/', 'busybox'], /--platform/],
    [['run', '--platform', '', 'busybox', 'true'], /--platform/],
    [['run', '--platform', 'linux/arm/v9', 'busybox', 'true'], /unknown arm variant "v9"/],
    [['pull', '--platform', 'linux/amd64\u001b[2J', 'busybox'], /--platform/],
  ];
  for (const [args, want] of bad) {
    const r = await h.cli(args);
    assert.notEqual(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, want, args.join(' '));
    assert.doesNotMatch(r.stderr, /\u001b/, 'no raw escape reaches the terminal');
  }
  assert.deepEqual(await snapshot(h.root), files, 'nothing was created');
  const p = hostPlatform();
  const upper = `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`.toUpperCase();
  assert.equal(await ok(h, ['run', '--rm', '--platform', upper, 'busybox', 'echo', 'ran']), 'ran\n');
  const c = await connectProtocol(h.socket);
  t.after(() => c.dispose());
  assert.equal((await c.sendRequest(VersionRequest.type)).pid, h.process.pid);
});
