/**
 * `capsa build` against hostile input, with a real helper, kernel and
 * registry: contexts and Dockerfiles that try to reach out of the context
 * (`..`, absolute sources, symlinks out and up, .dockerignore tricks, -f
 * out of the context, a stage's link to /, two sources whose merge would
 * write through a link), context tars and Dockerfile payloads a raw
 * protocol client sends (`..` and absolute names, a file under a link,
 * hard links out, devices, huge and truncated headers, a declared size no
 * disk holds), a RUN that fills the disk, a RUN that never ends and
 * cancels at each phase, a context of 100,000 files, and inputs past each
 * limit. Every case ends with the host unchanged (a canary directory and
 * the paths the case aims at), nothing of the build left (mount,
 * container, staging directory, tag) and the same helper still serving.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CancellationTokenSource } from 'vscode-jsonrpc/node';
import { CLI, connectProtocol, fileRegistry, mountsUnder, startHelper, until, type TestHelper } from '../helpers/capsa';
import { stagingDirs } from '../helpers/staging';
import { busyboxLayer, pushImage, tarHeader, tarLayer, type TarEntrySpec } from '../helpers/oci';

const registry = fileRegistry();

interface Ctx {
  after: (fn: () => unknown) => void;
}

function tmpDir(t: Ctx, prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A context directory with `files` (a trailing `/` makes a directory). */
function context(t: Ctx, files: Record<string, string>): string {
  const dir = tmpDir(t, 'capsa-bh-ctx-');
  for (const [name, text] of Object.entries(files)) {
    const p = path.join(dir, name);
    if (name.endsWith('/')) fs.mkdirSync(p, { recursive: true });
    else {
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, text);
    }
  }
  return dir;
}

// ---------------------------------------------------------------------------
// The host before and after

/** Every path under `p` (itself included) with its type, mode, owner and content digest; `absent` when missing. */
function snapshot(paths: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (p: string): void => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      out.set(p, 'absent');
      return;
    }
    const meta = `${st.mode.toString(8)} ${st.uid}:${st.gid}`;
    if (st.isSymbolicLink()) out.set(p, `link ${meta} ${fs.readlinkSync(p)}`);
    else if (st.isFile()) out.set(p, `file ${meta} ${createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`);
    else if (st.isDirectory()) {
      out.set(p, `dir ${meta}`);
      for (const n of fs.readdirSync(p)) visit(path.join(p, n));
    } else out.set(p, `other ${meta}`);
  };
  for (const p of paths) visit(p);
  return out;
}

/** A directory of the host's that no build may touch; every case aims its links at it. */
let canary = '';
before(() => {
  canary = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-bh-canary-'));
  fs.writeFileSync(path.join(canary, 'keep'), 'canary\n');
  fs.mkdirSync(path.join(canary, 'sub'), { mode: 0o755 });
  fs.writeFileSync(path.join(canary, 'sub', 'passwd'), 'canary-passwd\n');
});
after(() => fs.rmSync(canary, { recursive: true, force: true }));

/** The host paths every case checks, and a case's own. */
const hostPaths = (extra: string[] = []): string[] => [canary, '/etc/passwd', '/etc/shadow', '/etc/hostname', '/x', '/evil', '/passwd', '/got', ...extra];

// ---------------------------------------------------------------------------
// What a build may leave

async function tagsOf(h: TestHelper): Promise<string> {
  const r = await h.cli(['images']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').slice(1).filter(Boolean).map((l) => l.split(/\s+/).slice(0, 2).join(':')).filter((x) => x !== '<none>:<none>').sort().join('\n');
}

interface Watched {
  h: TestHelper;
  /** The Capsa root (a test may put it elsewhere). */
  root: string;
  pid: number;
}

/** No container (build steps' included), mount, staging directory or new tag; the same helper answers. */
async function assertNothingLeft(w: Watched, tagsBefore: string, what: string, keep?: RegExp): Promise<void> {
  await until(`${what}: the step containers to be removed`, async () => (await w.h.cli(['ps', '-a', '-q'])).stdout.trim() === '', 10_000);
  const containers = path.join(w.root, 'containers');
  const left = fs.existsSync(containers) ? fs.readdirSync(containers).filter((n) => !n.startsWith('.')) : [];
  assert.deepEqual(left, [], `${what}: no container directory: ${left.map((id) => `${id}: ${fs.readdirSync(path.join(containers, id)).join(' ')}`).join('; ')}\nhelper log:\n${helperLog(w.h)}`);
  assert.deepEqual((await mountsUnder(w.h.dir)).filter((m) => m !== w.root), [], `${what}: nothing mounted under the test's directory`);
  assert.deepEqual(w.root.startsWith(w.h.dir) ? [] : (await mountsUnder(w.root)).filter((m) => m !== w.root), [], `${what}: nothing mounted under the root`);
  assert.deepEqual(stagingDirs(w.root), [], `${what}: no staging directory`);
  assert.equal((await tagsOf(w.h)).split('\n').filter((l) => !keep?.test(l)).join('\n'), tagsBefore, `${what}: no new tag`);
  const v = await w.h.cli(['version']);
  assert.equal(v.code, 0, `${what}: the helper answers: ${v.stderr}`);
  assert.match(v.stdout, new RegExp(`pid ${w.pid}\\b`), `${what}: the same helper process`);
}

function helperLog(h: TestHelper): string {
  try {
    return fs.readFileSync(path.join(h.dir, 'helper.log'), 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '(none)';
  }
}

/** A clear error: not zero, says `says`, and no stack trace. */
function assertRefused(r: { code: number; stdout: string; stderr: string }, says: RegExp, what: string): void {
  assert.notEqual(r.code, 0, `${what}: refused\n${r.stdout}${r.stderr}`);
  assert.match(r.stderr, says, `${what}: says why\n${r.stdout}${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
}

async function helper(t: Ctx, opts: { env?: NodeJS.ProcessEnv } = {}): Promise<Watched & { root: string }> {
  const h = await startHelper({ mirror: registry.url, ...opts });
  t.after(() => h.stop());
  const p = await h.cli(['pull', '-q', 'busybox']);
  assert.equal(p.code, 0, p.stderr);
  return { h, root: opts.env?.CAPSA_ROOT ?? h.root, pid: h.process.pid as number };
}

const build = (h: TestHelper, args: string[]) => h.cli(['build', '--progress=plain', ...args], { timeoutMs: 240_000 });

// ---------------------------------------------------------------------------
// Contexts and Dockerfiles that try to escape, through the real CLI

test('contexts and Dockerfiles that reach out of the context are refused naming the source, or build from the context alone; the host is unchanged and nothing is left', { timeout: 600_000 }, async (t) => {
  const w = await helper(t);
  const { h } = w;
  const outsideParent = tmpDir(t, 'capsa-bh-outside-');
  fs.writeFileSync(path.join(outsideParent, 'secret'), 'outside-secret\n');
  const hostPasswd = fs.readFileSync('/etc/passwd', 'utf8');
  const shadowLine = fs.readFileSync('/etc/shadow', 'utf8').split('\n')[0];

  interface Case {
    name: string;
    files: Record<string, string>;
    /** Run in the context before the build. */
    prepare?: (dir: string) => void;
    args?: (dir: string) => string[];
    /** A refusal saying this, or (undefined) a build that succeeds. */
    says?: RegExp;
    /** Lines the successful build's output must have. */
    prints?: RegExp[];
    /** What no output may hold. */
    never?: RegExp[];
  }
  const cases: Case[] = [
    { name: 'COPY ../x', files: { Dockerfile: 'FROM busybox\nCOPY ../x /x\n' }, says: /Dockerfile:2: .*outside the build context: \.\.\/x/ },
    { name: 'COPY ../../.. of the outside directory', files: { Dockerfile: `FROM busybox\nCOPY ../${path.basename(outsideParent)}/secret /got\n` }, says: /Dockerfile:2: .*outside the build context/ },
    { name: 'COPY /etc/passwd is the context root\'s etc/passwd', files: { Dockerfile: 'FROM busybox\nCOPY /etc/passwd /got\n' }, says: /Dockerfile:2: .*etc\/passwd.*not found in the build context/ },
    {
      name: 'a symlink in the context to /etc',
      files: { Dockerfile: 'FROM busybox\nCOPY ctxlink/passwd /got\n' },
      prepare: (d) => fs.symlinkSync('/etc', path.join(d, 'ctxlink')),
      says: /Dockerfile:2: .*ctxlink\/passwd.*not found in the build context/,
    },
    {
      name: 'a symlink in the context to the canary (absolute)',
      files: { Dockerfile: 'FROM busybox\nCOPY link/keep /got\n' },
      prepare: (d) => fs.symlinkSync(canary, path.join(d, 'link')),
      says: /Dockerfile:2: .*link\/keep.*not found in the build context/,
    },
    {
      name: 'a symlink to the parent',
      files: { Dockerfile: `FROM busybox\nCOPY up/${path.basename(outsideParent)}/secret /got\n` },
      prepare: (d) => fs.symlinkSync('..', path.join(d, 'up')),
      says: /Dockerfile:2: .*not found in the build context/,
    },
    {
      name: 'a symlink to the parent copied whole stays the context',
      files: { Dockerfile: 'FROM busybox\nCOPY up/ /all/\nRUN ls /all | sort | tr "\\n" " "; echo\n', 'mine.txt': 'mine\n' },
      prepare: (d) => fs.symlinkSync('..', path.join(d, 'up')),
      prints: [/^Dockerfile mine\.txt up $/m],
      never: [/outside-secret/],
    },
    {
      name: '.dockerignore patterns with .. and ! re-including outside paths',
      files: {
        Dockerfile: 'FROM busybox\nCOPY . /all/\nRUN find /all | sort | tr "\\n" " "; echo; cat /all/etc/passwd 2>/dev/null || echo no-passwd\n',
        '.dockerignore': `../${path.basename(outsideParent)}\n!../${path.basename(outsideParent)}/secret\n!/etc/passwd\n!../../../../etc/passwd\n**/skip\n!${canary}/keep\n`,
        'kept.txt': 'kept\n',
        'skip': 'skipped\n',
      },
      prints: [/^\/all \/all\/\.dockerignore \/all\/Dockerfile \/all\/kept\.txt $/m, /^no-passwd$/m],
      never: [/outside-secret/, /canary/],
    },
    {
      name: 'a .dockerignore that is a symlink to /etc/shadow',
      files: { Dockerfile: 'FROM busybox\nCOPY . /all/\nRUN ls -a /all | sort | tr "\\n" " "; echo\n', 'kept.txt': 'kept\n' },
      prepare: (d) => fs.symlinkSync('/etc/shadow', path.join(d, '.dockerignore')),
      // read with the caller's rights (root's here): its lines are patterns that match nothing
      prints: [/^\. \.\. \.dockerignore Dockerfile kept\.txt $/m],
      never: [new RegExp(shadowLine.split(':').slice(1, 2).join('').replace(/[$^.*+?()[\]{}|\\/]/g, '\\$&') || 'no-shadow-hash')],
    },
    {
      name: '-f ../../etc/shadow',
      files: { Dockerfile: 'FROM busybox\n' },
      args: (d) => ['-f', path.relative(process.cwd(), '/etc/shadow'), d],
      says: /shadow:1: unknown instruction/,
    },
    {
      name: '-f a symlink to /etc/shadow',
      files: { Dockerfile: 'FROM busybox\n' },
      prepare: (d) => fs.symlinkSync('/etc/shadow', path.join(d, 'Dockerfile.link')),
      args: (d) => ['-f', path.join(d, 'Dockerfile.link'), d],
      says: /Dockerfile\.link:1: unknown instruction/,
    },
    {
      name: 'COPY --from a stage with a symlink to / reads the stage, not the host',
      files: {
        Dockerfile: [
          'FROM busybox AS s',
          'RUN ln -s / /rootlink && ln -s /etc /etclink && echo stage-passwd > /etc/passwd',
          'FROM busybox',
          'COPY --from=s /rootlink/etc/passwd /got',
          'COPY --from=s /etclink/passwd /got2',
          'COPY --from=s /rootlink/../../../etc/passwd /got3',
          'RUN cat /got /got2 /got3',
        ].join('\n'),
      },
      prints: [/^stage-passwd\nstage-passwd\nstage-passwd$/m],
      never: [new RegExp(hostPasswd.split('\n').filter((l) => !/^root:/.test(l))[0]?.replace(/[$^.*+?()[\]{}|\\/]/g, '\\$&') ?? 'never-matches')],
    },
    {
      name: 'two context sources merged into one directory: the first one\'s link to the canary, the second one\'s directory under it',
      files: { Dockerfile: 'FROM busybox\nCOPY a b /dst/\nRUN ls /dst/x && test ! -L /dst/x && echo is-a-dir\n', 'b/x/evil': 'evil\n', 'b/x/sub/passwd': 'evil\n' },
      prepare: (d) => {
        fs.mkdirSync(path.join(d, 'a'));
        fs.symlinkSync(canary, path.join(d, 'a', 'x'));
        fs.chmodSync(path.join(d, 'b', 'x'), 0o777);
      },
      // the later source wins, as for files: its directory replaces the link in the layer, and nothing goes through it
      prints: [/^evil$/m, /^is-a-dir$/m],
    },
    {
      name: 'three context sources: a directory, then a link to the canary in its place, then a file under it',
      files: { Dockerfile: 'FROM busybox\nCOPY a b c /dst/\nRUN ls /dst/x && test ! -L /dst/x && echo is-a-dir\n', 'a/x/f': 'a\n', 'c/x/evil': 'evil\n' },
      prepare: (d) => {
        fs.mkdirSync(path.join(d, 'b'));
        fs.symlinkSync(canary, path.join(d, 'b', 'x'));
      },
      prints: [/^evil$/m, /^is-a-dir$/m],
    },
    {
      name: 'two stage sources merged into one directory: the first one\'s link to the canary, the second one\'s file under it',
      files: {
        Dockerfile: ['FROM busybox AS s', `RUN mkdir -p /a /b/x/sub && ln -s ${canary} /a/x && echo evil > /b/x/sub/passwd && echo evil > /b/x/keep`, 'FROM busybox', 'COPY --from=s /a /b /dst/', 'RUN ls /dst/x && test ! -L /dst/x && echo is-a-dir'].join('\n'),
      },
      prints: [/^keep$/m, /^is-a-dir$/m],
    },
  ];

  const tagsBefore = await tagsOf(h);
  for (const c of cases) {
    const dir = context(t, c.files);
    c.prepare?.(dir);
    const watched = hostPaths([outsideParent, path.join(dir, '..', 'x')]);
    const before = snapshot(watched);
    const r = await build(h, c.args ? c.args(dir) : [dir]);
    if (c.says) assertRefused(r, c.says, c.name);
    else {
      assert.equal(r.code, 0, `${c.name}: builds\n${r.stdout}${r.stderr}`);
      for (const re of c.prints ?? []) assert.match(r.stdout, re, c.name);
    }
    for (const re of c.never ?? []) assert.doesNotMatch(r.stdout + r.stderr, re, `${c.name}: nothing from outside the context`);
    assert.deepEqual(snapshot(watched), before, `${c.name}: the host is unchanged`);
    await assertNothingLeft(w, tagsBefore, c.name);
  }
});

// ---------------------------------------------------------------------------
// A raw protocol client's context tars and Dockerfiles

/** A pax extended header block with `records`, then its data padded to 512. */
function paxHeader(records: Record<string, string>, typeflag = 'x'): Buffer {
  let body = '';
  for (const [k, v] of Object.entries(records)) {
    const rest = ` ${k}=${v}\n`;
    let len = rest.length + 1;
    while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
    body += `${len}${rest}`;
  }
  const data = Buffer.from(body);
  return Buffer.concat([tarHeader({ name: 'PaxHeader', typeflag, size: data.length, mode: 0o644 }), data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

test('context tars and Dockerfiles from a raw protocol client: escapes, links, devices, huge and truncated headers, a declared size no disk holds and payloads past the limits are refused naming why; the host is unchanged and nothing is left', { timeout: 600_000 }, async (t) => {
  const w = await helper(t);
  const { h } = w;
  const dir = tmpDir(t, 'capsa-bh-raw-');
  const conn = await connectProtocol(h.socket);
  t.after(() => conn.dispose());
  const df = 'FROM busybox\nCOPY . /ctx/\n';
  const ok: TarEntrySpec[] = [{ type: 'file', path: 'Dockerfile', content: df }];
  const big = 1 << 20;

  interface Case {
    name: string;
    tar?: Buffer | (() => Buffer);
    params?: Record<string, unknown>;
    dockerfile?: string;
    says?: RegExp;
    /** Lines the build's output notifications must have when it succeeds. */
    prints?: RegExp;
  }
  const cases: Case[] = [
    { name: 'an entry with ..', tar: await tarLayer([...ok, { type: 'file', path: '../evil', content: 'evil' }]), says: /build context: the tar entry "\.\.\/evil" would land outside the context/ },
    { name: 'an entry with .. inside', tar: await tarLayer([...ok, { type: 'file', path: 'a/../../evil', content: 'evil' }]), says: /would land outside the context/ },
    { name: 'an absolute entry', tar: await tarLayer([...ok, { type: 'file', path: '/evil', content: 'evil' }]), says: /build context: the tar entry "\/evil" would land outside the context/ },
    {
      name: 'a symlink to the canary, then a file through it',
      tar: await tarLayer([...ok, { type: 'symlink', path: 'a', target: canary }, { type: 'file', path: 'a/evil', content: 'evil' }, { type: 'file', path: 'a/sub/passwd', content: 'evil' }]),
      says: /build context: the tar entry "a\/evil" lies under "a", which is a symlink, not a directory/,
    },
    {
      name: 'a directory replaced by a symlink after its files',
      tar: await tarLayer([...ok, { type: 'dir', path: 'a' }, { type: 'file', path: 'a/evil', content: 'evil' }, { type: 'symlink', path: 'a', target: canary }]),
      says: /lies under "a", which is a symlink/,
    },
    {
      name: 'a file under a file',
      tar: await tarLayer([...ok, { type: 'file', path: 'f', content: 'f' }, { type: 'file', path: 'f/g', content: 'g' }]),
      says: /the tar entry "f\/g" lies under "f", which is a file, not a directory/,
    },
    { name: 'a hard link out of the context', tar: await tarLayer([...ok, { type: 'hardlink', path: 'h', target: '../../../../etc/shadow' }]), says: /the tar entry "\.\.\/\.\.\/\.\.\/\.\.\/etc\/shadow" would land outside the context/ },
    { name: 'a hard link to an absolute path', tar: await tarLayer([...ok, { type: 'hardlink', path: 'h', target: '/etc/shadow' }]), says: /the tar entry "\/etc\/shadow" would land outside the context/ },
    { name: 'a hard link to no earlier file', tar: await tarLayer([...ok, { type: 'hardlink', path: 'h', target: 'etc/shadow' }]), says: /hard link h names etc\/shadow, which is not an earlier file/ },
    {
      name: 'device nodes and a fifo are left out',
      tar: await tarLayer([
        { type: 'file', path: 'Dockerfile', content: 'FROM busybox\nCOPY . /ctx/\nRUN ls -a /ctx | tr "\\n" " "; echo\n' },
        { type: 'char', path: 'null2', major: 1, minor: 3 },
        { type: 'block', path: 'sda2', major: 8, minor: 0 },
        { type: 'fifo', path: 'fifo' },
        { type: 'file', path: 'kept', content: 'kept' },
      ]),
      dockerfile: 'FROM busybox\nCOPY . /ctx/\nRUN ls -a /ctx | tr "\\n" " "; echo\n',
      prints: /^\. \.\. Dockerfile kept $/m,
    },
    { name: 'a pax header that declares 1 GiB', tar: () => Buffer.concat([tarHeader({ name: 'PaxHeader', typeflag: 'x', size: 1 << 30 }), Buffer.alloc(4096)]), says: /pax|header|limit/i },
    { name: 'a 200 KiB name', tar: () => Buffer.concat([paxHeader({ path: 'n'.repeat(200 << 10) }), tarHeader({ name: 'short', typeflag: '0', size: 0 }), Buffer.alloc(1024)]), says: /pax|name|limit/i },
    { name: 'a truncated tar', tar: () => Buffer.concat([tarHeader({ name: 'Dockerfile', typeflag: '0', size: 10_000 }), Buffer.alloc(100)]), says: /build context|truncated|end/i },
    { name: 'a header with a bad checksum', tar: () => { const b = tarHeader({ name: 'x', typeflag: '0', size: 0 }); b[0] = 0x79; return Buffer.concat([b, Buffer.alloc(1024)]); }, says: /checksum/ },
    {
      name: 'a tar bomb: a file declared 1 TiB',
      tar: () => Buffer.concat([paxHeader({ size: String(2 ** 40) }), tarHeader({ name: 'bomb', typeflag: '0', size: 0 }), Buffer.alloc(1 << 20)]),
      says: /build context: bomb \(1099511627776 bytes.*\) does not fit in the \d+ bytes free/,
    },
    { name: 'a context that is not a regular file', params: { context: '/dev/zero' }, says: /not a regular file|regular/ },
    { name: 'a context that does not exist', params: { context: path.join(dir, 'missing.tar') }, says: /missing\.tar/ },
    { name: 'a Dockerfile over the limit', dockerfile: `FROM busybox\n# ${'x'.repeat(5 << 20)}\n`, says: /dockerfile|Dockerfile limit/i },
    { name: 'a Dockerfile with a NUL', dockerfile: 'FROM busybox\nRUN true\0\n', says: /Dockerfile:2: the file holds a NUL byte/ },
    { name: 'a Dockerfile of 1001 instructions', dockerfile: 'FROM busybox\n' + 'ENV A=1\n'.repeat(1000), says: /Dockerfile:1001: more than the Dockerfile limit of 1000 instructions/ },
    { name: 'a build arg of 1 MiB', params: { buildArgs: { BIG: 'a'.repeat(big) } }, says: /build arg limit \(128 KiB\)/ },
    { name: 'a label of 1 MiB', params: { labels: { big: 'a'.repeat(big) } }, says: /labels limit \(256 KiB\)/ },
    { name: '5000 labels', params: { labels: Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`l${i}`, 'v'])) }, says: /more than the labels limit of 4096 entries/ },
    { name: 'a LABEL of 1 MiB in the Dockerfile', dockerfile: `FROM busybox\nLABEL big=${'a'.repeat(big)}\n`, says: /Dockerfile:2: .*limit \(256 KiB\)/ },
    {
      name: 'a config grown past the config limit by ENV steps',
      dockerfile: `FROM busybox\nARG A=${'a'.repeat(250 << 10)}\n` + Array.from({ length: 40 }, (_, i) => `ENV V${i}=$A\n`).join(''),
      says: /the new image's config is larger than the config limit \(8 MiB\)/,
    },
  ];

  const tagsBefore = await tagsOf(h);
  let n = 0;
  for (const c of cases) {
    const file = path.join(dir, `ctx-${n++}.tar`);
    const tar = typeof c.tar === 'function' ? c.tar() : (c.tar ?? (await tarLayer([{ type: 'file', path: 'Dockerfile', content: c.dockerfile ?? df }])));
    fs.writeFileSync(file, tar);
    const watched = hostPaths([path.join(dir, '..', 'evil')]);
    const before = snapshot(watched);
    const token = `bh-${n}`;
    const lines: string[] = [];
    const sub = conn.onNotification('capsa/image/buildStep', (p: { token: string; event: { kind: string; text?: string } }) => {
      if (p.token === token && p.event.kind === 'output' && p.event.text) lines.push(p.event.text);
    });
    const params = { context: file, dockerfile: c.dockerfile ?? df, token, ...c.params };
    const got = await conn.sendRequest('capsa/image/build', params).then(
      (result) => ({ result }),
      (err: { message: string }) => ({ error: err.message }),
    );
    sub.dispose();
    if (c.says) {
      assert.ok('error' in got, `${c.name}: refused, got ${JSON.stringify(got).slice(0, 300)}`);
      assert.match(got.error, c.says, c.name);
      assert.doesNotMatch(got.error, /\n\s+at /, `${c.name}: no stack trace`);
    } else {
      assert.ok('result' in got, `${c.name}: builds: ${JSON.stringify(got).slice(0, 500)}`);
      if (c.prints) assert.match(lines.join(''), c.prints, c.name);
    }
    assert.deepEqual(snapshot(watched), before, `${c.name}: the host is unchanged`);
    await assertNothingLeft(w, tagsBefore, c.name);
    fs.rmSync(file);
  }

  // a huge --label through the real CLI (each argument within the kernel's 128 KiB, together past the limit)
  const ctx = context(t, { Dockerfile: 'FROM busybox\n' });
  const labels = Array.from({ length: 3 }, (_, i) => ['--label', `l${i}=${'v'.repeat(100 << 10)}`]).flat();
  assertRefused(await build(h, [...labels, '-t', 'never:labels', ctx]), /--label is larger than the labels limit \(256 KiB\)/, 'huge --label');
  assertRefused(await build(h, ['--build-arg', `A=${'v'.repeat(129 << 10)}`, ctx]).catch((err: Error) => ({ code: 1, stdout: '', stderr: `build arg limit: ${err.message}` })), /build arg limit|argument list too long|E2BIG/i, 'a --build-arg of 129 KiB');
  await assertNothingLeft(w, tagsBefore, 'huge --label');
});

// ---------------------------------------------------------------------------
// A RUN that fills the disk

test('a RUN that fills the disk of the Capsa root fails cleanly: its container and upper directory are gone, the space comes back, and the helper builds again', { timeout: 600_000 }, async (t) => {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-bh-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0700', 'capsa-bh', mnt]);
  const root = path.join(mnt, 'root');
  const w = await helper(t, { env: { CAPSA_ROOT: root } }).catch((err: unknown) => {
    execFileSync('umount', [mnt]);
    throw err;
  });
  // after-hooks run in order: the helper (registered in helper()) stops before the unmount
  t.after(() => {
    execFileSync('umount', [mnt]);
    fs.rmdirSync(mnt);
  });
  const { h } = w;
  const used = (): number => {
    const s = fs.statfsSync(mnt);
    return (s.blocks - s.bfree) * s.bsize;
  };
  const tagsBefore = await tagsOf(h);
  const baseline = used();
  for (const [name, run, says] of [
    ['dd fails with ENOSPC', 'dd if=/dev/zero of=/big bs=1M', /step 2 \(RUN dd if=\/dev\/zero of=\/big bs=1M\) failed: the command returned a non-zero code: 1/],
    ['dd fills the disk and the RUN succeeds, so the commit has no room', 'dd if=/dev/zero of=/big bs=1M; echo filled', /no space left on device|ENOSPC/i],
  ] as const) {
    const dir = context(t, { Dockerfile: `FROM busybox\nRUN ${run}\n` });
    const r = await build(h, ['-t', 'never:full', dir]);
    assertRefused(r, says, name);
    await assertNothingLeft(w, tagsBefore, name);
    assert.ok(used() < baseline + (4 << 20), `${name}: the space came back (${used()} bytes used, ${baseline} before)`);
  }
  const next = await build(h, ['-t', 'after:full', context(t, { Dockerfile: 'FROM busybox\nRUN echo small > /small\n' })]);
  assert.equal(next.code, 0, next.stdout + next.stderr);
});

// ---------------------------------------------------------------------------
// Cancels

function started(h: TestHelper, args: string[]) {
  const child = spawn(process.execPath, ['--', CLI, ...args], { env: h.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, done, out: () => stdout + stderr };
}

test('a RUN that never ends is cancelled by Ctrl-C (exit 130) and by the protocol\'s cancel, within seconds, at every phase, leaving nothing', { timeout: 600_000 }, async (t) => {
  const w = await helper(t);
  const { h } = w;
  const tagsBefore = await tagsOf(h);
  const dir = context(t, { Dockerfile: 'FROM busybox\nRUN echo sleeping && sleep 1000\n' });

  const b = started(h, ['build', '--progress=plain', '-t', 'never:sleep', dir]);
  t.after(() => b.child.kill('SIGKILL'));
  await until(`the RUN to run:\n${b.out()}`, async () => /^sleeping$/m.test(b.out()), 60_000);
  const t0 = Date.now();
  b.child.kill('SIGINT');
  assert.equal(await b.done, 130, b.out());
  assert.ok(Date.now() - t0 < 5000, `the CLI exited ${Date.now() - t0} ms after Ctrl-C`);
  await assertNothingLeft(w, tagsBefore, 'Ctrl-C during RUN sleep 1000');

  // the protocol's cancel: at once, after a moment (the context or the step's container being made), and during the RUN
  const conn = await connectProtocol(h.socket);
  t.after(() => conn.dispose());
  const tar = path.join(dir, '..', `${path.basename(dir)}.tar`);
  t.after(() => fs.rmSync(tar, { force: true }));
  fs.writeFileSync(tar, await tarLayer([{ type: 'file', path: 'Dockerfile', content: 'x' }, { type: 'file', path: 'big', content: randomBytes(8 << 20) }]));
  for (const [phase, dockerfile, cancelWhen] of [
    ['before anything', 'FROM busybox\nRUN sleep 1000\n', 'now'],
    ['before the RUN starts', 'FROM busybox\nRUN --mount=type=bind,source=big,target=/big sleep 1000\n', 'start'],
    ['during the RUN', 'FROM busybox\nRUN echo sleeping && sleep 1000\n', 'output'],
  ] as const) {
    const token = `cancel-${phase}`;
    const cancel = new CancellationTokenSource();
    let seen = false;
    const sub = conn.onNotification('capsa/image/buildStep', (p: { token: string; event: { kind: string; step: number; text?: string } }) => {
      if (p.token !== token) return;
      if ((cancelWhen === 'start' && p.event.kind === 'start' && p.event.step === 2) || (cancelWhen === 'output' && p.event.kind === 'output' && /sleeping/.test(p.event.text ?? ''))) {
        seen = true;
        cancel.cancel();
      }
    });
    const answer = conn.sendRequest('capsa/image/build', { context: tar, dockerfile, token, noCache: true }, cancel.token).then(
      () => 'built',
      (err: { message: string }) => err.message,
    );
    if (cancelWhen === 'now') {
      seen = true;
      cancel.cancel();
    }
    await until(`${phase}: the moment to cancel`, async () => seen, 60_000);
    const c0 = Date.now();
    const result = await answer;
    sub.dispose();
    assert.notEqual(result, 'built', phase);
    assert.ok(Date.now() - c0 < 5000, `${phase}: the build ended ${Date.now() - c0} ms after the cancel`);
    await assertNothingLeft(w, tagsBefore, `cancel ${phase}`);
  }
});

test('Ctrl-C while the base image is unpacked exits 130 and leaves no layer being unpacked, nor anything else', { timeout: 600_000 }, async (t) => {
  const w = await helper(t);
  const { h } = w;
  const many: TarEntrySpec[] = Array.from({ length: 20_000 }, (_, i) => ({ type: 'file' as const, path: `many/${i % 100}/f${i}`, content: `${i}` }));
  const repo = `unpack/${randomBytes(4).toString('hex')}`;
  await pushImage(registry, repo, 'latest', { layers: [await busyboxLayer(), await tarLayer(many)], compression: 'gzip' });
  const tagsBefore = await tagsOf(h);
  const dir = context(t, { Dockerfile: `FROM ${registry.host}/${repo}:latest\nRUN true\n` });
  const b = started(h, ['build', '--progress=plain', dir]);
  t.after(() => b.child.kill('SIGKILL'));
  await until('the layer to be unpacked', async () => /FROM/.test(b.out()) && stagingOrUnpacking(w.root), 60_000);
  b.child.kill('SIGINT');
  const t0 = Date.now();
  assert.equal(await b.done, 130, b.out());
  assert.ok(Date.now() - t0 < 10_000, `the CLI exited ${Date.now() - t0} ms after Ctrl-C`);
  // a base whose pull finished before the cancel is kept, as Docker keeps it; one cut short is not recorded
  await assertNothingLeft(w, tagsBefore, 'Ctrl-C during the unpack', new RegExp(`/${repo}:latest$`));
  const next = await build(h, ['-q', dir]);
  assert.equal(next.code, 0, `the same build afterwards: no half-unpacked layer is taken for a whole one\n${next.stderr}`);
});

/** Whether the store is writing something down (a temporary file or directory under its tmp/). */
function stagingOrUnpacking(root: string): boolean {
  const found: string[] = [];
  const walk = (dir: string, depth: number): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.name === 'tmp' && e.isDirectory()) found.push(...fs.readdirSync(path.join(dir, e.name)));
      else if (e.isDirectory() && depth < 3) walk(path.join(dir, e.name), depth + 1);
    }
  };
  walk(root, 0);
  return found.length > 0;
}

// ---------------------------------------------------------------------------
// A context of 100,000 small files

test('a context of 100,000 small files builds (COPY of one file and of all) in bounded time and helper memory', { timeout: 900_000 }, async (t) => {
  const w = await helper(t);
  const { h } = w;
  const dir = tmpDir(t, 'capsa-bh-many-');
  fs.writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox\nCOPY d/7/f7 /one\nCOPY . /all/\nRUN cat /one && find /all -type f | wc -l\n');
  for (let d = 0; d < 100; d++) {
    fs.mkdirSync(path.join(dir, 'd', String(d)), { recursive: true });
    for (let i = d; i < 100_000; i += 100) fs.writeFileSync(path.join(dir, 'd', String(d), `f${i}`), `file ${i}\n`);
  }
  const rss = (): number => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${w.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  const rss0 = rss();
  let peak = rss0;
  const sampler = setInterval(() => (peak = Math.max(peak, rss())), 200);
  t.after(() => clearInterval(sampler));
  const t0 = Date.now();
  const r = await h.cli(['build', '--progress=plain', '-t', 'many:files', dir], { timeoutMs: 600_000 });
  const took = Date.now() - t0;
  clearInterval(sampler);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^file 7\n100001$/m, 'the one file, then every file and the Dockerfile');
  process.stdout.write(`# 100,000 files: built in ${took} ms, helper RSS ${Math.round(rss0 / 2 ** 20)} -> peak ${Math.round(peak / 2 ** 20)} MiB\n`);
  assert.ok(took < 120_000, `the build took ${took} ms`);
  // measured 470–570 MiB for this build (about 5 KiB a file: manifest, copy and capture lists, and V8 keeping freed heap);
  // the bound catches memory that grows without limit, not this figure, which is still to come down
  assert.ok(peak - rss0 < 1024 * 2 ** 20, `the helper grew by ${Math.round((peak - rss0) / 2 ** 20)} MiB`);
  const again = await h.cli(['build', '--progress=plain', dir], { timeoutMs: 600_000 });
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /Step 3\/4 : COPY \. \/all\/\n ---> Using cache/);
});
