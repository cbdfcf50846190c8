/**
 * `capsa load` and `capsa save`: archives written by skopeo and podman load,
 * archives Capsa writes are accepted by `podman load` (the oracle), and
 * hostile or broken archives are refused with a clear error and leave the
 * store as it was.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { checkClientPath, loadArchive } from '../../server/image/archive';
import { ImageStore } from '../../server/image/store';
import { DigestMismatchError, InvalidArchiveError, SizeMismatchError, UnsafeLayerError } from '../../server/image/errors';
import { startHelper, type TestHelper } from '../helpers/capsa';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { pushImage, seedBusybox, tarHeader, tarLayer, type PushedImage, type TarEntrySpec } from '../helpers/oci';

const execFileP = promisify(execFile);

let registry: TestRegistry;
let busybox: PushedImage;
let multi: PushedImage;

before(async () => {
  registry = await startRegistry();
  busybox = await seedBusybox(registry);
  multi = await pushImage(registry, 'library/multi', 'v1', {
    compression: 'gzip',
    layers: [
      await tarLayer([
        { type: 'dir', path: 'etc/' },
        { type: 'file', path: 'etc/a', content: 'a\n' },
        { type: 'file', path: 'etc/gone', content: 'gone\n' },
        { type: 'dir', path: 'opaque/' },
        { type: 'file', path: 'opaque/old', content: 'old\n' },
      ]),
      await tarLayer([
        { type: 'file', path: 'etc/.wh.gone' },
        { type: 'file', path: 'opaque/.wh..wh..opq' },
        { type: 'file', path: 'opaque/new', content: 'new\n', uid: 1000, gid: 1000, mode: 0o4755 },
        { type: 'file', path: 'etc/b', content: 'b\n' },
        { type: 'hardlink', path: 'etc/b-link', target: 'etc/b' },
        { type: 'symlink', path: 'etc/rel', target: 'a' },
      ]),
    ],
  });
});
after(async () => {
  await registry?.stop();
});

interface Ctx {
  after: (fn: () => unknown) => void;
}

function tmpDir(t: Ctx, prefix = 'capsa-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function helper(t: Ctx): Promise<TestHelper> {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  return h;
}

/** podman with its own storage under `dir`, vfs so it needs no overlay support. */
function podman(dir: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return execFileP(
    'podman',
    ['--root', path.join(dir, 'storage'), '--runroot', path.join(dir, 'run'), '--storage-driver', 'vfs', '--events-backend', 'none', ...args],
    { maxBuffer: 64 * 1024 * 1024 },
  );
}

async function cli(h: TestHelper, args: string[]): Promise<string> {
  const r = await h.cli(args);
  assert.equal(r.code, 0, `capsa ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function imageId(h: TestHelper, ref: string): Promise<string> {
  const out = await cli(h, ['images']);
  const line = out.split('\n').find((l) => l.startsWith(ref.split(':')[0] + ' ') && l.includes(` ${ref.split(':')[1]} `));
  assert.ok(line, `capsa images lists ${ref}:\n${out}`);
  return line.split(/\s+/)[2];
}

test('capsa save writes an archive podman load accepts; podman save of it loads back with the same id', async (t) => {
  const h = await helper(t);
  const dir = tmpDir(t);
  await cli(h, ['pull', 'library/multi:v1']);
  await cli(h, ['pull', 'busybox']);
  const archive = path.join(dir, 'out.tar');
  await cli(h, ['save', '-o', archive, 'multi:v1', 'busybox:latest']);

  await podman(dir, ['load', '-i', archive]);
  const { stdout } = await podman(dir, ['images', '--no-trunc', '--format', '{{.ID}} {{.Repository}}:{{.Tag}}']);
  // podman prints ids with or without the algorithm depending on its version.
  const lines0 = stdout.replace(/sha256:/g, '');
  const lines = lines0.trim().split('\n').sort();
  assert.deepEqual(
    lines,
    [`${busybox.configDigest.slice(7)} docker.io/library/busybox:latest`, `${multi.configDigest.slice(7)} docker.io/library/multi:v1`].sort(),
    'podman sees both images with their ids (config digests) and tags',
  );

  // podman's own docker-archive of the same image, loaded into a fresh store.
  const fromPodman = path.join(dir, 'podman.tar');
  await podman(dir, ['save', '--format', 'docker-archive', '-o', fromPodman, 'docker.io/library/multi:v1']);
  const h2 = await helper(t);
  const out = await cli(h2, ['load', '-i', fromPodman]);
  assert.match(out, /^Loaded image: multi:v1$/m);
  assert.equal(await imageId(h2, 'multi:v1'), multi.configDigest.slice(7, 19));
  const store = new ImageStore(h2.root);
  const dirs = await store.layerDirs('multi:v1');
  const top = dirs[0];
  assert.equal(fs.statSync(path.join(top, 'opaque', 'new')).mode & 0o7777, 0o4755, 'setuid kept');
  assert.equal(fs.statSync(path.join(top, 'opaque', 'new')).uid, 1000, 'owner kept');
  assert.equal(fs.readlinkSync(path.join(top, 'etc', 'rel')), 'a');
  assert.ok(fs.lstatSync(path.join(top, 'etc', 'gone')).isCharacterDevice(), 'whiteout converted');
  assert.equal(fs.statSync(path.join(top, 'etc', 'b')).ino, fs.statSync(path.join(top, 'etc', 'b-link')).ino, 'hard link kept');
});

test('skopeo docker-archive and oci-archive archives load with their names and verified layers', async (t) => {
  const h = await helper(t);
  const dir = tmpDir(t);
  const docker = path.join(dir, 'docker.tar');
  const oci = path.join(dir, 'oci.tar');
  const src = `docker://${registry.host}/library/busybox:latest`;
  await execFileP('skopeo', ['copy', '-q', '--src-tls-verify=false', src, `docker-archive:${docker}:busybox:latest`]);
  await execFileP('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${registry.host}/library/multi:v1`, `oci-archive:${oci}:docker.io/library/multi:v1`]);

  assert.match(await cli(h, ['load', '-i', docker]), /^Loaded image: busybox:latest$/m);
  assert.match(await cli(h, ['load', '-i', oci]), /^Loaded image: multi:v1$/m);
  assert.equal(await imageId(h, 'busybox:latest'), busybox.configDigest.slice(7, 19));
  // skopeo rewrites the config when it converts to OCI: the layers are what must match.
  const store = new ImageStore(h.root);
  assert.deepEqual((await store.get('multi:v1')).diffIds, multi.layers.map((l) => l.diffId));
  const [bb] = await store.layerDirs('busybox:latest');
  assert.ok(fs.statSync(path.join(bb, 'bin', 'busybox')).size > 100_000);
  // Loading again reuses every layer.
  const before = fs.readdirSync(path.join(h.root, 'layers', 'sha256')).sort();
  await cli(h, ['load', '-i', docker]);
  assert.deepEqual(fs.readdirSync(path.join(h.root, 'layers', 'sha256')).sort(), before);
  // A pull of the same image after a load finds the layers present.
  const pulled = await cli(h, ['pull', 'busybox']);
  assert.match(pulled, /docker\.io\/library\/busybox:latest/);
});

test('save, rmi, load round-trips an image byte for byte (same id, same diff-ids)', async (t) => {
  const h = await helper(t);
  const dir = tmpDir(t);
  await cli(h, ['pull', 'library/multi:v1']);
  const archive = path.join(dir, 'multi.tar');
  await cli(h, ['save', '-o', archive, 'multi:v1']);
  await cli(h, ['rmi', 'multi:v1']);
  assert.equal(fs.readdirSync(path.join(h.root, 'layers', 'sha256')).length, 0);
  assert.match(await cli(h, ['load', '-i', archive]), /Loaded image: multi:v1/);
  assert.equal(await imageId(h, 'multi:v1'), multi.configDigest.slice(7, 19));
});

test('load and save refuse relative paths and missing files with a clear error', async (t) => {
  const h = await helper(t);
  const missing = await h.cli(['load', '-i', '/nonexistent/archive.tar']);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /archive \/nonexistent\/archive\.tar: no such file/);
  const noImage = await h.cli(['save', '-o', '/tmp/x.tar', 'nosuchimage']);
  assert.notEqual(noImage.code, 0);
  assert.match(noImage.stderr, /no such image: nosuchimage/);
});

// ---- hostile and broken archives, straight against the library -------------

function sha(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

async function dockerArchive(opts: { layers: Buffer[]; diffIds?: string[]; extra?: TarEntrySpec[]; layerNames?: string[] }): Promise<Buffer> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: opts.diffIds ?? opts.layers.map(sha) } }));
  const names = opts.layerNames ?? opts.layers.map((_, i) => `l${i}/layer.tar`);
  const manifest = Buffer.from(JSON.stringify([{ Config: 'config.json', RepoTags: ['hostile:latest'], Layers: names }]));
  return tarLayer([
    ...(opts.extra ?? []),
    { type: 'file', path: 'config.json', content: config },
    ...opts.layers.map((l, i): TarEntrySpec => ({ type: 'file', path: `l${i}/layer.tar`, content: l })),
    { type: 'file', path: 'manifest.json', content: manifest },
  ]);
}

async function ociArchive(opts: { layer: Buffer; lie?: 'digest' | 'size' | 'missing' }): Promise<Buffer> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(opts.layer)] } }));
  const layerDesc = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(opts.layer), size: opts.layer.length + (opts.lie === 'size' ? 1 : 0) };
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length }, layers: [layerDesc] }),
  );
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(manifest), size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': 'hostile:oci' } }] }));
  const layerBytes = opts.lie === 'digest' ? Buffer.concat([opts.layer.subarray(0, opts.layer.length - 1), Buffer.from([opts.layer[opts.layer.length - 1] ^ 0xff])]) : opts.layer;
  const entries: TarEntrySpec[] = [
    { type: 'file', path: 'oci-layout', content: '{"imageLayoutVersion":"1.0.0"}' },
    { type: 'file', path: 'index.json', content: index },
    { type: 'file', path: `blobs/sha256/${sha(config).slice(7)}`, content: config },
    { type: 'file', path: `blobs/sha256/${sha(manifest).slice(7)}`, content: manifest },
  ];
  if (opts.lie !== 'missing') entries.push({ type: 'file', path: `blobs/sha256/${sha(opts.layer).slice(7)}`, content: layerBytes });
  return tarLayer(entries);
}

async function goodLayer(): Promise<Buffer> {
  return tarLayer([{ type: 'file', path: 'hello', content: 'hello\n' }]);
}

const hostile: Array<{ name: string; archive: () => Promise<Buffer>; error: RegExp; type?: Function }> = [
  {
    name: 'an entry name escaping with ../',
    archive: async () => dockerArchive({ layers: [await goodLayer()], extra: [{ type: 'file', path: '../../escape', content: 'x' }] }),
    error: /entry "\.\.\/\.\.\/escape": path escapes/,
    type: InvalidArchiveError,
  },
  {
    name: 'an absolute entry name',
    archive: async () => dockerArchive({ layers: [await goodLayer()], extra: [{ type: 'file', path: '/etc/evil', content: 'x' }] }),
    error: /entry "\/etc\/evil": absolute path/,
    type: InvalidArchiveError,
  },
  {
    name: 'a symlink pointing outside the archive',
    archive: async () => dockerArchive({ layers: [await goodLayer()], layerNames: ['evil/layer.tar'], extra: [{ type: 'symlink', path: 'evil/layer.tar', target: '../../../etc/passwd' }] }),
    error: /links to "\.\.\/\.\.\/\.\.\/etc\/passwd", outside the archive/,
    type: InvalidArchiveError,
  },
  {
    name: 'a layer manifest.json names but the archive lacks',
    archive: async () => dockerArchive({ layers: [await goodLayer()], layerNames: ['nope/layer.tar'] }),
    error: /names "nope\/layer\.tar", which is not in the archive/,
    type: InvalidArchiveError,
  },
  {
    name: 'an OCI blob missing from blobs/',
    archive: async () => ociArchive({ layer: await goodLayer(), lie: 'missing' }),
    error: /which is not in the archive/,
    type: InvalidArchiveError,
  },
  {
    name: 'an OCI blob whose content does not match its digest',
    archive: async () => ociArchive({ layer: await goodLayer(), lie: 'digest' }),
    error: /digest mismatch|expected sha256:/i,
    type: DigestMismatchError,
  },
  {
    name: 'an OCI descriptor whose size is wrong',
    archive: async () => ociArchive({ layer: await goodLayer(), lie: 'size' }),
    error: /size/i,
    type: SizeMismatchError,
  },
  {
    name: 'an uncompressed layer that is not the diff-id its config lists',
    archive: async () => dockerArchive({ layers: [await goodLayer()], diffIds: [sha(Buffer.from('something else'))] }),
    error: /diff-id/,
    type: DigestMismatchError,
  },
  {
    name: 'a layer that writes outside its directory',
    archive: async () => dockerArchive({ layers: [await tarLayer([{ type: 'file', path: '../outside', content: 'x' }])] }),
    error: /path escapes the layer/,
    type: UnsafeLayerError,
  },
  {
    name: 'an entry whose header claims 8 GiB',
    archive: async () =>
      Buffer.concat([await dockerArchive({ layers: [await goodLayer()] }).then((b) => b.subarray(0, b.length - 1024)), tarHeader({ name: 'huge', typeflag: '0', size: Buffer.from('77777777777\0') }), Buffer.alloc(1024)]),
    error: /claims \d+ bytes, more than the whole archive/,
    type: InvalidArchiveError,
  },
  {
    name: 'a truncated archive',
    archive: async () => {
      const pad: TarEntrySpec = { type: 'file', path: 'pad', content: Buffer.alloc(300_000, 1) };
      const b = await dockerArchive({ layers: [await tarLayer([{ type: 'file', path: 'big', content: Buffer.alloc(200_000, 7) }])], extra: [pad] });
      return b.subarray(0, 400_000);
    },
    error: /truncated archive/,
    type: InvalidArchiveError,
  },
  {
    name: 'something that is not an image archive',
    archive: async () => tarLayer([{ type: 'file', path: 'README', content: 'hi' }]),
    error: /neither a docker save archive .* nor an OCI image layout/,
    type: InvalidArchiveError,
  },
];

for (const c of hostile) {
  test(`load refuses ${c.name}, writes nothing outside, keeps the store consistent`, async (t) => {
    const dir = tmpDir(t);
    const root = path.join(dir, 'root');
    const store = new ImageStore(root);
    const file = path.join(dir, 'in.tar');
    fs.writeFileSync(file, await c.archive());
    const err = await loadArchive(store, file).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof Error, 'load failed');
    if (c.type) assert.ok(err instanceof c.type, `${(err as Error).constructor.name}: ${(err as Error).message}`);
    assert.match((err as Error).message, c.error);
    assert.deepEqual(await store.list(), [], 'no image recorded');
    assert.deepEqual(fs.readdirSync(path.join(root, 'tmp')), [], 'staging removed');
    assert.deepEqual(fs.readdirSync(path.join(root, 'layers')).filter((n) => n !== 'sha256'), [], 'no temporary layer directories');
    assert.deepEqual(fs.readdirSync(path.join(root, 'layers', 'sha256')), [], 'no layer');
    assert.deepEqual(fs.readdirSync(dir).sort(), ['in.tar', 'root'], 'nothing written beside the store');
    assert.equal(fs.existsSync(path.join(os.tmpdir(), 'escape')), false);
  });
}

test('paths from clients must be absolute and normalised', () => {
  assert.equal(checkClientPath('/tmp/a.tar', 'input'), '/tmp/a.tar');
  for (const bad of ['a.tar', '../a.tar', '/tmp/../etc/shadow', '/tmp//a', '/tmp/./a', '', '/tmp/a\0b']) {
    assert.throws(() => checkClientPath(bad, 'input'), /input/, JSON.stringify(bad));
  }
});
