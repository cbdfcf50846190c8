/**
 * RUN's BuildKit features against a real helper, kernel and registry:
 * cache mounts (persistent across --no-cache builds, never in the image,
 * freed by `builder prune`, locked sharing serialising two builds, a
 * user's owned right), bind mounts from the context and a stage (read-only
 * by default, rw writes discarded, never in the image, contained in their
 * root, an edit of the bound file re-running the step), tmpfs, heredocs
 * as BuildKit turns them into commands, --network=none, and clear errors
 * for mount types and flags the builder refuses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileRegistry, startHelper, until, type TestHelper } from '../helpers/capsa';
import { cliAs, createUser } from '../helpers/users';

const registry = fileRegistry();

function context(t: { after: (fn: () => void) => void }, files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-build-run-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

async function built(h: TestHelper, args: string[]): Promise<string> {
  const r = await h.cli(['build', ...args], { timeoutMs: 240_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return r.stdout;
}

async function runIn(h: TestHelper, image: string, script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return h.cli(['run', '--rm', '--network', 'none', image, 'sh', '-c', script]);
}

test('a cache mount persists across --no-cache builds, is absent from the image, is freed by builder prune, and locked sharing serialises two builds', { timeout: 600_000 }, async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  { const p = await h.cli(['pull', 'busybox']); assert.equal(p.code, 0, p.stderr); }
  const dir = context(t, {
    Dockerfile: [
      'FROM busybox',
      `RUN --mount=type=cache,target=/cache/c1 n=$(cat /cache/c1/n 2>/dev/null || echo 0); echo $((n+1)) > /cache/c1/n; echo "count=$((n+1))"; stat -c "perm=%u:%g:%a" /cache/c1`,
      `RUN --mount=type=cache,id=owned,target=/x,uid=1000,gid=1001,mode=0700 stat -c "owner=%u:%g:%a" /x`,
    ].join('\n'),
  });
  const first = await built(h, ['--no-cache', '-t', 'cm:one', dir]);
  assert.match(first, /^count=1$/m);
  assert.match(first, /^perm=0:0:755$/m, 'a new cache directory is root 0755');
  assert.match(first, /^owner=1000:1001:700$/m, 'uid, gid and mode of a new cache directory');
  const second = await built(h, ['--no-cache', '-t', 'cm:two', dir]);
  assert.match(second, /^count=2$/m, 'the content survived into the next build');
  const image = await runIn(h, 'cm:two', 'test -e /cache && echo present || echo absent; test -e /x && echo x-present || echo x-absent');
  assert.equal(image.stdout, 'absent\nx-absent\n', 'neither the cache nor its mount point is in the layer: ' + image.stderr);
  const store = path.join(h.root, 'build', 'cachemounts', '0');
  assert.equal(fs.readdirSync(store).length, 2, 'one directory per cache id');
  const pruned = await h.cli(['builder', 'prune']);
  assert.equal(pruned.code, 0, pruned.stderr);
  assert.match(pruned.stdout, /2 cache mounts/);
  assert.deepEqual(fs.readdirSync(store), []);
  assert.match(await built(h, ['--no-cache', dir]), /^count=1$/m, 'after prune the cache starts empty');

  // two builds at once on one locked cache: the second waits, so the guard directory is never seen by the other
  const locked = context(t, {
    Dockerfile: [
      'FROM busybox',
      `RUN --mount=type=cache,id=apt,target=/c,sharing=locked mkdir /c/busy || { echo overlapped; exit 9; }; sleep 2; rmdir /c/busy; echo done-locked`,
    ].join('\n'),
  });
  const both = await Promise.all([h.cli(['build', '--no-cache', locked], { timeoutMs: 240_000 }), h.cli(['build', '--no-cache', locked], { timeoutMs: 240_000 })]);
  for (const r of both) {
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^done-locked$/m);
  }
  // private: a second user of a taken cache gets a fresh directory, so it does not see the guard either
  const priv = context(t, {
    Dockerfile: ['FROM busybox', `RUN --mount=type=cache,id=p,target=/c,sharing=private mkdir /c/busy || { echo overlapped; exit 9; }; sleep 2; rmdir /c/busy; echo done-private`].join('\n'),
  });
  const twice = await Promise.all([h.cli(['build', '--no-cache', priv], { timeoutMs: 240_000 }), h.cli(['build', '--no-cache', priv], { timeoutMs: 240_000 })]);
  for (const r of twice) assert.equal(r.code, 0, r.stdout + r.stderr);
});

test('bind mounts from the context and a stage are read-only by default, rw writes are discarded, nothing reaches the image, an edit re-runs the step; tmpfs; --network=none', { timeout: 600_000 }, async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  { const p = await h.cli(['pull', 'busybox']); assert.equal(p.code, 0, p.stderr); }
  const dir = context(t, {
    'in.txt': 'in-one\n',
    Dockerfile: [
      'FROM busybox AS src',
      'RUN mkdir /data && echo from-stage > /data/f',
      'FROM busybox',
      'RUN echo early-step',
      'RUN --mount=type=bind,source=in.txt,target=/mnt/in/in.txt cat /mnt/in/in.txt; (echo x > /mnt/in/in.txt) 2>/dev/null && echo wrote || echo readonly',
      'RUN --mount=type=bind,from=src,source=/data,target=/opt/d,rw cat /opt/d/f && echo changed > /opt/d/f && echo new > /opt/d/g && echo rw-ok',
      'RUN --mount=type=bind,from=src,source=../../data,target=/opt/d echo "again $(cat /opt/d/f) $(ls /opt/d | tr "\\n" " ")"',
      'RUN --mount=type=bind,target=/ctx ls /ctx | tr "\\n" " "; echo',
      'RUN --mount=type=tmpfs,target=/scratch,size=1m grep " /scratch " /proc/mounts | cut -d" " -f3,4; echo t > /scratch/t',
      'RUN --network=none echo "net: $(ls /sys/class/net | tr "\\n" " ")"',
      'RUN --mount=type=bind,from=busybox,source=/bin,target=/img test -x /img/busybox && echo image-bind-ok',
      'RUN --mount=type=cache,id=seeded,from=src,source=/data,target=/seed,ro cat /seed/f; (touch /seed/w) 2>/dev/null || echo cache-ro',
    ].join('\n'),
  });
  const out = await built(h, ['-t', 'bm:one', dir]);
  assert.match(out, /^in-one\nreadonly$/m, 'a context bind is read-only by default');
  assert.match(out, /^from-stage\nrw-ok$/m);
  assert.match(out, /^again from-stage f $/m, 'rw writes of a stage bind are discarded; `..` stays in the stage root');
  assert.match(out, /^Dockerfile in\.txt $/m, 'the whole context by default');
  assert.match(out, /^tmpfs rw,.*size=1024k/m);
  assert.match(out, /^net: lo $/m, '--network=none leaves only lo');
  assert.match(out, /^image-bind-ok$/m, 'a bind from an image');
  assert.match(out, /^from-stage\ncache-ro$/m, 'a new cache seeded from a stage, mounted read-only');
  const image = await runIn(h, 'bm:one', 'for p in /mnt /opt /ctx /scratch /img /seed; do test -e $p && echo "$p present"; done; echo checked');
  assert.equal(image.stdout, 'checked\n', 'no mount point the image lacked, nor its parents, is in a layer');

  fs.writeFileSync(path.join(dir, 'in.txt'), 'in-two\n');
  const edited = await built(h, ['-t', 'bm:two', dir]);
  assert.match(edited, /Step 4\/12 : RUN echo early-step\n ---> Using cache/);
  assert.match(edited, /^in-two\nreadonly$/m, 'editing a bound file re-runs its step');

  // a symlink in the context pointing out of it resolves inside it
  const esc = context(t, { Dockerfile: 'FROM busybox\nRUN --mount=type=bind,source=esc,target=/e cat /e\n' });
  fs.symlinkSync('../../../../../etc/hostname', path.join(esc, 'esc'));
  const escaped = await h.cli(['build', esc]);
  assert.notEqual(escaped.code, 0);
  assert.match(escaped.stderr, /not found in the build context/);
  assert.doesNotMatch(escaped.stdout, new RegExp(`^${os.hostname()}$`, 'm'));

  for (const [mount, says] of [
    ['type=foo,target=/x', /Dockerfile:2: .*unsupported mount type "foo"/],
    ['type=secret,id=nope,required', /Dockerfile:2: secret nope is required but was not given/],
    ['type=ssh', /Dockerfile:2: RUN --mount=type=ssh is not supported yet/],
  ] as const) {
    const bad = context(t, { Dockerfile: `FROM busybox\nRUN --mount=${mount} true\n` });
    const r = await h.cli(['build', bad]);
    assert.notEqual(r.code, 0, mount);
    assert.match(r.stderr, says);
  }

  // secrets: a file the CLI reads, mounted read-only at /run/secrets/ID (or a target, with mode and ids), in no layer
  const sec = context(t, {
    Dockerfile: [
      'FROM busybox',
      'RUN --mount=type=secret,id=tok cat /run/secrets/tok; echo; stat -c "%a %u:%g" /run/secrets/tok; (echo x > /run/secrets/tok) 2>/dev/null || echo secret-ro',
      'RUN --mount=type=secret,id=tok,target=/etc/s,mode=0440,uid=5,gid=6 stat -c "%a %u:%g" /etc/s',
      'RUN --mount=type=secret,id=absent echo not-required-ok',
    ].join('\n'),
  });
  const secretFile = path.join(sec, '..', path.basename(sec) + '.secret');
  fs.writeFileSync(secretFile, 's3cr3t-value');
  t.after(() => fs.rmSync(secretFile, { force: true }));
  const s = await built(h, ['--secret', `id=tok,src=${secretFile}`, '-t', 'sec:one', sec]);
  assert.match(s, /^s3cr3t-value\n400 0:0\nsecret-ro$/m);
  assert.match(s, /^440 5:6$/m);
  assert.match(s, /^not-required-ok$/m);
  const inImage = await runIn(h, 'sec:one', 'test -e /run/secrets && echo run-secrets-present; grep -r s3cr3t /etc /run 2>/dev/null; echo checked');
  assert.equal(inImage.stdout, 'checked\n', 'the secret and its mount point are in no layer');
  const hist = await h.cli(['history', '--no-trunc', 'sec:one']);
  assert.doesNotMatch(hist.stdout, /s3cr3t/);
  assert.deepEqual(fs.readdirSync('/dev/shm').filter((n) => n.startsWith('capsa-secret-')), [], 'the staged secrets are removed');
  assert.equal((await h.cli(['ps', '-a', '-q'])).stdout.trim(), '', 'no build container left');
});

test('RUN heredocs produce the files BuildKit would: script, quoted, shebang, stdin, several, <<- tabs', { timeout: 300_000 }, async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  { const p = await h.cli(['pull', 'busybox']); assert.equal(p.code, 0, p.stderr); }
  const dir = context(t, {
    Dockerfile: [
      'FROM busybox',
      'ENV WHO=world',
      'RUN <<EOF',
      'echo "simple $WHO" > /h1',
      'echo second line >> /h1',
      'EOF',
      "RUN <<'EOF'",
      'echo "quoted $WHO" > /h2',
      'EOF',
      'RUN <<EOF',
      '#!/bin/sh',
      'echo "shebang $0 $WHO" > /h3',
      'EOF',
      'RUN cat <<EOF > /h4',
      'line $WHO',
      'EOF',
      "RUN cat <<'EOF' > /h5",
      'line $WHO',
      'EOF',
      'RUN <<-EOF',
      '\techo tabbed > /h6',
      '\tEOF',
      'RUN cat <<A > /h7 && cat <<-B > /h8',
      'first',
      'A',
      '\tsecond',
      '\tB',
    ].join('\n') + '\n',
  });
  await built(h, ['-t', 'hd:one', dir]);
  const r = await runIn(h, 'hd:one', 'for f in 1 2 3 4 5 6 7 8; do printf "%s|" "$(cat /h$f)"; done; test -e /dev/pipes && echo pipes-left; echo');
  // BuildKit runs a lone heredoc with the shell whatever its quoting (so $WHO expands in h2), a shebang one as /dev/pipes/EOF
  assert.equal(r.stdout, 'simple world\nsecond line|quoted world|shebang /dev/pipes/EOF world|line world|line $WHO|tabbed|first|second|\n', r.stderr);
});

test("a user's build with cache mounts: the container sees them as root's (or the uid asked), the disk holds them as the user's; --network=host is refused naming the flag", { timeout: 600_000 }, async (t) => {
  const user = createUser(t);
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  fs.chmodSync(h.dir, 0o711);
  await until('the socket to be open to every user', async () => (fs.statSync(h.socket).mode & 0o777) === 0o666);
  const home = path.join(h.dir, 'home');
  fs.mkdirSync(home, { mode: 0o700 });
  fs.chownSync(home, user.uid, user.gid);
  const ctx = path.join(home, 'ctx');
  fs.mkdirSync(ctx);
  fs.writeFileSync(
    path.join(ctx, 'Dockerfile'),
    [
      'FROM busybox',
      'RUN --mount=type=cache,target=/c test -e /c/f && echo seen-before; echo hi > /c/f; echo "c=$(stat -c %u:%g /c) f=$(stat -c %u:%g /c/f)"',
      'USER 1000:1000',
      'RUN --mount=type=cache,id=u,target=/u,uid=1000,gid=1000 echo x > /u/f; stat -c "u=%u:%g" /u/f',
      'RUN --mount=type=bind,target=/ctx cat /ctx/Dockerfile > /dev/null && echo bind-ok',
      'RUN --mount=type=secret,id=tok,uid=1000 echo "secret=$(cat /run/secrets/tok)"',
      'RUN --mount=type=bind,target=/rw,rw <<EOF',
      '#!/bin/sh',
      'echo "shebang-as-$(id -u) $(touch /rw/new && echo rw-writable)"',
      'EOF',
    ].join('\n'),
  );
  fs.writeFileSync(path.join(home, 'tok'), 'users-secret', { mode: 0o600 });
  for (const p of [ctx, path.join(ctx, 'Dockerfile'), path.join(home, 'tok')]) fs.chownSync(p, user.uid, user.gid);
  { const p = await cliAs(h, user, home, ['pull', 'busybox'], 240_000); assert.equal(p.code, 0, p.stderr); }
  const first = await cliAs(h, user, home, ['build', '--no-cache', '--secret', 'id=tok,src=tok', '-t', 'ucm', ctx], 240_000);
  assert.equal(first.code, 0, first.stdout + first.stderr);
  assert.match(first.stdout, /^c=0:0 f=0:0$/m, "the container's root owns the cache and what it writes there");
  assert.match(first.stdout, /^u=1000:1000$/m, 'a cache of uid 1000 is that container user\'s');
  assert.match(first.stdout, /^bind-ok$/m);
  assert.match(first.stdout, /^secret=users-secret$/m, "a secret the user's CLI read, readable by the container user it names");
  assert.match(first.stdout, /^shebang-as-1000 $/m, 'a shebang heredoc runs for a user; an rw bind is the container root\'s to write, not uid 1000\'s');
  const second = await cliAs(h, user, home, ['build', '--no-cache', '--secret', 'id=tok,src=tok', ctx], 240_000);
  assert.equal(second.code, 0, second.stdout + second.stderr);
  assert.match(second.stdout, /^seen-before$/m);
  const mine = path.join(h.root, 'build', 'cachemounts', String(user.uid));
  for (const hash of fs.readdirSync(mine)) {
    const data = path.join(mine, hash, 'data');
    assert.equal(fs.statSync(data).uid, user.uid, 'on disk the cache is the user\'s');
    for (const f of fs.readdirSync(data)) assert.equal(fs.statSync(path.join(data, f)).uid, user.uid, f);
  }
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN --network=host true\n');
  const host = await cliAs(h, user, home, ['build', ctx], 240_000);
  assert.notEqual(host.code, 0);
  assert.match(host.stderr, /Dockerfile:2: RUN --network=host refused for uid \d+/);
});
