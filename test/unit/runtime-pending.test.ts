/** The removals that run after an exit was reported (server/runtime/container/pending.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConflictError, InvalidArgumentError } from '../../server/errors';
import { PendingRemovals } from '../../server/runtime/container/pending';

test('drain waits for every removal, those tracked while it waits included', async () => {
  const p = new PendingRemovals();
  const done: string[] = [];
  p.track(new Promise<void>((r) => setTimeout(() => (done.push('a'), p.track(new Promise<void>((r2) => setTimeout(() => (done.push('b'), r2()), 5))), r()), 5)));
  await p.drain();
  assert.deepEqual(done, ['a', 'b']);
  assert.equal(p.size, 0);
});

test('a make that lacks what a pending removal gives back is tried again once it is done; other failures are not', async () => {
  const p = new PendingRemovals();
  let free = false;
  p.track(new Promise<void>((r) => setTimeout(() => ((free = true), r()), 5)));
  let tries = 0;
  const got = await p.retry(async () => {
    tries++;
    if (!free) throw new ConflictError('no free address left in 10.88.0.0/30');
    return 'address';
  });
  assert.equal(got, 'address');
  assert.equal(tries, 2);
  // nothing pending: the failure is the caller's at once
  await assert.rejects(p.retry(async () => Promise.reject(new ConflictError('no free address'))), ConflictError);
  p.track(new Promise<void>((r) => setTimeout(r, 5)));
  tries = 0;
  await assert.rejects(
    p.retry(async () => {
      tries++;
      throw new InvalidArgumentError('bad');
    }),
    InvalidArgumentError,
  );
  assert.equal(tries, 1);
});
