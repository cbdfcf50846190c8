/**
 * `capsa build -` reads standard input as `docker build -` does: a tar
 * (plain or gzip, bzip2, xz, zstd) is the whole context with its
 * Dockerfile (`-f` inside it) and .dockerignore; anything else is the
 * Dockerfile, with an empty context. A hostile archive is refused, naming
 * standard input, and writes nothing outside the CLI's temporary directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type TestHelper } from '../helpers/capsa';
import { tarHeader } from '../helpers/oci';
import { busyboxHelperForFile } from '../helpers/busyboxhelper';

let h: TestHelper;
busyboxHelperForFile((helper) => (h = helper));

async function catIn(image: string, cmd: string): Promise<string> {
  const r = await h.cli(['run', '--rm', '--network', 'none', image, 'sh', '-c', cmd]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

test('build - with a Dockerfile on standard input builds it with an empty context; COPY then finds nothing', async () => {
  const r = await h.cli(['build', '-q', '-t', 'stdin:df', '-'], { input: 'FROM busybox\nRUN echo from-stdin > /x\n', timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await catIn('stdin:df', 'cat /x'), 'from-stdin\n');
  const copy = await h.cli(['build', '-'], { input: 'FROM busybox\nCOPY a.txt /\n', timeoutMs: 120_000 });
  assert.notEqual(copy.code, 0);
  assert.match(copy.stderr, /a\.txt/);
  const both = await h.cli(['build', '-f', '-', '-'], { input: 'FROM busybox\n' });
  assert.equal(both.code, 125);
  assert.match(both.stderr, /cannot read both the build context and the Dockerfile from standard input/);
});

test('build - with a tar context, plain and compressed, takes its Dockerfile, -f inside it and its .dockerignore', async (t) => {
  const src = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-build-stdin-'));
  t.after(() => fs.rmSync(src, { recursive: true, force: true }));
  fs.mkdirSync(path.join(src, 'ctx/sub'), { recursive: true });
  fs.writeFileSync(path.join(src, 'ctx/Dockerfile'), 'FROM busybox\nCOPY . /ctx/\nRUN ls -a /ctx /ctx/sub | tr "\\n" " " > /listing\n');
  fs.writeFileSync(path.join(src, 'ctx/other.Dockerfile'), 'FROM busybox\nCOPY sub/kept.txt /other\n');
  fs.writeFileSync(path.join(src, 'ctx/.dockerignore'), 'ignored.txt\n');
  fs.writeFileSync(path.join(src, 'ctx/ignored.txt'), 'no\n');
  fs.writeFileSync(path.join(src, 'ctx/sub/kept.txt'), 'kept\n');
  fs.chmodSync(path.join(src, 'ctx/sub/kept.txt'), 0o640);
  const tarOf = (flag: string): Buffer => execFileSync('tar', ['-c', ...(flag ? [flag] : []), '-C', path.join(src, 'ctx'), '.']);
  let first = '';
  for (const [name, flag] of [['plain', ''], ['gzip', '-z'], ['bzip2', '-j'], ['xz', '-J'], ['zstd', '--zstd']] as const) {
    if (name === 'zstd' && spawnFails('zstd')) continue;
    const r = await h.cli(['build', '-q', '-t', `stdin:${name}`, '-'], { input: tarOf(flag), timeoutMs: 120_000 });
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    first ||= r.stdout.trim();
    assert.equal(r.stdout.trim(), first, `${name}: the same context gives the same image (from the cache)`);
  }
  const listing = await catIn('stdin:gzip', 'cat /listing; stat -c %a /ctx/sub/kept.txt');
  assert.doesNotMatch(listing, /ignored\.txt/, '.dockerignore in the tar applies');
  assert.match(listing, /Dockerfile/);
  assert.match(listing, /kept\.txt/);
  assert.match(listing, /\s640\n$/, 'modes are kept');
  const other = await h.cli(['build', '-q', '-t', 'stdin:other', '-f', 'other.Dockerfile', '-'], { input: tarOf('-z'), timeoutMs: 120_000 });
  assert.equal(other.code, 0, other.stderr);
  assert.equal(await catIn('stdin:other', 'cat /other'), 'kept\n');
  const missing = await h.cli(['build', '-f', 'nope.Dockerfile', '-'], { input: tarOf('') });
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /Cannot locate specified Dockerfile: nope\.Dockerfile/);
  const outside = await h.cli(['build', '-f', '../../etc/passwd', '-'], { input: tarOf('') });
  assert.notEqual(outside.code, 0);
  assert.match(outside.stderr, /outside the build context on standard input/);
});

function spawnFails(cmd: string): boolean {
  try {
    execFileSync(cmd, ['--version'], { stdio: 'ignore' });
    return false;
  } catch {
    return true;
  }
}

test('build - refuses a hostile tar (.. names, a symlink out then a file through it) naming standard input, and writes nothing outside', async (t) => {
  const canary = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-stdin-canary-'));
  t.after(() => fs.rmSync(canary, { recursive: true, force: true }));
  const file = (name: string, body: string, type: 'file' | 'symlink' = 'file', linkname = ''): Buffer => {
    const data = Buffer.from(body);
    const hdr = tarHeader({ name, size: type === 'file' ? data.length : 0, typeflag: type === 'file' ? '0' : '2', linkname, mode: 0o644 });
    const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
    return type === 'file' ? Buffer.concat([hdr, data, pad]) : hdr;
  };
  const df = file('Dockerfile', 'FROM busybox\nCOPY . /\n');
  const cases: Array<[string, Buffer]> = [
    ['a .. name', Buffer.concat([df, file(`../../../../${canary.slice(1)}/dotdot`, 'x'), Buffer.alloc(1024)])],
    ['a symlink out, then a file through it', Buffer.concat([df, file('out', '', 'symlink', canary), file('out/through', 'x'), Buffer.alloc(1024)])],
  ];
  for (const [what, tar] of cases) {
    const r = await h.cli(['build', '-'], { input: tar, timeoutMs: 60_000 });
    assert.notEqual(r.code, 0, `${what}: refused`);
    assert.match(r.stderr, /the build context on standard input/, `${what}: ${r.stderr}`);
    assert.deepEqual(fs.readdirSync(canary), [], `${what}: nothing written outside`);
  }
  assert.equal((await h.cli(['version'])).code, 0, 'the helper still serves');
});
