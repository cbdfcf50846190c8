/**
 * Every class of setup failure names the step, the path and the reason, and
 * leaves nothing behind: no mount, no cgroup, no process (neither a monitor
 * nor a container), no attach socket — counted before and after.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { seedBusybox } from '../helpers/oci';
import { mountsUnder, processesOf, settled, startHelper, type TestHelper } from '../helpers/capsa';

let registry: TestRegistry;
let h: TestHelper;
const parent = `capsa-test-${randomBytes(4).toString('hex')}`;

before(async () => {
  registry = await startRegistry();
  await seedBusybox(registry);
  h = await startHelper({ mirror: registry.url, env: { CAPSA_CGROUP_PARENT: parent } });
  const r = await h.cli(['pull', 'busybox']);
  assert.equal(r.code, 0, r.stderr);
});
after(async () => {
  await h?.stop();
  for (const c of await cgroupDirs()) await fs.rmdir(c).catch(() => undefined);
  await registry?.stop();
});

/** The cgroup directories under this helper's parent, in every hierarchy. */
async function cgroupDirs(): Promise<string[]> {
  const out: string[] = [];
  for (const c of await fs.readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    const base = path.join('/sys/fs/cgroup', c, parent);
    const kids = await fs.readdir(base, { withFileTypes: true }).catch(() => undefined);
    if (!kids) continue;
    out.push(base, ...kids.filter((k) => k.isDirectory()).map((k) => path.join(base, k.name)));
  }
  return out;
}

async function snapshot(): Promise<{ mounts: string[]; cgroups: string[]; processes: string[]; sockets: string[] }> {
  const sockets: string[] = [];
  const cdir = path.join(h.root, 'containers');
  for (const id of await fs.readdir(cdir).catch(() => [] as string[])) {
    if (await fs.stat(path.join(cdir, id, 'attach.sock')).catch(() => undefined)) sockets.push(id);
  }
  // the parent itself stays between runs; only container cgroups count
  const cgroups = (await cgroupDirs()).filter((d) => /[0-9a-f]{64}$/.test(d));
  return { mounts: await mountsUnder(h.dir), cgroups, processes: await processesOf(h), sockets };
}

const cases: Array<{ name: string; args: string[]; code: number; message: RegExp }> = [
  { name: 'a command that is not in PATH', args: ['busybox', 'pyhton'], code: 127, message: /exec: "pyhton": executable file not found in \$PATH/ },
  { name: 'a command path that does not exist', args: ['busybox', '/no/such/binary'], code: 127, message: /exec: "\/no\/such\/binary": no such file or directory/ },
  { name: 'a command that is not executable', args: ['busybox', '/etc/passwd'], code: 126, message: /exec: "\/etc\/passwd": permission denied/ },
  { name: 'a bind source that does not exist', args: ['-v', '/no/such/dir:/data', 'busybox', 'true'], code: 125, message: /\/no\/such\/dir.*does not exist/ },
  { name: 'an unknown user', args: ['-u', 'nosuchuser', 'busybox', 'true'], code: 125, message: /nosuchuser/ },
  { name: 'a working directory that is a file', args: ['-w', '/etc/passwd', 'busybox', 'true'], code: 125, message: /cwd.*"\/etc\/passwd".*not a directory/ },
  { name: 'an invalid memory limit', args: ['--memory', '1k', 'busybox', 'true'], code: 125, message: /memory/ },
];

for (const c of cases) {
  for (const rm of [true, false]) {
    test(`${c.name}${rm ? ' (--rm)' : ''}: the error names step, path and reason, and nothing is left behind`, async () => {
      const beforeState = await snapshot();
      const name = `fail-${randomBytes(3).toString('hex')}`;
      const r = await h.cli(['run', ...(rm ? ['--rm'] : []), '--name', name, ...c.args]);
      assert.equal(r.code, c.code, r.stderr);
      assert.match(r.stderr, c.message);
      assert.doesNotMatch(r.stderr, /\n.*\n.*\n/, 'one message, not a stack');
      // A monitor that failed ends at once, but its exit and the kernel's teardown can lag on a loaded machine: poll, not a fixed wait.
      const leftovers = async () => {
        const { processes, sockets } = await snapshot();
        return { processes, sockets };
      };
      const now = await settled(leftovers, { processes: beforeState.processes, sockets: beforeState.sockets });
      assert.deepEqual(now.processes, beforeState.processes, 'no monitor or container process is left');
      assert.deepEqual(now.sockets, beforeState.sockets, 'no attach socket is left');
      if (!rm && (await h.cli(['inspect', name])).code === 0) {
        // kept, as Docker keeps a container whose start failed: its state says why
        const info = JSON.parse((await h.cli(['inspect', name])).stdout)[0];
        assert.equal(info.State.ExitCode, c.code);
        assert.match(info.State.Error, c.message);
        assert.equal(info.State.Running, false);
        assert.equal((await h.cli(['rm', name])).code, 0);
      }
      assert.doesNotMatch((await h.cli(['ps', '-a'])).stdout, new RegExp(name), 'the container is gone');
      assert.deepEqual(await snapshot(), beforeState, 'no mount, cgroup, process or socket is left');
    });
  }
}
