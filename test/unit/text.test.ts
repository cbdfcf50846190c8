import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clip, listed, printable, printableLines } from '../../server/util/text';

test('printable escapes C0 controls, DEL, C1 controls and bidi overrides, and nothing else', () => {
  const cases: Array<[string, string]> = [
    ['\u001b]0;owned\u0007', '\\x1b]0;owned\\x07'],
    ['\u001b[2J', '\\x1b[2J'],
    ['a\nb\rc\td', 'a\\nb\\rc\\td'],
    ['\u0000\u007f', '\\x00\\x7f'],
    ['\u009b31m', '\\x9b31m'],
    ['\u0085', '\\x85'],
    ['abc\u202edef\u2066', 'abc\\u202edef\\u2066'],
    ['plain text: sha256:abc/def-1.2_3', 'plain text: sha256:abc/def-1.2_3'],
    ['naïve 日本語 🐳 ü', 'naïve 日本語 🐳 ü'],
    ['', ''],
  ];
  for (const [input, want] of cases) assert.equal(printable(input), want, JSON.stringify(input));
});

test('printable output never holds a byte a terminal acts on', () => {
  let all = '';
  for (let c = 0; c < 0x300; c++) all += String.fromCharCode(c);
  const out = printable(all);
  assert.doesNotMatch(out, /[\u0000-\u001f\u007f-\u009f]/);
});

test('printableLines keeps line breaks but escapes carriage returns and escapes', () => {
  assert.equal(printableLines('one\ntwo\r\u001b[2Jthree'), 'one\ntwo\\r\\x1b[2Jthree');
});

test('listed cuts a long list after max items with "… and N more"', () => {
  const items = Array.from({ length: 15_000 }, (_, i) => `linux/arch${i}`);
  const out = listed(items, 10);
  assert.ok(out.endsWith('… and 14,990 more'), out);
  assert.equal(out.split(', ').length, 11);
  assert.ok(out.length < 300, `${out.length} characters`);
});

test('listed shows a short list whole, and escapes and clips each item', () => {
  assert.equal(listed(['a', 'b']), 'a, b');
  assert.equal(listed([]), '');
  assert.equal(listed(['x\u001b[2J']), 'x\\x1b[2J');
  assert.equal(listed(['y'.repeat(500)], 10, 20), `${'y'.repeat(19)}…`);
  assert.equal(listed(['a', 'b', 'c'], 0), '… and 3 more');
});

test('clip cuts to max characters without splitting a surrogate pair', () => {
  assert.equal(clip('abcdef', 4), 'abc…');
  assert.equal(clip('abc', 4), 'abc');
  assert.equal(clip('ab🐳cd', 4), 'ab…');
});

test('CLI tables escape each cell before padding, and inspect JSON escapes what JSON.stringify leaves raw', async () => {
  const { table, json } = await import('../../server/cli/format');
  const out = table(['NAME', 'LABEL'], [['a\u001b[2Jb', 'x\u009by']]);
  assert.doesNotMatch(out, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  assert.equal(out, 'NAME        LABEL\na\\x1b[2Jb   x\\x9by\n');
  const j = json({ label: 'p\u009bq\u202er\u001bs' });
  assert.doesNotMatch(j, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
  assert.deepEqual(JSON.parse(j), { label: 'p\u009bq\u202er\u001bs' }, 'still valid JSON of the same value');
});
