/**
 * The run-option checks declared once in server/protocol/runoptions.ts, which
 * the CLI makes before sending and the helper makes again on receipt.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pullPolicyProblem, usernsProblem } from '../../server/protocol/runoptions';
import { prepareRun } from '../../server/runtime/runsetup';

test('pull policies always, missing and never pass; anything else is refused naming the three', () => {
  for (const p of ['always', 'missing', 'never']) assert.equal(pullPolicyProblem(p), undefined);
  assert.equal(pullPolicyProblem('sometimes'), 'invalid pull policy "sometimes": expected always, missing or never');
  assert.equal(pullPolicyProblem(3), 'invalid pull policy 3: expected always, missing or never');
});

test('--userns host and auto pass; anything else is refused naming both', () => {
  for (const u of ['host', 'auto']) assert.equal(usernsProblem(u), undefined);
  assert.equal(usernsProblem('keep-id'), 'invalid --userns "keep-id": expected host or auto');
});

test('the helper refuses a bad --userns with the same words as the CLI', async () => {
  await assert.rejects(
    prepareRun({ image: 'busybox', userns: 'keep-id' as 'host' } as Parameters<typeof prepareRun>[0], '/nonexistent'),
    (err: Error) => err.message === usernsProblem('keep-id'),
  );
});
