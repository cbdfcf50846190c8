/**
 * Helpers on different roots share the cgroup parent (`capsa` by default):
 * one starting up must not treat another's containers as its own leftovers.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { seedBusybox } from '../helpers/oci';
import { startHelper } from '../helpers/capsa';

let registry: TestRegistry;
before(async () => {
  registry = await startRegistry();
  await seedBusybox(registry);
});
after(async () => {
  await registry?.stop();
});

test('a helper starting on another root leaves the running containers of a helper sharing its cgroup parent alone', async (t) => {
  const env = { CAPSA_CGROUP_PARENT: `capsa-test-shared-${process.pid}` };
  const a = await startHelper({ mirror: registry.url, env });
  t.after(() => a.stop());
  const run = await a.cli(['run', '-d', '--name', 'keep', 'busybox', 'sleep', '300']);
  assert.equal(run.code, 0, run.stderr);
  const b = await startHelper({ mirror: registry.url, env });
  t.after(() => b.stop());
  // the other helper's start-up reconcile is done once it listens; give a kill time to land
  await new Promise((r) => setTimeout(r, 1000));
  const state = JSON.parse((await a.cli(['inspect', 'keep'])).stdout)[0];
  assert.equal(state.state?.status ?? state.State?.Status, 'running', JSON.stringify(state.state ?? state.State));
});
