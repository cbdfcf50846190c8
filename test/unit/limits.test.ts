/**
 * The ceilings of server/limits.ts and the readers that enforce them: a
 * stream is cut as it passes its limit, a map is counted, a file that is not
 * a regular file is refused without blocking, and every error names the
 * limit and its value.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { checkSize, checkStringMap, exceeded, formatLimit, LimitExceededError, LIMITS, readCapped, readPrefix, type Limit } from '../../server/limits';
import { openRegularFile, readRegularFile, readUserFile } from '../../server/util/hostfile';
import { parseManifest } from '../../server/image/registry';

const MiB = 1024 * 1024;
const small: Limit = { name: 'test', bytes: 10 };

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An endless stream of `size`-byte chunks that counts what was pulled from it. */
function endless(size = 64 * 1024): Readable & { pulled: number } {
  const chunk = Buffer.alloc(size, 0x61);
  const r = new Readable({
    read() {
      (r as Readable & { pulled: number }).pulled += chunk.length;
      this.push(chunk);
    },
  }) as Readable & { pulled: number };
  r.pulled = 0;
  return r;
}

test('the ceilings the README documents: manifests and indexes 4 MiB (as Docker and containerd), configs 8 MiB, token responses 1 MiB', () => {
  assert.equal(LIMITS.manifest.bytes, 4 * MiB);
  assert.equal(LIMITS.index.bytes, 4 * MiB);
  assert.equal(LIMITS.config.bytes, 8 * MiB);
  assert.equal(LIMITS.tokenResponse.bytes, 1 * MiB);
  assert.equal(LIMITS.bearerToken.bytes, 64 * 1024);
  assert.equal(LIMITS.errorBody.bytes, 64 * 1024);
  assert.equal(LIMITS.envFile.bytes, 1 * MiB);
  assert.equal(LIMITS.seccompProfile.bytes, 1 * MiB);
  assert.equal(LIMITS.labels.entries, 4096);
  for (const [key, l] of Object.entries(LIMITS) as Array<[string, Limit]>) {
    assert.ok(Number.isSafeInteger(l.bytes) && l.bytes > 0, `${key} has a positive size`);
    assert.match(l.name, /^[a-z][a-z .-]*[a-z]$/i, `${key} has a name for messages`);
  }
  assert.equal(new Set(Object.values(LIMITS).map((l) => l.name)).size, Object.keys(LIMITS).length, 'names are unique');
});

test('limits print in the unit that divides them', () => {
  assert.equal(formatLimit(4 * MiB), '4 MiB');
  assert.equal(formatLimit(64 * 1024), '64 KiB');
  assert.equal(formatLimit(1000), '1000 bytes');
});

test('the error names what passed which limit, its value, and the size when known', () => {
  const e = exceeded(LIMITS.manifest, 'manifest of x in registry y', 5 * MiB);
  assert.ok(e instanceof LimitExceededError);
  assert.equal(e.code, 'E_LIMIT_EXCEEDED');
  assert.equal(e.limit, LIMITS.manifest);
  assert.equal(e.message, 'manifest of x in registry y is larger than the manifest limit (4 MiB): 5242880 bytes');
  assert.throws(() => checkSize(small, 'thing', 11), /thing is larger than the test limit \(10 bytes\): 11 bytes/);
  checkSize(small, 'thing', 10);
});

test('readCapped returns a body within the limit and cuts an endless one just past it', async () => {
  assert.equal((await readCapped(Readable.from([Buffer.from('12345'), Buffer.from('67890')]), small, 'body')).toString(), '1234567890');
  const r = endless();
  await assert.rejects(readCapped(r, LIMITS.manifest, 'endless body'), /endless body is larger than the manifest limit \(4 MiB\)$/);
  assert.ok(r.destroyed, 'the stream is destroyed');
  assert.ok(r.pulled < LIMITS.manifest.bytes + 256 * 1024, `read ${r.pulled} bytes`);
});

test('readPrefix keeps the first bytes of an endless body and stops there, without failing', async () => {
  const r = endless();
  const b = await readPrefix(r, LIMITS.errorBody);
  assert.equal(b.length, LIMITS.errorBody.bytes);
  assert.ok(r.destroyed);
  assert.equal((await readPrefix(Readable.from([Buffer.from('short')]), LIMITS.errorBody)).toString(), 'short');
});

test('string maps are counted by entries and by bytes, and must hold strings', () => {
  const many: Record<string, string> = {};
  for (let i = 0; i <= LIMITS.labels.entries!; i++) many[`k${i}`] = '';
  assert.throws(() => checkStringMap(LIMITS.labels, 'labels of x', many), /labels of x has more than the labels limit of 4096 entries/);
  assert.throws(() => checkStringMap(LIMITS.labels, 'labels of x', { k: 'v'.repeat(LIMITS.labels.bytes) }), /labels of x is larger than the labels limit \(256 KiB\)/);
  assert.throws(() => checkStringMap(LIMITS.labels, 'labels of x', { k: 1 }), /labels of x: value of "k" is not a string/);
  assert.throws(() => checkStringMap(LIMITS.labels, 'labels of x', ['a']), /labels of x must be a map of strings/);
  assert.equal(checkStringMap(LIMITS.labels, 'labels of x', null), undefined);
  assert.deepEqual(checkStringMap(LIMITS.labels, 'labels of x', { a: 'b' }), { a: 'b' });
});

test('a manifest with more annotations than the annotations limit is refused naming it', () => {
  const annotations: Record<string, string> = {};
  for (let i = 0; i < 5000; i++) annotations[`a${i}`] = 'v';
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: 'sha256:' + 'a'.repeat(64), size: 2 };
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: [], annotations }));
  assert.throws(() => parseManifest(bytes, '', 'x'), /annotations of manifest of x has more than the annotations limit of 4096 entries/);
  const desc = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { ...config, annotations: { k: 'v'.repeat(300 * 1024) } }, layers: [] }));
  assert.throws(() => parseManifest(desc, '', 'x'), /annotations of descriptor sha256:a+ in x is larger than the annotations limit \(256 KiB\)/);
});

test('host files that are not regular files are refused at once, saying what they are: a FIFO without a writer does not block', async (t) => {
  const dir = tmp(t);
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const start = Date.now();
  await assert.rejects(openRegularFile(fifo, 'archive x'), { message: 'archive x: is a FIFO, not a regular file' });
  await assert.rejects(openRegularFile('/dev/zero', 'archive x'), { message: 'archive x: is a character device, not a regular file' });
  await assert.rejects(openRegularFile(dir, 'archive x'), { message: 'archive x: is a directory, not a regular file' });
  await assert.rejects(openRegularFile(path.join(dir, 'none'), 'archive x'), { message: 'archive x: no such file' });
  fs.symlinkSync('/dev/null', path.join(dir, 'link'));
  await assert.rejects(openRegularFile(path.join(dir, 'link'), 'archive x', { nofollow: true }), /archive x: is a symbolic link/);
  assert.ok(Date.now() - start < 1000, `took ${Date.now() - start} ms`);
});

test('a regular file above its limit is refused before it is read; one within it is read whole', async (t) => {
  const dir = tmp(t);
  const f = path.join(dir, 'f');
  fs.writeFileSync(f, 'x'.repeat(11));
  await assert.rejects(readRegularFile(f, small, 'config f'), /config f is larger than the test limit \(10 bytes\): 11 bytes/);
  fs.writeFileSync(f, 'x'.repeat(10));
  assert.equal((await readRegularFile(f, small, 'config f')).length, 10);
});

test('a file a user names may be a pipe or a device: at most its limit is read; a directory is refused', async (t) => {
  await assert.rejects(readUserFile('/dev/zero', LIMITS.envFile, 'env file /dev/zero'), /env file \/dev\/zero is larger than the env file limit \(1 MiB\)$/);
  await assert.rejects(readUserFile(tmp(t), LIMITS.envFile, 'env file d'), { code: 'EISDIR' });
  const dir = tmp(t);
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const writer = new Promise<void>((resolve) => fs.writeFile(fifo, 'A=1\n', () => resolve()));
  assert.equal((await readUserFile(fifo, LIMITS.envFile, 'env file fifo')).toString(), 'A=1\n');
  await writer;
});
