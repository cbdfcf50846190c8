/**
 * COPY/ADD's sources beyond the context, the parts that need no root:
 * --chown names as BuildKit resolves them, URL file names and git
 * detection, --checksum, the download's limits against a server on
 * 127.0.0.1, ADD URL keys following the content (or the checksum),
 * archive detection by content and a missing decompressor, merging an
 * extracted tree, and heredoc names.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chownNeedsNames, resolveChown } from '../../server/build/owners';
import { fetchRemote, isGitSource, parseChecksum, remoteName, type RemoteFile } from '../../server/build/remote';
import { archiveKind, isTarHeader, mergeTree, sniffCompression } from '../../server/build/addarchive';
import { writeInlineSources } from '../../server/build/inline';
import { planKeys } from '../../server/build/cachekey';
import { loadDockerfile } from '../../server/build/stages';
import { graphFor, planBuild, type PlanOptions } from '../../server/build/expand';

const loc = { file: 'Dockerfile', line: 3 };
const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1001:user:/home/user:/bin/sh\n';
const GROUP = 'root:x:0:\nstaff:x:50:\nusers:x:1001:\n';

function tmp(t: { after: (fn: () => void) => void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-addsrc-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

test('--chown: numbers stand for themselves (a lone uid is the gid too), a user name brings its primary group, a group name its gid; unknown names fail naming the line', () => {
  const files = { passwd: PASSWD, group: GROUP };
  assert.equal(resolveChown(undefined, loc), undefined);
  assert.deepEqual(resolveChown('42', loc), { uid: 42, gid: 42 });
  assert.deepEqual(resolveChown('42:7', loc), { uid: 42, gid: 7 });
  assert.deepEqual(resolveChown('user', loc, files), { uid: 1000, gid: 1001 });
  assert.deepEqual(resolveChown('user:staff', loc, files), { uid: 1000, gid: 50 });
  assert.deepEqual(resolveChown('5:staff', loc, files), { uid: 5, gid: 50 });
  assert.deepEqual(resolveChown(':staff', loc, files), { uid: 0, gid: 50 });
  assert.deepEqual(resolveChown('root:root', loc), { uid: 0, gid: 0 }, 'root needs no passwd file');
  assert.equal(chownNeedsNames('1:2'), false);
  assert.equal(chownNeedsNames('user:2'), true);
  assert.equal(chownNeedsNames('2:staff'), true);
  assert.throws(() => resolveChown('ghost', loc, files), /^BuildContextError: Dockerfile:3: --chown=ghost: unable to find user ghost: no matching entries in the image's \/etc\/passwd$/);
  assert.throws(() => resolveChown('user:ghosts', loc, files), /Dockerfile:3: --chown=user:ghosts: unable to find group ghosts: no matching entries in the image's \/etc\/group/);
  assert.throws(() => resolveChown('user', loc, {}), /unable to find user user: the image has no \/etc\/passwd/);
  assert.throws(() => resolveChown('99999999999', loc), /user id 99999999999 is out of range/);
});

test('ADD URL names: the last path element, decoded; __unnamed__ without one; git sources recognised; --checksum must be sha256', () => {
  assert.equal(remoteName('https://example.com/a/b/file.tar.gz?x=1'), 'file.tar.gz');
  assert.equal(remoteName('https://example.com/a/my%20file'), 'my file');
  assert.equal(remoteName('https://example.com/'), '__unnamed__');
  assert.equal(remoteName('https://example.com'), '__unnamed__');
  assert.equal(remoteName('https://example.com/a/%2e%2e'), '__unnamed__');
  assert.equal(remoteName('https://example.com/a/x%2Fy'), '__unnamed__');
  assert.equal(isGitSource('git@github.com:a/b.git'), true);
  assert.equal(isGitSource('git://host/repo'), true);
  assert.equal(isGitSource('https://host/repo.git'), true);
  assert.equal(isGitSource('https://host/file.txt'), false);
  const good = 'sha256:' + 'a'.repeat(64);
  assert.equal(parseChecksum(good, loc), good);
  assert.throws(() => parseChecksum('md5:abc', loc), /Dockerfile:3: ADD --checksum=md5:abc: expected sha256:<64 hex digits>/);
});

async function serve(t: { after: (fn: () => Promise<void> | void) => void }, handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('a download is cut at the limit even without Content-Length, refused when it declares more, and a stalled server times out; nothing is left behind', async (t) => {
  const base = await serve(t, (req, res) => {
    if (req.url === '/chunked') {
      res.writeHead(200);
      for (let i = 0; i < 8; i++) res.write(Buffer.alloc(1024, 1));
      res.end();
    } else if (req.url === '/declared') {
      res.writeHead(200, { 'content-length': '5000' });
      res.end(Buffer.alloc(5000));
    } else if (req.url === '/stall') {
      res.writeHead(200);
      res.write('a');
    } else {
      res.writeHead(200, { 'last-modified': 'Wed, 21 Oct 2015 07:28:00 GMT' });
      res.end('ok');
    }
  });
  const limit = { name: 'test download', bytes: 4096 };
  const signal = new AbortController().signal;
  const dir = tmp(t);
  await assert.rejects(fetchRemote(`${base}/chunked`, dir, { loc, signal, limit }), /Dockerfile:3: ADD http:\/\/127\.0\.0\.1:\d+\/chunked: the download is larger than the test download limit \(4 KiB\)/);
  await assert.rejects(fetchRemote(`${base}/declared`, dir, { loc, signal, limit }), /the download \(5000 bytes declared\) is larger than the test download limit/);
  await assert.rejects(fetchRemote(`${base}/stall`, dir, { loc, signal, limit, idleMs: 300 }), /ADD http:\/\/127\.0\.0\.1:\d+\/stall: the download failed: UND_ERR_BODY_TIMEOUT/);
  assert.deepEqual(fs.readdirSync(dir), []);
  const r = await fetchRemote(`${base}/ok.txt`, dir, { loc, signal, limit });
  assert.equal(r.name, 'ok.txt');
  assert.equal(r.digest, 'sha256:' + createHash('sha256').update('ok').digest('hex'));
  assert.equal(fs.statSync(r.file).mode & 0o777, 0o600);
  assert.equal(r.lastModified?.toISOString(), '2015-10-21T07:28:00.000Z');
});

test("an ADD URL step's key follows the fetched content, its name and Last-Modified; with --checksum the checksum stands in and nothing need be fetched", () => {
  const o: PlanOptions = { platform: { os: 'linux', architecture: 'amd64' }, buildPlatform: { os: 'linux', architecture: 'amd64' } };
  const keyOf = (df: string, remotes?: Map<string, RemoteFile>): string => {
    const d = loadDockerfile(df);
    const g = graphFor(d, o);
    const plan = planBuild(d, o, g, new Map());
    return planKeys(plan, new Map(), [], remotes).steps.get(0)![0];
  };
  const url = 'http://127.0.0.1:1/f.txt';
  const r = (digest: string, lastModified?: Date): Map<string, RemoteFile> => new Map([[url, { url, file: '/x', name: 'f.txt', digest, size: 1, ...(lastModified ? { lastModified } : {}) }]]);
  const df = `FROM scratch\nADD ${url} /f\n`;
  const a = keyOf(df, r('sha256:1'));
  assert.equal(keyOf(df, r('sha256:1')), a);
  assert.notEqual(keyOf(df, r('sha256:2')), a, 'new content, new key');
  assert.notEqual(keyOf(df, r('sha256:1', new Date(0))), a, 'a new Last-Modified gives a new mtime, so a new key');
  assert.throws(() => keyOf(df), /Dockerfile:2: ADD http:\/\/127\.0\.0\.1:1\/f\.txt: its content must be fetched before the step is keyed/);
  const sum = 'sha256:' + 'b'.repeat(64);
  const withSum = `FROM scratch\nADD --checksum=${sum} ${url} /f\n`;
  assert.equal(keyOf(withSum), keyOf(withSum, r('sha256:9')), 'the checksum is the key; what was fetched does not matter');
  assert.notEqual(keyOf(withSum), keyOf(withSum.replace(sum, 'sha256:' + 'c'.repeat(64))));
});

test('archives are told by content: compression magic, then a valid tar header; anything else is a plain file; a missing decompressor is named', async (t) => {
  assert.equal(sniffCompression(Buffer.from([0x1f, 0x8b, 0x08, 0])), 'gzip');
  assert.equal(sniffCompression(Buffer.from('BZh91AY')), 'bzip2');
  assert.equal(sniffCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])), 'xz');
  assert.equal(sniffCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'zstd');
  assert.equal(sniffCompression(Buffer.from('hello')), 'none');
  assert.equal(isTarHeader(Buffer.alloc(512)), false, 'an all-zero block is an empty archive, which Docker copies');
  const dir = tmp(t);
  fs.writeFileSync(path.join(dir, 'a'), 'a');
  assert.equal(spawnSync('tar', ['-cf', 't.tar', 'a'], { cwd: dir }).status, 0);
  const block = fs.readFileSync(path.join(dir, 't.tar')).subarray(0, 512);
  assert.equal(isTarHeader(block), true);
  const bad = Buffer.from(block);
  bad[0] ^= 1;
  assert.equal(isTarHeader(bad), false, 'a wrong checksum');
  assert.equal(await archiveKind(path.join(dir, 't.tar'), 'x'), 'none');
  assert.equal(spawnSync('sh', ['-c', 'gzip -c t.tar > t.tgz && bzip2 -c t.tar > t.tbz && echo text | gzip > text.gz && echo text > text.tar'], { cwd: dir }).status, 0);
  assert.equal(await archiveKind(path.join(dir, 't.tgz'), 'x'), 'gzip');
  assert.equal(await archiveKind(path.join(dir, 't.tbz'), 'x'), 'bzip2');
  assert.equal(await archiveKind(path.join(dir, 'text.gz'), 'x'), undefined, 'gzip of no tar is a plain file');
  assert.equal(await archiveKind(path.join(dir, 'text.tar'), 'x'), undefined, 'the name does not matter');
  const missing = { bzip2: { command: 'capsa-no-such-bzip2', pkg: 'bzip2' }, xz: { command: 'capsa-no-such-xz', pkg: 'xz-utils' } };
  await assert.rejects(archiveKind(path.join(dir, 't.tbz'), 'Dockerfile:3: ADD t.tbz', missing), /Dockerfile:3: ADD t\.tbz: extracting a bzip2 archive needs the capsa-no-such-bzip2 program \(Debian package bzip2\), which is not installed/);
});

test('merging an extracted tree: a directory over a directory merges and takes its mode, anything else replaces, a symlink in the destination is never entered', async (t) => {
  const d = tmp(t);
  const src = path.join(d, 'src');
  const dst = path.join(d, 'dst');
  const outside = path.join(d, 'outside');
  for (const p of [src, dst, outside, path.join(src, 'dir'), path.join(dst, 'dir'), path.join(src, 'link')]) fs.mkdirSync(p, { recursive: true });
  fs.writeFileSync(path.join(src, 'dir/new'), 'n');
  fs.writeFileSync(path.join(dst, 'dir/old'), 'o');
  fs.chmodSync(path.join(src, 'dir'), 0o750);
  fs.writeFileSync(path.join(src, 'link/inside'), 'i');
  fs.symlinkSync(outside, path.join(dst, 'link'));
  fs.writeFileSync(path.join(src, 'file'), 'new');
  fs.mkdirSync(path.join(dst, 'file'));
  await mergeTree(src, dst);
  assert.deepEqual(fs.readdirSync(path.join(dst, 'dir')).sort(), ['new', 'old']);
  assert.equal(fs.statSync(path.join(dst, 'dir')).mode & 0o777, 0o750);
  assert.equal(fs.lstatSync(path.join(dst, 'link')).isDirectory(), true, 'the symlink was replaced by the directory');
  assert.deepEqual(fs.readdirSync(outside), []);
  assert.equal(fs.readFileSync(path.join(dst, 'file'), 'utf8'), 'new');
});

test('heredoc files: named by the heredoc, 0644; a name that is a path or given twice is refused', async (t) => {
  const d = tmp(t);
  const r = await writeInlineSources(d, [{ name: 'A', data: 'a\n', expand: false }, { name: 'b.sh', data: '#!/bin/sh\n', expand: true }], loc);
  assert.deepEqual(r.names, ['A', 'b.sh']);
  assert.deepEqual(r.manifest.map((e) => [e.path, e.mode, e.size]), [['A', 0o644, 2], ['b.sh', 0o644, 10]]);
  await assert.rejects(writeInlineSources(tmp(t), [{ name: '../x', data: '', expand: false }], loc), /Dockerfile:3: heredoc name "\.\.\/x" cannot name a file/);
  await assert.rejects(writeInlineSources(tmp(t), [{ name: 'A', data: '', expand: false }, { name: 'A', data: '', expand: false }], loc), /heredoc "A" is given twice/);
});
