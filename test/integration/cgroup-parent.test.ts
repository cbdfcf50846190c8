/**
 * Helpers on different roots share the cgroup parent (`capsa` by default):
 * one starting up must not treat another's containers as its own leftovers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newCgroupParent, removeCgroupParent, startHelper, type TestHelper, fileRegistry } from '../helpers/capsa';
import { CgroupManager } from '../../server/runtime/cgroups';

const registry = fileRegistry();

test('a helper starting on another root leaves the running containers of a helper sharing its cgroup parent alone', async (t) => {
  const parent = newCgroupParent();
  const env = { CAPSA_CGROUP_PARENT: parent };
  let a: TestHelper | undefined;
  let b: TestHelper | undefined;
  // the parent goes only once both helpers have removed their containers' cgroups
  t.after(async () => {
    await a?.stop();
    await b?.stop();
    await removeCgroupParent(parent);
  });
  a = await startHelper({ mirror: registry.url, env });
  const run = await a.cli(['run', '-d', '--name', 'keep', 'busybox', 'sleep', '300']);
  assert.equal(run.code, 0, run.stderr);
  const id = run.stdout.trim();
  const cgroups = new CgroupManager({ parent });
  const mine = async () => (await cgroups.list()).filter((d) => d.endsWith(`/${id}`));
  const before = await mine();
  assert.ok(before.length > 0, 'the container has cgroups under the shared parent');
  b = await startHelper({ mirror: registry.url, env });
  // The other helper's start-up reconcile is done once it listens: had it taken the container for a leftover,
  // its cgroups would be gone (removing them kills what is in them), whatever A has noticed by now.
  assert.deepEqual(await mine(), before, "the container's cgroups are still there");
  const exec = await a.cli(['exec', 'keep', 'true']);
  assert.equal(exec.code, 0, `the container still runs processes: ${exec.stderr}`);
  const state = JSON.parse((await a.cli(['inspect', 'keep'])).stdout)[0];
  assert.equal(state.state?.status ?? state.State?.Status, 'running', JSON.stringify(state.state ?? state.State));
});
