import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ParamsError, v } from '../../server/protocol/validate';
import { platformProblem } from '../../server/protocol/platform';
import { PARAMS } from '../../server/protocol/params';
import * as protocol from '../../server/protocol';
import { checkParams } from '../../server/handlers/validated';
import { InvalidArgumentError } from '../../server/errors';
import { parsePlatform, formatPlatform } from '../../server/image/platform';

function problem(schema: { check(value: unknown, path: string): void }, value: unknown): string | undefined {
  try {
    schema.check(value, '');
    return undefined;
  } catch (err) {
    assert.ok(err instanceof ParamsError, String(err));
    return err.message;
  }
}

const run = v.object({ image: v.string({ min: 1 }), labels: v.optional(v.record(v.string())), cmd: v.optional(v.array(v.string())), size: v.optional(v.object({ rows: v.number({ integer: true, min: 1 }) })) });

test('a schema names the field path, what it must be and what came', () => {
  const cases: Array<[unknown, RegExp | undefined]> = [
    [{ image: 'busybox' }, undefined],
    [{ image: 'busybox', labels: { a: 'b' }, cmd: ['sh'] }, undefined],
    [{ image: 'busybox', labels: 'a=b' }, /^labels must be an object of strings, got a string$/],
    [{ image: 'busybox', labels: { foo: 1 } }, /^labels\.foo must be a string, got the number 1$/],
    [{ image: 'busybox', labels: { 'a b': 1 } }, /^labels\."a b" must be a string/],
    [{ image: 'busybox', cmd: ['sh', 2] }, /^cmd\[1\] must be a string, got the number 2$/],
    [{ image: 'busybox', size: { rows: 0 } }, /^size\.rows must be a whole number >= 1, got the number 0$/],
    [{ image: 'busybox', size: { rows: 1.5 } }, /^size\.rows must be a whole number/],
    [{ image: '' }, /^image must be a non-empty string, got an empty string$/],
    [{}, /^image is required \(a non-empty string\)$/],
    [{ image: 'busybox', imgae: 'x' }, /^imgae is not a known field$/],
    [null, /^params must be an object, got null$/],
    [[1], /^params must be an object, got a list$/],
    ['x', /^params must be an object, got a string$/],
  ];
  for (const [value, want] of cases) {
    const got = problem(run, value);
    if (want === undefined) assert.equal(got, undefined, JSON.stringify(value));
    else assert.match(got ?? '(accepted)', want, JSON.stringify(value));
  }
});

test('an unknown field is refused even when its value is undefined-like, and inherited keys are not fields', () => {
  assert.match(problem(run, { image: 'b', extra: null }) ?? '', /extra is not a known field/);
  assert.match(problem(run, JSON.parse('{"image":"b","__proto__":{"x":1}}')) ?? '', /__proto__.* is not a known field/);
  assert.match(problem(run, { image: 'b', constructor: 'x' }) ?? '', /constructor is not a known field/);
});

test('literal, union, none and bounds say what they accept', () => {
  assert.match(problem(v.literal('always', 'never'), 'sometimes') ?? '', /must be one of "always", "never", got a string/);
  assert.equal(problem(v.union(v.string(), v.number({ integer: true })), 3), undefined);
  assert.match(problem(v.union(v.string(), v.number({ integer: true })), true) ?? '', /must be a string or a whole number, got a boolean/);
  assert.equal(problem(v.none(), undefined), undefined);
  assert.equal(problem(v.none(), {}), undefined);
  assert.match(problem(v.none(), { all: true }) ?? '', /^all is not a known field/);
  assert.match(problem(v.none(), [1]) ?? '', /must be absent or an empty object/);
  assert.match(problem(v.string({ max: 3 }), 'abcd') ?? '', /at most 3 characters, got 4 characters/);
  assert.match(problem(v.array(v.string(), { min: 1 }), []) ?? '', /must be a non-empty list of strings, got a list/);
  assert.match(problem(v.number(), Number.NaN) ?? '', /must be a number/);
  assert.match(problem(v.record(v.string(), { maxKeys: 1 }), { a: 'x', b: 'y' }) ?? '', /at most 1 entries, got 2/);
});

test('every client → helper message of the protocol declares its params', () => {
  const declared = (Object.values(protocol) as unknown[]).filter((x): x is { method: string; params: unknown } => typeof x === 'object' && x !== null && 'method' in x && 'params' in x);
  const received = declared.filter((m) => !['capsa/stream/output', 'capsa/stream/exit', 'capsa/stream/timings'].includes(m.method));
  assert.ok(received.length >= 35, `${received.length} messages`);
  for (const m of received) assert.ok(PARAMS.has(m.method), `${m.method} is missing from PARAMS`);
});

test('checkParams throws an InvalidArgumentError that names the method and escapes what the client sent', () => {
  const schema = PARAMS.get(protocol.ContainerRunRequest.method)!;
  assert.throws(() => checkParams(protocol.ContainerRunRequest.method, schema, { image: 'b', labels: 'x' }), (err: Error) => {
    assert.ok(err instanceof InvalidArgumentError);
    assert.equal(err.message, 'capsa/container/run: labels must be an object of strings, got a string');
    return true;
  });
  assert.throws(() => checkParams(protocol.ContainerRunRequest.method, schema, { image: 'b', labels: { '\u001b[2J': 1 } }), (err: Error) => {
    assert.doesNotMatch(err.message, /\u001b/);
    assert.match(err.message, /labels\."\\u001b\[2J" must be a string/);
    return true;
  });
  assert.throws(() => checkParams(protocol.ContainerRunRequest.method, schema, { image: 'b', ['\u009b' + 'x'.repeat(500)]: 1 }), (err: Error) => {
    assert.doesNotMatch(err.message, /[\u0080-\u009f]/);
    assert.ok(err.message.length < 200, err.message);
    return true;
  });
  // no params at all for a message that takes none
  checkParams(protocol.ImageListRequest.method, PARAMS.get(protocol.ImageListRequest.method)!, undefined);
  checkParams(protocol.ContainerListRequest.method, PARAMS.get(protocol.ContainerListRequest.method)!, null);
});

test('platforms are os/arch[/variant] with the OCI values, normalised as containerd does', () => {
  const good: Array<[string, string]> = [
    ['linux/amd64', 'linux/amd64'],
    ['LINUX/AMD64', 'linux/amd64'],
    ['linux/x86_64', 'linux/amd64'],
    ['linux/aarch64', 'linux/arm64/v8'],
    ['linux/arm/v6', 'linux/arm/v6'],
    ['linux/arm/7', 'linux/arm/v7'],
    ['linux/amd64/v3', 'linux/amd64/v3'],
    ['linux/arm64/v9.2', 'linux/arm64/v9.2'],
    ['windows/amd64', 'windows/amd64'],
    ['linux/riscv64', 'linux/riscv64'],
    ['linux/s390x', 'linux/s390x'],
  ];
  for (const [input, want] of good) {
    assert.equal(platformProblem(input), undefined, input);
    assert.equal(formatPlatform(parsePlatform(input)), want, input);
  }
  const bad: Array<[string, RegExp]> = [
    ['../../x', /unknown os "\.\."/],
    ['linux/amd64/../../x', /must be os\/arch\[\/variant\]/],
    ['linux', /must be os\/arch\[\/variant\]/],
    ['', /must be os\/arch\[\/variant\]/],
    ['linux/', /must be os\/arch\[\/variant\]/],
    ['/amd64', /must be os\/arch\[\/variant\]/],
    ['linux//v7', /must be os\/arch\[\/variant\]/],
    ['linux/amd64/', /must be os\/arch\[\/variant\]/],
    ['linux/amd65', /unknown architecture "amd65"/],
    ['linux/amd64/v9', /unknown amd64 variant "v9"/],
    ['linux/arm/v4', /unknown arm variant "v4"/],
    ['linux/s390x/v1', /s390x takes none/],
    ['lin\u001bux/amd64', /unknown os/],
  ];
  for (const [input, want] of bad) {
    assert.match(platformProblem(input) ?? '(accepted)', want, JSON.stringify(input));
    assert.throws(() => parsePlatform(input), (err: Error) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.doesNotMatch(err.message, /\u001b/);
      return true;
    });
  }
});
