/**
 * COPY's file rules (server/build/copy.ts), on real directories: what Docker
 * does with a directory source, wildcards, the destination's parents and
 * owners. The comparison with podman build is build-compare.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { copyInto, walkTree, type CopySpec, type ExistingDir } from '../../server/build/copy';

const loc = { file: 'Dockerfile', line: 2 };

function tree(files: Record<string, string>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-copy-src-'));
  for (const [p, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), content);
  }
  return root;
}

async function copy(src: string, spec: Partial<CopySpec> & { sources: string[]; dest: string }, existing?: ExistingDir): Promise<string> {
  const upper = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-copy-upper-'));
  await copyInto(src, await walkTree(src), { exclude: [], loc, destIsDir: false, ...spec }, upper, existing);
  return upper;
}

const list = (root: string): string[] => {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const n of fs.readdirSync(path.join(root, rel)).sort()) {
      const p = rel ? `${rel}/${n}` : n;
      const st = fs.lstatSync(path.join(root, p));
      out.push(`${p} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk('');
  return out;
};

test("a directory source gives its contents: the new destination is 0755 and root's, not the source directory's", { skip: process.getuid?.() !== 0 && 'needs root (chown)' }, async (t) => {
  const src = tree({ 'out/o': 'o' });
  fs.chmodSync(path.join(src, 'out'), 0o700);
  fs.chownSync(path.join(src, 'out'), 1000, 1000);
  fs.chmodSync(path.join(src, 'out/o'), 0o644);
  const upper = await copy(src, { sources: ['out'], dest: '/app/out' });
  t.after(() => [src, upper].forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  assert.deepEqual(list(upper), ['app 755 0:0', 'app/out 755 0:0', 'app/out/o 644 0:0']);
});

test('wildcards: matched directories merge their contents; one matched file to a name without / is that file', { skip: process.getuid?.() !== 0 && 'needs root (chown)' }, async (t) => {
  const src = tree({ 'dir/a': 'a', 'dor/b': 'b', 'one.txt': '1' });
  for (const f of ['dir/a', 'dor/b', 'one.txt']) fs.chmodSync(path.join(src, f), 0o644);
  const merged = await copy(src, { sources: ['d?r'], dest: '/g/' });
  const single = await copy(src, { sources: ['o*.txt'], dest: '/single.txt' });
  t.after(() => [src, merged, single].forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  assert.deepEqual(list(merged), ['g 755 0:0', 'g/a 644 0:0', 'g/b 644 0:0']);
  assert.deepEqual(list(single), ['single.txt 644 0:0']);
});

test("existing directories keep the image's owner and mode; missing parents are --chown's; --from keeps owners", { skip: process.getuid?.() !== 0 && 'needs root (chown)' }, async (t) => {
  const src = tree({ 'a.txt': 'a' });
  fs.chmodSync(path.join(src, 'a.txt'), 0o644);
  fs.chownSync(path.join(src, 'a.txt'), 1234, 4321);
  const existing: ExistingDir = async (rel) => (rel === 'tmp' ? { mode: 0o1777, uid: 0, gid: 0 } : undefined);
  const intoTmp = await copy(src, { sources: ['a.txt'], dest: '/tmp', destIsDir: true }, existing);
  const chowned = await copy(src, { sources: ['a.txt'], dest: '/tmp/new/a.txt', chown: '1000:1000' }, existing);
  const kept = await copy(src, { sources: ['a.txt'], dest: '/k/', preserveOwner: true }, existing);
  t.after(() => [src, intoTmp, chowned, kept].forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  assert.deepEqual(list(intoTmp), ['tmp 1777 0:0', 'tmp/a.txt 644 0:0']);
  assert.deepEqual(list(chowned), ['tmp 1777 0:0', 'tmp/new 755 1000:1000', 'tmp/new/a.txt 644 1000:1000']);
  assert.deepEqual(list(kept), ['k 755 0:0', 'k/a.txt 644 1234:4321']);
});

test("--from a layer's tree: a file whose owner and mode stay is a hard link to the layer's, and every entry keeps its mtime", { skip: process.getuid?.() !== 0 && 'needs root (chown)' }, async (t) => {
  const layer = tree({ 'app/a.txt': 'a', 'app/sub/b.txt': 'b' });
  const old = new Date('2020-01-02T03:04:05Z');
  for (const p of ['app/a.txt', 'app/sub/b.txt', 'app/sub', 'app']) fs.utimesSync(path.join(layer, p), old, old);
  const m = await walkTree(layer, [layer]);
  const linked = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-copy-upper-'));
  const chowned = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-copy-upper-'));
  t.after(() => [layer, linked, chowned].forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  await copyInto(layer, m, { sources: ['app'], exclude: [], dest: '/app', loc, destIsDir: false, preserveOwner: true }, linked);
  await copyInto(layer, m, { sources: ['app'], exclude: [], dest: '/app', loc, destIsDir: false, preserveOwner: true, chown: '1000:1000' }, chowned);
  assert.equal(fs.statSync(path.join(linked, 'app/sub/b.txt')).ino, fs.statSync(path.join(layer, 'app/sub/b.txt')).ino);
  assert.equal(fs.readFileSync(path.join(chowned, 'app/sub/b.txt'), 'utf8'), 'b');
  assert.notEqual(fs.statSync(path.join(chowned, 'app/sub/b.txt')).ino, fs.statSync(path.join(layer, 'app/sub/b.txt')).ino, '--chown copies');
  assert.equal(fs.statSync(path.join(layer, 'app/sub/b.txt')).uid, 0, "the layer's file keeps its owner");
  for (const up of [linked, chowned]) for (const p of ['app/a.txt', 'app/sub/b.txt', 'app/sub']) assert.equal(fs.lstatSync(path.join(up, p)).mtimeMs, old.getTime(), `${p} keeps its mtime`);
});

test('a link a source made is never written through: a later source replaces it with its directory', { skip: process.getuid?.() !== 0 && 'needs root (chown)' }, async (t) => {
  const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-copy-outside-'));
  const src = tree({ 'b/x/file': 'f' });
  fs.mkdirSync(path.join(src, 'a'));
  fs.symlinkSync(outside, path.join(src, 'a/x'));
  const upper = await copy(src, { sources: ['a', 'b'], dest: '/d/' });
  t.after(() => [outside, src, upper].forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  assert.deepEqual(fs.readdirSync(outside), []);
  assert.ok(fs.lstatSync(path.join(upper, 'd/x')).isDirectory());
  assert.equal(fs.readFileSync(path.join(upper, 'd/x/file'), 'utf8'), 'f');
});
