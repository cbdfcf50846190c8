/**
 * The build context: the directory walk (the user's side) and the tar
 * stream (the helper's side) give the same manifest, .dockerignore is
 * honoured, symlinks are entries and are resolved only inside the context,
 * hostile tar names are refused, and 100,000 files are read in bounded time
 * and memory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { readContextDir, readContextTar, resolveInContext, spoolContextTar, tarPath } from '../../server/build/context';
import { packContext } from '../../server/build/contextpack';
import { selectSources } from '../../server/build/cachekey';
import { BuildContextError } from '../../server/build/errors';

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-ctx-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function tree(root: string, files: Record<string, string>, links: Record<string, string> = {}): void {
  for (const [p, c] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), c);
  }
  for (const [p, target] of Object.entries(links)) {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.symlinkSync(target, path.join(root, p));
  }
}

const sha = (s: string): string => 'sha256:' + createHash('sha256').update(s).digest('hex');

test('context: the walk lists files, directories and links with modes and content digests, sorted, ignoring what .dockerignore says', async (t) => {
  const root = tmp(t);
  tree(root, { 'Dockerfile': 'FROM a', 'src/a.ts': 'A', 'src/b.log': 'B', 'c.log': 'C', 'node_modules/x/i.js': 'X', 'docs/keep.md': 'K', 'docs/drop.md': 'D' }, { 'src/link': 'a.ts' });
  fs.chmodSync(path.join(root, 'src/a.ts'), 0o755);
  const m = await readContextDir(root, { ignore: ['*.log', 'node_modules', 'docs', '!docs/keep.md'] });
  assert.deepEqual(m.map((e) => [e.path, e.type]), [
    ['Dockerfile', 'file'], ['docs/keep.md', 'file'], ['src', 'dir'], ['src/a.ts', 'file'], ['src/b.log', 'file'], ['src/link', 'symlink'],
  ]);
  const a = m.find((e) => e.path === 'src/a.ts')!;
  assert.equal(a.mode, 0o755);
  assert.equal(a.digest, sha('A'));
  assert.equal(a.size, 1);
  assert.equal(m.find((e) => e.path === 'src/link')!.linkTarget, 'a.ts');
  assert.ok(!('mtime' in a), 'no mtime is recorded');
});

test('context: a symlink to /etc is an entry; resolving through it stays in the context and finds nothing', async (t) => {
  const root = tmp(t);
  tree(root, { 'f': 'x', 'etc/hostname': 'in-context' }, { 'hostetc': '/etc', 'up': '../../../../etc', 'abs': '/etc/hostname' });
  const m = await readContextDir(root);
  const link = m.find((e) => e.path === 'hostetc')!;
  assert.equal(link.type, 'symlink');
  assert.equal(link.linkTarget, '/etc');
  assert.equal(resolveInContext(m, 'hostetc/passwd'), undefined, '/etc/passwd of the host is not reachable');
  assert.deepEqual(resolveInContext(m, 'abs')?.path, 'etc/hostname', 'an absolute target starts at the context root');
  assert.deepEqual(resolveInContext(m, 'up/hostname')?.path, 'etc/hostname', '.. stops at the root');
  assert.throws(() => selectSources(m, ['hostetc/passwd'], []), (err: unknown) => err instanceof BuildContextError && /"\/hostetc\/passwd": not found in the build context/.test(err.message));
  const sel = selectSources(m, ['abs'], []);
  assert.equal(sel[0].entry.path, 'etc/hostname');
  assert.equal(sel[0].entry.digest, sha('in-context'));
});

test('context: a symlink loop is an error, not a hang', async (t) => {
  const root = tmp(t);
  tree(root, {}, { a: 'b', b: 'a' });
  const m = await readContextDir(root);
  assert.throws(() => resolveInContext(m, 'a/x'), /too many levels of symbolic links/);
});

test('context: the tar the user side streams gives the same manifest as the walk', async (t) => {
  const root = tmp(t);
  tree(root, { 'a/b/c.txt': 'hello', 'top': 'x'.repeat(200000), 'skip.log': 'no' }, { 'a/l': 'b/c.txt' });
  const walk = await readContextDir(root, { ignore: ['*.log'] });
  const tarProc = spawn('tar', ['-C', root, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const fromTar = await readContextTar(tarProc.stdout, { ignore: ['*.log'] });
  const strip = (m: typeof walk): unknown => m.map(({ uid: _u, gid: _g, ...rest }) => (void _u, void _g, rest));
  assert.deepEqual(strip(fromTar), strip(walk));
});

test('context: the user side packs what it listed (no hashing there), the helper reads it back to the same manifest, ids 0', async (t) => {
  const root = tmp(t);
  tree(root, { 'a/b/c.txt': 'hello', 'big': 'y'.repeat(300000), 'x.log': 'no' }, { 'a/l': '/etc/passwd' });
  fs.chmodSync(path.join(root, 'big'), 0o700);
  const listed = await readContextDir(root, { ignore: ['*.log'], hash: false });
  assert.equal(listed.find((e) => e.path === 'big')!.digest, undefined);
  const helper = await readContextTar(packContext(root, listed));
  const hashed = await readContextDir(root, { ignore: ['*.log'] });
  assert.deepEqual(helper, hashed.map((e) => ({ ...e, uid: 0, gid: 0 })));
});

test('context: tar entries that would leave the context are refused', async () => {
  for (const name of ['../x', '/etc/passwd', 'a/../../x']) {
    assert.throws(() => tarPath(name), /would land outside the context/);
  }
  assert.equal(tarPath('./a/b/'), 'a/b');
  const header = Buffer.alloc(512);
  header.write('../evil', 0);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write('00000000000\0', 124);
  header.write('00000000000\0', 136);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  header.fill(' ', 148, 156);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  await assert.rejects(readContextTar(Readable.from([Buffer.concat([header, Buffer.alloc(1024)])])), /would land outside the context/);
});

test('context: 100,000 small files are read with bounded memory and in linear time', async (t) => {
  const ctx = tmp(t);
  for (let d = 0; d < 100; d++) {
    fs.mkdirSync(path.join(ctx, `d${d}`));
    for (let f = 0; f < 1000; f++) fs.writeFileSync(path.join(ctx, `d${d}`, `f${f}`), `${d}-${f}`);
  }
  global.gc?.();
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = Date.now();
  const m = await readContextDir(ctx, { ignore: ['d99'] });
  const ms = Date.now() - t0;
  const grew = process.memoryUsage().heapUsed - heap0;
  assert.equal(m.length, 99 * 1000 + 99);
  assert.equal(m.find((e) => e.path === 'd5/f7')!.digest, sha('5-7'));
  console.log(`# 100,000 files: ${m.length} entries in ${ms} ms, heap grew ${(grew / 1048576).toFixed(1)} MiB (the manifest)`);
  // a bound that catches a walk gone quadratic (minutes), not a loaded machine: about 2 s quiet, 23 s seen at load 12
  assert.ok(ms < 90000, `took ${ms} ms`);
  assert.ok(grew < 100 * 1048576, `heap grew ${grew} bytes`);
});

test('context: the helper spools the tar and writes out only the files a step reads, byte for byte, each once', async (t) => {
  const root = tmp(t);
  const big = 'z'.repeat(3 * 1024 * 1024 + 17); // more than one spool read
  tree(root, { 'src/a.js': 'A', 'src/sub/b.js': 'B', 'lib/c.js': 'C', 'big.bin': big }, { 'src/l': 'a.js' });
  const listed = await readContextDir(root, { hash: false });
  const into = path.join(tmp(t), 'ctx');
  const ctx = await spoolContextTar(packContext(root, listed), into);
  assert.deepEqual(ctx.manifest, (await readContextDir(root)).map((e) => ({ ...e, uid: 0, gid: 0 })));
  assert.deepEqual(fs.readdirSync(into), [], 'nothing is unpacked until a step asks');
  const wrote = await ctx.stage(selectSources(ctx.manifest, ['src', 'big.bin'], []).map((f) => f.entry));
  assert.equal(wrote, 3);
  assert.equal(fs.readFileSync(path.join(into, 'src/sub/b.js'), 'utf8'), 'B');
  assert.equal(fs.readFileSync(path.join(into, 'big.bin'), 'utf8'), big);
  assert.equal(fs.existsSync(path.join(into, 'lib/c.js')), false, 'a file no step reads is not written');
  assert.equal(await ctx.stage(selectSources(ctx.manifest, ['src'], []).map((f) => f.entry)), 0, 'a file already written is not written again');
});
