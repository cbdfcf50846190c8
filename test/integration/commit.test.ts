/**
 * commit, diff, history and tag against a real helper, kernel and registry:
 * a container that added, changed and deleted files (an opaque directory, a
 * hard link, an xattr among them) committed to an image that runs with
 * exactly those changes; the layer's tar holds only them; the same changes
 * with SOURCE_DATE_EPOCH give the same digests; `-c` changes the config;
 * a user's container commits with the ids its user namespace sees, into
 * that user's names only, and another's container or image is not found.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { fileRegistry, startHelper, until, type TestHelper } from '../helpers/capsa';
import { runCli } from '../helpers/capsa';
import { createUser } from '../helpers/users';
import { rawRequest, writeRawClient } from '../helpers/rawclient';
import { readTar, type TarHeader } from '../../server/image/tar';
import { lgetxattr, lsetxattr } from '../../server/image/libc';

const registry = fileRegistry();

const SCRIPT = [
  'mkdir -p /data/sub',
  'echo hi > /data/sub/f',
  'ln /data/sub/f /data/hard',
  'ln -s ../data/sub/f /data/link',
  'chown 1000:1000 /data/sub/f',
  'rm /etc/group',
  'echo extra >> /etc/passwd',
  'rm -rf /home && mkdir /home && echo new > /home/n',
].join(' && ');

const EXPECTED_DIFF = [
  'A /data',
  'A /data/hard',
  'A /data/link',
  'A /data/sub',
  'A /data/sub/f',
  'C /etc',
  'D /etc/group',
  'C /etc/passwd',
  'C /home',
  'A /home/n',
  'D /home/user',
];

async function helper(t: { after: (fn: () => Promise<void> | void) => void }, env: NodeJS.ProcessEnv = {}): Promise<TestHelper> {
  const h = await startHelper({ mirror: registry.url, env });
  t.after(() => h.stop());
  const pulled = await h.cli(['pull', 'busybox']);
  assert.equal(pulled.code, 0, pulled.stderr);
  return h;
}

async function ok(h: TestHelper, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const r = env ? await runCli(args, { ...h.env, ...env }) : await h.cli(args);
  assert.equal(r.code, 0, `capsa ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

interface Index {
  images: Record<string, { layers: Array<{ digest: string }>; diffIds: string[] }>;
  namespaces: Record<string, { tags: Record<string, string> }>;
}
const index = (h: TestHelper): Index => JSON.parse(readFileSync(path.join(h.root, 'images.json'), 'utf8')) as Index;

/** The headers of the image's top layer, in order. */
async function topLayer(h: TestHelper, id: string): Promise<TarHeader[]> {
  const layers = index(h).images[id].layers;
  const blob = path.join(h.root, 'blobs', 'sha256', layers[layers.length - 1].digest.slice(7));
  const out: TarHeader[] = [];
  for await (const e of readTar(Readable.from([zlib.gunzipSync(readFileSync(blob))]))) out.push(e.header);
  return out;
}

async function containerId(h: TestHelper, name: string): Promise<string> {
  return (JSON.parse(await ok(h, ['inspect', name])) as Array<{ Id: string }>)[0].Id;
}

test('a committed container runs as an image with exactly its changes: added, changed, deleted, an opaque dir, a hard link, an xattr', async (t) => {
  const h = await helper(t);
  await ok(h, ['run', '--name', 'c1', '--network', 'none', 'busybox', 'sh', '-c', SCRIPT]);
  const id = await containerId(h, 'c1');
  // an xattr the container's tools cannot set (busybox has no setfattr): set where overlayfs keeps the file
  lsetxattr(path.join(h.root, 'containers', id, 'upper', 'data', 'sub', 'f'), 'user.capsa', Buffer.from('kept'));

  assert.deepEqual((await ok(h, ['diff', 'c1'])).trimEnd().split('\n'), EXPECTED_DIFF, 'diff: sorted by path, mount points of the runtime left out');

  const image = (await ok(h, ['commit', '-a', 'A. Author', '-m', 'first', 'c1', 'mine:1'])).trim();
  assert.match(image, /^sha256:[0-9a-f]{64}$/);
  const shown = await ok(h, ['run', '--rm', '--network', 'none', 'mine:1', 'sh', '-c',
    'cat /data/sub/f; stat -c "%h %u %g %i" /data/hard; stat -c "%i" /data/sub/f; readlink /data/link; ls /home; ls /etc; tail -1 /etc/passwd']);
  const lines = shown.trimEnd().split('\n');
  assert.equal(lines[0], 'hi');
  const [nlink, uid, gid, ino] = lines[1].split(' ');
  assert.deepEqual([nlink, uid, gid], ['2', '1000', '1000'], 'hard link kept, owner kept');
  assert.equal(lines[2], ino, 'the two names are one file');
  assert.equal(lines[3], '../data/sub/f');
  assert.equal(lines[4], 'n', 'the opaque /home shows only what the container put there');
  assert.deepEqual(lines.slice(5, -1).filter((l) => !['hostname', 'hosts', 'resolv.conf'].includes(l)), ['passwd'], '/etc/group deleted');
  assert.equal(lines[lines.length - 1], 'extra');

  const headers = await topLayer(h, image);
  assert.deepEqual(
    headers.map((x) => `${x.type} ${x.name}`),
    [
      'directory data/',
      'file data/hard',
      'symlink data/link',
      'directory data/sub/',
      'link data/sub/f',
      'directory etc/',
      'file etc/.wh.group',
      'file etc/passwd',
      'directory home/',
      'file home/.wh..wh..opq',
      'file home/n',
    ],
    'only the changes, sorted; whiteouts as .wh. files',
  );
  const f = headers.find((x) => x.name === 'data/hard')!;
  assert.deepEqual(f.xattrs.map(([k, v]) => [k, v.toString()]), [['user.capsa', 'kept']], 'xattrs kept, overlayfs own ones left out');
  assert.equal(headers.find((x) => x.name === 'data/sub/f')!.linkname, 'data/hard', 'the first name in the walk carries the data, the other links to it');
  const unpacked = path.join(h.root, 'layers', 'sha256', index(h).images[image].diffIds.at(-1)!.slice(7));
  assert.equal(lgetxattr(path.join(unpacked, 'data', 'sub', 'f'), 'user.capsa')?.toString(), 'kept', 'the layer is registered unpacked');

  const hist = (await ok(h, ['history', 'mine:1'])).trimEnd().split('\n');
  assert.match(hist[0], /^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT$/);
  assert.equal(hist.length, 3, hist.join('\n'));
  assert.match(hist[1], new RegExp(`^${image.slice(7, 19)}\\s+.*sh -c mkdir -p /data/sub.*…\\s+\\d+ B\\s+first$`));
  assert.match(hist[2], /^<missing>\s/);
  assert.deepEqual((await ok(h, ['history', '-q', '--no-trunc', 'mine:1'])).trimEnd().split('\n'), [image, '<missing>']);
  const config = JSON.parse(readFileSync(path.join(h.root, 'blobs', 'sha256', image.slice(7)), 'utf8'));
  assert.equal(config.author, 'A. Author');
  assert.deepEqual(config.config.Cmd, ['sh', '-c', SCRIPT], "the container's command becomes the image's, as Docker's commit does");
  assert.equal(config.history.at(-1).comment, 'first');
});

test('the same changes with SOURCE_DATE_EPOCH give the same layer digest and image id; -c changes the config', async (t) => {
  const h = await helper(t);
  const ids: string[] = [];
  for (const name of ['r1', 'r2']) {
    await ok(h, ['run', '--name', name, '--network', 'none', 'busybox', 'sh', '-c', 'mkdir /out && echo same > /out/f && rm /etc/group']);
    ids.push((await ok(h, ['commit', '-c', 'ENV A=1 B="two words"', '-c', 'CMD ["cat", "/out/f"]', '-c', 'EXPOSE 8080', '-c', 'LABEL k=v', '-c', 'WORKDIR /out', '-c', 'USER 1000', '-c', 'STOPSIGNAL SIGINT', '-c', 'VOLUME /vol', name], { SOURCE_DATE_EPOCH: '1000000000' })).trim());
  }
  assert.equal(ids[0], ids[1], 'same changes, same epoch: same image');
  const headers = await topLayer(h, ids[0]);
  assert.ok(headers.every((x) => x.mtime <= 1000000000), 'mtimes clamped');
  const config = JSON.parse(readFileSync(path.join(h.root, 'blobs', 'sha256', ids[0].slice(7)), 'utf8'));
  assert.equal(config.created, '2001-09-09T01:46:40.000Z');
  assert.deepEqual(config.config.Cmd, ['cat', '/out/f']);
  assert.ok(config.config.Env.includes('A=1') && config.config.Env.includes('B=two words'), JSON.stringify(config.config.Env));
  assert.deepEqual(config.config.ExposedPorts, { '8080/tcp': {} });
  assert.deepEqual(config.config.Labels, { k: 'v' });
  assert.equal(config.config.WorkingDir, '/out');
  assert.equal(config.config.User, '1000');
  assert.equal(config.config.StopSignal, 'SIGINT');
  assert.deepEqual(config.config.Volumes, { '/vol': {} });
  await ok(h, ['tag', ids[0], 'repro:x']);
  assert.equal((await ok(h, ['run', '--rm', '--network', 'none', 'repro:x'])).trim(), 'same', 'CMD and WORKDIR and USER apply');
  const bad = await h.cli(['commit', '-c', 'RUN rm -rf /', 'r1']);
  assert.equal(bad.code, 125);
  assert.match(bad.stderr, /RUN cannot be a change/);
});

test('a running container is frozen during its commit and goes on afterwards', async (t) => {
  const h = await helper(t);
  await ok(h, ['run', '-d', '--name', 'busy', '--network', 'none', 'busybox', 'sh', '-c', 'i=0; while true; do i=$((i+1)); echo $i > /c.tmp && mv /c.tmp /counter; done']);
  await until('the counter', async () => (await h.cli(['diff', 'busy'])).stdout.includes('A /counter'));
  const image = (await ok(h, ['commit', 'busy', 'live:1'])).trim();
  const counted = (await ok(h, ['run', '--rm', '--network', 'none', 'live:1', 'cat', '/counter'])).trim();
  assert.match(counted, /^\d+$/, 'a whole file: the writer was frozen while it was read');
  assert.equal((await topLayer(h, image)).filter((x) => x.name === 'counter').length, 1);
  const state = (JSON.parse(await ok(h, ['inspect', 'busy'])) as Array<{ State: { Status: string } }>)[0].State.Status;
  assert.equal(state, 'running', 'thawed after the commit');
});

test("a user's commit records the ids its container sees and lands in the user's names only; others' containers and images are not found", async (t) => {
  const user = createUser(t);
  const h = await helper(t, { CAPSA_SOCKET_MODE: '0666' });
  chmodSync(h.dir, 0o711);
  const client = writeRawClient(h.dir);
  await until('the socket to be opened to users', async () => (statSync(h.socket).mode & 0o777) === 0o666);
  const req = (method: string, params: unknown, as = user) => rawRequest(client, h.socket, method, params, as);
  assert.ok((await req('capsa/image/pull', { reference: 'busybox' })).result);
  const run = await req('capsa/container/run', { image: 'busybox', name: 'u1', network: 'none', cmd: ['sh', '-c', SCRIPT] });
  assert.ok(run.result?.id, JSON.stringify(run));
  assert.equal((await req('capsa/container/wait', { container: 'u1' })).result?.exitCode ?? 0, 0);
  const diff = await req('capsa/container/diff', { container: 'u1' });
  assert.deepEqual((diff.result.changes as Array<{ kind: string; path: string }>).map((c) => `${c.kind} ${c.path}`), EXPECTED_DIFF);
  const committed = await req('capsa/container/commit', { container: 'u1', reference: 'mine:u' });
  assert.match(committed.result?.id ?? '', /^sha256:/, JSON.stringify(committed));
  const id = committed.result.id as string;
  const headers = await topLayer(h, id);
  const f = headers.find((x) => x.name === 'data/hard')!;
  assert.deepEqual([f.uid, f.gid], [1000, 1000], 'the container\'s ids, not the block\'s host ids');
  assert.ok(headers.every((x) => x.uid < 65536 && x.gid < 65536), 'every id as the container sees it');
  // the user's name is the user's: root's namespace has no mine:u, and root's tag does not touch it
  assert.equal(index(h).namespaces['0'].tags['docker.io/library/mine:u'], undefined);
  assert.ok(index(h).namespaces[String(user.uid)].tags['docker.io/library/mine:u']);
  await ok(h, ['tag', 'busybox', 'mine:u']);
  assert.notEqual(index(h).namespaces['0'].tags['docker.io/library/mine:u'], index(h).namespaces[String(user.uid)].tags['docker.io/library/mine:u']);
  const tagged = await req('capsa/image/tag', { source: 'mine:u', target: 'also:mine' });
  assert.equal(tagged.result?.id, id);
  assert.equal(index(h).namespaces['0'].tags['docker.io/library/also:mine'], undefined, "a user's tag never touches root's names");
  const hist = await req('capsa/image/history', { image: 'also:mine' });
  assert.equal(hist.result[0].id, id);
  const shown = await req('capsa/container/run', { image: 'mine:u', name: 'u2', network: 'none', cmd: ['sh', '-c', 'stat -c "%h %u %g" /data/hard > /data/out'] });
  assert.ok(shown.result?.id, JSON.stringify(shown));

  // root's container and root-only image, as the user: not found, as missing ones are
  await ok(h, ['run', '--name', 'rootc', '--network', 'none', 'busybox', 'true']);
  const rootId = await containerId(h, 'rootc');
  await ok(h, ['tag', 'busybox', 'rootonly:1']);
  for (const [method, params] of [
    ['capsa/container/commit', { container: rootId }],
    ['capsa/container/commit', { container: rootId.slice(0, 12) }],
    ['capsa/container/diff', { container: 'rootc' }],
  ] as const) {
    const r = await req(method, params);
    assert.equal(r.error?.data?.code, 'E_CONTAINER_NOT_FOUND', `${method} ${JSON.stringify(params)}: ${JSON.stringify(r)}`);
  }
  for (const [method, params] of [
    ['capsa/image/history', { image: 'rootonly:1' }],
    ['capsa/image/tag', { source: 'rootonly:1', target: 'stolen:1' }],
  ] as const) {
    const r = await req(method, params);
    assert.equal(r.error?.data?.code, 'E_IMAGE_NOT_FOUND', `${method}: ${JSON.stringify(r)}`);
  }
  // hostile params: refused before any handler runs
  for (const [method, params] of [
    ['capsa/container/commit', { container: '' }],
    ['capsa/container/commit', { container: 'u1', sourceDateEpoch: -1 }],
    ['capsa/container/commit', { container: 'u1', changes: 'CMD x' }],
    ['capsa/container/commit', { container: 'u1', changes: ['ONBUILD RUN x'] }],
    ['capsa/container/commit', { container: 'u1', reference: 'Invalid:1' }],
    ['capsa/container/diff', {}],
    ['capsa/image/history', { image: 42 }],
    ['capsa/image/tag', { source: 'mine:u', target: 'x@sha256:' + 'a'.repeat(64) }],
  ] as const) {
    const r = await req(method, params);
    assert.equal(r.error?.data?.code, 'E_INVALID_ARGUMENT', `${method} ${JSON.stringify(params)}: ${JSON.stringify(r)}`);
  }
  const pid = h.process.pid;
  assert.equal((await h.cli(['version'])).code, 0, 'the helper still answers');
  assert.equal(h.process.pid, pid);
});

test('podman loads a saved committed image and sees the same files (oracle)', async (t) => {
  const h = await helper(t);
  await ok(h, ['run', '--name', 'p1', '--network', 'none', 'busybox', 'sh', '-c', SCRIPT]);
  await ok(h, ['commit', 'p1', 'oracle:1']);
  const archive = path.join(h.dir, 'oracle.tar');
  await ok(h, ['save', '-o', archive, 'oracle:1']);
  // podman with a store of its own under the test's directory: nothing of the machine's podman is touched
  const store = ['--root', path.join(h.dir, 'podman-root'), '--runroot', path.join(h.dir, 'podman-run'), '--storage-driver', 'vfs'];
  const podman = (args: string[]): string => execFileSync('podman', [...store, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    try {
      podman(['system', 'reset', '--force']);
    } catch {
      // best effort: the directory goes with the helper's
    }
  });
  podman(['load', '-i', archive]);
  // the image's root as podman assembled it from the archive (no container run: podman's runtime is not what is checked)
  const mnt = podman(['image', 'mount', 'oracle:1']).trim();
  t.after(() => {
    try {
      podman(['image', 'unmount', '--all', '--force']);
    } catch {
      // reset above removes what is left
    }
  });
  assert.equal(readFileSync(path.join(mnt, 'data', 'sub', 'f'), 'utf8'), 'hi\n');
  const hard = statSync(path.join(mnt, 'data', 'hard'));
  assert.deepEqual([hard.nlink, hard.uid, hard.gid, hard.ino], [2, 1000, 1000, statSync(path.join(mnt, 'data', 'sub', 'f')).ino]);
  assert.equal(readlinkSync(path.join(mnt, 'data', 'link')), '../data/sub/f');
  assert.deepEqual(readdirSync(path.join(mnt, 'home')), ['n'], 'the opaque directory, as podman reads the whiteout');
  assert.equal(existsSync(path.join(mnt, 'etc', 'group')), false, 'the deleted file');
  assert.match(readFileSync(path.join(mnt, 'etc', 'passwd'), 'utf8'), /extra\n$/);
  assert.deepEqual(readdirSync(path.join(mnt, 'etc')).sort(), ['passwd'], "no runtime mount points in the image");
});

test("a container racing to swap a directory for a link to the host's /etc during an unpaused commit never gets host files into the layer", async (t) => {
  const h = await helper(t);
  await ok(h, ['run', '-d', '--name', 'racer', '--network', 'none', 'busybox', 'sh', '-c', 'while true; do mkdir -p /d && echo x > /d/f; rm -rf /d; ln -s /etc /d; rm /d; done']);
  await until('the race to run', async () => (await h.cli(['diff', 'racer'])).code === 0);
  for (let i = 0; i < 8; i++) {
    const r = await runCli(['commit', '--pause=false', 'racer'], h.env);
    if (r.code !== 0) {
      assert.match(r.stderr, /replaced while the layer was written|ELOOP|ENOTDIR|ENOENT/, r.stderr);
      continue;
    }
    const names = (await topLayer(h, r.stdout.trim())).map((x) => x.name);
    assert.ok(names.every((n) => !n.startsWith('d/') || n === 'd/' || n === 'd/f'), `only the container's own files: ${names.join(', ')}`);
  }
  const pid = h.process.pid;
  assert.equal((await h.cli(['version'])).code, 0);
  assert.equal(h.process.pid, pid);
});
