/**
 * Files a request names are touched with the caller's rights: bind sources
 * are opened as the caller and mounted through that descriptor
 * (server/runtime/bindsource.ts), load's archive is opened and save's output
 * created and renamed as the caller (util/hostfile.ts, image/archive/output.ts).
 * These cases drive those modules with a created user's Caller, so that
 * each can be checked at the descriptor (which inode was opened, what was
 * launched); hostile-users.test.ts runs the same table end to end, as the
 * user, through the real CLI and helper. Root's runs here go through the
 * real CLI and helper, the same code path with root's Caller.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, closeSync, existsSync, fstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { openBindSource } from '../../server/runtime/bindsource';
import { loadArchive } from '../../server/image/archive';
import { callerOutput } from '../../server/image/archive/output';
import { ImageStore } from '../../server/image/store';
import { openRegularFileAs } from '../../server/util/hostfile';
import { CapsaError } from '../../server/errors';
import type { Caller } from '../../server/util/peercred';
import { createUser } from '../helpers/users';
import { FakeLauncher } from '../helpers/fakeshim';
import { ContainerService, type ImageSource } from '../../server/runtime/container';
import type { LifecycleDeps } from '../../server/runtime/container/lifecycle';
import type { MonitorLaunch } from '../../server/runtime/container/launcher';
import type { CgroupManager } from '../../server/runtime/cgroups';
import type { Plan } from '../../server/runtime/plan';
import { fileRegistry, ok, processesOf, testHelper } from '../helpers/capsa';
import { promises as fsp } from 'node:fs';

function setup(t: { after: (fn: () => void) => void }) {
  const user = createUser(t);
  const caller: Caller = { uid: user.uid, gid: user.gid, groups: [user.gid, user.extraGid], pid: process.pid };
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-binds-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const home = path.join(dir, 'home');
  mkdirSync(home, { mode: 0o700 });
  chownSync(home, user.uid, user.gid);
  const own = path.join(home, 'own');
  mkdirSync(own, { mode: 0o755 });
  chownSync(own, user.uid, user.gid);
  return { user, caller, dir, home, own };
}

async function refused(p: Promise<number>, code: string, what: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof CapsaError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, what);
    return true;
  });
}

test("a user's bind of /etc/shadow, /root or another user's 0700 home is refused with permission denied; their own directory opens", async (t) => {
  const { caller, dir, home, own } = setup(t);
  const other = createUser(t);
  const otherHome = path.join(dir, 'other');
  mkdirSync(otherHome, { mode: 0o700 });
  chownSync(otherHome, other.uid, other.gid);
  await refused(openBindSource(caller, '/etc/shadow', { readOnly: true }), 'E_PERMISSION_DENIED', /bind source path \/etc\/shadow: permission denied for uid \d+/);
  await refused(openBindSource(caller, '/root', { readOnly: true }), 'E_PERMISSION_DENIED', /\/root: permission denied/);
  await refused(openBindSource(caller, otherHome), 'E_PERMISSION_DENIED', /permission denied/);
  // inside another user's home the caller's lookup itself stops
  await refused(openBindSource(caller, path.join(otherHome, 'x')), 'E_PERMISSION_DENIED', /permission denied/);
  // a world-readable directory is not the user's to write through a container
  await refused(openBindSource(caller, '/etc'), 'E_PERMISSION_DENIED', /read and write access needed/);
  // a symlink in the user's own directory to a place they cannot reach
  symlinkSync('/root', path.join(home, 'to-root'));
  await refused(openBindSource(caller, path.join(home, 'to-root')), 'E_PERMISSION_DENIED', /permission denied/);
  await refused(openBindSource(caller, path.join(home, 'missing')), 'E_INVALID_ARGUMENT', /does not exist/);
  const fd = await openBindSource(caller, own);
  try {
    assert.equal(fstatSync(fd).ino, statSync(own).ino);
  } finally {
    closeSync(fd);
  }
});

test("a user's bind of /proc/self/fd/N names only the opener's own descriptors (the user's), never the helper's", async (t) => {
  const { caller } = setup(t);
  for (const n of [0, 1, 2, 3, 4, 9]) {
    let fd: number;
    try {
      fd = await openBindSource(caller, `/proc/self/fd/${n}`);
    } catch (err) {
      assert.ok(err instanceof CapsaError && ['E_PERMISSION_DENIED', 'E_INVALID_ARGUMENT'].includes(err.code), String(err));
      continue;
    }
    const st = fstatSync(fd);
    closeSync(fd);
    // capsa-open runs as the user with /dev/null on 0-2 and its socket on 3: nothing of the helper's
    assert.ok(st.isCharacterDevice() || st.isSocket(), `fd ${n}: mode ${st.mode.toString(8)}`);
  }
});

test("a symlink the user swaps between their own directory and /root while it is opened never yields /root", async (t) => {
  const { user, caller, home, own } = setup(t);
  const link = path.join(home, 'link');
  symlinkSync(own, link);
  chownSync(link, user.uid, user.gid);
  // the swapper is the user: rename(2) over the link, so it always exists
  const swapper = spawn('sh', ['-c', `cd ${home} && while :; do ln -sfn /root t1 && mv -T t1 link; ln -sfn ${own} t2 && mv -T t2 link; done`], { uid: user.uid, gid: user.gid, stdio: 'ignore', detached: true });
  const exited = once(swapper, 'exit');
  // the whole group (sh and its ln or mv), before the user is removed
  const stop = async () => {
    try {
      process.kill(-swapper.pid!, 'SIGKILL');
    } catch {
      // ended already
    }
    await exited;
  };
  const ownIno = statSync(own).ino;
  let opened = 0;
  let denied = 0;
  for (let i = 0; i < 200; i++) {
    try {
      const fd = await openBindSource(caller, link).catch(async (err) => {
        await stop();
        throw err;
      });
      const ino = fstatSync(fd).ino;
      closeSync(fd);
      assert.equal(ino, ownIno, 'the descriptor is of the user own directory');
      opened++;
    } catch (err) {
      assert.ok(err instanceof CapsaError && err.code === 'E_PERMISSION_DENIED', String(err));
      denied++;
    }
  }
  await stop();
  t.diagnostic(`${denied} of 200 opens found /root and were refused`);
  assert.equal(opened + denied, 200);
});

const registry = fileRegistry();

test('root: a bind through a symlink mounts what the link named, and the descriptor reaches neither the command nor an --init PID 1', async (t) => {
  const h = await testHelper(t, registry.url);
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-binds-root-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const data = path.join(dir, 'data-marker-dir');
  mkdirSync(data);
  writeFileSync(path.join(data, 'marker'), 'seen\n');
  symlinkSync(data, path.join(dir, 'link'));
  assert.equal(await ok(h, ['run', '--rm', '-v', `${path.join(dir, 'link')}:/data`, 'busybox', 'cat', '/data/marker']), 'seen\n');
  for (const init of [[], ['--init']]) {
    const fds = await ok(h, ['run', '--rm', ...init, '-v', `${data}:/data:ro`, 'busybox', 'sh', '-c', 'ls -l /proc/1/fd /proc/self/fd']);
    assert.doesNotMatch(fds, /data-marker-dir|\/data$/m, fds);
  }
  // the monitor let its copies go once the container ran: nothing of the helper's side pins the source
  const id = (await ok(h, ['run', '-d', '-v', `${data}:/data`, 'busybox', 'sleep', '60'])).trim();
  for (const p of await processesOf(h)) {
    const pid = p.split(' ')[0];
    // stat follows each descriptor to its object, a detached mount tree's root included
    const want = statSync(data);
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const st = await fsp.stat(`/proc/${pid}/fd/${fd}`).catch(() => undefined);
      assert.ok(!(st && st.ino === want.ino && st.dev === want.dev), `${p} holds the bind source as fd ${fd}`);
    }
  }
  await ok(h, ['rm', '-f', id]);
  const gone = await h.cli(['run', '--rm', '-v', `${path.join(dir, 'nope')}:/data`, 'busybox', 'true']);
  assert.equal(gone.code, 125);
  assert.match(gone.stderr, /bind source path .*nope does not exist/);
});

test("load -i /etc/shadow as a user is refused with permission denied, and nothing is staged", async (t) => {
  const { caller, dir } = setup(t);
  const root = path.join(dir, 'store');
  const store = new ImageStore(root);
  await refused(loadArchive(store, '/etc/shadow', { caller }) as unknown as Promise<number>, 'E_PERMISSION_DENIED', /archive \/etc\/shadow: permission denied for uid \d+/);
  assert.equal(existsSync(path.join(root, 'tmp')) ? readdirSync(path.join(root, 'tmp')).length : 0, 0);
  // a FIFO is refused without blocking, a symlink as the last component too
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', ['-m', '0666', fifo]);
  await refused(openRegularFileAs(caller, fifo, 'archive').then(() => 0), 'E_INVALID_ARGUMENT', /is a FIFO, not a regular file/);
  symlinkSync('/etc/passwd', path.join(dir, 'link.tar'));
  await refused(openRegularFileAs(caller, path.join(dir, 'link.tar'), 'archive', { nofollow: true }).then(() => 0), 'E_INVALID_ARGUMENT', /symbolic link/);
  const { fh } = await openRegularFileAs(caller, '/etc/passwd', 'archive', { nofollow: true });
  await fh.close();
});

test("save -o into /etc/cron.d, or over another user's file in sticky /tmp, is refused for a user and leaves nothing there", async (t) => {
  const { user, caller, own } = setup(t);
  const cron = '/etc/cron.d/capsa-test-' + process.pid;
  await refused(callerOutput(caller, cron).then(() => 0), 'E_PERMISSION_DENIED', /cannot write \/etc\/cron\.d\/.*: permission denied for uid \d+/);
  assert.equal(existsSync(cron), false);
  assert.deepEqual(readdirSync('/etc/cron.d').filter((n) => n.includes('capsa-test')), []);

  const other = createUser(t);
  const victim = path.join(tmpdir(), `capsa-victim-${process.pid}`);
  writeFileSync(victim, 'theirs\n', { mode: 0o644 });
  chownSync(victim, other.uid, other.gid);
  t.after(() => rmSync(victim, { force: true }));
  const out = await callerOutput(caller, victim);
  await out.fh.write('mine\n');
  // root would replace it; the user may not (sticky /tmp)
  await refused(out.commit().then(() => 0), 'E_PERMISSION_DENIED', /permission denied/);
  await out.discard();
  assert.equal(readFileSync(victim, 'utf8'), 'theirs\n');
  assert.deepEqual(readdirSync(tmpdir()).filter((n) => n.startsWith(`.capsa-victim-${process.pid}`)), [], 'the temporary file went');

  // their own directory: the file is theirs, in place only once committed
  const mine = path.join(own, 'images.tar');
  const ok = await callerOutput(caller, mine);
  await ok.fh.write('archive\n');
  assert.equal(existsSync(mine), false);
  await ok.commit();
  assert.equal(readFileSync(mine, 'utf8'), 'archive\n');
  assert.equal(statSync(mine).uid, user.uid);
  assert.deepEqual(readdirSync(own), ['images.tar']);
});

/** Records, at each launch, what each bind descriptor the shim would inherit is (its inode), before the lifecycle closes its copies. */
class InodeLauncher extends FakeLauncher {
  readonly inodes: number[][] = [];
  override launchMonitor(plan: Plan, dir: string, opts: { stdin: boolean; bindFds?: number[] }): MonitorLaunch {
    this.inodes.push((opts.bindFds ?? []).map((fd) => fstatSync(fd).ino));
    return super.launchMonitor(plan, dir, opts);
  }
}

const fakeCgroups = { create: async () => [], remove: async () => undefined, oomKilled: async () => false, reconcile: async () => undefined } as unknown as CgroupManager;

test("a start as a user mounts descriptors of what the user's own lookup found: /root refused with nothing launched, a link swapped to /root 200 times never yields it", async (t) => {
  const { user, caller, dir, home, own } = setup(t);
  const layer = path.join(dir, 'layer');
  mkdirSync(layer);
  const images: ImageSource = { resolveForRun: async (reference) => ({ id: `sha256:${'a'.repeat(64)}`, reference, config: { Cmd: ['/bin/true'] }, layerDirs: [layer] }) };
  const launcher = new InodeLauncher();
  const service = new ContainerService(path.join(dir, 'capsa'), images, undefined, fakeCgroups, launcher);
  // the start's caller: the seam a container's owner will fill
  (service as unknown as { deps: LifecycleDeps }).deps.bindCaller = () => caller;
  await service.load();
  const run = (volume: string) => service.run({ image: 'busybox', network: 'none', rm: true, volumes: [volume] });

  await refused(run('/root:/r').then(() => 0), 'E_PERMISSION_DENIED', /bind source path \/root: permission denied for uid \d+/);
  assert.equal(launcher.inodes.length, 0, 'nothing launched');
  await run(`${own}:/data`);
  assert.deepEqual(launcher.inodes, [[statSync(own).ino]]);
  const plan = (launcher.calls[0] as { plan: Plan }).plan;
  const bind = plan.mounts.find((m) => m.target === '/data')!;
  assert.equal(bind.source, '/proc/self/fd/6', 'the shim mounts the descriptor, not the path');
  assert.deepEqual(plan.bindFds, [6]);

  const link = path.join(home, 'link');
  symlinkSync(own, link);
  const swapper = spawn('sh', ['-c', `cd ${home} && while :; do ln -sfn /root t1 && mv -T t1 link; ln -sfn ${own} t2 && mv -T t2 link; done`], { uid: user.uid, gid: user.gid, stdio: 'ignore', detached: true });
  const exited = once(swapper, 'exit');
  let denied = 0;
  try {
    for (let i = 0; i < 200; i++) {
      await run(`${link}:/data`).catch((err: unknown) => {
        assert.ok(err instanceof CapsaError && err.code === 'E_PERMISSION_DENIED', String(err));
        denied++;
      });
    }
  } finally {
    process.kill(-swapper.pid!, 'SIGKILL');
    await exited;
  }
  t.diagnostic(`${denied} of 200 starts found /root and were refused`);
  assert.equal(launcher.inodes.length, 1 + 200 - denied);
  for (const inodes of launcher.inodes) assert.deepEqual(inodes, [statSync(own).ino], 'every launch got the user own directory');
  await service.killAll();
});
