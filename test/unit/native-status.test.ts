/** The shim's status lines (fd 4) as the helper reads them. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ContainerSetupError, errnoName, parseStatusLine, shimPath, ShimStatus, StatusLineReader } from '../../server/runtime/native';
import { CapsaError } from '../../server/errors';

test('parses started, exit and error lines', () => {
  assert.deepEqual(parseStatusLine('started 4242'), { kind: 'started', pid: 4242 });
  assert.deepEqual(parseStatusLine('exit 0'), { kind: 'exit', code: 0 });
  assert.deepEqual(parseStatusLine('exit 137'), { kind: 'exit', code: 137 });
  assert.deepEqual(parseStatusLine('error mount\t/proc\t13\tpermission denied'), {
    kind: 'error',
    step: 'mount',
    path: '/proc',
    errno: 13,
    message: 'permission denied',
  });
  assert.deepEqual(parseStatusLine('error exec\tpyhton\t2\texec: "pyhton": executable file not found in $PATH'), {
    kind: 'error',
    step: 'exec',
    path: 'pyhton',
    errno: 2,
    message: 'exec: "pyhton": executable file not found in $PATH',
  });
});

test('an empty path and spaces inside fields survive', () => {
  assert.deepEqual(parseStatusLine('error clone\t\t1\toperation not permitted'), {
    kind: 'error',
    step: 'clone',
    path: '',
    errno: 1,
    message: 'operation not permitted',
  });
  assert.deepEqual(parseStatusLine('error mount\t/my dir\t2\tbind source /x y: no such file'), {
    kind: 'error',
    step: 'mount',
    path: '/my dir',
    errno: 2,
    message: 'bind source /x y: no such file',
  });
});

for (const line of [
  '',
  'started',
  'started 0',
  'started -1',
  'started 12x',
  'started 99999999999',
  'exit',
  'exit -1',
  'exit 1.5',
  'error mount\t/proc\t13',
  'error mount\t/proc\tEACCES\tpermission denied',
  'hello world',
  'STARTED 1',
]) {
  test(`ignores the malformed or unknown line ${JSON.stringify(line)}`, () => {
    assert.equal(parseStatusLine(line), undefined);
  });
}

test('the reader reassembles lines split across chunks', () => {
  const seen: ShimStatus[] = [];
  const reader = new StatusLineReader((s) => seen.push(s));
  for (const chunk of ['sta', 'rted 1', '2\nerror mount\t/p', 'roc\t13\tpermission denied\nexit ', '3\n', 'exit 4']) {
    reader.push(chunk);
  }
  assert.deepEqual(seen, [
    { kind: 'started', pid: 12 },
    { kind: 'error', step: 'mount', path: '/proc', errno: 13, message: 'permission denied' },
    { kind: 'exit', code: 3 },
  ]);
});

test('setup errors name the step, the path and the errno', () => {
  const err = new ContainerSetupError({ step: 'mount', path: '/proc', errno: 13, message: 'permission denied' });
  assert.ok(err instanceof CapsaError);
  assert.equal(err.name, 'ContainerSetupError');
  assert.equal(err.code, 'E_CONTAINER_SETUP');
  assert.equal(err.message, 'container setup failed at mount "/proc": permission denied (EACCES)');
  assert.equal(err.step, 'mount');
  assert.equal(err.path, '/proc');
  assert.equal(err.errno, 13);
  assert.equal(err.errnoName, 'EACCES');
});

test('exec errors keep the shim message as it is', () => {
  const message = 'exec: "pyhton": executable file not found in $PATH';
  const err = new ContainerSetupError({ step: 'exec', path: 'pyhton', errno: 2, message });
  assert.equal(err.message, message);
  assert.equal(err.errnoName, 'ENOENT');
});

test('a setup error without errno or path reads cleanly', () => {
  const err = new ContainerSetupError({ step: 'plan', path: '', errno: 0, message: 'plan has no command' });
  assert.equal(err.message, 'container setup failed at plan: plan has no command');
  assert.equal(errnoName(0), undefined);
});

test('the shim path points at native/build in the package root', () => {
  const p = shimPath();
  assert.ok(path.isAbsolute(p));
  assert.ok(p.endsWith(path.join('native', 'build', 'capsa-shim')));
  assert.ok(existsSync(path.join(path.dirname(path.dirname(path.dirname(p))), 'package.json')));
});

test('a monitor line names the monitor a run forked; a bad pid is not one', () => {
  assert.deepEqual(parseStatusLine('monitor 77'), { kind: 'monitor', pid: 77 });
  assert.equal(parseStatusLine('monitor 0'), undefined);
  assert.equal(parseStatusLine('monitor x'), undefined);
});

test('fields after the message are the context chain, outermost first, and leave the message as it was', () => {
  const s = parseStatusLine('error mount\t/etc/hosts\t40\ttoo many levels of symbolic links\twhile creating the container\twhile setting up the container\'s first process\twhile mounting /c/hosts on /etc/hosts');
  assert.deepEqual(s, {
    kind: 'error',
    step: 'mount',
    path: '/etc/hosts',
    errno: 40,
    message: 'too many levels of symbolic links',
    context: ['while creating the container', "while setting up the container's first process", 'while mounting /c/hosts on /etc/hosts'],
  });
  const err = new ContainerSetupError(s as Extract<ShimStatus, { kind: 'error' }>);
  assert.equal(err.message, 'container setup failed at mount "/etc/hosts": too many levels of symbolic links (ELOOP)');
  assert.deepEqual(err.context, s && s.kind === 'error' ? s.context : undefined);
});

test('an error line without context fields gives an empty chain', () => {
  const s = parseStatusLine('error cwd\t/nowhere\t2\tno such file or directory');
  assert.ok(s && s.kind === 'error' && s.context === undefined);
  assert.deepEqual(new ContainerSetupError(s as Extract<ShimStatus, { kind: 'error' }>).context, []);
});
