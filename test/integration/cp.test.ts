/**
 * `capsa cp` both ways against a real helper and kernel: docker cp's path
 * rules (into an existing directory, onto a new name, `/.` for a
 * directory's content, a file onto a file), symlinks and `..` that resolve
 * inside the container's root and never reach the host's files, a tar
 * with `../` entries refused, a user's container written with its own ids,
 * another's container not found; into a created or stopped container, its
 * upper directory written as overlayfs would (copy-up, whiteouts, opaque
 * directories), seen by its next start, diff and commit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tar from 'tar-stream';
import { connectProtocol, fileRegistry, inspect, startHelper, until, type TestHelper } from '../helpers/capsa';
import { ContainerArchiveOpenWriteRequest, ContainerArchiveWriteRequest } from '../../server/protocol';
import { createUser } from '../helpers/users';
import { lgetxattr } from '../../server/image/libc';
import { rawRequest, rawSession, writeRawClient } from '../helpers/rawclient';

const registry = fileRegistry();

const SETUP = [
  'mkdir -p /srv/d/sub',
  'echo a > /srv/d/a',
  'echo b > /srv/d/sub/b',
  'echo container-shadow > /etc/shadow',
  'ln -s /etc/shadow /x',
  'ln -s ../../../../../etc/shadow /srv/up',
  'ln -s ../../../../.. /srv/climb',
  'touch /ready',
  'sleep 300',
].join(' && ');

async function world(t: { after: (fn: () => Promise<void> | void) => void }, env: NodeJS.ProcessEnv = {}): Promise<{ h: TestHelper; host: string }> {
  const h = await startHelper({ mirror: registry.url, env });
  t.after(() => h.stop());
  const run = await h.cli(['run', '-d', '--name', 'c', '--network', 'none', 'busybox', 'sh', '-c', SETUP]);
  assert.equal(run.code, 0, run.stderr);
  await until('the container to be set up', async () => (await h.cli(['exec', 'c', 'test', '-e', '/ready'])).code === 0);
  const host = mkdtempSync(path.join(tmpdir(), 'capsa-cp-'));
  t.after(() => rmSync(host, { recursive: true, force: true }));
  return { h, host };
}

async function ok(h: TestHelper, args: string[], input?: Buffer): Promise<string> {
  const r = await h.cli(args, input ? { input } : {});
  assert.equal(r.code, 0, `capsa ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Whether the host's /etc/shadow holds anything a test wrote (other processes may change it meanwhile: useradd does). */
const hostShadowTouched = (): boolean => /payload|container-shadow/.test(readFileSync('/etc/shadow', 'utf8'));

test('from a container: a directory onto a new name, into a directory, its content with /., a file onto a file', async (t) => {
  const { h, host } = await world(t);
  await ok(h, ['cp', 'c:/srv/d', path.join(host, 'new')]);
  assert.equal(readFileSync(path.join(host, 'new', 'a'), 'utf8'), 'a\n');
  assert.equal(readFileSync(path.join(host, 'new', 'sub', 'b'), 'utf8'), 'b\n');
  mkdirSync(path.join(host, 'into'));
  await ok(h, ['cp', 'c:/srv/d', path.join(host, 'into')]);
  assert.equal(readFileSync(path.join(host, 'into', 'd', 'a'), 'utf8'), 'a\n');
  mkdirSync(path.join(host, 'content'));
  await ok(h, ['cp', 'c:/srv/d/.', path.join(host, 'content')]);
  assert.equal(readFileSync(path.join(host, 'content', 'a'), 'utf8'), 'a\n');
  writeFileSync(path.join(host, 'file'), 'old');
  await ok(h, ['cp', 'c:/srv/d/sub/b', path.join(host, 'file')]);
  assert.equal(readFileSync(path.join(host, 'file'), 'utf8'), 'b\n');
  const toFile = await h.cli(['cp', 'c:/srv/d', path.join(host, 'file')]);
  assert.notEqual(toFile.code, 0);
  assert.match(toFile.stderr, /cannot copy a directory to a file/);
  const missing = await h.cli(['cp', 'c:/srv/nothing', path.join(host, 'x')]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /no such file or directory in container c/);
  const tarOut = await h.cli(['cp', 'c:/srv/d/a', '-']);
  assert.equal(tarOut.code, 0);
  assert.equal(tarOut.stdout.slice(0, 1), 'a', 'a tar whose first entry is named a');
});

test("symlinks and .. in a container path resolve in the container's root: its own /etc/shadow, never the host's", async (t) => {
  const { h, host } = await world(t);
  await ok(h, ['cp', '-L', 'c:/x', path.join(host, 'x')]);
  assert.equal(readFileSync(path.join(host, 'x'), 'utf8'), 'container-shadow\n');
  await ok(h, ['cp', '-L', 'c:/srv/up', path.join(host, 'up')]);
  assert.equal(readFileSync(path.join(host, 'up'), 'utf8'), 'container-shadow\n', 'a relative link climbing past / stops at the container root');
  await ok(h, ['cp', 'c:/../../../../etc/shadow', path.join(host, 'dots')]);
  assert.equal(readFileSync(path.join(host, 'dots'), 'utf8'), 'container-shadow\n');
  await ok(h, ['cp', 'c:/srv/climb/etc/shadow', path.join(host, 'climb')]);
  assert.equal(readFileSync(path.join(host, 'climb'), 'utf8'), 'container-shadow\n');
  await ok(h, ['cp', 'c:/x', path.join(host, 'link')]);
  assert.equal(readlinkSync(path.join(host, 'link')), '/etc/shadow', 'without -L the link itself');
  // into the container through the same links
  writeFileSync(path.join(host, 'payload'), 'payload\n');
  await ok(h, ['cp', path.join(host, 'payload'), 'c:/srv/climb/etc/']);
  assert.equal(await ok(h, ['exec', 'c', 'cat', '/etc/payload']), 'payload\n');
  assert.equal(existsSync('/etc/payload'), false, "the host's /etc is not written");
  await ok(h, ['cp', path.join(host, 'payload'), 'c:/srv/up']);
  assert.equal(await ok(h, ['exec', 'c', 'cat', '/etc/shadow']), 'payload\n', "the container's own shadow, through its symlink");
  assert.equal(hostShadowTouched(), false, "the host's /etc/shadow is untouched");
});

test('into a container: a directory onto a new name, into a directory, its content with /., a tar on stdin; ../ entries refused', async (t) => {
  const { h, host } = await world(t);
  mkdirSync(path.join(host, 'tree', 'sub'), { recursive: true });
  writeFileSync(path.join(host, 'tree', 'f'), 'f\n');
  writeFileSync(path.join(host, 'tree', 'sub', 'g'), 'g\n');
  await ok(h, ['cp', path.join(host, 'tree'), 'c:/srv/new']);
  assert.equal(await ok(h, ['exec', 'c', 'cat', '/srv/new/f', '/srv/new/sub/g']), 'f\ng\n');
  await ok(h, ['cp', path.join(host, 'tree'), 'c:/srv/d']);
  assert.equal(await ok(h, ['exec', 'c', 'cat', '/srv/d/tree/f']), 'f\n');
  await ok(h, ['cp', path.join(host, 'tree') + '/.', 'c:/srv/d/sub']);
  assert.equal(await ok(h, ['exec', 'c', 'cat', '/srv/d/sub/f', '/srv/d/sub/b']), 'f\nb\n');
  assert.equal((await ok(h, ['exec', 'c', 'stat', '-c', '%u:%g', '/srv/new/f'])).trim(), '0:0', "without -a: the container's root");

  // several chunks each way: 3 MiB of noise in, and back out
  const noise = randomBytes(3 * 1024 * 1024 + 17);
  writeFileSync(path.join(host, 'noise'), noise);
  await ok(h, ['cp', path.join(host, 'noise'), 'c:/srv/noise']);
  assert.equal((await ok(h, ['exec', 'c', 'sha256sum', '/srv/noise'])).split(' ')[0], createHash('sha256').update(noise).digest('hex'));
  await ok(h, ['cp', 'c:/srv/noise', path.join(host, 'noise-back')]);
  assert.ok(readFileSync(path.join(host, 'noise-back')).equals(noise), 'the same bytes back');

  const pack = async (names: string[]): Promise<Buffer> => {
    const p = tar.pack();
    for (const n of names) p.entry({ name: n }, 'x\n');
    p.finalize();
    const chunks: Buffer[] = [];
    for await (const c of p as unknown as AsyncIterable<Buffer>) chunks.push(c);
    return Buffer.concat(chunks);
  };
  await ok(h, ['cp', '-', 'c:/srv'], await pack(['fromstdin']));
  assert.equal(await ok(h, ['exec', 'c', 'cat', '/srv/fromstdin']), 'x\n');
  const evil = `capsa-cp-evil-${randomBytes(4).toString('hex')}`;
  const r = await h.cli(['cp', '-', 'c:/srv'], { input: await pack([`../../../../../../tmp/${evil}`]) });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /names a parent directory/);
  assert.equal(existsSync(path.join('/tmp', evil)), false);
  assert.equal((await h.cli(['exec', 'c', 'test', '-e', `/tmp/${evil}`])).code, 1, 'nor in the container');
});

test("a user's cp writes with its container's ids, keeps them with -a, and another's container is not found", async (t) => {
  const user = createUser(t);
  const h = await startHelper({ mirror: registry.url, env: { CAPSA_SOCKET_MODE: '0666' } });
  t.after(() => h.stop());
  chmodSync(h.dir, 0o711);
  const client = writeRawClient(h.dir);
  await until('the socket to be opened to users', async () => (statSync(h.socket).mode & 0o777) === 0o666);
  const req = (method: string, params: unknown, as = user) => rawRequest(client, h.socket, method, params, as);
  assert.ok((await req('capsa/image/pull', { reference: 'busybox' })).result);
  const run = await req('capsa/container/run', { image: 'busybox', name: 'u', network: 'none', cmd: ['sleep', '300'] });
  const id = run.result?.id as string;
  assert.ok(id, JSON.stringify(run));
  const tarOf = async (uid: number): Promise<string> => {
    const p = tar.pack();
    p.entry({ name: 'owned', uid, gid: uid, mode: 0o640 }, 'mine\n');
    p.finalize();
    const chunks: Buffer[] = [];
    for await (const c of p as unknown as AsyncIterable<Buffer>) chunks.push(c);
    return Buffer.concat(chunks).toString('base64');
  };
  for (const [copyIds, want] of [[false, 0], [true, 1234]] as const) {
    const session = await rawSession(client, h.socket, [
      { method: 'capsa/container/archive/open-write', params: { container: 'u', path: '/tmp', copyIds } },
      { method: 'capsa/container/archive/write', params: { session: '$session', data: await tarOf(1234), eof: true } },
      { method: 'capsa/container/archive/open-read', params: { container: 'u', path: '/tmp/owned' } },
      { method: 'capsa/container/archive/read', params: { session: '$session' } },
    ], user);
    const [open, w, read, chunk] = session.answers as Array<{ result?: any; error?: unknown }>;
    assert.ok(open.result?.session, JSON.stringify(open));
    assert.equal(w.result?.entries, 1, JSON.stringify(w));
    const upper = path.join(h.root, 'containers', id, 'upper', 'tmp', 'owned');
    const block = (JSON.parse(readFileSync(path.join(h.root, 'containers', id, 'config.json'), 'utf8')) as { plan: { userns: { uid: number } } }).plan.userns.uid;
    assert.equal(lstatSync(upper).uid, block + want, `copyIds ${copyIds}: the block's id for container id ${want}`);
    assert.equal(read.result?.stat?.type, 'file', JSON.stringify(read));
    assert.equal(chunk.result?.eof, true, JSON.stringify(chunk));
    const ex = tar.extract();
    const seen: Array<{ name: string; uid?: number }> = [];
    const done = (async () => {
      for await (const e of ex) {
        seen.push({ name: e.header.name, uid: e.header.uid });
        e.resume();
      }
    })();
    (ex as unknown as NodeJS.WritableStream).end(Buffer.from(chunk.result.data, 'base64'));
    await done;
    assert.deepEqual(seen, [{ name: 'owned', uid: want }], 'read back as the container sees it');
  }
  // root's container, as the user: not found; hostile params and sessions refused
  const rootc = await h.cli(['run', '-d', '--name', 'r', '--network', 'none', 'busybox', 'sleep', '300']);
  assert.equal(rootc.code, 0, rootc.stderr);
  for (const [method, params] of [
    ['capsa/container/path-stat', { container: 'r', path: '/' }],
    ['capsa/container/archive/open-read', { container: 'r', path: '/etc/passwd' }],
    ['capsa/container/archive/open-write', { container: 'r', path: '/tmp' }],
  ] as const) {
    assert.equal((await req(method, params)).error?.data?.code, 'E_CONTAINER_NOT_FOUND', method);
  }
  assert.equal((await req('capsa/container/archive/read', { session: 'nope' })).error?.data?.code, 'E_COPY_SESSION_NOT_FOUND');
  assert.equal((await req('capsa/container/archive/write', { session: 'x', data: 42 })).error?.data?.code, 'E_INVALID_ARGUMENT');
  assert.equal((await req('capsa/container/path-stat', { container: 'u', path: '' })).error?.data?.code, 'E_INVALID_ARGUMENT');
  assert.equal((await h.cli(['version'])).code, 0, 'the helper still answers');
});

test("from a stopped container: its upper directory over the image's layers, deletions and opaque directories honoured, links resolved inside it", async (t) => {
  const { h, host } = await world(t);
  const script = 'echo container-shadow > /etc/shadow && ln -s /etc/shadow /x && ln -s ../../../../.. /climb && rm /etc/group && rm -rf /home && mkdir /home && echo n > /home/n && mkdir -p /deep/a && echo deep > /deep/a/f';
  await ok(h, ['run', '--name', 's', '--network', 'none', 'busybox', 'sh', '-c', script]);
  await ok(h, ['cp', '-L', 's:/x', path.join(host, 'x')]);
  assert.equal(readFileSync(path.join(host, 'x'), 'utf8'), 'container-shadow\n');
  await ok(h, ['cp', 's:/climb/etc/shadow', path.join(host, 'climb')]);
  assert.equal(readFileSync(path.join(host, 'climb'), 'utf8'), 'container-shadow\n', 'a link past / stops at the container root');
  await ok(h, ['cp', 's:/../../etc/passwd', path.join(host, 'passwd')]);
  assert.match(readFileSync(path.join(host, 'passwd'), 'utf8'), /^root:x:0:0:root/, "the image's own passwd, from a lower layer");
  const gone = await h.cli(['cp', 's:/etc/group', path.join(host, 'group')]);
  assert.notEqual(gone.code, 0, 'a deleted file is not there');
  assert.match(gone.stderr, /no such file or directory in container s/);
  await ok(h, ['cp', 's:/home', path.join(host, 'home')]);
  assert.deepEqual(readdirSync(path.join(host, 'home')), ['n'], "the opaque /home: the image's /home/user is hidden");
  await ok(h, ['cp', 's:/etc', path.join(host, 'etc')]);
  assert.deepEqual(readdirSync(path.join(host, 'etc')).sort().filter((n) => !['hostname', 'hosts', 'resolv.conf'].includes(n)), ['passwd', 'shadow']);
  await ok(h, ['cp', 's:/deep/.', path.join(host, 'deep')]);
  assert.equal(readFileSync(path.join(host, 'deep', 'a', 'f'), 'utf8'), 'deep\n');
  assert.equal(hostShadowTouched(), false);
});

/** A tar of `entries` (name, body or a directory, mode, ids). */
async function tarOf(entries: Array<{ name: string; body?: string; type?: 'directory' | 'symlink' | 'link'; linkname?: string; mode?: number; uid?: number; gid?: number }>): Promise<Buffer> {
  const p = tar.pack();
  for (const e of entries) p.entry({ name: e.name, type: e.type ?? 'file', linkname: e.linkname, mode: e.mode ?? (e.type === 'directory' ? 0o755 : 0o644), uid: e.uid ?? 0, gid: e.gid ?? 0 }, e.body ?? '');
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p as unknown as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

const xattr = (file: string, name: string): string | undefined => lgetxattr(file, name)?.toString();

test('into a created container: its first start sees the files, with their content, mode and owner', async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  const host = mkdtempSync(path.join(tmpdir(), 'capsa-cp-'));
  t.after(() => rmSync(host, { recursive: true, force: true }));
  await ok(h, ['create', '--name', 'n', '--network', 'none', 'busybox', 'sh', '-c', 'cat /etc/copied /usr/tree/f; stat -c "%n %a %u:%g" /etc/copied /usr/tree /usr/tree/f; ls /etc | grep -c passwd; test -d /etc/passwd && echo passwd is a directory']);
  writeFileSync(path.join(host, 'copied'), 'copied\n');
  chmodSync(path.join(host, 'copied'), 0o600);
  mkdirSync(path.join(host, 'tree'));
  writeFileSync(path.join(host, 'tree', 'f'), 'f\n');
  await ok(h, ['cp', path.join(host, 'copied'), 'n:/etc/']);
  await ok(h, ['cp', path.join(host, 'tree'), 'n:/usr']);
  assert.equal(await ok(h, ['cp', 'n:/etc/copied', '-']).then((o) => o.includes('copied\n')), true, 'read back before the start');
  // a directory over a file only the image has: opaque, as overlayfs makes it
  await ok(h, ['cp', '-', 'n:/etc'], await tarOf([{ name: 'passwd', type: 'directory' }]));
  const id = (await inspect(h, 'n')).Id as string;
  assert.equal(xattr(path.join(h.root, 'containers', id, 'upper', 'etc', 'passwd'), 'trusted.overlay.opaque'), 'y');
  const out = await ok(h, ['start', '-a', 'n']);
  assert.equal(out, 'copied\nf\n/etc/copied 600 0:0\n/usr/tree 755 0:0\n/usr/tree/f 644 0:0\n1\npasswd is a directory\n', "the image's /etc is still there around the copy");
});

test("into a stopped container: over the image's files, the run's deletions and recreated directories, through its symlinks; seen by start, diff and commit", async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  const host = mkdtempSync(path.join(tmpdir(), 'capsa-cp-'));
  t.after(() => rmSync(host, { recursive: true, force: true }));
  const setup = 'rm /etc/group && rm -rf /home /root && mkdir /root && echo r > /root/r && ln -s /etc /x && ln -s ../../../../.. /climb && touch /ran';
  const verify = 'cat /etc/passwd /etc/group /root/new /etc/viax /etc/viaclimb; ls /root /home; stat -c "%n %a %u:%g" /etc/passwd /root/new';
  await ok(h, ['run', '--name', 's', '--network', 'none', 'busybox', 'sh', '-c', `if [ -e /ran ]; then ${verify}; else ${setup}; fi`]);
  const id = (await inspect(h, 's')).Id as string;
  const upper = path.join(h.root, 'containers', id, 'upper');
  assert.equal(lstatSync(path.join(upper, 'etc', 'group')).isCharacterDevice(), true, 'the run left a whiteout');
  assert.equal(existsSync(path.join(upper, 'etc', 'passwd')), false, "passwd is the image's only");
  writeFileSync(path.join(host, 'passwd'), 'newpasswd\n');
  writeFileSync(path.join(host, 'group'), 'newgroup\n');
  writeFileSync(path.join(host, 'new'), 'new\n');
  writeFileSync(path.join(host, 'viax'), 'viax\n');
  writeFileSync(path.join(host, 'viaclimb'), 'viaclimb\n');
  mkdirSync(path.join(host, 'home'));
  writeFileSync(path.join(host, 'home', 'mine'), 'mine\n');
  await ok(h, ['cp', path.join(host, 'passwd'), 's:/etc/passwd']);
  await ok(h, ['cp', path.join(host, 'group'), 's:/etc/']);
  await ok(h, ['cp', path.join(host, 'new'), 's:/root/']);
  await ok(h, ['cp', path.join(host, 'viax'), 's:/x/']);
  await ok(h, ['cp', path.join(host, 'viaclimb'), 's:/climb/etc/']);
  await ok(h, ['cp', path.join(host, 'home'), 's:/']);
  assert.equal(existsSync('/etc/viax') || existsSync('/etc/viaclimb'), false, "the host's /etc is not written");
  assert.equal(hostShadowTouched(), false);
  assert.equal(lstatSync(path.join(upper, 'etc', 'group')).isFile(), true, 'the whiteout replaced by the file');
  assert.equal(xattr(path.join(upper, 'home'), 'trusted.overlay.opaque'), 'y', 'a directory over a deleted one is opaque');
  assert.equal(xattr(path.join(upper, 'root'), 'trusted.overlay.opaque'), 'y', 'the directory the run made again stays opaque');
  assert.equal(xattr(path.join(upper, 'etc'), 'trusted.overlay.opaque'), undefined, "/etc keeps the image's content");

  // tar entries climbing out are refused, and nothing is written for them
  const evil = `capsa-cp-evil-${randomBytes(4).toString('hex')}`;
  const r = await h.cli(['cp', '-', 's:/root'], { input: await tarOf([{ name: `../../../../tmp/${evil}`, body: 'x' }]) });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /names a parent directory/);
  assert.equal(existsSync(path.join('/tmp', evil)) || existsSync(path.join(upper, 'tmp', evil)), false);
  const dev = await h.cli(['cp', '-', 's:/root'], { input: await rawTar('fifo', '6') });
  assert.notEqual(dev.code, 0, 'a fifo is refused');
  assert.match(dev.stderr, /entries are not copied into containers/);

  const diff = (await ok(h, ['diff', 's'])).split('\n').filter((l) => l !== '');
  for (const want of ['C /etc', 'C /etc/passwd', 'C /etc/group', 'A /etc/viax', 'A /etc/viaclimb', 'C /root', 'A /root/new', 'C /home', 'A /home/mine', 'D /home/user']) assert.ok(diff.includes(want), `diff has ${want}: ${diff.join(', ')}`);

  const out = await ok(h, ['start', '-a', 's']);
  assert.equal(out, 'newpasswd\nnewgroup\nnew\nviax\nviaclimb\n/home:\nmine\n\n/root:\nnew\nr\n/etc/passwd 644 0:0\n/root/new 644 0:0\n', "the start's overlay shows the copy: /home/user of the image stays hidden");

  await ok(h, ['commit', 's', 'copied:1']);
  const fromImage = await ok(h, ['run', '--rm', '--network', 'none', 'copied:1', 'sh', '-c', 'cat /etc/passwd /etc/group /etc/viax /home/mine; ls /home']);
  assert.equal(fromImage, 'newpasswd\nnewgroup\nviax\nmine\nmine\n');
});

/** A one-entry tar with a raw type flag (tar-stream's names for them differ). */
async function rawTar(name: string, typeflag: string): Promise<Buffer> {
  const h = Buffer.alloc(512);
  h.write(name, 0);
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write('00000000000\0', 124);
  h.write('00000000000\0', 136);
  h.write(typeflag, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.fill(' ', 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return Buffer.concat([h, Buffer.alloc(1024)]);
}

test("into a user's stopped container: files land with the container's ids, shifted into its block on disk, and its start sees them as 0:0", async (t) => {
  const user = createUser(t);
  const h = await startHelper({ mirror: registry.url, env: { CAPSA_SOCKET_MODE: '0666' } });
  t.after(() => h.stop());
  chmodSync(h.dir, 0o711);
  const client = writeRawClient(h.dir);
  await until('the socket to be opened to users', async () => (statSync(h.socket).mode & 0o777) === 0o666);
  const req = (method: string, params: unknown) => rawRequest(client, h.socket, method, params, user);
  assert.ok((await req('capsa/image/pull', { reference: 'busybox' })).result);
  const run = await req('capsa/container/create', { image: 'busybox', name: 'u', network: 'none', cmd: ['sh', '-c', 'stat -c "%n %u:%g %a" /etc/copied /opt /opt/d /opt/d/f /opt/kept; cat /opt/d/f; head -c 5 /opt/pw'] });
  const id = run.result?.id as string;
  assert.ok(id, JSON.stringify(run));
  const data = (await tarOf([{ name: 'copied', body: 'c\n', uid: 1234, gid: 1234 }])).toString('base64');
  const dir = (await tarOf([
    { name: 'opt', type: 'directory' },
    { name: 'opt/d', type: 'directory' },
    { name: 'opt/d/f', body: 'f\n', mode: 0o640 },
    { name: 'opt/kept', body: 'k\n', uid: 7, gid: 8 },
    // a hard link to a file only the image has: copied up (shifted) first
    { name: 'opt/pw', type: 'link', linkname: 'etc/passwd' },
  ])).toString('base64');
  const session = await rawSession(client, h.socket, [
    { method: 'capsa/container/archive/open-write', params: { container: 'u', path: '/etc' } },
    { method: 'capsa/container/archive/write', params: { session: '$session', data, eof: true } },
    { method: 'capsa/container/archive/open-write', params: { container: 'u', path: '/', copyIds: true } },
    { method: 'capsa/container/archive/write', params: { session: '$session', data: dir, eof: true } },
  ], user);
  const answers = session.answers as Array<{ result?: any; error?: unknown }>;
  assert.equal(answers[1].result?.entries, 1, JSON.stringify(answers));
  assert.equal(answers[3].result?.entries, 5, JSON.stringify(answers));
  const block = (JSON.parse(readFileSync(path.join(h.root, 'containers', id, 'config.json'), 'utf8')) as { plan: { userns: { uid: number; gid: number } } }).plan.userns;
  const upper = path.join(h.root, 'containers', id, 'upper');
  const ids = (rel: string): string => {
    const st = lstatSync(path.join(upper, rel));
    return `${st.uid - block.uid}:${st.gid - block.gid}`;
  };
  assert.equal(ids('etc'), '0:0', "the copied-up /etc: the image's root, shifted");
  assert.equal(ids('etc/copied'), '0:0', 'without -a: the container root');
  assert.equal(ids('opt/d'), '0:0');
  assert.equal(ids('opt/kept'), '7:8', "-a: the tar's ids, in the block");
  assert.equal(ids('etc/passwd'), '0:0', "the linked file copied up with the image's ids, shifted");
  assert.equal(lstatSync(path.join(upper, 'opt', 'pw')).ino, lstatSync(path.join(upper, 'etc', 'passwd')).ino, 'one file, two names');
  const hostRootOwned = (dir: string): string[] =>
    readdirSync(dir).flatMap((n) => {
      const p = path.join(dir, n);
      const st = lstatSync(p);
      return [...(st.uid < block.uid || st.gid < block.gid ? [p] : []), ...(st.isDirectory() ? hostRootOwned(p) : [])];
    });
  assert.deepEqual(hostRootOwned(path.join(upper, 'etc')).concat(hostRootOwned(path.join(upper, 'opt'))), [], 'nothing the copy made is owned by a host id outside the block');
  const start = await req('capsa/container/start', { container: 'u' });
  assert.ok(!start.error, JSON.stringify(start));
  const code = await req('capsa/container/wait', { container: 'u' });
  const logs = await req('capsa/container/logs', { container: 'u' });
  const text = ((logs.result?.entries ?? []) as Array<{ data: string }>).map((e) => Buffer.from(e.data, 'base64').toString()).join('');
  assert.equal(code.result?.exitCode, 0, `${JSON.stringify(code)}: ${text}`);
  assert.equal(text, '/etc/copied 0:0 644\n/opt 0:0 755\n/opt/d 0:0 755\n/opt/d/f 0:0 640\n/opt/kept 7:8 644\nf\nroot:');
});

test('a start waits for a copy into its stopped root to end, and a removal stops one', async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  const conn = await connectProtocol(h.socket);
  t.after(() => conn.dispose());
  await ok(h, ['create', '--name', 'w', '--network', 'none', 'busybox', 'cat', '/tmp/late']);
  const whole = await tarOf([{ name: 'late', body: 'late\n' }]);
  const { session } = await conn.sendRequest(ContainerArchiveOpenWriteRequest.type, { container: 'w', path: '/tmp' });
  await conn.sendRequest(ContainerArchiveWriteRequest.type, { session, data: whole.subarray(0, 600).toString('base64') });
  const starting = h.cli(['start', '-a', 'w']);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await inspect(h, 'w')).State.Running, false, 'not started while the copy is under way');
  const w = await conn.sendRequest(ContainerArchiveWriteRequest.type, { session, data: whole.subarray(600).toString('base64'), eof: true });
  assert.equal(w.entries, 1);
  const started = await starting;
  assert.equal(started.code, 0, started.stderr);
  assert.equal(started.stdout, 'late\n', 'the start, once the copy ended, sees the file');

  await ok(h, ['create', '--name', 'r', '--network', 'none', 'busybox', 'true']);
  const id = (await inspect(h, 'r')).Id as string;
  const open = await conn.sendRequest(ContainerArchiveOpenWriteRequest.type, { container: 'r', path: '/tmp' });
  await conn.sendRequest(ContainerArchiveWriteRequest.type, { session: open.session, data: whole.subarray(0, 600).toString('base64') });
  await ok(h, ['rm', 'r']);
  assert.equal(existsSync(path.join(h.root, 'containers', id)), false, 'the container directory is gone');
  await assert.rejects(conn.sendRequest(ContainerArchiveWriteRequest.type, { session: open.session, data: whole.subarray(600).toString('base64'), eof: true }), /being removed/);
  const late = await h.cli(['cp', '-', 'r:/tmp'], { input: whole });
  assert.notEqual(late.code, 0);
  assert.match(late.stderr, /no such container: r/);
});

test("into a stopped container: nothing is written beneath its mount points (a bind's content is not its root's)", async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  const host = mkdtempSync(path.join(tmpdir(), 'capsa-cp-'));
  t.after(() => rmSync(host, { recursive: true, force: true }));
  mkdirSync(path.join(host, 'bound'));
  await ok(h, ['run', '--name', 'b', '--network', 'none', '-v', `${path.join(host, 'bound')}:/data`, 'busybox', 'true']);
  writeFileSync(path.join(host, 'f'), 'f\n');
  const into = await h.cli(['cp', path.join(host, 'f'), 'b:/data/']);
  assert.notEqual(into.code, 0);
  assert.match(into.stderr, /\/data is one of its mount points/);
  mkdirSync(path.join(host, 'data'));
  writeFileSync(path.join(host, 'data', 'x'), 'x\n');
  const tree = await h.cli(['cp', path.join(host, 'data'), 'b:/']);
  assert.notEqual(tree.code, 0);
  assert.match(tree.stderr, /mount points/);
  const hosts = await h.cli(['cp', path.join(host, 'f'), 'b:/etc/hosts']);
  assert.notEqual(hosts.code, 0, "the runtime's /etc/hosts is a mount point too");
  assert.deepEqual(readdirSync(path.join(host, 'bound')), [], 'the bind source is untouched');
  const id = (await inspect(h, 'b')).Id as string;
  assert.equal(existsSync(path.join(h.root, 'containers', id, 'upper', 'data', 'x')) || existsSync(path.join(h.root, 'containers', id, 'upper', 'data', 'f')), false, 'nor the upper directory beneath it');
  await ok(h, ['cp', path.join(host, 'f'), 'b:/etc/']);
  assert.equal(await ok(h, ['cp', 'b:/etc/f', '-']).then((o) => o.includes('f\n')), true, 'elsewhere the copy goes on');
});
