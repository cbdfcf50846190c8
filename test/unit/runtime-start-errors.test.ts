/** ContainerStartError: a failed start typed by what the user can do, with Docker's exit statuses. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ContainerStartError } from '../../server/runtime/errors';
import { ContainerSetupError, ShimError } from '../../server/runtime/native';
import { toResponseError } from '../../server/handlers/errors';

const setup = (step: string, errno: number, path = '/x') => new ContainerSetupError({ step, path, errno, message: `${step} failed` });

test('exec with ENOENT is E_COMMAND_NOT_FOUND (127), other exec errnos E_COMMAND_NOT_EXECUTABLE (126), other steps E_CONTAINER_SETUP (125)', () => {
  const cases: Array<[ContainerSetupError, string, number]> = [
    [setup('exec', 2), 'E_COMMAND_NOT_FOUND', 127],
    [setup('exec', 13), 'E_COMMAND_NOT_EXECUTABLE', 126],
    [setup('exec', 8), 'E_COMMAND_NOT_EXECUTABLE', 126],
    [setup('mount', 2), 'E_CONTAINER_SETUP', 125],
    [setup('cwd', 2), 'E_CONTAINER_SETUP', 125],
  ];
  for (const [cause, code, exit] of cases) {
    const e = ContainerStartError.from(cause);
    assert.equal(e.code, code, `${cause.step} ${cause.errno}`);
    assert.equal(e.exitCode, exit);
    assert.equal(e.message, cause.message, 'the message is the shim\'s');
    assert.equal(e.cause, cause);
    assert.deepEqual([e.step, e.path, e.errno], [cause.step, '/x', cause.errno]);
    assert.deepEqual(e.fields, { step: cause.step, path: '/x', errno: cause.errno });
  }
});

test('a shim that never reported is E_CONTAINER_SETUP (125) without fields, its error kept as cause', () => {
  const shim = new ShimError('the shim ended without reporting (signal 9)');
  const e = ContainerStartError.from(shim);
  assert.equal(e.code, 'E_CONTAINER_SETUP');
  assert.equal(e.exitCode, 125);
  assert.equal(e.message, shim.message);
  assert.equal(e.cause, shim);
  assert.equal(e.fields, undefined);
  assert.equal(ContainerStartError.from(e), e, 'an error already classified stays as it is');
});

test('at the wire a start error has its code, its fields and, as before, exitCode in the data', () => {
  const data = toResponseError(ContainerStartError.from(setup('exec', 2, 'nosuch'))).data!;
  assert.equal(data.code, 'E_COMMAND_NOT_FOUND');
  assert.equal(data.exitCode, 127);
  assert.deepEqual(data.fields, { step: 'exec', path: 'nosuch', errno: 2 });
});
