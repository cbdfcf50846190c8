/**
 * The pure parts of commit: `-c` instruction lines as Docker reads them,
 * the config they make, the tar headers a layer is written with (read back
 * by the project's own tar reader), and Docker's order of diff lines.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { applyChanges, parseInstruction, splitWords } from '../../server/image/commit/instructions';
import { encodeHeader, END_OF_ARCHIVE, padding } from '../../server/image/layer/tarwriter';
import { sortChanges } from '../../server/image/layer/changes';
import { devParts } from '../../server/image/layer/capture';
import { imageConfig } from '../../server/image/commit/assemble';
import { readTar } from '../../server/image/tar';
import { PARAMS } from '../../server/protocol/params';
import { COPY_CHUNK } from '../../server/protocol';
import { place, placedName, splitCpArg } from '../../server/cli/cp';

test('CMD and ENTRYPOINT take the exec form as given and run the shell form with /bin/sh -c', () => {
  assert.deepEqual(parseInstruction('CMD ["echo", "hi there"]'), { kind: 'CMD', args: ['echo', 'hi there'], shellForm: false });
  assert.deepEqual(parseInstruction('cmd echo $HOME'), { kind: 'CMD', args: ['/bin/sh', '-c', 'echo $HOME'], shellForm: true });
  assert.deepEqual(parseInstruction('ENTRYPOINT [oops'), { kind: 'ENTRYPOINT', args: ['/bin/sh', '-c', '[oops'], shellForm: true }, 'not JSON: the shell form, as Docker');
});

test('ENV and LABEL read KEY=VALUE pairs with quotes and escapes, and ENV the older KEY VALUE form', () => {
  assert.deepEqual(parseInstruction('ENV A=1 B="two words" C=it\\ is'), { kind: 'ENV', pairs: [['A', '1'], ['B', 'two words'], ['C', 'it is']] });
  assert.deepEqual(parseInstruction('ENV GREETING hello world'), { kind: 'ENV', pairs: [['GREETING', 'hello world']] });
  assert.deepEqual(parseInstruction("LABEL 'a b'=c"), { kind: 'LABEL', pairs: [['a b', 'c']] });
  assert.deepEqual(splitWords(`"a\\"b" 'c\\d'`), ['a"b', 'c\\d']);
  assert.throws(() => parseInstruction('LABEL novalue'), /is not KEY=VALUE/);
  assert.throws(() => parseInstruction('ENV A="open'), /unmatched "/);
});

test('EXPOSE, VOLUME, USER, WORKDIR and STOPSIGNAL; every other instruction is refused by name', () => {
  assert.deepEqual(parseInstruction('EXPOSE 80 53/udp 8000-8010'), { kind: 'EXPOSE', ports: ['80/tcp', '53/udp', '8000-8010/tcp'] });
  assert.throws(() => parseInstruction('EXPOSE 70000'), /is not PORT/);
  assert.deepEqual(parseInstruction('VOLUME ["/a", "/b"]'), { kind: 'VOLUME', paths: ['/a', '/b'] });
  assert.deepEqual(parseInstruction('VOLUME /a /b'), { kind: 'VOLUME', paths: ['/a', '/b'] });
  for (const bad of ['RUN true', 'FROM scratch', 'COPY a b', 'ONBUILD RUN x', 'HEALTHCHECK NONE', '', 'USER', '123 x']) {
    assert.throws(() => parseInstruction(bad), /invalid change/, bad);
  }
});

test('changes apply in order: ENV overrides by key, WORKDIR is relative to the last one, ENTRYPOINT resets an inherited CMD unless a CMD came before', () => {
  const base = { Env: ['PATH=/bin', 'A=0'], Cmd: ['sh'], WorkingDir: '/srv', Labels: { x: '1' } };
  const c = applyChanges(base, ['ENV A=1 B=2', 'WORKDIR app', 'WORKDIR ../lib', 'LABEL y=2', 'ENTRYPOINT ["/init"]', 'USER 1000:1000', 'STOPSIGNAL SIGINT', 'EXPOSE 80']);
  assert.deepEqual(c.Env, ['PATH=/bin', 'A=1', 'B=2']);
  assert.equal(c.WorkingDir, '/srv/lib');
  assert.deepEqual(c.Labels, { x: '1', y: '2' });
  assert.deepEqual(c.Entrypoint, ['/init']);
  assert.equal(c.Cmd, null);
  assert.equal(c.User, '1000:1000');
  assert.equal(c.StopSignal, 'SIGINT');
  assert.deepEqual(c.ExposedPorts, { '80/tcp': {} });
  assert.deepEqual(base.Env, ['PATH=/bin', 'A=0'], 'the base is left as it was');
  assert.deepEqual(applyChanges(base, ['CMD ["x"]', 'ENTRYPOINT ["/init"]']).Cmd, ['x']);
});

test('tar headers read back as written: long and non-ASCII names, long link targets, big ids and binary xattrs through PAX', async () => {
  const long = `${'d'.repeat(120)}/${'f'.repeat(120)}`;
  const xattr = Buffer.from([0, 1, 2, 0xff, 0x0a]);
  const blocks = [
    encodeHeader({ name: 'dir', type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 100 }),
    encodeHeader({ name: 'dir/file', type: 'file', mode: 0o4755, uid: 1000, gid: 1000, size: 3, mtime: 200, xattrs: [['user.b', xattr], ['security.capability', Buffer.from('cap')]] }),
    Buffer.from('abc'),
    padding(3),
    encodeHeader({ name: long, type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 0, linkname: 'x'.repeat(150) }),
    encodeHeader({ name: 'héllo', type: 'link', mode: 0o644, uid: 3_000_000, gid: 3_000_000, size: 0, mtime: 0, linkname: 'dir/file' }),
    encodeHeader({ name: 'dev/null', type: 'char', mode: 0o666, uid: 0, gid: 0, size: 0, mtime: 0, devmajor: 1, devminor: 3 }),
    END_OF_ARCHIVE,
  ];
  const seen: Array<Record<string, unknown>> = [];
  for await (const e of readTar(Readable.from([Buffer.concat(blocks)]))) {
    const h = e.header;
    let body = '';
    for await (const b of e.body()) body += b.toString();
    seen.push({ name: h.name, type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, mtime: h.mtime, linkname: h.linkname, body, xattrs: h.xattrs.map(([k, v]) => [k, v.toString('hex')]), dev: [h.devmajor, h.devminor] });
  }
  assert.equal(seen.length, 5);
  assert.deepEqual(seen[0], { name: 'dir/', type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: 100, linkname: undefined, body: '', xattrs: [], dev: [0, 0] });
  assert.equal(seen[1].body, 'abc');
  assert.equal(seen[1].mode, 0o4755);
  assert.deepEqual(seen[1].xattrs, [['security.capability', Buffer.from('cap').toString('hex')], ['user.b', xattr.toString('hex')]], 'sorted by name');
  assert.equal(seen[2].name, long);
  assert.equal(seen[2].linkname, 'x'.repeat(150));
  assert.deepEqual([seen[3].name, seen[3].uid, seen[3].gid, seen[3].linkname], ['héllo', 3_000_000, 3_000_000, 'dir/file']);
  assert.deepEqual(seen[4].dev, [1, 3]);
  // the same header, the same bytes: nothing of the writing machine or moment goes in
  assert.deepEqual(encodeHeader({ name: 'a', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 5 }), encodeHeader({ name: 'a', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 5 }));
});

test("diff lines sort by path byte-wise, as Docker's: a directory's entries before a sibling that sorts after '/'", () => {
  const sorted = sortChanges([
    { path: '/a-b', kind: 'A' },
    { path: '/a/b', kind: 'C' },
    { path: '/a', kind: 'C' },
    { path: '/B', kind: 'D' },
  ]).map((c) => c.path);
  assert.deepEqual(sorted, ['/B', '/a', '/a-b', '/a/b']);
});

test("device numbers split as glibc's major/minor", () => {
  assert.deepEqual(devParts(0x0103n), { major: 1, minor: 3 });
  assert.deepEqual(devParts((259n << 8n) | 5n), { major: 259, minor: 5 });
  assert.deepEqual(devParts(0n), { major: 0, minor: 0 });
});

test("an assembled config appends diff-ids and history to the parent's and keeps its platform", () => {
  const parent = { architecture: 'arm64', os: 'linux', variant: 'v8', rootfs: { type: 'layers', diff_ids: ['sha256:a'] }, history: [{ created_by: 'base' }], config: { Cmd: ['sh'] } };
  const c = imageConfig({
    parent: { record: { layers: [] } as never, config: parent },
    layers: [{ descriptor: { mediaType: 'x', digest: 'sha256:bb', size: 1 }, diffId: 'sha256:b' }],
    config: { Cmd: ['true'] },
    history: [{ created_by: 'step' }],
    created: '2001-09-09T01:46:40.000Z',
  });
  assert.deepEqual(c.rootfs.diff_ids, ['sha256:a', 'sha256:b']);
  assert.deepEqual(c.history, [{ created_by: 'base' }, { created_by: 'step' }]);
  assert.deepEqual([c.os, c.architecture, c.variant], ['linux', 'arm64', 'v8']);
  assert.deepEqual(c.config, { Cmd: ['true'] });
});

test('a cp chunk over 1 MiB of base64 is refused by its schema, one of 1 MiB passes', () => {
  const schema = PARAMS.get('capsa/container/archive/write')!;
  assert.doesNotThrow(() => schema.check({ session: 's', data: Buffer.alloc(COPY_CHUNK).toString('base64') }, ''));
  assert.throws(() => schema.check({ session: 's', data: Buffer.alloc(COPY_CHUNK + 3).toString('base64') }, ''));
});

test("cp's arguments and path rules are docker cp's", () => {
  assert.deepEqual(splitCpArg('web:/etc'), { container: 'web', path: '/etc' });
  assert.deepEqual(splitCpArg('/abs:x'), { path: '/abs:x' });
  assert.deepEqual(splitCpArg('./a:b'), { path: './a:b' });
  assert.deepEqual(splitCpArg('file'), { path: 'file' });
  assert.deepEqual(place('/srv/d', true, '/out', 'directory'), { dir: '/out', top: 'd' });
  assert.deepEqual(place('/srv/d/.', true, '/out', 'directory'), { dir: '/out', top: { strip: true } });
  assert.deepEqual(place('/srv/d', true, '/out/new', undefined), { dir: '/out', top: 'new' });
  assert.deepEqual(place('/srv/f', false, '/out/g', 'file'), { dir: '/out', top: 'g' });
  assert.throws(() => place('/srv/d', true, '/out/g', 'file'), /cannot copy a directory to a file/);
  assert.throws(() => place('/srv/f', false, '/out/missing/', undefined), /no such directory/);
  assert.equal(placedName('d/sub/x', 'new'), 'new/sub/x');
  assert.equal(placedName('d', { strip: true }), undefined);
  assert.equal(placedName('d/x', { strip: true }), 'x');
  assert.throws(() => placedName('d/../../x', 'new'), /parent directory/);
});

test('a layer tar of an upper directory: entries in byte order, hard links as links, mount points left out, the same bytes every time', async (t) => {
  const { mkdtempSync, mkdirSync, writeFileSync, linkSync, symlinkSync, utimesSync, rmSync, chmodSync } = await import('node:fs');
  const os = await import('node:os');
  const p = await import('node:path');
  const { layerTar } = await import('../../server/image/layer/capture');
  const dir = mkdtempSync(p.join(os.tmpdir(), 'capsa-layer-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const upper = p.join(dir, 'upper');
  const lower = p.join(dir, 'lower');
  for (const d of ['upper/b', 'upper/etc', 'upper/a-b', 'lower/etc']) mkdirSync(p.join(dir, d), { recursive: true });
  chmodSync(p.join(upper, 'etc'), 0o755);
  chmodSync(p.join(lower, 'etc'), 0o755);
  writeFileSync(p.join(upper, 'b', 'file'), 'data');
  linkSync(p.join(upper, 'b', 'file'), p.join(upper, 'a-b', 'twin'));
  symlinkSync('../b/file', p.join(upper, 'a-b', 'link'));
  writeFileSync(p.join(upper, 'etc', 'hosts'), '');
  for (const f of ['b', 'b/file', 'etc', 'etc/hosts', 'a-b']) utimesSync(p.join(upper, f), 2_000_000_000, 2_000_000_000);
  const read = async (): Promise<{ bytes: Buffer; headers: Array<[string, string, string | undefined, number]> }> => {
    const chunks: Buffer[] = [];
    for await (const c of layerTar(upper, { view: { lowers: [lower], mountPoints: ['etc/hosts'] }, sourceDateEpoch: 1_000_000_000 })) chunks.push(c);
    const bytes = Buffer.concat(chunks);
    const headers: Array<[string, string, string | undefined, number]> = [];
    for await (const e of readTar(Readable.from([bytes]))) headers.push([e.header.type, e.header.name, e.header.linkname, e.header.mtime]);
    return { bytes, headers };
  };
  const first = await read();
  assert.deepEqual(
    first.headers.map(([type, name, link]) => [type, name, link]),
    [
      ['directory', 'a-b/', undefined],
      ['symlink', 'a-b/link', '../b/file'],
      ['file', 'a-b/twin', undefined],
      ['directory', 'b/', undefined],
      ['link', 'b/file', 'a-b/twin'],
    ],
    'etc/hosts (a mount point) and etc (copied up only for it) are not changes',
  );
  assert.ok(first.headers.every(([, , , mtime]) => mtime <= 1_000_000_000), 'clamped to SOURCE_DATE_EPOCH');
  assert.deepEqual((await read()).bytes, first.bytes, 'the same tree, the same bytes');
});
