import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { LockFileError, describeChanges, isDigestReference, lockPathFor, parseLock, pinnedReference, readLock, serializeLock, writeLock, type LockFile } from '../../extension/lockfile';

const D1 = 'sha256:' + 'a'.repeat(64);
const D2 = 'sha256:' + 'b'.repeat(64);

test('a missing lock file reads as empty; written pins read back identical, keys sorted', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'capsa-lock.json');
  assert.deepEqual(readLock(file), { version: 1, images: {} });
  const lock: LockFile = {
    version: 1,
    images: {
      'zeta:1': { resolved: 'docker.io/library/zeta:1', digest: D2, pinnedAt: '2024-01-01T00:00:00.000Z' },
      busybox: { resolved: 'docker.io/library/busybox:latest', digest: D1, pinnedAt: '2024-01-01T00:00:00.000Z' },
    },
  };
  writeLock(file, lock);
  assert.deepEqual(readLock(file), lock);
  assert.deepEqual(Object.keys(JSON.parse(readFileSync(file, 'utf8')).images), ['busybox', 'zeta:1']);
  assert.deepEqual(readdirSync(dir), ['capsa-lock.json'], 'no temporary file is left behind');
  assert.equal(serializeLock(lock), readFileSync(file, 'utf8'));
});

const bad: Array<[string, string, RegExp]> = [
  ['not JSON', '{', /invalid JSON/],
  ['no images', '{"version":1}', /expected/],
  ['future version', '{"version":2,"images":{}}', /unsupported version 2/],
  ['short digest', '{"version":1,"images":{"b":{"resolved":"r","digest":"sha256:abc"}}}', /sha256 "digest"/],
];
for (const [name, text, re] of bad) {
  test(`a broken lock file is refused with a clear error: ${name}`, () => {
    assert.throws(() => parseLock(text, '/w/capsa-lock.json'), (e: unknown) => e instanceof LockFileError && e.message.startsWith('/w/capsa-lock.json') && re.test(e.message));
  });
}

test('pinned references drop the tag and keep registry ports', () => {
  assert.equal(pinnedReference('docker.io/library/busybox:latest', D1), `docker.io/library/busybox@${D1}`);
  assert.equal(pinnedReference('127.0.0.1:5757/library/busybox:1.36', D1), `127.0.0.1:5757/library/busybox@${D1}`);
  assert.equal(pinnedReference('127.0.0.1:5757/busybox', D1), `127.0.0.1:5757/busybox@${D1}`);
  assert.ok(isDigestReference(`busybox@${D1}`));
  assert.ok(!isDigestReference('busybox:latest'));
});

test('the lock lives beside devcontainer.json, else in the workspace root', () => {
  assert.equal(lockPathFor('/w/.devcontainer/devcontainer.json', '/w'), '/w/.devcontainer/capsa-lock.json');
  assert.equal(lockPathFor(undefined, '/w'), '/w/capsa-lock.json');
});

test('describeChanges says what moved', () => {
  const e = (digest: string) => ({ resolved: 'r', digest, pinnedAt: 't' });
  const lines = describeChanges({ version: 1, images: { a: e(D1), b: e(D1), c: e(D1) } }, { version: 1, images: { a: e(D1), b: e(D2), d: e(D2) } });
  assert.deepEqual(lines, [`a: unchanged (${D1})`, `b: ${D1} → ${D2}`, `c: unpinned (was ${D1})`, `d: pinned to ${D2}`]);
});

test('writeLock replaces an existing file atomically', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'capsa-lock.json');
  writeFileSync(file, 'garbage');
  writeLock(file, { version: 1, images: {} });
  assert.deepEqual(readLock(file), { version: 1, images: {} });
});
