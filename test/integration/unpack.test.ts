/**
 * The layer unpacker against real files (as root): hostile layers are refused
 * and leave nothing behind; benign layers stack as overlay lowerdirs and show
 * exactly what they mean through a real overlay mount.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { ImageStore } from '../../server/image/store';
import { unpackLayer } from '../../server/image/unpack';
import { lgetxattr, llistxattr } from '../../server/image/libc';
import { InvalidLayerError, UnsafeLayerError } from '../../server/image/errors';
import { compress, sha256, tarHeader, tarLayer, FIXED_MTIME, type TarEntrySpec, type Compression } from '../helpers/oci';

function tempRoot(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Unpacks `tarBytes` through the store, as a pull does; returns the layer dir. */
async function applyLayer(store: ImageStore, tarBytes: Buffer, compression: Compression = 'gzip'): Promise<string> {
  const blob = await compress(tarBytes, compression);
  const diffId = sha256(tarBytes);
  await store.createLayer(diffId, (dir) => unpackLayer(Readable.from([blob]), dir, { compression, label: `layer ${sha256(blob)}` }));
  return store.layerPath(diffId);
}

function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      out.push(r);
      const st = fs.lstatSync(path.join(d, name));
      if (st.isDirectory()) walk(path.join(d, name), r);
    }
  };
  walk(dir, '');
  return out;
}

interface HostileCase {
  name: string;
  entries: TarEntrySpec[];
  /** Raw bytes appended after the entries (before the end-of-archive blocks are cut off, when `truncate`). */
  error: RegExp;
  errorType: typeof UnsafeLayerError | typeof InvalidLayerError;
  /** Cut the uncompressed tar to this many bytes. */
  truncate?: number;
}

test('hostile layers are refused, write nothing outside and leave no temporary directory', async (t) => {
  const root = tempRoot(t);
  const sentinel = path.join(root, 'outside');
  fs.mkdirSync(sentinel);
  fs.writeFileSync(path.join(sentinel, 'x'), 'original');
  const storeRoot = path.join(root, 'store');

  const big = Buffer.alloc(12);
  big[0] = 0x80; // GNU base-256: 2^88-ish, far past any real file
  big.fill(0xff, 1);
  const cases: HostileCase[] = [
    {
      name: '../ escape',
      entries: [{ type: 'file', path: '../outside/x', content: 'pwned' }],
      error: /entry "\.\.\/outside\/x": path escapes the layer/,
      errorType: UnsafeLayerError,
    },
    {
      name: 'deep ../ escape after a real directory',
      entries: [{ type: 'dir', path: 'a/' }, { type: 'file', path: 'a/../../outside/x', content: 'pwned' }],
      error: /entry "a\/\.\.\/\.\.\/outside\/x": path escapes the layer/,
      errorType: UnsafeLayerError,
    },
    {
      name: 'absolute path',
      entries: [{ type: 'file', path: `${sentinel}/abs`, content: 'pwned' }],
      error: /absolute path/,
      errorType: UnsafeLayerError,
    },
    {
      name: 'symlink then write through it',
      entries: [
        { type: 'symlink', path: 'a', target: sentinel },
        { type: 'file', path: 'a/x', content: 'pwned' },
      ],
      error: /entry "a\/x": path goes through symlink "a"/,
      errorType: UnsafeLayerError,
    },
    {
      name: 'relative symlink then write through it',
      entries: [
        { type: 'dir', path: 'd/' },
        { type: 'symlink', path: 'd/up', target: '../../outside' },
        { type: 'file', path: 'd/up/x', content: 'pwned' },
      ],
      error: /entry "d\/up\/x": path goes through symlink "d\/up"/,
      errorType: UnsafeLayerError,
    },
    {
      name: 'symlink then directory through it',
      entries: [
        { type: 'symlink', path: 'a', target: sentinel },
        { type: 'dir', path: 'a/sub/' },
      ],
      error: /entry "a\/sub\/": path goes through symlink "a"/,
      errorType: UnsafeLayerError,
    },
    {
      name: 'hard link to /etc/passwd',
      entries: [{ type: 'hardlink', path: 'passwd', target: '/etc/passwd' }],
      error: /entry "passwd": hard link target "\/etc\/passwd" is outside the layer/,
      errorType: UnsafeLayerError,
    },
    {
      name: 'hard link to ../x',
      entries: [{ type: 'hardlink', path: 'x', target: '../outside/x' }],
      error: /entry "x": hard link target "\.\.\/outside\/x" is outside the layer/,
      errorType: UnsafeLayerError,
    },
    {
      name: 'hard link through a symlink',
      entries: [
        { type: 'symlink', path: 'l', target: sentinel },
        { type: 'hardlink', path: 'h', target: 'l/x' },
      ],
      error: /entry "h": hard link target "l\/x": path goes through symlink "l"/,
      errorType: UnsafeLayerError,
    },
    {
      name: 'whiteout naming ..',
      entries: [{ type: 'dir', path: 'd/' }, { type: 'file', path: 'd/.wh...', content: '' }],
      error: /whiteout "d\/\.wh\.\.\." names "\.\.", which is not a file name/,
      errorType: UnsafeLayerError,
    },
    {
      name: 'whiteout naming . at the root',
      entries: [{ type: 'file', path: '.wh..', content: '' }],
      error: /names "\."/,
      errorType: UnsafeLayerError,
    },
    {
      name: 'huge header size field',
      entries: [{ type: 'raw', data: tarHeader({ name: 'huge', typeflag: '0', size: big }) }],
      error: /entry "huge": absurd size/,
      errorType: UnsafeLayerError,
    },
    {
      name: 'truncated archive',
      entries: [
        { type: 'file', path: 'ok', content: 'fine' },
        { type: 'file', path: 'big', content: Buffer.alloc(10000, 7) },
      ],
      truncate: 512 * 2 + 512 + 4000,
      error: /truncated tar archive.*"big"/,
      errorType: InvalidLayerError,
    },
    {
      name: 'bogus header',
      entries: [
        { type: 'file', path: 'ok', content: 'fine' },
        { type: 'raw', data: Buffer.alloc(512, 'x') },
      ],
      error: /malformed tar header.*"ok"/,
      errorType: InvalidLayerError,
    },
    {
      name: 'file over a symlink is replaced, not followed — but a later write through the file is still refused',
      entries: [
        { type: 'symlink', path: 'f', target: `${sentinel}/x` },
        { type: 'file', path: 'f', content: 'inside' },
        { type: 'file', path: 'f/y', content: 'pwned' },
      ],
      error: /entry "f\/y": "f" is not a directory/,
      errorType: UnsafeLayerError,
    },
  ];

  for (const c of cases) {
    await t.test(c.name, async () => {
      const store = new ImageStore(storeRoot);
      let bytes = await tarLayer(c.entries);
      if (c.truncate !== undefined) bytes = bytes.subarray(0, c.truncate);
      for (const compression of ['none', 'gzip'] as const) {
        await assert.rejects(applyLayer(store, bytes, compression), (err: unknown) => {
          assert.ok(err instanceof c.errorType, `${compression}: ${String(err)}`);
          assert.match((err as Error).message, c.error);
          assert.match((err as Error).message, /^layer sha256:[0-9a-f]{64}: /);
          return true;
        });
        assert.deepEqual(fs.readdirSync(sentinel), ['x'], 'nothing created outside');
        assert.equal(fs.readFileSync(path.join(sentinel, 'x'), 'utf8'), 'original');
        assert.deepEqual(fs.readdirSync(path.join(storeRoot, 'layers')), ['sha256'], 'temporary layer dir removed');
        assert.deepEqual(fs.readdirSync(path.join(storeRoot, 'layers', 'sha256')), [], 'no layer committed');
      }
    });
  }
});

test('a layer whose content does not match its diff-id is not committed', async (t) => {
  const root = tempRoot(t);
  const store = new ImageStore(root);
  const bytes = await tarLayer([{ type: 'file', path: 'a', content: 'a' }]);
  const wrong = sha256('something else');
  await assert.rejects(
    store.createLayer(wrong, (dir) => unpackLayer(Readable.from([bytes]), dir, { compression: 'none', label: 'layer L' })),
    /diff-id.*digest mismatch: expected sha256:/,
  );
  assert.deepEqual(fs.readdirSync(path.join(root, 'layers')), ['sha256']);
  assert.equal(await store.hasLayer(wrong), false);
});

test('unpack measures digest, diff-id and size while streaming, for gzip, zstd and plain layers', async (t) => {
  const root = tempRoot(t);
  const tarBytes = await tarLayer([
    { type: 'dir', path: 'd/' },
    { type: 'file', path: 'd/f', content: Buffer.alloc(100000, 1) },
    { type: 'file', path: 'g', content: 'hello' },
  ]);
  for (const compression of ['gzip', 'zstd', 'none'] as const) {
    const blob = await compress(tarBytes, compression);
    const dest = fs.mkdtempSync(path.join(root, 'l-'));
    const teed: Buffer[] = [];
    // Small chunks, as the network delivers them.
    const chunks: Buffer[] = [];
    for (let i = 0; i < blob.length; i += 1000) chunks.push(blob.subarray(i, i + 1000));
    const r = await unpackLayer(Readable.from(chunks), dest, {
      compression,
      sink: async (c) => {
        teed.push(Buffer.from(c));
      },
    });
    assert.equal(r.digest, sha256(blob), compression);
    assert.equal(r.diffId, sha256(tarBytes), compression);
    assert.equal(r.compressedSize, blob.length);
    assert.equal(r.size, 100005);
    assert.ok(Buffer.concat(teed).equals(blob), 'the sink saw every compressed byte in order');
    assert.equal(fs.readFileSync(path.join(dest, 'g'), 'utf8'), 'hello');
    assert.equal(fs.statSync(path.join(dest, 'd/f')).size, 100000);
  }
});

test('small files get exactly their mode and owner whatever the umask and setgid directories would give', async (t) => {
  const root = tempRoot(t);
  const store = new ImageStore(path.join(root, 'store'));
  const tarBytes = await tarLayer([
    { type: 'dir', path: 'sg/', mode: 0o2775, uid: 0, gid: 1234 },
    { type: 'file', path: 'sg/root-owned', content: 'a', mode: 0o644 },
    { type: 'file', path: 'sg/other', content: 'b', mode: 0o640, uid: 1000, gid: 1000 },
    { type: 'file', path: 'open', content: 'c', mode: 0o666 },
    { type: 'file', path: 'setuid', content: 'd', mode: 0o4755 },
    { type: 'file', path: 'plain', content: 'e', mode: 0o600 },
    // Files come before their directory's entry in some archives: the bit applies to later files only.
    { type: 'file', path: 'late/f', content: 'f', mode: 0o644 },
    { type: 'dir', path: 'late/', mode: 0o2755, uid: 0, gid: 77 },
    { type: 'file', path: 'late/g', content: 'g', mode: 0o644 },
  ]);
  const dir = await applyLayer(store, tarBytes);
  const expect: Array<[string, number, number, number]> = [
    ['sg/root-owned', 0o644, 0, 0],
    ['sg/other', 0o640, 1000, 1000],
    ['open', 0o666, 0, 0],
    ['setuid', 0o4755, 0, 0],
    ['plain', 0o600, 0, 0],
    ['late/f', 0o644, 0, 0],
    ['late/g', 0o644, 0, 0],
  ];
  for (const [p, mode, uid, gid] of expect) {
    const st = fs.lstatSync(path.join(dir, p));
    assert.deepEqual([st.mode & 0o7777, st.uid, st.gid], [mode, uid, gid], p);
  }
  assert.equal(fs.statSync(path.join(dir, 'sg')).mode & 0o7777, 0o2775);
});

test('corrupt compressed data is a clear error', async (t) => {
  const root = tempRoot(t);
  const tarBytes = await tarLayer([{ type: 'file', path: 'f', content: Buffer.alloc(5000, 3) }]);
  for (const compression of ['gzip', 'zstd'] as const) {
    const blob = Buffer.from(await compress(tarBytes, compression));
    const cut = blob.subarray(0, Math.floor(blob.length / 2));
    const dest = fs.mkdtempSync(path.join(root, 'l-'));
    await assert.rejects(unpackLayer(Readable.from([cut]), dest, { compression, label: 'layer X' }), (err: unknown) => {
      assert.ok(err instanceof InvalidLayerError, `${compression}: ${String(err)}`);
      assert.match((err as Error).message, /^layer X: /);
      return true;
    });
  }
});

interface Expect {
  type: 'file' | 'dir' | 'symlink' | 'fifo' | 'char';
  mode: number;
  uid?: number;
  gid?: number;
  size?: number;
  content?: string;
  target?: string;
  xattrs?: Record<string, string>;
  /** Another path that must be the same inode. */
  sameAs?: string;
  rdev?: [number, number];
}

function describe(p: string): Expect & { ino: number; mtime: number } {
  const st = fs.lstatSync(p);
  const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : 'file';
  const e: Expect & { ino: number; mtime: number } = { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, ino: st.ino, mtime: st.mtimeMs };
  if (type === 'file') e.size = st.size;
  if (type === 'symlink') e.target = fs.readlinkSync(p);
  if (type === 'char') e.rdev = [Math.floor(st.rdev / 256) & 0xfff, st.rdev & 0xff];
  const names = llistxattr(p).filter((n) => !n.startsWith('security.selinux'));
  if (names.length) e.xattrs = Object.fromEntries(names.map((n) => [n, (lgetxattr(p, n) ?? Buffer.alloc(0)).toString('latin1')]));
  return e;
}

test('layers with whiteouts and opaque dirs stack as overlay lowerdirs and show exactly what they mean', async (t) => {
  const root = tempRoot(t);
  const store = new ImageStore(path.join(root, 'store'));
  const longDir = 'deep/' + 'd'.repeat(60) + '/' + 'e'.repeat(60);
  const longName = `${longDir}/${'f'.repeat(40)}.txt`; // > 100 bytes
  const gnuLong = `${longDir}/${'g'.repeat(50)}.txt`;
  const mtime = new Date('2020-02-02T02:02:02Z');

  const base = await tarLayer([
    { type: 'dir', path: 'etc/' },
    { type: 'file', path: 'etc/a', content: 'a1' },
    { type: 'file', path: 'etc/b', content: 'b1' },
    { type: 'dir', path: 'opq/' },
    { type: 'file', path: 'opq/old', content: 'old' },
    { type: 'dir', path: 'opq/sub/' },
    { type: 'file', path: 'opq/sub/old2', content: 'old2' },
    { type: 'dir', path: 'gone/' },
    { type: 'file', path: 'gone/f', content: 'x' },
    { type: 'file', path: 'replaced', content: 'was a file' },
    { type: 'dir', path: 'tmp/', mode: 0o1777 },
  ]);
  const middle = await tarLayer([
    { type: 'dir', path: 'etc/' },
    { type: 'file', path: 'etc/.wh.a', content: '' },
    { type: 'file', path: 'etc/c', content: 'c2', mode: 0o640 },
    { type: 'hardlink', path: 'etc/c-link', target: 'etc/c' },
    { type: 'dir', path: 'opq/' },
    { type: 'file', path: 'opq/.wh..wh..opq', content: '' },
    { type: 'file', path: 'opq/new', content: 'new' },
    { type: 'symlink', path: 'rel', target: 'etc/b' },
    { type: 'symlink', path: 'abs', target: '/etc/b' },
    { type: 'dir', path: 'bin/' },
    { type: 'file', path: 'bin/su', content: '#!/bin/sh\n', mode: 0o4755 },
    { type: 'file', path: 'bin/sg', content: '#!/bin/sh\n', mode: 0o2755, gid: 50 },
    { type: 'dir', path: 'home/user/', uid: 1000, gid: 1000, mode: 0o700, mtime },
    { type: 'file', path: 'home/user/f', content: 'mine', uid: 1000, gid: 1000, mode: 0o600 },
    { type: 'fifo', path: 'fifo', mode: 0o620 },
    { type: 'char', path: 'null', major: 1, minor: 3, mode: 0o666 },
    { type: 'file', path: 'attr', content: 'x', xattrs: { 'user.capsa': 'hello', 'trusted.overlay.opaque': 'y' } },
    { type: 'file', path: longName, content: 'long pax name' },
    { type: 'file', path: gnuLong, content: 'long gnu name', longNames: 'gnu' },
    { type: 'symlink', path: 'longlink', target: longName, longNames: 'gnu' },
    { type: 'dir', path: 'replaced/' },
    { type: 'file', path: '.wh.gone', content: '' },
    { type: 'file', path: '.wh..wh.plnk/1234', content: 'aufs' },
  ]);
  const top = await tarLayer([
    { type: 'file', path: 'etc/b', content: 'b3 replaced' },
    { type: 'file', path: 'opq/.wh.new', content: '' },
    // Real layers carry their parent directories; one left out would be made 0755.
    { type: 'dir', path: 'tmp/', mode: 0o1777 },
    { type: 'file', path: 'tmp/t', content: 't', mode: 0o644 },
  ]);

  const l1 = await applyLayer(store, base, 'gzip');
  const l2 = await applyLayer(store, middle, 'zstd');
  const l3 = await applyLayer(store, top, 'none');

  // The middle layer's own directory holds overlay's forms of the whiteouts.
  assert.equal(describe(path.join(l2, 'etc/a')).type, 'char');
  assert.deepEqual(describe(path.join(l2, 'etc/a')).rdev, [0, 0]);
  assert.equal(lgetxattr(path.join(l2, 'opq'), 'trusted.overlay.opaque')?.toString(), 'y');
  assert.equal(lgetxattr(path.join(l2, 'attr'), 'trusted.overlay.opaque'), undefined, 'layer content cannot set trusted.* xattrs');
  assert.ok(!fs.existsSync(path.join(l2, '.wh..wh.plnk')), 'aufs bookkeeping skipped');
  assert.equal(describe(path.join(l2, 'home/user')).mtime, mtime.getTime(), 'directory mtime set after its contents');

  const mnt = path.join(root, 'mnt');
  fs.mkdirSync(mnt);
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${[l3, l2, l1].join(':')}`, mnt]);
  try {
    checkTree(mnt);
  } finally {
    execFileSync('umount', [mnt]);
  }
});

function checkTree(mnt: string): void {
  const longDir = 'deep/' + 'd'.repeat(60) + '/' + 'e'.repeat(60);
  const longName = `${longDir}/${'f'.repeat(40)}.txt`;
  const gnuLong = `${longDir}/${'g'.repeat(50)}.txt`;

  const expected: Record<string, Expect> = {
    abs: { type: 'symlink', mode: 0o777, target: '/etc/b' },
    attr: { type: 'file', mode: 0o644, content: 'x', xattrs: { 'user.capsa': 'hello' } },
    bin: { type: 'dir', mode: 0o755 },
    'bin/sg': { type: 'file', mode: 0o2755, gid: 50, content: '#!/bin/sh\n' },
    'bin/su': { type: 'file', mode: 0o4755, content: '#!/bin/sh\n' },
    deep: { type: 'dir', mode: 0o755 },
    [`deep/${'d'.repeat(60)}`]: { type: 'dir', mode: 0o755 },
    [longDir]: { type: 'dir', mode: 0o755 },
    [gnuLong]: { type: 'file', mode: 0o644, content: 'long gnu name' },
    [longName]: { type: 'file', mode: 0o644, content: 'long pax name' },
    etc: { type: 'dir', mode: 0o755 },
    'etc/b': { type: 'file', mode: 0o644, content: 'b3 replaced' },
    'etc/c': { type: 'file', mode: 0o640, content: 'c2' },
    'etc/c-link': { type: 'file', mode: 0o640, content: 'c2', sameAs: 'etc/c' },
    fifo: { type: 'fifo', mode: 0o620 },
    home: { type: 'dir', mode: 0o755 },
    'home/user': { type: 'dir', mode: 0o700, uid: 1000, gid: 1000 },
    'home/user/f': { type: 'file', mode: 0o600, uid: 1000, gid: 1000, content: 'mine' },
    longlink: { type: 'symlink', mode: 0o777, target: longName },
    null: { type: 'char', mode: 0o666, rdev: [1, 3] },
    opq: { type: 'dir', mode: 0o755 },
    rel: { type: 'symlink', mode: 0o777, target: 'etc/b' },
    replaced: { type: 'dir', mode: 0o755 },
    tmp: { type: 'dir', mode: 0o1777 },
    'tmp/t': { type: 'file', mode: 0o644, content: 't' },
  };
  const seen = listTree(mnt);
  assert.deepEqual(seen, Object.keys(expected).sort(), 'the visible tree has exactly the expected paths');
  for (const [rel, want] of Object.entries(expected)) {
    const p = path.join(mnt, rel);
    const got = describe(p);
    assert.equal(got.type, want.type, rel);
    if (want.type !== 'symlink') assert.equal(got.mode.toString(8), want.mode.toString(8), `${rel} mode`);
    assert.equal(got.uid, want.uid ?? 0, `${rel} uid`);
    assert.equal(got.gid, want.gid ?? 0, `${rel} gid`);
    if (want.content !== undefined) {
      assert.equal(fs.readFileSync(p, 'utf8'), want.content, rel);
      assert.equal(got.size, Buffer.byteLength(want.content), `${rel} size`);
    }
    assert.equal(got.target, want.target, `${rel} link target`);
    assert.deepEqual(got.xattrs, want.xattrs, `${rel} xattrs`);
    if (want.rdev) assert.deepEqual(got.rdev, want.rdev, `${rel} device numbers`);
    if (want.sameAs) assert.equal(got.ino, describe(path.join(mnt, want.sameAs)).ino, `${rel} is a hard link of ${want.sameAs}`);
    if (want.type === 'file' && rel.startsWith('etc/c')) assert.equal(got.mtime, FIXED_MTIME.getTime(), `${rel} mtime`);
  }
}

test('layers unpacked side by side, each with large files, get exactly their own contents', async (t) => {
  const root = tempRoot(t);
  const store = new ImageStore(root);
  // large files stream through the one file writer the whole process shares
  const layer = (seed: number) =>
    tarLayer(
      Array.from({ length: 4 }, (_, i) => ({
        type: 'file' as const,
        path: `data/big${i}`,
        content: Buffer.alloc(600_000 + i * 1000, seed * 16 + i),
        mode: 0o640,
      })),
    );
  const tars = await Promise.all([1, 2, 3].map(layer));
  const dirs = await Promise.all(tars.map((tar) => applyLayer(store, tar)));
  dirs.forEach((dir, l) => {
    for (let i = 0; i < 4; i++) {
      const file = path.join(dir, 'data', `big${i}`);
      assert.deepEqual(fs.readFileSync(file), Buffer.alloc(600_000 + i * 1000, (l + 1) * 16 + i), file);
      assert.equal(fs.statSync(file).mode & 0o7777, 0o640);
    }
  });
});

test('a cancelled unpack in the middle of a large file leaves the next one whole', async (t) => {
  const root = tempRoot(t);
  const big = await tarLayer([{ type: 'file', path: 'big', content: Buffer.alloc(3_000_000, 7) }]);
  const ac = new AbortController();
  // the archive arrives slowly: the cancel lands while the file is open in the writer
  async function* slow(): AsyncGenerator<Buffer> {
    for (let off = 0; off < big.length; off += 256 * 1024) {
      yield big.subarray(off, off + 256 * 1024);
      if (off >= 1024 * 1024) ac.abort();
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  fs.mkdirSync(path.join(root, 'a'));
  await assert.rejects(unpackLayer(slow(), path.join(root, 'a'), { compression: 'none', signal: ac.signal }), /cancel/i);
  const next = await tarLayer([{ type: 'file', path: 'big', content: Buffer.alloc(2_000_000, 9) }]);
  fs.mkdirSync(path.join(root, 'b'));
  await unpackLayer(Readable.from([next]), path.join(root, 'b'), { compression: 'none' });
  assert.deepEqual(fs.readFileSync(path.join(root, 'b', 'big')), Buffer.alloc(2_000_000, 9));
});
