/**
 * The builder's own checks on hostile input, without a helper: a context
 * tar may not put an entry under a link or a file, nor declare more than
 * the disk holds; a copy never writes through a link an earlier source
 * made; a Dockerfile has at most LIMITS.dockerfile.entries instructions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { readContextTar, spoolContextTar } from '../../server/build/context';
import { mkdirParents } from '../../server/build/copy';
import { parseDockerfile } from '../../server/build/dockerfile/parser';
import { LIMITS } from '../../server/limits';
import { tarHeader, tarLayer } from '../helpers/oci';

test('a context tar entry under a symlink or a file is refused naming both', async () => {
  for (const [entries, says] of [
    [[{ type: 'symlink' as const, path: 'a', target: '/etc' }, { type: 'file' as const, path: 'a/passwd', content: 'x' }], /"a\/passwd" lies under "a", which is a symlink/],
    [[{ type: 'symlink' as const, path: 'a', target: '/etc' }, { type: 'file' as const, path: 'a/b/c', content: 'x' }], /"a\/b\/c" lies under "a", which is a symlink/],
    [[{ type: 'file' as const, path: 'f', content: 'x' }, { type: 'dir' as const, path: 'f/d' }], /"f\/d" lies under "f", which is a file/],
  ] as const) {
    await assert.rejects(readContextTar(Readable.from([await tarLayer([...entries])])), says);
  }
  const fine = await readContextTar(Readable.from([await tarLayer([{ type: 'dir', path: 'a' }, { type: 'file', path: 'a/b', content: 'x' }, { type: 'symlink', path: 'l', target: 'a' }])]));
  assert.deepEqual(fine.map((e) => e.path), ['a', 'a/b', 'l']);
});

test('a context tar that declares more file bytes than the disk has free is refused before its content is read', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-unit-spool-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const pax = (k: string, v: string): Buffer => {
    const rest = ` ${k}=${v}\n`;
    let len = rest.length + 2;
    while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
    const data = Buffer.from(`${len}${rest}`);
    return Buffer.concat([tarHeader({ name: 'PaxHeader', typeflag: 'x', size: data.length }), data, Buffer.alloc(512 - data.length)]);
  };
  const tar = Buffer.concat([pax('size', String(2 ** 50)), tarHeader({ name: 'bomb', typeflag: '0', size: 0 }), Buffer.alloc(4096)]);
  await assert.rejects(spoolContextTar(Readable.from([tar]), path.join(dir, 'ctx')), /build context: bomb \(1125899906842624 bytes.*does not fit in the \d+ bytes free/);
});

test('mkdirParents never goes through a symlink or a file already in the layer, naming the path and the line', async (t) => {
  const upper = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-unit-upper-'));
  const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-unit-outside-'));
  t.after(() => fs.rmSync(upper, { recursive: true, force: true }));
  t.after(() => fs.rmSync(outside, { recursive: true, force: true }));
  fs.mkdirSync(path.join(upper, 'd'));
  fs.symlinkSync(outside, path.join(upper, 'd', 'x'));
  fs.writeFileSync(path.join(upper, 'd', 'f'), '');
  const loc = { file: 'Dockerfile', line: 3 };
  await assert.rejects(mkdirParents(upper, 'd/x/sub', { loc }), /Dockerfile:3: cannot copy into \/d\/x: an earlier source of this step made it a symlink, not a directory/);
  await assert.rejects(mkdirParents(upper, 'd/f/sub', { loc }), /cannot copy into \/d\/f: .* a file, not a directory/);
  assert.deepEqual(fs.readdirSync(outside), []);
});

test(`a Dockerfile of more than ${LIMITS.dockerfile.entries} instructions is refused naming the limit and the line`, () => {
  const n = LIMITS.dockerfile.entries;
  assert.equal(parseDockerfile('FROM scratch\n' + 'ENV A=1\n'.repeat(n - 1)).nodes.length, n);
  assert.throws(() => parseDockerfile('FROM scratch\n# comment\n' + 'ENV A=1\n'.repeat(n)), /Dockerfile:1002: more than the Dockerfile limit of 1000 instructions/);
});
