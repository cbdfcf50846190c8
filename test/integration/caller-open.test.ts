/**
 * openAsCaller as a real user of the machine: the kernel checks the user's
 * uid, gid and supplementary groups on every component of the path, so the
 * helper (root) hands back only what the user could open itself.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, closeSync, fstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, mkdirSync, readSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { CallerOpenError, openAsCaller, openerPath } from '../../server/util/opener';
import { closeFd, receiveMessage, sendMessage, seqpacketPair } from '../../server/util/seqpacket';
import { spawnProgram } from '../../server/util/spawn';
import type { Caller } from '../../server/util/peercred';
import { createUser } from '../helpers/users';

function setup(t: { after: (fn: () => void) => void }) {
  const user = createUser(t);
  const caller: Caller = { uid: user.uid, gid: user.gid, groups: [user.gid, user.extraGid], pid: process.pid };
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-open-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const home = path.join(dir, 'home');
  mkdirSync(home, { mode: 0o700 });
  chownSync(home, user.uid, user.gid);
  return { user, caller, dir, home };
}

async function refused(p: Promise<number>, errno: string | RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof CallerOpenError, String(err));
    if (typeof errno === 'string') assert.equal(err.errno, errno, err.message);
    else assert.match(err.errno, errno, err.message);
    return true;
  });
}

const readAll = (fd: number): string => {
  const buf = Buffer.alloc(4096);
  const n = readSync(fd, buf, 0, buf.length, 0);
  return buf.toString('utf8', 0, n);
};

test("a user opens their own file, and one readable through a supplementary group, but not root's /etc/shadow", async (t) => {
  const { user, caller, dir, home } = setup(t);
  const own = path.join(home, 'notes.txt');
  writeFileSync(own, 'mine\n', { mode: 0o600 });
  chownSync(own, user.uid, user.gid);
  const fd = await openAsCaller(caller, own, { how: 'read' });
  t.after(() => closeSync(fd));
  assert.equal(readAll(fd), 'mine\n');
  const shared = path.join(dir, 'group-only.txt');
  writeFileSync(shared, 'team\n', { mode: 0o640 });
  chownSync(shared, 0, user.extraGid);
  const gfd = await openAsCaller(caller, shared, { how: 'read' });
  assert.equal(readAll(gfd), 'team\n');
  closeSync(gfd);
  await refused(openAsCaller({ ...caller, groups: [user.gid] }, shared, { how: 'read' }), 'EACCES');
  await refused(openAsCaller(caller, '/etc/shadow', { how: 'read' }), 'EACCES');
  await assert.rejects(openAsCaller(caller, '/etc/shadow', { how: 'read' }), /E_PERMISSION_DENIED|cannot open \/etc\/shadow as uid \d+: permission denied/);
});

test("a symlink in the user's own directory to /etc/shadow is refused, followed or not", async (t) => {
  const { user, caller, home } = setup(t);
  const link = path.join(home, 'shadow');
  symlinkSync('/etc/shadow', link);
  chownSync(home, user.uid, user.gid);
  await refused(openAsCaller(caller, link, { how: 'read' }), 'EACCES');
  await refused(openAsCaller(caller, link, { how: 'read', noFollow: true }), 'ELOOP');
});

test('a /proc/self/fd/N path names only the opener\'s own descriptors, and another process\'s fds are out of reach', async (t) => {
  const { caller } = setup(t);
  // the helper's (this process's) descriptors: an open /etc/shadow among them
  const secret = (await import('node:fs')).openSync('/etc/shadow', 'r');
  t.after(() => closeSync(secret));
  for (let n = 0; n < 32; n++) {
    try {
      const fd = await openAsCaller(caller, `/proc/self/fd/${n}`, { how: 'read' });
      const target = readFileSync(`/proc/self/fd/${fd}`, { encoding: null }).length;
      const st = fstatSync(fd);
      closeSync(fd);
      assert.ok(st.isCharacterDevice(), `/proc/self/fd/${n} opened something other than /dev/null (${target} bytes)`);
    } catch (err) {
      assert.ok(err instanceof CallerOpenError, String(err));
      assert.match(err.errno, /ENOENT|ENXIO|EACCES/, err.message);
    }
  }
  await refused(openAsCaller(caller, `/proc/${process.pid}/fd/${secret}`, { how: 'read' }), 'EACCES');
});

test('a path through a directory only root can traverse is refused; root opens anything', async (t) => {
  const { caller, dir } = setup(t);
  const locked = path.join(dir, 'locked');
  mkdirSync(locked, { mode: 0o700 });
  writeFileSync(path.join(locked, 'open.txt'), 'world-readable\n', { mode: 0o644 });
  await refused(openAsCaller(caller, path.join(locked, 'open.txt'), { how: 'read' }), 'EACCES');
  await refused(openAsCaller(caller, path.join(locked, 'open.txt'), { how: 'path' }), 'EACCES');
  const root: Caller = { uid: 0, gid: 0, groups: [], pid: process.pid };
  const fd = await openAsCaller(root, path.join(locked, 'open.txt'), { how: 'read' });
  assert.equal(readAll(fd), 'world-readable\n');
  closeSync(fd);
  const sfd = await openAsCaller(root, '/etc/shadow', { how: 'read' });
  assert.ok(readAll(sfd).startsWith('root:'));
  closeSync(sfd);
});

test('create makes a new file owned by the user, never an existing one', async (t) => {
  const { user, caller, home } = setup(t);
  const file = path.join(home, 'out.tar');
  const fd = await openAsCaller(caller, file, { how: 'create', mode: 0o600 });
  const st = fstatSync(fd);
  closeSync(fd);
  assert.equal(st.uid, user.uid);
  assert.equal(st.gid, user.gid);
  assert.equal(st.mode & 0o777, 0o600);
  await refused(openAsCaller(caller, file, { how: 'create' }), 'EEXIST');
  await refused(openAsCaller(caller, '/etc/capsa-should-not-exist', { how: 'create' }), 'EACCES');
  await refused(openAsCaller(caller, 'relative/path', { how: 'read' }), 'EINVAL');
});

test('capsa-open refuses a malformed request naming the step, and opens nothing', async () => {
  const cases: Array<[string, RegExp]> = [
    ['garbage', /^error request\t\t22\texpected 7 NUL-terminated fields/],
    ['1000\0' + '1000\0\0read\0' + '0\0' + '644\0' + 'relative\0', /^error request\trelative\t22\tthe path must be absolute/],
    ['1000\0' + '1000\0\0write-anything\0' + '0\0' + '644\0' + '/etc/shadow\0', /^error request\t\t22\tunknown open mode/],
    ['-1\0' + '0\0\0read\0' + '0\0' + '644\0' + '/etc/shadow\0', /^error request\t\t22\tbad uid/],
    ['1000\0' + '1000\0' + '1,x\0read\0' + '0\0' + '644\0' + '/etc/shadow\0', /^error request\t\t22\tbad group list/],
  ];
  for (const [request, want] of cases) {
    const [ours, theirs] = seqpacketPair();
    sendMessage(ours, Buffer.from(request));
    const child = spawnProgram(openerPath(), [], { fds: [theirs], setsid: false, watch: 'wait', env: {} });
    closeFd(theirs);
    const exit = await child.exited;
    const msg = receiveMessage(ours, 8192, 1);
    closeFd(ours);
    assert.equal(msg.fds.length, 0, `no descriptor for ${JSON.stringify(request)}`);
    assert.match(msg.data.toString(), want);
    assert.equal(exit.code, 1);
  }
});
