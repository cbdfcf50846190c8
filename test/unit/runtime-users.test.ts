import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { readImageFile, resolveUser } from '../../server/runtime/users';

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n';
const GROUP = 'root:x:0:\napp:x:1000:\nwheel:x:10:app\naudio:x:29:app,root\n';

test('names and numeric ids resolve like Docker, with supplementary groups from /etc/group', () => {
  assert.deepEqual(resolveUser(undefined, PASSWD, GROUP), { uid: 0, gid: 0, additionalGids: [29], home: '/root' });
  assert.deepEqual(resolveUser('app', PASSWD, GROUP), { uid: 1000, gid: 1000, additionalGids: [10, 29], home: '/home/app' });
  assert.deepEqual(resolveUser('1000', PASSWD, GROUP), { uid: 1000, gid: 1000, additionalGids: [10, 29], home: '/home/app' });
  assert.equal(resolveUser('app:wheel', PASSWD, GROUP).gid, 10);
  assert.deepEqual(resolveUser('4242:4343', PASSWD, GROUP), { uid: 4242, gid: 4343, additionalGids: [], home: undefined });
});

const broken: Array<[string, RegExp]> = [
  ['nobody-here', /unable to find user nobody-here/],
  ['app:nogroup', /unable to find group nogroup/],
  ['a:b:c', /invalid user/],
  ['app:', /empty group/],
  ['99999999999', /out of range/],
  ['x y', /invalid user/],
];
for (const [spec, err] of broken) {
  test(`user ${JSON.stringify(spec)} is refused with a clear error`, () => {
    assert.throws(() => resolveUser(spec, PASSWD, GROUP), err);
  });
}

test('image files are read top layer first, whiteouts hide, and symlinks are never followed', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const lower = path.join(dir, 'lower');
  const upper = path.join(dir, 'upper');
  mkdirSync(path.join(lower, 'etc'), { recursive: true });
  mkdirSync(path.join(upper, 'etc'), { recursive: true });
  writeFileSync(path.join(lower, 'etc', 'passwd'), 'lower');
  return (async () => {
    assert.equal(await readImageFile([upper, lower], 'etc/passwd'), 'lower');
    writeFileSync(path.join(upper, 'etc', 'passwd'), 'upper');
    assert.equal(await readImageFile([upper, lower], 'etc/passwd'), 'upper');
    rmSync(path.join(upper, 'etc', 'passwd'));
    symlinkSync('/etc/shadow', path.join(upper, 'etc', 'passwd'));
    assert.equal(await readImageFile([upper, lower], 'etc/passwd'), undefined);
  })();
});
