/**
 * The "cgroup refused" setup failure: the kernel refuses the container's
 * cgroup (its parent path runs through a cgroup's `tasks` control file, so
 * the mkdir fails with ENOTDIR). The run fails naming the step, the path and
 * the reason, and leaves no mount, cgroup directory, container or process.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { seedBusybox } from '../helpers/oci';
import { mountsUnder, processesOf, settled, startHelper, type TestHelper } from '../helpers/capsa';

let registry: TestRegistry;
let h: TestHelper;
const top = `capsa-test-${randomBytes(4).toString('hex')}`;
// `tasks` (v1) or `cgroup.procs` (v2) is a file in every cgroup: a "parent" through it cannot be made
const controlFile = existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'cgroup.procs' : 'tasks';
const parent = `${top}/${controlFile}`;

before(async () => {
  registry = await startRegistry();
  await seedBusybox(registry);
  h = await startHelper({ mirror: registry.url, env: { CAPSA_CGROUP_PARENT: parent } });
  const r = await h.cli(['pull', 'busybox']);
  assert.equal(r.code, 0, r.stderr);
});
after(async () => {
  await h?.stop();
  for (const c of await fs.readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    await fs.rmdir(path.join('/sys/fs/cgroup', c, top)).catch(() => undefined);
  }
  await fs.rmdir(path.join('/sys/fs/cgroup', top)).catch(() => undefined);
  await registry?.stop();
});

/** Every directory under the test's top cgroup, in every hierarchy. */
async function cgroupDirs(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const k of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (k.isDirectory()) {
        out.push(path.join(d, k.name));
        await walk(path.join(d, k.name));
      }
    }
  };
  for (const c of await fs.readdir('/sys/fs/cgroup').catch(() => [] as string[])) await walk(path.join('/sys/fs/cgroup', c, top));
  await walk(path.join('/sys/fs/cgroup', top));
  return out.sort();
}

async function snapshot(): Promise<{ mounts: string[]; cgroups: string[]; processes: string[]; containers: string[] }> {
  const containers = (await fs.readdir(path.join(h.root, 'containers')).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{64}$/.test(n));
  return { mounts: await mountsUnder(h.dir), cgroups: await cgroupDirs(), processes: await processesOf(h), containers };
}

for (const flags of [[], ['--rm'], ['--memory', '64m', '--pids-limit', '50']]) {
  test(`a cgroup the kernel refuses fails the run${flags.length ? ` (${flags.join(' ')})` : ''}, naming step, path and reason, and leaves nothing`, async () => {
    const beforeState = await snapshot();
    const r = await h.cli(['run', ...flags, 'busybox', 'true']);
    assert.equal(r.code, 125, r.stderr);
    // e.g. cgroup create failed at /sys/fs/cgroup/memory/capsa-test-…/tasks/<id>: enotdir: not a directory, mkdir '…'
    assert.match(r.stderr, new RegExp(`cgroup create failed at /sys/fs/cgroup/[^ ]*${top}/${controlFile.replace('.', '\\.')}/[0-9a-f]{64}: .*not a directory`));
    assert.doesNotMatch(r.stderr, /\n.*\n.*\n/, 'one message, not a stack');
    // What the failed run started ends at once, but that can lag on a loaded machine: poll, not a fixed wait.
    assert.deepEqual(await settled(snapshot, beforeState), beforeState, 'no mount, cgroup, container or process is left');
    assert.equal((await h.cli(['ps', '-aq'])).stdout, '');
  });
}
