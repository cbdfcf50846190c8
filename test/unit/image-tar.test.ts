/**
 * The layer tar reader against archives written by GNU tar in its pax, gnu
 * and ustar formats: names, links, owners, xattrs with arbitrary bytes, and
 * the broken archives a registry can serve (bad checksum, truncation,
 * sparse entries).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TarReader, type TarHeader } from '../../server/image/tar';
import { InvalidLayerError } from '../../server/image/errors';

interface Read {
  header: TarHeader;
  data: Buffer;
}

async function* pieces(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function readAll(tar: Buffer, chunk = 64 * 1024): Promise<Read[]> {
  const out: Read[] = [];
  for await (const e of new TarReader(pieces(tar, chunk))) {
    const parts: Buffer[] = [];
    for await (const p of e.body()) parts.push(p);
    out.push({ header: e.header, data: Buffer.concat(parts) });
  }
  return out;
}

/** A scratch directory with `files` in it, tarred by GNU tar with `args`. */
function gnuTar(t: { after(fn: () => void): void }, args: string[], make: (dir: string) => void, members = ['.']): Buffer {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-tar-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  make(src);
  const out = path.join(dir, 'out.tar');
  execFileSync('tar', ['-cf', out, '-C', src, ...args, ...members]);
  return fs.readFileSync(out);
}

function byName(entries: Read[], name: string): Read {
  const e = entries.find((x) => x.header.name === name);
  assert.ok(e, `entry ${name} in ${entries.map((x) => x.header.name).join(', ')}`);
  return e;
}

const CAP = Buffer.from('0100000200200080000000000000000000000000', 'hex');
const BINARY = Buffer.from([0xff, 0x00, 0xfe, 0x80, 0xc3]);

test('pax xattrs keep every byte of their values, security.capability included', async (t) => {
  const tar = gnuTar(t, ['--format=pax', '--xattrs', '--xattrs-include=*'], (d) => {
    fs.writeFileSync(path.join(d, 'ping'), 'x');
    // A capability set holding bit 31 (cap_setfcap): byte 0x80, which is not UTF-8.
    execFileSync('setcap', ['cap_setfcap,cap_net_raw+ep', path.join(d, 'ping')]);
    execFileSync('python3', ['-c', `import os; os.setxattr(${JSON.stringify(path.join(d, 'ping'))}, 'user.bin', bytes.fromhex('${BINARY.toString('hex')}'))`]);
  }, ['ping']);
  const [e] = await readAll(tar);
  assert.equal(e.header.name, 'ping');
  const x = new Map(e.header.xattrs);
  assert.deepEqual(x.get('security.capability'), CAP);
  assert.deepEqual(x.get('user.bin'), BINARY);
  assert.equal(e.data.toString(), 'x');
});

test('long names and link targets arrive whole in gnu (L/K records) and pax (path/linkpath) formats', async (t) => {
  const deep = Array.from({ length: 6 }, (_, i) => `directory-level-${i}-${'n'.repeat(40)}`).join('/');
  const target = `${'t'.repeat(180)}/target`;
  for (const format of ['gnu', 'pax']) {
    const tar = gnuTar(t, [`--format=${format}`], (d) => {
      fs.mkdirSync(path.join(d, deep), { recursive: true });
      fs.writeFileSync(path.join(d, deep, 'file'), 'deep');
      fs.symlinkSync(target, path.join(d, deep, 'link'));
    });
    const entries = await readAll(tar);
    assert.equal(byName(entries, `./${deep}/file`).data.toString(), 'deep', format);
    const link = byName(entries, `./${deep}/link`);
    assert.equal(link.header.type, 'symlink', format);
    assert.equal(link.header.linkname, target, format);
    assert.ok(!entries.some((e) => e.header.type.startsWith('gnu-long') || e.header.type.startsWith('pax')), 'meta headers are not entries');
  }
});

test('ustar names split across prefix and name are joined', async (t) => {
  const dir = `${'p'.repeat(120)}`;
  const tar = gnuTar(t, ['--format=ustar'], (d) => {
    fs.mkdirSync(path.join(d, dir));
    fs.writeFileSync(path.join(d, dir, 'name.txt'), 'split');
  }, [`${dir}/name.txt`]);
  assert.equal(tar.subarray(345, 345 + dir.length).toString(), dir, 'GNU tar used the prefix field');
  const [e] = await readAll(tar);
  assert.equal(e.header.name, `${dir}/name.txt`);
  assert.equal(e.data.toString(), 'split');
});

test('owner ids past the octal field are read from base-256 (gnu) and from pax records', async (t) => {
  for (const format of ['gnu', 'pax']) {
    const tar = gnuTar(t, [`--format=${format}`, '--owner=big:3000000000', '--group=big:4000000000', '--mtime=@1700000000'], (d) => fs.writeFileSync(path.join(d, 'f'), 'o'), ['f']);
    if (format === 'gnu') assert.equal(tar[108] & 0x80, 0x80, 'uid written in base-256');
    const [e] = await readAll(tar);
    assert.equal(e.header.uid, 3000000000, format);
    assert.equal(e.header.gid, 4000000000, format);
    assert.equal(Math.floor(e.header.mtime), 1700000000, format);
  }
});

test('a global pax header applies to the entries after it', async (t) => {
  const tar = gnuTar(t, ['--format=pax', '--pax-option=comment=from-global'], (d) => fs.writeFileSync(path.join(d, 'f'), 'g'), ['f']);
  assert.equal(String.fromCharCode(tar[156]), 'g', 'the archive starts with a global header');
  const [e] = await readAll(tar);
  assert.equal(e.header.name, 'f');
  assert.equal(e.header.pax.get('comment')?.toString(), 'from-global');
});

test('entry types, sizes and modes come through, and the end-of-archive blocks end the stream', async (t) => {
  const tar = gnuTar(t, ['--format=pax'], (d) => {
    fs.mkdirSync(path.join(d, 'dir'), { mode: 0o750 });
    fs.chmodSync(path.join(d, 'dir'), 0o750);
    fs.writeFileSync(path.join(d, 'dir', 'big'), Buffer.alloc(700_001, 3));
    fs.chmodSync(path.join(d, 'dir', 'big'), 0o4755);
    fs.linkSync(path.join(d, 'dir', 'big'), path.join(d, 'hard'));
    execFileSync('mkfifo', [path.join(d, 'fifo')]);
  }, ['dir', 'hard', 'fifo']);
  // GNU tar pads the archive to a 10 KiB record after its two zero blocks.
  assert.equal(tar.length % 10240, 0);
  const entries = await readAll(tar);
  assert.deepEqual(entries.map((e) => [e.header.name, e.header.type]), [
    ['dir/', 'directory'],
    ['dir/big', 'file'],
    ['hard', 'link'],
    ['fifo', 'fifo'],
  ]);
  assert.equal(byName(entries, 'dir/').header.mode & 0o7777, 0o750);
  const big = byName(entries, 'dir/big');
  assert.equal(big.header.mode & 0o7777, 0o4755);
  assert.deepEqual(big.data, Buffer.alloc(700_001, 3));
  assert.equal(byName(entries, 'hard').header.linkname, 'dir/big');
});

test('the same entries come out whatever the chunk boundaries, and file data is not copied', async (t) => {
  const tar = gnuTar(t, ['--format=pax', '--xattrs', '--xattrs-include=*'], (d) => {
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(d, `f${i}-${'l'.repeat(i * 9)}`), Buffer.alloc(i * 97, i));
    execFileSync('python3', ['-c', `import os; os.setxattr(${JSON.stringify(path.join(d, 'f3-' + 'l'.repeat(27)))}, 'user.bin', bytes.fromhex('${BINARY.toString('hex')}'))`]);
  });
  const whole = await readAll(tar, tar.length);
  for (const size of [1, 7, 511, 512, 513, 4096]) {
    const split = await readAll(tar, size);
    assert.deepEqual(split.map((e) => [e.header.name, e.data, e.header.xattrs]), whole.map((e) => [e.header.name, e.data, e.header.xattrs]), `chunks of ${size}`);
  }
  // One chunk in: every piece of data out is a view of it.
  const input = Buffer.from(tar);
  for await (const e of new TarReader(pieces(input, input.length))) {
    for await (const p of e.body()) assert.equal(p.buffer, input.buffer, `${e.header.name}: a subarray of the input`);
  }
});

test('a header with a wrong checksum is refused, naming the entry before it', async (t) => {
  const tar = gnuTar(t, ['--format=ustar'], (d) => {
    fs.writeFileSync(path.join(d, 'a'), 'first');
    fs.writeFileSync(path.join(d, 'b'), 'second');
  }, ['a', 'b']);
  tar[1024] = 'c'.charCodeAt(0); // b's name, its checksum unchanged
  await assert.rejects(readAll(tar), (err: Error) => {
    assert.ok(err instanceof InvalidLayerError);
    assert.match(err.message, /malformed tar header at offset 1024 \(in or after entry "a"\): checksum mismatch/);
    return true;
  });
});

test('truncated archives are refused: inside a file, inside a header, inside or after a pax header', async (t) => {
  const tar = gnuTar(t, ['--format=pax'], (d) => {
    fs.writeFileSync(path.join(d, 'a'), 'first');
    fs.writeFileSync(path.join(d, `b-${'x'.repeat(150)}`), Buffer.alloc(5000, 1));
  }, ['a', `b-${'x'.repeat(150)}`]);
  // GNU tar gives each entry a pax header (its sub-second mtime): a's at 0,
  // a at 1024, its data at 1536; b's pax header at 2048, b at 3072, its data at 3584.
  assert.equal(tar.subarray(3072, 3074).toString(), 'b-');
  const cases: Array<[number, RegExp]> = [
    [3584 + 1000, /truncated tar archive in entry "b-x+"/],
    [1536 + 2, /truncated tar archive in entry "a"/],
    [3072 + 100, /truncated tar archive after entry "a"/],
    [2560 + 10, /truncated tar archive after entry "a"/],
    [3072, /truncated tar archive after entry "a"/],
  ];
  for (const [at, want] of cases) {
    await assert.rejects(readAll(tar.subarray(0, at)), (err: Error) => {
      assert.ok(err instanceof InvalidLayerError, `cut at ${at}: ${err}`);
      assert.match(err.message, want, `cut at ${at}`);
      return true;
    });
  }
  // Cut at an entry boundary with no end-of-archive blocks: what is there is read.
  assert.deepEqual((await readAll(tar.subarray(0, 2048))).map((e) => e.header.name), ['a']);
});

test('sparse files are refused by name, in gnu (type S) and pax (GNU.sparse records) formats', async (t) => {
  for (const format of ['gnu', 'pax']) {
    const tar = gnuTar(t, [`--format=${format}`, '--sparse'], (d) => {
      fs.writeFileSync(path.join(d, 'hole'), '');
      fs.truncateSync(path.join(d, 'hole'), 8 * 1024 * 1024);
      fs.writeFileSync(path.join(d, 'hole'), 'data at the start', { flag: 'r+' });
    }, ['hole']);
    await assert.rejects(readAll(tar), (err: Error) => {
      assert.ok(err instanceof InvalidLayerError, format);
      assert.match(err.message, /entry "hole": sparse files are not supported/, format);
      return true;
    });
  }
});

test('a block that is not a tar header is refused as an unknown format', async () => {
  const block = Buffer.alloc(1024);
  block.write('not a tar', 0);
  // A valid checksum over a block with no ustar magic.
  let sum = 8 * 32;
  for (let i = 0; i < 512; i++) if (i < 148 || i >= 156) sum += block[i];
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  await assert.rejects(readAll(block), /malformed tar header at offset 0: unknown format/);
});
