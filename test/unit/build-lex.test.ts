/**
 * Variable expansion against BuildKit's own shell-lexer tables
 * (frontend/dockerfile/shell/envVarTest and wordsTest): the single-word
 * form, the split form, quotes, escapes, every modifier, and the bounds on
 * nesting and size.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { envOf, lex, processWord, processWords, MAX_DEPTH } from '../../server/build/shell/lex';

const ENV = envOf({ PWD: '/home', SHELL: 'bash', KOREAN: '한국어', NULL: '', F: '/a/b/c.tar.gz', STAR: '*x' });

// input → expected (undefined: an error), as envVarTest lists them.
const WORD_CASES: [string, string | undefined][] = [
  ['hello', 'hello'],
  ["he'll'o", 'hello'],
  ["he'llo", undefined],
  ["he\\'llo", "he'llo"],
  ["he\\\\'llo", undefined],
  ['abc\\tdef', 'abctdef'],
  ['"abc\\tdef"', 'abc\\tdef'],
  ['"abc\\\\tdef"', 'abc\\tdef'],
  ["'abc\\tdef'", 'abc\\tdef'],
  ['hello\\', 'hello'],
  ['hello\\\\', 'hello\\'],
  ['"hello', undefined],
  ['"hello\\"', undefined],
  ['"hel\'lo"', "hel'lo"],
  ["'hello", undefined],
  ["'hello\\'", 'hello\\'],
  ["'hello\\there'", 'hello\\there'],
  ["'hello\\\\there'", 'hello\\\\there'],
  ['"\'\'"', "''"],
  ['$.', '$.'],
  ['he$1x', 'hex'],
  ['he$.x', 'he$.x'],
  ['he$pwd.', 'he.'],
  ['he$PWD', 'he/home'],
  ['he\\$PWD', 'he$PWD'],
  ['he\\\\$PWD', 'he\\/home'],
  ['"he\\$PWD"', 'he$PWD'],
  ['"he\\\\$PWD"', 'he\\/home'],
  ['\\${}', '${}'],
  ['\\${}aaa', '${}aaa'],
  ['he\\${}', 'he${}'],
  ['${}', undefined],
  ['${}aaa', undefined],
  ['he${}xx', undefined],
  ['he${hi}', 'he'],
  ['he${hi}xx', 'hexx'],
  ['he${PWD}', 'he/home'],
  ['he${.}', undefined],
  ['he${XXX:-000}xx', 'he000xx'],
  ['he${PWD:-000}xx', 'he/homexx'],
  ['he${XXX:-$PWD}xx', 'he/homexx'],
  ['he${XXX:-${PWD:-yyy}}xx', 'he/homexx'],
  ['he${XXX:-${YYY:-yyy}}xx', 'heyyyxx'],
  ['he${XXX:YYY}', undefined],
  ['he${XXX?}', undefined],
  ['he${XXX:?}', undefined],
  ['he${PWD?}', 'he/home'],
  ['he${PWD:?}', 'he/home'],
  ['he${NULL?}', 'he'],
  ['he${NULL:?}', undefined],
  ['he${XXX:+${PWD}}xx', 'hexx'],
  ['he${PWD:+${XXX}}xx', 'hexx'],
  ['he${PWD:+${SHELL}}xx', 'hebashxx'],
  ['he${XXX:+000}xx', 'hexx'],
  ['he${PWD:+000}xx', 'he000xx'],
  ["'he${XX}'", 'he${XX}'],
  ['"he${PWD}"', 'he/home'],
  ['"he\'$PWD\'"', "he'/home'"],
  ['"$PWD"', '/home'],
  ["'$PWD'", '$PWD'],
  ["'\\$PWD'", '\\$PWD'],
  ["'\"hello\"'", '"hello"'],
  ['he${PWD', undefined],
  ['he${PWD:=000}xx', undefined],
  ['he${PWD:+${PWD}:}xx', 'he/home:xx'],
  ['he${XXX:-\\$PWD:}xx', 'he$PWD:xx'],
  ['he${XXX:-\\${PWD}z}xx', 'he${PWDz}xx'],
  ['안녕하세요', '안녕하세요'],
  ["안'녕'하세요", '안녕하세요'],
  ['안녕$PWD', '안녕/home'],
  ['$KOREAN', '한국어'],
  ['안녕$KOREAN', '안녕한국어'],
  ['${{aaa}', undefined],
  ['${aaa}}', '}'],
  ['${aaa', undefined],
  ['${{aaa', undefined],
  ['${aaa}', ''],
  // The non-colon forms: unset and empty differ.
  ['${NULL-def}', ''],
  ['${XXX-def}', 'def'],
  ['${NULL+alt}', 'alt'],
  ['${XXX+alt}', ''],
  ['${NULL:-def}', 'def'],
  ['${NULL:+alt}', ''],
  // Prefix and suffix removal.
  ['${PWD#/}', 'home'],
  ['${PWD%me}', '/ho'],
  ['${F##*/}', 'c.tar.gz'],
  ['${F#*/}', 'a/b/c.tar.gz'],
  ['${F%/*}', '/a/b'],
  ['${F%%.*}', '/a/b/c'],
  ['${F%.*}', '/a/b/c.tar'],
  ['${F/b/X}', '/a/X/c.tar.gz'],
  ['${F//a/X}', '/X/b/c.tXr.gz'],
  ['${F/\\//-}', '-a/b/c.tar.gz'],
  ['${STAR#\\*}', 'x'],
  ['${STAR#?}', 'x'],
  ['${F:#x}', undefined],
  ['${F#\\q}', undefined],
  ['${F/a}', undefined],
];

for (const [input, want] of WORD_CASES) {
  test(`lex word ${JSON.stringify(input)} → ${want === undefined ? 'error' : JSON.stringify(want)}`, () => {
    if (want === undefined) assert.throws(() => processWord(input, ENV));
    else assert.equal(processWord(input, ENV), want);
  });
}

test('lex: ${VAR:?msg} and ${VAR?msg} fail with the message naming the variable', () => {
  assert.throws(() => processWord('${XXX:?must be set}', ENV), /^Error: XXX: must be set$/);
  assert.throws(() => processWord('${NULL:?}', ENV), /NULL: is not allowed to be empty/);
  assert.throws(() => processWord('${XXX?}', ENV), /XXX: is not allowed to be unset/);
});

const WORDS_ENV = envOf({ hi: 'hi', space: 'abc  def', leading: '  ab c', trailing: 'ab c   ' });
// input → words joined by ',' (wordsTest).
const WORDS_CASES: [string, string | undefined][] = [
  ['hello', 'hello'],
  ['hello${hi}bye', 'hellohibye'],
  ['hello${space}bye', 'helloabc,defbye'],
  ['hello"${space}"bye', 'helloabc  defbye'],
  ['hello "${space}"bye', 'hello,abc  defbye'],
  ['hello${leading}def', 'hello,ab,cdef'],
  ['hello"${leading}" def', 'hello  ab c,def'],
  ['hello"${leading}"', 'hello  ab c'],
  ['hello${leading}', 'hello,ab,c'],
  ['hello${trailing}', 'helloab,c'],
  ['hello${trailing}d', 'helloab,c,d'],
  ['hello"${trailing}"d', 'helloab c   d'],
  ['hel"lo${trailing}"', 'helloab c   '],
  ['hello" there  "', 'hello there  '],
  ['hello there     ', 'hello,there'],
  ['hello\\ there', 'hello there'],
  ['hello" there', undefined],
  ['hello\\" there', 'hello",there'],
  ['hello"\\\\there"', 'hello\\there'],
  ['hello"\\there"', 'hello\\there'],
  ["hello'\\\\there'", 'hello\\\\there'],
  ["hello'\\there'", 'hello\\there'],
  ["hello'$there'", 'hello$there'],
];

for (const [input, want] of WORDS_CASES) {
  test(`lex words ${JSON.stringify(input)} → ${want === undefined ? 'error' : JSON.stringify(want)}`, () => {
    if (want === undefined) assert.throws(() => processWords(input, WORDS_ENV));
    else assert.equal(processWords(input, WORDS_ENV).join(','), want);
  });
}

test('lex: the backtick escape token escapes, and backslash is then literal', () => {
  assert.equal(processWord('C:\\dir `$PWD', ENV, { escapeToken: '`' }), 'C:\\dir $PWD');
});

test('lex: skipUnsetEnv keeps unset references as written', () => {
  assert.equal(processWord('$X ${Y} ${Z:-d} $PWD', ENV, { skipUnsetEnv: true }), '$X ${Y} ${Z:-d} /home');
});

test('lex: the names a word refers to are reported, set or not', () => {
  assert.deepEqual([...lex('$A ${B:-$C} \\$D', ENV).used].sort(), ['A', 'B', 'C']);
});

test(`lex: nesting deeper than ${MAX_DEPTH} is refused quickly, not a stack overflow`, () => {
  const deep = (n: number): string => '${a:-'.repeat(n) + 'x' + '}'.repeat(n);
  assert.equal(processWord(deep(MAX_DEPTH), ENV), 'x');
  const t0 = Date.now();
  assert.throws(() => processWord(deep(100000), ENV), /nested deeper than 64/);
  assert.ok(Date.now() - t0 < 2000);
});

test('lex: a result over the expanded-word limit is refused (doubling variables cannot exhaust memory)', () => {
  let v = 'x';
  const env = (n: string): string | undefined => (n === 'a' ? v : undefined);
  for (let i = 0; i < 17; i++) v = processWord('$a$a', env);
  assert.equal(v.length, 2 ** 17);
  assert.throws(() => {
    for (let i = 0; i < 10; i++) v = processWord('$a$a', env);
  }, (err: unknown) => (err as { code?: string }).code === 'E_LIMIT_EXCEEDED' && /expanded word limit \(256 KiB\)/.test((err as Error).message));
});
