import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DetachKeys, parseDetachKeys, DEFAULT_DETACH_KEYS } from '../../server/cli/detachkeys';

test('detach keys parse as Docker writes them', () => {
  assert.deepEqual([...parseDetachKeys(DEFAULT_DETACH_KEYS)], [0x10, 0x11]);
  assert.deepEqual([...parseDetachKeys('ctrl-a,x,ctrl-@,ctrl-[,ctrl-\\,ctrl-_')], [0x01, 0x78, 0x00, 0x1b, 0x1c, 0x1f]);
  for (const bad of ['', 'ctrl-', 'ctrl-1', 'alt-x', 'ab', 'ctrl-p,,ctrl-q']) assert.throws(() => parseDetachKeys(bad), /detach-keys/, bad);
});

test('the detach sequence is taken out of the input and detaches; everything else goes on untouched', () => {
  const d = new DetachKeys(parseDetachKeys(DEFAULT_DETACH_KEYS));
  assert.deepEqual(d.feed(Buffer.from('ls\r')), { forward: Buffer.from('ls\r'), detach: false });
  assert.deepEqual(d.feed(Buffer.from('x\x10\x11rest')), { forward: Buffer.from('x'), detach: true });
});

test('a partial sequence is held until the next key, across chunks, and sent on when it is not the sequence', () => {
  const d = new DetachKeys(parseDetachKeys(DEFAULT_DETACH_KEYS));
  assert.deepEqual(d.feed(Buffer.from('a\x10')), { forward: Buffer.from('a'), detach: false }, 'Ctrl-P held');
  assert.deepEqual(d.feed(Buffer.from('b')), { forward: Buffer.from('\x10b'), detach: false }, 'Ctrl-P then b: both go on');
  assert.deepEqual(d.feed(Buffer.from('\x10')), { forward: Buffer.alloc(0), detach: false });
  assert.deepEqual(d.feed(Buffer.from('\x11')), { forward: Buffer.alloc(0), detach: true });
});

test('a sequence that overlaps itself is still found', () => {
  const d = new DetachKeys(parseDetachKeys('a,a,b'));
  assert.deepEqual(d.feed(Buffer.from('xaaab')), { forward: Buffer.from('xa'), detach: true });
});
