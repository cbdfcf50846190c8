/**
 * COPY/ADD beyond plain files, against a real helper, kernel and registry:
 * heredocs as files, ADD of a URL from an HTTP server on 127.0.0.1 (mode,
 * name, Last-Modified, --checksum, a 404, a declared size over the limit,
 * redirects, the cache following the content), ADD of local tar archives
 * in every compression (extracted with owners, modes, links, xattrs kept; a file
 * that is no archive copied), hostile archives refused with nothing
 * written outside, and --chown by name from the image's passwd and group.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileRegistry, startHelper, type TestHelper } from '../helpers/capsa';
import { readDockerArchive } from '../helpers/imagetree';

const registry = fileRegistry();
let h: TestHelper;
let server: http.Server;
let base = '';
/** What /file.txt serves; tests change it. */
let served = 'served content\n';
const LAST_MODIFIED = new Date('2021-03-04T05:06:07Z');

let ready: Promise<void> | undefined;
/** The helper and the HTTP server, started by the first test (the file registry's own hook runs first then). */
const setup = (): Promise<void> => (ready ??= start());

async function start(): Promise<void> {
  h = await startHelper({ mirror: registry.url });
  const p = await h.cli(['pull', 'busybox']);
  assert.equal(p.code, 0, p.stderr);
  server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (url === '/file.txt' || url === '/dir/') {
      res.writeHead(200, { 'content-type': 'text/plain', 'last-modified': LAST_MODIFIED.toUTCString() });
      res.end(served);
    } else if (url === '/redirect') {
      res.writeHead(302, { location: '/file.txt' });
      res.end();
    } else if (url === '/loop') {
      res.writeHead(302, { location: '/loop' });
      res.end();
    } else if (url === '/huge.bin') {
      // declares more than the limit; the body is never wanted
      res.writeHead(200, { 'content-length': String(3 * 1024 ** 3) });
      res.write('x');
      setTimeout(() => res.destroy(), 200);
    } else {
      res.writeHead(404);
      res.end('no such file');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

after(async () => {
  await h?.stop();
  await new Promise((r) => server?.close(r));
});

function context(t: { after: (fn: () => void) => void }, files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-build-copy-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

async function build(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return h.cli(['build', '--progress', 'plain', ...args], { timeoutMs: 240_000 });
}

async function built(args: string[]): Promise<string> {
  const r = await build(args);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return r.stdout;
}

async function runIn(image: string, script: string): Promise<string> {
  const r = await h.cli(['run', '--rm', '--network', 'none', image, 'sh', '-c', script]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return r.stdout;
}

const usingCache = (out: string): number => out.split('\n').filter((l) => / ---> Using cache$/.test(l)).length;
const sha = (s: string | Buffer): string => 'sha256:' + createHash('sha256').update(s).digest('hex');

test('COPY and ADD heredocs are files named by the heredoc: 0644 by default, --chmod and --chown applied, variables expanded unless quoted', { timeout: 300_000 }, async (t) => {
  await setup();
  const dir = context(t, {
    Dockerfile: [
      'FROM busybox', 'ARG WHO=world',
      'COPY <<EOF /hello.txt', 'hello $WHO', 'EOF',
      'COPY --chmod=755 --chown=user <<"A" <<B /docs/', '#!/bin/sh', 'echo $WHO', 'A', 'b $WHO', 'B',
      'ADD <<-EOT /tabs/', '\tindented', '\tEOT',
    ].join('\n'),
  });
  await built(['-t', 'copy:heredoc', dir]);
  const out = await runIn('copy:heredoc', 'cat /hello.txt; stat -c "%a %u:%g %n" /hello.txt /docs /docs/A /docs/B /tabs/EOT; cat /docs/A /docs/B /tabs/EOT');
  assert.equal(out, [
    'hello world',
    '644 0:0 /hello.txt', '755 1000:1000 /docs', '755 1000:1000 /docs/A', '755 1000:1000 /docs/B', '644 0:0 /tabs/EOT',
    '#!/bin/sh', 'echo $WHO', 'b world', 'indented', '',
  ].join('\n'));
  const two = context(t, { Dockerfile: 'FROM busybox\nCOPY <<a <<b /not-a-dir\nx\na\ny\nb\n' });
  const r = await build([two]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Dockerfile:2: when using COPY with more than one source file, the destination must be a directory and end with a \//);
});

test('ADD of a URL: named by its path, 0600, Last-Modified as mtime, redirects followed; --checksum checked; 404, redirect loops and oversize fail naming the line and URL; git is refused', { timeout: 300_000 }, async (t) => {
  await setup();
  served = 'served content\n';
  const dir = context(t, {
    Dockerfile: [
      'FROM busybox',
      `ADD ${base}/file.txt /dl/`,
      `ADD ${base}/redirect /dl/renamed.txt`,
      `ADD --chmod=640 --chown=user:user --checksum=${sha(served)} ${base}/file.txt /checked.txt`,
      `ADD ${base}/file.txt /tmp`,
    ].join('\n'),
  });
  await built(['-t', 'copy:url', dir]);
  const out = await runIn('copy:url', 'stat -c "%a %u:%g %Y %n" /dl/file.txt /dl/renamed.txt /checked.txt /tmp/file.txt; stat -c "%a %n" /tmp; cat /dl/file.txt /checked.txt');
  const mtime = LAST_MODIFIED.getTime() / 1000;
  assert.equal(out, `600 0:0 ${mtime} /dl/file.txt\n600 0:0 ${mtime} /dl/renamed.txt\n640 1000:1000 ${mtime} /checked.txt\n600 0:0 ${mtime} /tmp/file.txt\n1777 /tmp\n${served}${served}`, 'a destination that is a directory in the image gets the file by its URL name');

  const fails: [string, RegExp][] = [
    [`ADD --checksum=${sha('other')} ${base}/file.txt /x`, new RegExp(`Dockerfile:2: ADD ${base}/file.txt: the content's digest ${sha(served)} does not match --checksum=${sha('other')}`)],
    [`ADD ${base}/missing.txt /x`, new RegExp(`Dockerfile:2: ADD ${base}/missing.txt: the server answered 404`)],
    [`ADD ${base}/loop /x`, new RegExp(`Dockerfile:2: ADD ${base}/loop: more than 10 redirects`)],
    [`ADD ${base}/huge.bin /x`, new RegExp(`Dockerfile:2: ADD ${base}/huge.bin: the download \\(3221225472 bytes declared\\) is larger than the ADD URL download limit \\(2 GiB\\)`)],
    ['ADD git@example.com:a/b.git /src', /Dockerfile:2: ADD of a git repository \(git@example.com:a\/b.git\) is not supported yet/],
    [`ADD ${base}/repo.git /src`, /Dockerfile:2: ADD of a git repository \(http:\/\/127\.0\.0\.1:\d+\/repo\.git\) is not supported yet/],
    [`ADD --checksum=${sha('x')} Dockerfile /x`, /Dockerfile:2: ADD --checksum is for http\(s\) sources only, not Dockerfile/],
  ];
  for (const [line, re] of fails) {
    const d = context(t, { Dockerfile: `FROM busybox\n${line}\n` });
    const r = await build([d]);
    assert.notEqual(r.code, 0, line);
    assert.match(r.stderr, re, line);
  }
});

test("ADD of a URL is cached while the server's content stays the same, and runs again when it changes", { timeout: 300_000 }, async (t) => {
  await setup();
  served = 'version one\n';
  const dir = context(t, { Dockerfile: `FROM busybox\nADD ${base}/file.txt /v.txt\nRUN cat /v.txt > /copy\n` });
  assert.equal(usingCache(await built(['-t', 'copy:cache', dir])), 0);
  assert.equal(usingCache(await built(['-t', 'copy:cache', dir])), 2, 'same content: both steps from the cache');
  served = 'version two\n';
  const third = await built(['-t', 'copy:cache', dir]);
  assert.equal(usingCache(third), 0, 'new content: the ADD and the RUN after it run again');
  assert.equal(await runIn('copy:cache', 'cat /v.txt /copy'), 'version two\nversion two\n');
});

/** A tar of a small tree (owned 1000:1000, a hard link, a symlink, a 0700 directory), compressed each way. */
function archives(dir: string): void {
  const src = path.join(dir, 'tree');
  fs.mkdirSync(path.join(src, 'sub/private'), { recursive: true });
  fs.writeFileSync(path.join(src, 'sub/a.txt'), 'in tar\n');
  fs.chmodSync(path.join(src, 'sub/a.txt'), 0o640);
  fs.linkSync(path.join(src, 'sub/a.txt'), path.join(src, 'hard'));
  fs.symlinkSync('sub/a.txt', path.join(src, 'link'));
  fs.chmodSync(path.join(src, 'sub/private'), 0o700);
  fs.writeFileSync(path.join(src, '.wh.plain'), 'not a whiteout\n');
  const xa = spawnSync('python3', ['-c', 'import os, sys; os.setxattr(sys.argv[1], "user.capsa", b"kept")', path.join(src, 'sub/a.txt')]);
  assert.equal(xa.status, 0, String(xa.stderr));
  const tar = spawnSync('tar', ['--xattrs', '-cf', path.join(dir, 't.tar'), '-C', src, '--owner=1000', '--group=1000', '.']);
  assert.equal(tar.status, 0, String(tar.stderr));
  for (const [tool, ext] of [['gzip', 'gz'], ['bzip2', 'bz2'], ['xz', 'xz'], ['zstd', 'zst']]) {
    const r = spawnSync('sh', ['-c', `${tool} -c < t.tar > t.tar.${ext}`], { cwd: dir });
    assert.equal(r.status, 0, `${tool}: ${String(r.stderr)}`);
  }
  fs.rmSync(src, { recursive: true });
  fs.writeFileSync(path.join(dir, 'fake.tar'), 'a text file with a tar name\n');
  spawnSync('sh', ['-c', 'echo just gzip | gzip > notar.gz'], { cwd: dir });
}

test('ADD of a local tar extracts it whatever its compression (none, gzip, bzip2, xz, zstd) with owners, modes, links and xattrs kept; a file that is no archive is copied', { timeout: 300_000 }, async (t) => {
  await setup();
  const dir = context(t, {
    Dockerfile: [
      'FROM busybox',
      'ADD t.tar /plain/', 'ADD t.tar.gz /gz', 'ADD t.tar.bz2 /bz2/', 'ADD t.tar.xz /xz/', 'ADD t.tar.zst /zst/',
      'ADD --chown=user:nogroup t.tar.gz /owned/', 'ADD fake.tar notar.gz /raw/', 'COPY t.tar /copied/',
    ].join('\n'),
  });
  archives(dir);
  await built(['-t', 'copy:tar', dir]);
  const listing = 'for d in plain gz bz2 xz zst owned; do stat -c "%a %u:%g %h %n" /$d/sub/a.txt /$d/sub/private /$d/.wh.plain; readlink /$d/link; [ /$d/hard -ef /$d/sub/a.txt ] && echo hard-linked; done';
  const out = await runIn('copy:tar', listing);
  const expected = ['plain', 'gz', 'bz2', 'xz', 'zst'].flatMap((d) => [`640 1000:1000 2 /${d}/sub/a.txt`, `700 1000:1000 2 /${d}/sub/private`, `644 1000:1000 1 /${d}/.wh.plain`, 'sub/a.txt', 'hard-linked']);
  expected.push('640 1000:65534 2 /owned/sub/a.txt', '700 1000:65534 2 /owned/sub/private', '644 1000:65534 1 /owned/.wh.plain', 'sub/a.txt', 'hard-linked');
  assert.equal(out, expected.join('\n') + '\n');
  const saved = path.join(dir, 'saved.tar');
  const sv = await h.cli(['save', '-o', saved, 'copy:tar']);
  assert.equal(sv.code, 0, sv.stderr);
  const { tree } = await readDockerArchive(saved);
  for (const d of ['plain', 'gz', 'bz2', 'xz', 'zst', 'owned']) assert.equal(tree.get(`/${d}/sub/a.txt`)?.xattrs['user.capsa'], Buffer.from('kept').toString('base64'), `${d}: the xattr is kept`);
  assert.equal(await runIn('copy:tar', 'cat /raw/fake.tar; gzip -dc /raw/notar.gz; test -f /copied/t.tar && echo copied-as-file'), 'a text file with a tar name\njust gzip\ncopied-as-file\n');
});

/** Writes a tar by hand (Python's tarfile lets any name and link through). */
function hostileTar(file: string, entries: { name: string; type: 'file' | 'symlink' | 'link' | 'dir'; target?: string; data?: string }[]): void {
  const py = [
    'import io, json, sys, tarfile',
    'entries = json.loads(sys.argv[2])',
    'with tarfile.open(sys.argv[1], "w", format=tarfile.GNU_FORMAT) as t:',
    '    for e in entries:',
    '        i = tarfile.TarInfo(e["name"])',
    '        data = e.get("data", "").encode()',
    '        i.type = {"file": tarfile.REGTYPE, "symlink": tarfile.SYMTYPE, "link": tarfile.LNKTYPE, "dir": tarfile.DIRTYPE}[e["type"]]',
    '        i.linkname = e.get("target", "")',
    '        i.mode = 0o755 if e["type"] == "dir" else 0o644',
    '        i.size = len(data) if e["type"] == "file" else 0',
    '        t.addfile(i, io.BytesIO(data) if e["type"] == "file" else None)',
  ].join('\n');
  const r = spawnSync('python3', ['-c', py, file, JSON.stringify(entries)]);
  assert.equal(r.status, 0, String(r.stderr));
}

test('a hostile archive (.. names, absolute names, a symlink out then a file through it, a hard link out) is refused naming the entry, and nothing is written outside', { timeout: 300_000 }, async (t) => {
  await setup();
  const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-outside-'));
  t.after(() => fs.rmSync(outside, { recursive: true, force: true }));
  const cases: [string, Parameters<typeof hostileTar>[1], RegExp][] = [
    ['dotdot', [{ name: '../../../../../../../..' + outside + '/dotdot', type: 'file', data: 'x' }], /path escapes the layer/],
    ['absolute', [{ name: outside + '/absolute', type: 'file', data: 'x' }], /absolute path/],
    ['symlink-abs', [{ name: 'out', type: 'symlink', target: outside }, { name: 'out/through', type: 'file', data: 'x' }], /path goes through symlink "out"/],
    ['symlink-up', [{ name: 'up', type: 'symlink', target: '../../../../../..' }, { name: 'up/' + outside.slice(1) + '/through-up', type: 'file', data: 'x' }], /path goes through symlink "up"/],
    ['hardlink', [{ name: 'h', type: 'link', target: '../../../../../etc/passwd' }], /hard link target "..\/..\/..\/..\/..\/etc\/passwd" is outside the layer/],
  ];
  for (const [name, entries, re] of cases) {
    const dir = context(t, { Dockerfile: `FROM busybox\nADD ${name}.tar /dest/\n` });
    hostileTar(path.join(dir, `${name}.tar`), entries);
    const r = await build([dir]);
    assert.notEqual(r.code, 0, name);
    assert.match(r.stderr, new RegExp(`Dockerfile:2: ADD ${name}.tar: the archive is refused: `), name);
    assert.match(r.stderr, re, name);
  }
  assert.deepEqual(fs.readdirSync(outside), [], 'nothing was written outside');
});

test('--chown by name resolves against the stage image\'s /etc/passwd and /etc/group (the user\'s primary group without one); unknown names fail naming the line', { timeout: 300_000 }, async (t) => {
  await setup();
  const dir = context(t, {
    'a.txt': 'a',
    Dockerfile: [
      'FROM busybox',
      'COPY --chown=user a.txt /u', 'COPY --chown=user:nogroup a.txt /ug', 'COPY --chown=nobody:0 a.txt /n0', 'COPY --chown=1000:nogroup a.txt /1g',
      'RUN echo "app:x:4242:4343::/:/bin/sh" >> /etc/passwd && echo "appg:x:4343:" >> /etc/group',
      'COPY --chown=app:appg a.txt /app', 'COPY --chown=app a.txt /app2',
    ].join('\n'),
  });
  await built(['-t', 'copy:chown', dir]);
  assert.equal(await runIn('copy:chown', 'stat -c "%u:%g %n" /u /ug /n0 /1g /app /app2'), '1000:1000 /u\n1000:65534 /ug\n65534:0 /n0\n1000:65534 /1g\n4242:4343 /app\n4242:4343 /app2\n');
  for (const [line, re] of [
    ['COPY --chown=ghost a.txt /x', /Dockerfile:2: --chown=ghost: unable to find user ghost: no matching entries in the image's \/etc\/passwd/],
    ['COPY --chown=user:ghosts a.txt /x', /Dockerfile:2: --chown=user:ghosts: unable to find group ghosts: no matching entries in the image's \/etc\/group/],
  ] as const) {
    const d = context(t, { 'a.txt': 'a', Dockerfile: `FROM busybox\n${line}\n` });
    const r = await build([d]);
    assert.notEqual(r.code, 0, line);
    assert.match(r.stderr, re, line);
  }
});
