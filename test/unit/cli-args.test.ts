import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFlags, type FlagSpec } from '../../server/cli/args';

const SPECS: FlagSpec[] = [
  { name: 'rm', kind: 'bool', help: '' },
  { name: 'interactive', short: 'i', kind: 'bool', help: '' },
  { name: 'tty', short: 't', kind: 'bool', help: '' },
  { name: 'env', short: 'e', kind: 'multi', help: '' },
  { name: 'name', kind: 'value', help: '' },
];
const parse = (argv: string[]) => parseFlags(argv, SPECS, { stopAtPositional: true, verb: 'run' });

test('combined short flags -it set both booleans', () => {
  const r = parse(['-it', 'busybox', 'sh']);
  assert.equal(r.flags.interactive, true);
  assert.equal(r.flags.tty, true);
  assert.deepEqual(r.positionals, ['busybox', 'sh']);
});

test('flags after the image belong to the container command', () => {
  const r = parse(['--rm', 'busybox', 'ls', '-l', '--rm']);
  assert.equal(r.flags.rm, true);
  assert.deepEqual(r.positionals, ['busybox', 'ls', '-l', '--rm']);
});

test('value flags take -e K=V, -eK=V, --env K=V and --env=K=V, and repeat', () => {
  const r = parse(['-e', 'A=1', '-eB=2', '--env', 'C=3', '--env=D=4', 'img']);
  assert.deepEqual(r.flags.env, ['A=1', 'B=2', 'C=3', 'D=4']);
});

test('a value flag at the end of a short run takes the next argument', () => {
  const r = parse(['-ite', 'X=1', 'img']);
  assert.deepEqual(r.flags.env, ['X=1']);
  assert.equal(r.flags.tty, true);
});

test('-- ends flag parsing', () => {
  const r = parse(['--', '-it']);
  assert.deepEqual(r.positionals, ['-it']);
  assert.equal(r.flags.tty, undefined);
});

const hostile: Array<[string, string[], RegExp]> = [
  ['unknown long flag', ['--nope', 'img'], /unknown flag: --nope/],
  ['unknown short flag', ['-z', 'img'], /unknown shorthand flag: 'z'/],
  ['value flag without value', ['--name'], /flag needs an argument: --name/],
  ['short value flag without value', ['-e'], /flag needs an argument/],
  ['boolean with a non-boolean value', ['--rm=maybe', 'img'], /expected true or false/],
];
for (const [what, argv, err] of hostile) {
  test(`refuses ${what} with a clear error`, () => {
    assert.throws(() => parse(argv), err);
  });
}
