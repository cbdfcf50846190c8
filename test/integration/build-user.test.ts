/**
 * `capsa build` by a user other than root, a real one the test creates,
 * against a real helper, kernel and registry: the context, the Dockerfile
 * and the .dockerignore are read with the user's rights (a file they cannot
 * read is an error naming it, never sent with root's rights; another user's
 * 0700 home is refused; a context tar the user cannot read is refused by
 * the helper too), RUN runs unprivileged in a user namespace whose ids are
 * the user's subordinate ones (container root's writes land on disk as
 * them, and the layer holds them shifted back), and the image's name is in
 * the user's namespace: root's and another user's `capsa images` do not
 * show it, and root's image of the same name stays root's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { fileRegistry, mountsUnder, startHelper, until, type TestHelper } from '../helpers/capsa';
import { rawRequest, writeRawClient } from '../helpers/rawclient';
import { tarLayer } from '../helpers/oci';
import { cliAs, createUser, type TestUser } from '../helpers/users';

const registry = fileRegistry();
const run = promisify(execFile);

type Result = { code: number; stdout: string; stderr: string };

function assertRefused(r: Result, says: RegExp, what: string): void {
  assert.notEqual(r.code, 0, `${what}: refused\n${r.stdout}${r.stderr}`);
  assert.match(r.stderr, says, `${what}: says why\n${r.stdout}${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
}

/** A directory under the helper's test directory owned by `u`, mode 0700. */
function homeOf(h: TestHelper, u: TestUser, name: string): string {
  const d = path.join(h.dir, name);
  fs.mkdirSync(d, { mode: 0o700 });
  fs.chownSync(d, u.uid, u.gid);
  return d;
}

/** Files written as `u` (a trailing `/` makes a directory). */
function ownFiles(u: TestUser, dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    const p = path.join(dir, name);
    const parts = path.relative(dir, p).split('/');
    for (let i = 1; i < parts.length + (name.endsWith('/') ? 1 : 0); i++) {
      const d = path.join(dir, ...parts.slice(0, i));
      if (!fs.existsSync(d)) {
        fs.mkdirSync(d);
        fs.chownSync(d, u.uid, u.gid);
      }
    }
    if (!name.endsWith('/')) {
      fs.writeFileSync(p, text);
      fs.chownSync(p, u.uid, u.gid);
    }
  }
}

function subidStarts(file: string, name: string): Array<[number, number]> {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f[0] === name)
    .map((f) => [Number(f[1]), Number(f[2])] as [number, number]);
}

async function nothingLeft(h: TestHelper, what: string): Promise<void> {
  await until(`${what}: no container`, async () => (await h.cli(['ps', '-a', '-q'])).stdout.trim() === '', 10_000);
  assert.deepEqual(await mountsUnder(h.dir), [], `${what}: nothing mounted`);
  const v = await h.cli(['version']);
  assert.match(v.stdout, new RegExp(`pid ${h.process.pid}\\b`), `${what}: the same helper answers`);
}

async function setup(t: { after: (fn: () => unknown) => void }) {
  const a = createUser(t);
  const b = createUser(t);
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  fs.chmodSync(h.dir, 0o711);
  await until('the socket to be open to every user', async () => (fs.statSync(h.socket).mode & 0o777) === 0o666);
  const aHome = homeOf(h, a, 'a-home');
  const bHome = homeOf(h, b, 'b-home');
  const asA = (args: string[]) => cliAs(h, a, aHome, args, 240_000);
  const asB = (args: string[]) => cliAs(h, b, bHome, args, 240_000);
  for (const as of [asA, asB, (args: string[]) => h.cli(args)]) {
    const p = await as(['pull', '-q', 'busybox']);
    assert.equal(p.code, 0, p.stderr);
  }
  return { h, a, b, aHome, bHome, asA, asB };
}

test("a user's context, Dockerfile and .dockerignore are read with the user's rights: what they cannot read is an error naming it, never sent with root's rights", { timeout: 600_000 }, async (t) => {
  const { h, a, b, aHome, bHome, asA } = await setup(t);
  ownFiles(b, bHome, { 'ctx/Dockerfile': 'FROM busybox\nCOPY . /c/\n', 'ctx/secret': 'b-secret\n' });
  fs.chmodSync(path.join(bHome, 'ctx', 'secret'), 0o600);
  const ctx = path.join(aHome, 'ctx');
  ownFiles(a, aHome, { 'ctx/Dockerfile': 'FROM busybox\nCOPY . /c/\nRUN cat /c/*\n', 'ctx/mine': 'mine\n' });
  // a root-owned file and directory in the user's own context, which root could read
  fs.writeFileSync(path.join(ctx, 'rootonly'), 'root-secret\n', { mode: 0o600 });
  fs.mkdirSync(path.join(ctx, 'rootdir'), { mode: 0o700 });
  fs.writeFileSync(path.join(ctx, 'rootdir', 'f'), 'root-secret\n');

  const unreadable = await asA(['build', '--progress=plain', '-t', 'never:a', ctx]);
  assertRefused(unreadable, /build context: cannot read (directory )?(rootonly|rootdir): EACCES/, 'a root-only file in the context');
  assert.doesNotMatch(unreadable.stdout + unreadable.stderr, /root-secret/);
  fs.rmSync(path.join(ctx, 'rootdir'), { recursive: true });
  const file = await asA(['build', '--progress=plain', ctx]);
  assertRefused(file, /build context: cannot read rootonly: EACCES/, 'a root-only file in the context');
  fs.rmSync(path.join(ctx, 'rootonly'));

  assertRefused(await asA(['build', path.join(bHome, 'ctx')]), new RegExp(`build context ${path.join(bHome, 'ctx')}: permission denied for uid ${a.uid}`), "another user's 0700 home");
  assertRefused(await asA(['build', '-f', '/etc/shadow', ctx]), /Dockerfile \/etc\/shadow: permission denied/, '-f /etc/shadow');
  fs.symlinkSync('/etc/shadow', path.join(ctx, 'Dockerfile.link'));
  assertRefused(await asA(['build', '-f', path.join(ctx, 'Dockerfile.link'), ctx]), /Dockerfile .*Dockerfile\.link: permission denied/, '-f a link to /etc/shadow');
  fs.rmSync(path.join(ctx, 'Dockerfile.link'));
  fs.symlinkSync('/etc/shadow', path.join(ctx, '.dockerignore'));
  assertRefused(await asA(['build', ctx]), /\.dockerignore: permission denied/, 'a .dockerignore linked to /etc/shadow');
  fs.rmSync(path.join(ctx, '.dockerignore'));

  // the helper opens a context tar with the caller's rights: root's own 0600 tar, and b's, are not a's to send
  const client = writeRawClient(h.dir);
  const tars: Array<[string, string]> = [[path.join(h.dir, 'root.tar'), 'root'], [path.join(bHome, 'b.tar'), 'b']];
  for (const [tar, whose] of tars) {
    fs.writeFileSync(tar, await tarLayer([{ type: 'file', path: 'Dockerfile', content: 'FROM busybox\n' }, { type: 'file', path: 'secret', content: `${whose}-secret` }]), { mode: 0o600 });
    if (whose === 'b') fs.chownSync(tar, b.uid, b.gid);
    const ans = await rawRequest(client, h.socket, 'capsa/image/build', { context: tar, dockerfile: 'FROM busybox\nCOPY secret /s\n', token: 'u1' }, a);
    assert.ok(ans.error, `${whose}'s tar: refused: ${JSON.stringify(ans)}`);
    assert.match(ans.error.message, new RegExp(`build context ${tar.replace(/[.]/g, '\\.')}: permission denied for uid ${a.uid}`));
  }

  const built = await asA(['build', '--progress=plain', '-t', 'mine:1', ctx]);
  assert.equal(built.code, 0, built.stdout + built.stderr);
  assert.match(built.stdout, /^mine$/m);
  await nothingLeft(h, 'after the refusals');
});

test("a user's RUN is unprivileged in a user namespace of the user's subordinate ids; the image lands in the user's namespace only", { timeout: 600_000 }, async (t) => {
  const { h, a, aHome, asA, asB } = await setup(t);
  const ctx = path.join(aHome, 'ctx');
  const marker = `marker-${process.pid}`;
  ownFiles(a, aHome, {
    'ctx/Dockerfile': [
      'FROM busybox',
      'RUN echo "map=$(cat /proc/self/uid_map | tr -s " " | sed "s/^ //")"; echo "gmap=$(cat /proc/self/gid_map | tr -s " " | sed "s/^ //")"; id -u',
      `RUN echo x > /${marker} && mkdir /owned && chown 1000:1000 /owned && echo y > /owned/f && chown 1000:1000 /owned/f && sleep 4`,
      'RUN (mount -t tmpfs none /mnt 2>&1 || true) | head -1; (echo 1 > /proc/sys/kernel/hostname) 2>/dev/null && echo wrote-proc || echo proc-ro; cat /proc/self/status | grep CapEff',
      'RUN echo same-name-of-a > /who',
    ].join('\n'),
  });
  const building = asA(['build', '--progress=plain', '--no-cache', '-t', 'same:1', ctx]);
  // while the second RUN sleeps, its upper directory shows how container root's writes land on the disk
  let onDisk: { root: number; user1000: number } | undefined;
  await until('the marker in a RUN upper directory', async () => {
    const { stdout } = await run('find', [h.root, '-name', marker, '-path', '*upper*'], { maxBuffer: 1 << 20 }).catch(() => ({ stdout: '' }));
    const f = stdout.split('\n').find(Boolean);
    if (!f) return false;
    const owned = path.join(path.dirname(f), 'owned', 'f');
    await until('the chowned file', async () => fs.existsSync(owned), 10_000);
    onDisk = { root: fs.statSync(f).uid, user1000: fs.statSync(owned).uid };
    return true;
  }, 120_000);
  const r = await building;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const m = /^map=0 (\d+) (\d+)$/m.exec(r.stdout);
  assert.ok(m, `RUN sees a uid_map of one block: ${r.stdout}`);
  const start = Number(m[1]);
  assert.notEqual(start, 0, 'not the identity map');
  assert.notEqual(start, a.uid, "container root is not the user's own uid in the map of RUN");
  assert.equal(Number(m[2]), 65536);
  const subs = subidStarts('/etc/subuid', a.name);
  if (subs.length > 0) assert.ok(subs.some(([s, n]) => start >= s && start + 65536 <= s + n), `the block ${start} is within ${a.name}'s /etc/subuid entries ${JSON.stringify(subs)}`);
  assert.match(r.stdout, /^0$/m, 'id -u in the RUN is 0');
  assert.ok(onDisk);
  assert.equal(onDisk.root, start, "container root's file is the block's first id on the disk");
  assert.equal(onDisk.user1000, start + 1000, "container uid 1000's file is block + 1000 on the disk");
  assert.match(r.stdout, /permission denied|not permitted|must be superuser/i, 'no mount for the RUN');
  assert.match(r.stdout, /^proc-ro$/m);

  // the layer holds the ids shifted back: root's file is 0 and 1000's is 1000 inside the image
  const ids = await asA(['run', '--rm', '--network', 'none', 'same:1', 'stat', '-c', '%u:%g', `/${marker}`, '/owned/f']);
  assert.equal(ids.stdout, '0:0\n1000:1000\n', ids.stderr);

  // names: a's same:1 is a's; root's and b's lists do not show it; root's own same:1 stays root's
  const rootCtx = fs.mkdtempSync(path.join(h.dir, 'rootctx-'));
  fs.writeFileSync(path.join(rootCtx, 'Dockerfile'), 'FROM busybox\nRUN echo same-name-of-root > /who\n');
  /** The `same:1` rows of a list: their OWNER column ('' when the list has none). */
  const sameRows = async (as: (args: string[]) => Promise<Result>): Promise<string[]> => {
    const r = await as(['images']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n').filter(Boolean);
    const owned = /\bOWNER$/.test(lines[0] ?? '');
    return lines.slice(1).map((l) => l.trim().split(/\s+/)).filter((f) => f[0] === 'same' && f[1] === '1').map((f) => (owned ? f[f.length - 1] : ''));
  };
  assert.deepEqual(await sameRows((x) => h.cli(x)), [String(a.uid)], "root's list shows a's same:1 as a's, not as a name of root's");
  assert.deepEqual(await sameRows(asB), [], "b's list does not have a's tag");
  assert.equal((await sameRows(asA)).length, 1, "a's own list has it");
  const rootInspect = await h.cli(['image', 'inspect', 'same:1']);
  assert.notEqual(rootInspect.code, 0, "root's name same:1 is not a's image");
  const rootBuilt = await h.cli(['build', '-q', '-t', 'same:1', rootCtx]);
  assert.equal(rootBuilt.code, 0, rootBuilt.stderr);
  const whoRoot = await h.cli(['run', '--rm', '--network', 'none', 'same:1', 'cat', '/who']);
  const whoA = await asA(['run', '--rm', '--network', 'none', 'same:1', 'cat', '/who']);
  assert.equal(whoRoot.stdout, 'same-name-of-root\n', whoRoot.stderr);
  assert.equal(whoA.stdout, 'same-name-of-a\n', whoA.stderr);
  const both = await sameRows((x) => h.cli(x));
  assert.equal(both.length, 2, "root's list: root's same:1 and a's");
  assert.equal(both.filter((o) => o === String(a.uid)).length, 1, "root's list: only one of them is a's");
  const bRun = await asB(['run', '--rm', 'same:1', 'true']);
  assert.notEqual(bRun.code, 0, "b cannot run a's image by its name");
  assert.doesNotMatch(bRun.stderr, /\n\s+at /);
  await nothingLeft(h, 'after the builds');
});
