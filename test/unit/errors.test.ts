/** Errors end to end: causes, the wire data, the catalogue of codes, and the CLI's exit statuses. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ResponseError } from 'vscode-jsonrpc';
import { CapsaError, causeChain, ConflictError, describeError, InvalidArgumentError, NotFoundError } from '../../server/errors';
import { toResponseError } from '../../server/handlers/errors';
import { ERROR_CATALOGUE, ErrorCodes, capsaErrorData, errorCode, errorCodeInfo, errorKind } from '../../server/protocol';
import { errorLine, exitStatus } from '../../server/cli/exit';
import { ContainerSetupError } from '../../server/runtime/native';

// ---- describeError and cause chains

test('describeError gives the message of an error without a cause', () => {
  assert.equal(describeError(new Error('plain')), 'plain');
  assert.equal(describeError('a string'), 'a string');
});

test('describeError follows the cause chain, appending each cause the text does not already quote', () => {
  const low = new Error('EACCES: permission denied');
  const mid = new CapsaError('E_CGROUP', 'cannot create cgroup /sys/fs/cgroup/x', { cause: low });
  const top = new CapsaError('E_CONTAINER_SETUP', 'starting container c1', { cause: mid });
  assert.equal(describeError(top), 'starting container c1: cannot create cgroup /sys/fs/cgroup/x: EACCES: permission denied');
  const quoting = new CapsaError('E_CGROUP', 'cannot create cgroup x: EACCES: permission denied', { cause: low });
  assert.equal(describeError(quoting), 'cannot create cgroup x: EACCES: permission denied');
});

test('describeError and causeChain stop at a cycle', () => {
  const a = new Error('a');
  const b = new Error('b', { cause: a });
  (a as { cause?: unknown }).cause = b;
  assert.equal(describeError(b), 'b: a');
  assert.deepEqual(causeChain(b).map((c) => c.message), ['a']);
});

test('causeChain lists the wrapped errors nearest first, with their codes and fields', () => {
  const sys = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' });
  const mid = new NotFoundError('E_VOLUME_NOT_FOUND', 'no such volume: v', { cause: sys, fields: { volume: 'v' } });
  const top = new ConflictError('cannot mount v', { cause: mid });
  assert.deepEqual(causeChain(top), [
    { code: 'E_VOLUME_NOT_FOUND', message: 'no such volume: v', fields: { volume: 'v' } },
    { code: 'ENOENT', message: 'ENOENT: no such file' },
  ]);
  assert.deepEqual(causeChain(new Error('alone')), []);
});

test('a CapsaError keeps its code, fields and cause', () => {
  const cause = new Error('low');
  const err = new InvalidArgumentError('bad', { cause, fields: { path: '/x' } });
  assert.equal(err.code, 'E_INVALID_ARGUMENT');
  assert.deepEqual(err.fields, { path: '/x' });
  assert.equal(err.cause, cause);
  assert.equal(new CapsaError('E_X', 'no cause').cause, undefined);
});

// ---- the wire

test('a CapsaError reaches the wire with its message, code, fields and causes', () => {
  const cause = new CapsaError('E_NETNS', 'network namespace /run/x: setns failed: EPERM');
  const err = new CapsaError('E_CONTAINER_SETUP', 'cannot join the network', { cause, fields: { container: 'c1', step: 'netns' } });
  const r = toResponseError(err);
  assert.ok(r instanceof ResponseError);
  assert.equal(r.code, ErrorCodes.CapsaError);
  assert.equal(r.message, 'cannot join the network');
  assert.deepEqual(r.data, {
    code: 'E_CONTAINER_SETUP',
    fields: { container: 'c1', step: 'netns' },
    causes: [{ code: 'E_NETNS', message: 'network namespace /run/x: setns failed: EPERM' }],
  });
});

test('the wire keeps an exitCode the runtime set on the error', () => {
  const err = Object.assign(new CapsaError('E_CONTAINER_SETUP', 'x'), { exitCode: 125 });
  assert.deepEqual(toResponseError(err).data, { code: 'E_CONTAINER_SETUP', exitCode: 125 });
});

test('a failed exec reported by the shim goes as the command code, with the step, path and errno as fields', () => {
  const notFound = toResponseError(new ContainerSetupError({ step: 'exec', path: 'pyhton', errno: 2, message: 'exec: "pyhton": executable file not found in $PATH' }));
  assert.equal(notFound.message, 'exec: "pyhton": executable file not found in $PATH');
  assert.equal(notFound.data?.code, 'E_COMMAND_NOT_FOUND');
  assert.deepEqual(notFound.data?.fields, { step: 'exec', path: 'pyhton', errno: 2 });
  const denied = toResponseError(new ContainerSetupError({ step: 'exec', path: '/etc/passwd', errno: 13, message: 'exec: "/etc/passwd": permission denied' }));
  assert.equal(denied.data?.code, 'E_COMMAND_NOT_EXECUTABLE');
  const mount = toResponseError(new ContainerSetupError({ step: 'mount', path: '/proc', errno: 13, message: 'permission denied' }));
  assert.equal(mount.data?.code, 'E_CONTAINER_SETUP');
});

test('an unexpected error goes as E_INTERNAL with its original message', () => {
  const r = toResponseError(new TypeError('x is undefined', { cause: new Error('deeper') }));
  assert.equal(r.message, 'internal error: x is undefined');
  assert.deepEqual(r.data, { code: 'E_INTERNAL', causes: [{ message: 'deeper' }] });
});

test('a ResponseError passes through unchanged', () => {
  const r = new ResponseError(ErrorCodes.CapsaError, 'already', { code: 'E_CONFLICT' });
  assert.equal(toResponseError(r), r);
});

// ---- the catalogue

/** Every `.ts` file under `dir`, recursively. */
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const SERVER = path.join(__dirname, '..', '..', '..', 'server');

test('every E_ code thrown in server/ is in the protocol catalogue', () => {
  const thrown = /(?:new\s+\w*Error|super)\(\s*'(E_[A-Z0-9_]+)'/g;
  const found = new Map<string, string>();
  for (const file of sources(SERVER)) {
    for (const m of readFileSync(file, 'utf8').matchAll(thrown)) found.set(m[1], path.relative(SERVER, file));
  }
  assert.ok(found.size >= 20, `the scan found only ${found.size} codes: is ${SERVER} the source folder?`);
  const missing = [...found].filter(([code]) => !errorCodeInfo(code)).map(([code, file]) => `${code} (${file})`);
  assert.deepEqual(missing, [], 'add these codes to ERROR_CATALOGUE in server/protocol/errors.ts');
});

test('the catalogue names the command codes with 127 and 126 and every other code with 125', () => {
  assert.equal(ERROR_CATALOGUE.E_COMMAND_NOT_FOUND.exit, 127);
  assert.equal(ERROR_CATALOGUE.E_COMMAND_NOT_EXECUTABLE.exit, 126);
  assert.equal(ERROR_CATALOGUE.E_CONTAINER_SETUP.exit, 125);
  for (const [code, info] of Object.entries(ERROR_CATALOGUE)) {
    assert.match(code, /^E_[A-Z0-9_]+$/);
    assert.ok(info.meaning.length > 0, code);
    if (info.kind !== 'command') assert.equal(info.exit, 125, code);
  }
});

test('errorCode and errorKind read a response error\'s data or a local error\'s code', () => {
  const wire = new ResponseError(ErrorCodes.CapsaError, 'no such container: x', { code: 'E_CONTAINER_NOT_FOUND' });
  assert.equal(errorCode(wire), 'E_CONTAINER_NOT_FOUND');
  assert.equal(errorKind(wire), 'not-found');
  assert.equal(errorKind(new CapsaError('E_HELPER_LOST', 'lost')), 'unreachable');
  assert.equal(errorCode(Object.assign(new Error('sys'), { code: 'ENOENT' })), undefined);
  assert.equal(errorKind(new CapsaError('E_FROM_A_NEWER_HELPER', 'x')), undefined);
  assert.equal(capsaErrorData(new Error('no data')), undefined);
  assert.equal(capsaErrorData({ data: { code: 7 } }), undefined);
});

// ---- the CLI's exit status and message

const wire = (code: string, data: object = {}, message = 'failed') => new ResponseError(ErrorCodes.CapsaError, message, { code, ...data });

test('the CLI exits 127 for a command not found and 126 for one not executable, whatever exitCode says', () => {
  assert.equal(exitStatus(wire('E_COMMAND_NOT_FOUND')), 127);
  assert.equal(exitStatus(wire('E_COMMAND_NOT_EXECUTABLE', { exitCode: 3 })), 126);
});

test('the CLI exits 125 for an error of Capsa itself', () => {
  for (const code of ['E_CONTAINER_SETUP', 'E_IMAGE_NOT_FOUND', 'E_INVALID_ARGUMENT', 'E_INTERNAL', 'E_CONFLICT']) assert.equal(exitStatus(wire(code)), 125, code);
  assert.equal(exitStatus(new CapsaError('E_HELPER_LOST', 'lost')), 125);
  assert.equal(exitStatus(new InvalidArgumentError('bad flag')), 125);
  assert.equal(exitStatus(new Error('anything else')), 125);
});

test('the CLI falls back to data.exitCode only for a code it does not know', () => {
  assert.equal(exitStatus(wire('E_FROM_A_NEWER_HELPER', { exitCode: 127 })), 127);
  assert.equal(exitStatus(wire('E_CONTAINER_SETUP', { exitCode: 127 })), 125);
  assert.equal(exitStatus(wire('E_FROM_A_NEWER_HELPER', { exitCode: 300 })), 125);
  assert.equal(exitStatus(wire('E_FROM_A_NEWER_HELPER')), 125);
});

test('the CLI prints the message, then the causes of Capsa\'s own that it does not already quote', () => {
  assert.equal(errorLine(wire('E_CONTAINER_SETUP', { causes: [{ code: 'E_CGROUP', message: 'cannot create cgroup x' }, { code: 'EACCES', message: 'EACCES: denied' }] }, 'starting c1')), 'starting c1: cannot create cgroup x');
  assert.equal(errorLine(wire('E_CGROUP', { causes: [{ code: 'E_CGROUP', message: 'cgroup x' }] }, 'failed at cgroup x')), 'failed at cgroup x');
  const local = new CapsaError('E_HELPER_UNREACHABLE', 'cannot reach the capsa helper at /s: connect ENOENT /s', { cause: Object.assign(new Error('connect ENOENT /s'), { code: 'ENOENT' }) });
  assert.equal(errorLine(local), 'cannot reach the capsa helper at /s: connect ENOENT /s');
});

test('the CLI escapes control characters in the message and in causes', () => {
  assert.equal(errorLine(wire('E_REGISTRY', { causes: [{ code: 'E_REGISTRY', message: 'bad\u001b[2Jcause' }] }, 'registry said \u001b[31mred')), 'registry said \\x1b[31mred: bad\\x1b[2Jcause');
});

// ---- absence versus failure

test('ifMissing turns only ENOENT and ENOTDIR into the fallback, and rethrows any other failure', async () => {
  const { ifMissing } = await import('../../server/util/missing');
  const sys = (code: string) => Object.assign(new Error(code), { code });
  assert.equal(await Promise.reject(sys('ENOENT')).catch(ifMissing('none')), 'none');
  assert.equal(await Promise.reject(sys('ENOTDIR')).catch(ifMissing('none')), 'none');
  await assert.rejects(Promise.reject(sys('EACCES')).catch(ifMissing('none')), /EACCES/);
});
