/** A run's phase trace (server/runtime/trace.ts) and its table (server/protocol/timings.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatTimings } from '../../server/protocol/timings';
import { NO_TRACE, PhaseTrace, timedPhases, traceEverything, traceFor } from '../../server/runtime/trace';
import { parseStatusLine } from '../../server/runtime/native';

test('the phases come out in time order, as ms since the first, marks with one stamp in the order marked', () => {
  const phases = timedPhases([
    { phase: 'request parsed', at: 1_000_000n },
    { phase: 'started reported', at: 9_500_000n },
    { phase: 'shim: cloned', at: 4_250_000n },
    { phase: 'shim: exec', at: 4_250_000n },
  ]);
  assert.deepEqual(phases, [
    { phase: 'request parsed', ms: 0 },
    { phase: 'shim: cloned', ms: 3.25 },
    { phase: 'shim: exec', ms: 3.25 },
    { phase: 'started reported', ms: 8.5 },
  ]);
  assert.deepEqual(timedPhases([]), []);
});

test('the table has a row per phase with when it ended and how long it took, then the total', () => {
  const text = formatTimings([
    { phase: 'request parsed', ms: 0 },
    { phase: 'image resolved', ms: 0.41 },
    { phase: 'exit reported', ms: 12.3456 },
  ]);
  assert.equal(
    text,
    [
      'phase              at ms      +ms',
      'request parsed      0.00     0.00',
      'image resolved      0.41     0.41',
      'exit reported      12.35    11.94',
      'total              12.35',
      '',
    ].join('\n'),
  );
  assert.equal(formatTimings([]), 'phase     at ms      +ms\n');
});

test('an untraced run gets the no-op trace; one asked for, or CAPSA_TRACE=1, a recording one', () => {
  const saved = process.env.CAPSA_TRACE;
  try {
    delete process.env.CAPSA_TRACE;
    assert.equal(traceFor(undefined), NO_TRACE);
    NO_TRACE.mark('anything');
    assert.deepEqual(NO_TRACE.phases(), []);
    const asked = traceFor(true);
    assert.ok(asked instanceof PhaseTrace);
    asked.mark('a');
    asked.mark('b', 5n);
    assert.deepEqual(asked.phases().map((p) => p.phase), ['a', 'b']);
    assert.equal(asked.phases()[1].at, 5n);
    process.env.CAPSA_TRACE = '1';
    assert.ok(traceEverything());
    assert.ok(traceFor(undefined).on);
  } finally {
    if (saved === undefined) delete process.env.CAPSA_TRACE;
    else process.env.CAPSA_TRACE = saved;
  }
});

test("the shim's phase lines parse, names with spaces included; a malformed stamp is no status", () => {
  assert.deepEqual(parseStatusLine('phase rootfs mounted 123456789012'), { kind: 'phase', phase: 'rootfs mounted', ns: 123456789012n });
  assert.equal(parseStatusLine('phase cloned'), undefined);
  assert.equal(parseStatusLine('phase cloned -5'), undefined);
  assert.equal(parseStatusLine('phase cloned 12x'), undefined);
});
