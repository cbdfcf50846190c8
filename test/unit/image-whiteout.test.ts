import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyWhiteout } from '../../server/image/whiteout';
import { cleanEntryName } from '../../server/image/unpack';
import { UnsafeLayerError } from '../../server/image/errors';

test('whiteout names are classified into overlay actions', () => {
  const cases: Array<[string, ReturnType<typeof classifyWhiteout>]> = [
    ['etc/passwd', undefined],
    ['.whatever', undefined],
    ['etc/.wh.passwd', { kind: 'whiteout', dir: 'etc', name: 'passwd' }],
    ['.wh.etc', { kind: 'whiteout', dir: '', name: 'etc' }],
    ['a/b/.wh..hidden', { kind: 'whiteout', dir: 'a/b', name: '.hidden' }],
    ['a/b/.wh..wh..opq', { kind: 'opaque', dir: 'a/b' }],
    ['.wh..wh..opq', { kind: 'opaque', dir: '' }],
    ['.wh..wh.plnk', { kind: 'meta' }],
    ['.wh..wh.plnk/1234', { kind: 'meta' }],
    ['a/.wh..wh.aufs', { kind: 'meta' }],
  ];
  for (const [name, want] of cases) assert.deepEqual(classifyWhiteout(name), want, name);
});

test('whiteouts naming no plain file are refused', () => {
  for (const name of ['.wh.', 'a/.wh.', 'a/.wh..', 'a/.wh...']) {
    assert.throws(() => classifyWhiteout(name), UnsafeLayerError, name);
  }
});

test('entry names are cleaned lexically and escapes refused', () => {
  const ok: Array<[string, string]> = [
    ['a', 'a'],
    ['./a', 'a'],
    ['a/', 'a'],
    ['a//b/./c/', 'a/b/c'],
    ['a/../b', 'b'],
    ['./', ''],
    ['.', ''],
  ];
  for (const [name, want] of ok) assert.equal(cleanEntryName(name), want, name);
  const bad: Array<[string, RegExp]> = [
    ['/etc/passwd', /absolute path/],
    ['..', /escapes/],
    ['../x', /escapes/],
    ['a/../../x', /escapes/],
    ['./../x', /escapes/],
    ['a\0b', /NUL/],
  ];
  for (const [name, why] of bad) assert.throws(() => cleanEntryName(name), (e: unknown) => e instanceof UnsafeLayerError && why.test(e.message), name);
});
