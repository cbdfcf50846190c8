/**
 * What a container sees of its confinement, checked from inside it with the
 * real helper and kernel: seccomp, capabilities, masked and read-only paths,
 * /dev, a read-only root and read-only binds; and hostile values for every
 * confinement flag, which must fail before anything is created.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { seedBusybox } from '../helpers/oci';
import { type TestHelper, testHelper } from '../helpers/capsa';
import { CgroupManager } from '../../server/runtime/cgroups';

let registry: TestRegistry;
let tools: string;

/** Tiny static programs the container runs: a blocked syscall has no busybox applet. */
const PROGRAMS: Record<string, string> = {
  keyctl: `#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
  long r = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0);
  printf("%s\\n", r < 0 ? strerrorname_np(errno) : "ok");
  return 0;
}`,
  trymount: `#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
  int r = mount("tmpfs", "/mnt", "tmpfs", 0, NULL);
  printf("mount %s\\n", r < 0 ? strerrorname_np(errno) : "ok");
  r = (int)syscall(SYS_finit_module, 0, "", 0);
  printf("module %s\\n", r < 0 ? strerrorname_np(errno) : "ok");
  return 0;
}`,
};

before(async () => {
  registry = await startRegistry();
  await seedBusybox(registry);
  tools = mkdtempSync(path.join(tmpdir(), 'capsa-tools-'));
  for (const [name, src] of Object.entries(PROGRAMS)) {
    await fs.writeFile(path.join(tools, `${name}.c`), src);
    execFileSync('cc', ['-static', '-O1', '-o', path.join(tools, name), path.join(tools, `${name}.c`)]);
  }
});
after(async () => {
  await registry?.stop();
  await fs.rm(tools, { recursive: true, force: true });
});

async function helperFor(t: { after: (fn: () => Promise<void>) => void }): Promise<TestHelper & { cgroups: CgroupManager }> {
  const h = await testHelper(t, registry.url);
  const cgroups = new CgroupManager({ parent: h.cgroupParent });
  // after testHelper's clean-up (hooks run in the order registered): a container cgroup left behind keeps the parent
  t.after(async () => assert.deepEqual(await cgroups.list(), [], 'no container cgroup is left'));
  return Object.assign(h, { cgroups });
}

const tool = (name: string): string[] => ['-v', `${tools}/${name}:/usr/local/bin/${name}:ro`];

test('the default seccomp filter is on (Seccomp: 2) and keyctl fails with EPERM; unconfined lets it through', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', ...tool('keyctl'), 'busybox', 'sh', '-c', 'grep ^Seccomp: /proc/self/status; keyctl']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Seccomp:\s+2$/m);
  assert.match(r.stdout, /^EPERM$/m);
  const u = await h.cli(['run', '--rm', '--security-opt', 'seccomp=unconfined', ...tool('keyctl'), 'busybox', 'sh', '-c', 'grep ^Seccomp: /proc/self/status; keyctl']);
  assert.match(u.stdout, /^Seccomp:\s+0$/m);
  assert.doesNotMatch(u.stdout, /^EPERM$/m, 'without the filter keyctl reaches the kernel');
});

test('the command starts with no signal ignored or blocked, as after a login', async (t) => {
  const h = await helperFor(t);
  // busybox sh sets no dispositions of its own for -c without traps; `exec` makes grep PID 1's image
  const r = await h.cli(['run', '--rm', 'busybox', 'sh', '-c', 'exec grep -E "^Sig(Ign|Blk):" /proc/self/status']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^SigIgn:\s+0+$/m);
  assert.match(r.stdout, /^SigBlk:\s+0+$/m);
});

test('a seccomp profile FILE in Docker format is applied', async (t) => {
  const h = await helperFor(t);
  const profile = path.join(h.dir, 'profile.json');
  await fs.writeFile(profile, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }] }));
  const r = await h.cli(['run', '--rm', '--security-opt', `seccomp=${profile}`, 'busybox', 'sh', '-c', 'mkdir /x 2>&1; echo rc=$?']);
  assert.match(r.stdout, /Permission denied/);
  assert.match(r.stdout, /rc=1/);
});

test("CapEff is Docker's default set; --cap-drop ALL empties it; --cap-add adds one", async (t) => {
  const h = await helperFor(t);
  const caps = async (...flags: string[]): Promise<string> => {
    const r = await h.cli(['run', '--rm', ...flags, 'busybox', 'grep', '^CapEff:', '/proc/self/status']);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim().split(/\s+/)[1];
  };
  assert.equal(await caps(), '00000000a80425fb');
  assert.equal(await caps('--cap-drop', 'ALL'), '0000000000000000');
  const expected = (0xa80425fbn | (1n << 12n)) & ~(1n << 27n); // + NET_ADMIN − MKNOD
  assert.equal(await caps('--cap-add', 'NET_ADMIN', '--cap-drop', 'MKNOD'), expected.toString(16).padStart(16, '0'));
});

test('without --privileged the container cannot mount or load a module; the host disk stays unreachable', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', ...tool('trymount'), 'busybox', 'sh', '-c', 'trymount; mknod /tmp/sda b 8 0 && head -c1 /tmp/sda >/dev/null 2>&1; echo read=$?']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^mount EPERM$/m);
  assert.match(r.stdout, /^module EPERM$/m);
  assert.match(r.stdout, /read=1/, 'the device cgroup refuses to open a block device made with mknod');
});

test('/proc/kcore and /proc/keys are masked, /proc/sys and /sys are read-only', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli([
    'run', '--rm', 'busybox', 'sh', '-c',
    'wc -c < /proc/keys; test -e /proc/kcore && wc -c < /proc/kcore; echo 1 > /proc/sys/kernel/domainname 2>/dev/null; echo sys=$?; touch /sys/x 2>/dev/null; echo sysfs=$?; ls /sys/firmware | wc -l',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines[0], '0', '/proc/keys reads empty');
  assert.ok(lines.includes('sys=1'), r.stdout);
  assert.ok(lines.includes('sysfs=1'), r.stdout);
  assert.equal(lines[lines.length - 1], '0', '/sys/firmware is an empty tmpfs');
});

test('/dev holds the default devices and links, nothing else', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', 'busybox', 'ls', '-1', '/dev']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n').sort(), ['core', 'fd', 'full', 'mqueue', 'null', 'ptmx', 'pts', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero']);
  const tty = await h.cli(['run', '--rm', '-t', 'busybox', 'ls', '/dev/console']);
  assert.match(tty.stdout, /\/dev\/console/);
});

test('--read-only refuses writes to the root, a :ro bind refuses writes, a --tmpfs takes them', async (t) => {
  const h = await helperFor(t);
  const data = path.join(h.dir, 'data');
  await fs.mkdir(data);
  const r = await h.cli([
    'run', '--rm', '--read-only', '--tmpfs', '/scratch', '-v', `${data}:/data:ro`, 'busybox', 'sh', '-c',
    'touch /file 2>/dev/null; echo root=$?; touch /data/x 2>/dev/null; echo bind=$?; touch /scratch/x; echo tmpfs=$?',
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /root=1/);
  assert.match(r.stdout, /bind=1/);
  assert.match(r.stdout, /tmpfs=0/);
  assert.deepEqual(await fs.readdir(data), []);
});

test('a bind of a missing path is an error, not a created directory', async (t) => {
  const h = await helperFor(t);
  const missing = path.join(h.dir, 'nope');
  for (const flags of [['-v', `${missing}:/x`], ['--mount', `type=bind,source=${missing},target=/x`]]) {
    const r = await h.cli(['run', '--rm', ...flags, 'busybox', 'true']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /bind source path .*nope does not exist/);
  }
  await assert.rejects(fs.stat(missing));
  assert.deepEqual(await fs.readdir(path.join(h.root, 'containers')).catch(() => []), []);
});

test('--pid host sees host processes; --ipc host shares the host IPC namespace', async (t) => {
  const h = await helperFor(t);
  const r = await h.cli(['run', '--rm', '--pid', 'host', '--ipc', 'host', 'busybox', 'sh', '-c', `test -d /proc/${process.pid} && echo HOSTPID; readlink /proc/self/ns/ipc`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /HOSTPID/);
  assert.equal(r.stdout.trim().split('\n').pop(), await fs.readlink('/proc/self/ns/ipc'));
});

const HOSTILE: Array<[string[], RegExp]> = [
  [['--memory', '12x'], /invalid value "12x" for --memory/],
  [['--memory', '1k'], /minimum is 6m/],
  [['--memory', '-5'], /invalid value/],
  [['--cpus', 'lots'], /for --cpus/],
  [['--cpus', '0'], /for --cpus: the minimum is 0\.01/],
  [['--cpus', '4096'], /CPUs are available/],
  [['--pids-limit', '1.5'], /expected an integer/],
  [['--pids-limit', '-3'], /invalid pids-limit/],
  [['--ulimit', 'nofile'], /expected NAME=SOFT/],
  [['--ulimit', 'bogus=1'], /unknown resource bogus/],
  [['--ulimit', 'nofile=9:1'], /above hard limit/],
  [['--cap-add', 'SYS_WIZARD'], /unknown capability "SYS_WIZARD"/],
  [['--cap-drop', '../x'], /unknown capability/],
  [['--security-opt', 'seccomp=/nonexistent/profile.json'], /cannot read seccomp profile/],
  [['--security-opt', 'apparmor=unconfined'], /invalid security option/],
  [['--mount', 'type=nfs,target=/x'], /type must be bind, volume or tmpfs/],
  [['--mount', 'type=bind,source=relative,target=/x'], /absolute source/],
  [['--mount', 'type=volume,source=../etc,target=/x'], /invalid volume name/],
  [['--mount', 'type=volume,source=a/b,target=/x'], /invalid volume name/],
  // (`./x` and `../x` are resolved against the CLI's working directory, as Docker's CLI does; the helper takes only absolute paths)
  [['-v', 'etc/../..:/x'], /must be absolute, or a volume name/],
  [['--tmpfs', '/t:mode=9'], /malformed option/],
  [['--pid', 'container:x'], /invalid --pid/],
  [['--userns', 'sometimes'], /invalid --userns/],
];

test('hostile values for every confinement flag fail with a message naming the flag, before anything is created', async (t) => {
  const h = await helperFor(t);
  const bad = path.join(h.dir, 'bad.json');
  await fs.writeFile(bad, '{"defaultAction": 7}');
  const cases: Array<[string[], RegExp]> = [...HOSTILE, [['--security-opt', `seccomp=${bad}`], /defaultAction is required/]];
  for (const [flags, err] of cases) {
    const r = await h.cli(['run', '--rm', ...flags, 'busybox', 'true']);
    assert.equal(r.code, 125, `${flags.join(' ')}: ${r.stderr}`);
    // the helper's own message, or the CLI's check that now comes first and names the flag
    const flag = flags[0].replace(/^-+/, '');
    assert.ok(err.test(r.stderr) || new RegExp(`for --?${flag}\\b|--?${flag}\\b`).test(r.stderr), `${flags.join(' ')}: ${r.stderr}`);
  }
  assert.deepEqual(await fs.readdir(path.join(h.root, 'containers')).catch(() => []), []);
  assert.deepEqual(await fs.readdir(path.join(h.root, 'volumes')).catch(() => []), []);
});
