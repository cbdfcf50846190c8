/**
 * How `capsa build` schedules stages and shows its progress, against a real
 * helper, kernel and registry: only the stages the target needs are built;
 * independent stages build side by side (their sleeps overlap) with the
 * same results; the first failing step stops its siblings; a RUN's output
 * streams before the step ends; Ctrl-C (through the warm CLI and the Node
 * CLI) leaves no container, mount, tag or staging directory and keeps only
 * finished steps in the cache; the tty view through a real pty; -q and
 * --iidfile.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes, randomFillSync } from 'node:crypto';
import { CLI, fileRegistry, mountsUnder, startHelper, until, type TestHelper } from '../helpers/capsa';
import { stagingDirs } from '../helpers/staging';
import { busyboxLayer, pushImage, tarLayer } from '../helpers/oci';
import { startFaultProxy } from '../helpers/registry';

const registry = fileRegistry();

interface Ctx {
  after: (fn: () => unknown) => void;
}

async function helper(t: Ctx): Promise<TestHelper> {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  const p = await h.cli(['pull', '-q', 'busybox']);
  assert.equal(p.code, 0, p.stderr);
  return h;
}

function context(t: Ctx, dockerfile: string, files: Record<string, string> = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-build-sched-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'Dockerfile'), dockerfile);
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), content);
  return dir;
}

/** A CLI run whose output lines are timed as they arrive. `program`: bin/capsa run as a program (the warm CLI), or node with it (the Node CLI). */
function started(h: TestHelper, args: string[], program: 'warm' | 'node' = 'node') {
  const [cmd, argv] = program === 'warm' ? [CLI, args] : [process.execPath, ['--', CLI, ...args]];
  const child = spawn(cmd, argv, { env: h.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const lines: { at: number; line: string }[] = [];
  let partial = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop() as string;
    for (const line of parts) lines.push({ at: Date.now(), line });
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return {
    child,
    lines,
    done,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
  };
}

const arrival = (lines: { at: number; line: string }[], re: RegExp): number => {
  const l = lines.find((x) => re.test(x.line));
  assert.ok(l, `a line matching ${re} in:\n${lines.map((x) => x.line).join('\n')}`);
  return l.at;
};

/** The tags (untagged images left out: a finished step's image is the cache, kept on purpose). */
async function tagsOf(h: TestHelper): Promise<string> {
  const r = await h.cli(['images']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').slice(1).filter(Boolean).map((l) => l.split(/\s+/).slice(0, 2).join(':')).filter((t) => t !== '<none>:<none>').join('\n');
}

/** What a cancelled build may not leave: a container (build steps' included), a mount, a tag, a staging directory. */
async function assertNothingLeft(h: TestHelper, tagsBefore: string): Promise<void> {
  await until('the helper to finish removing the step container', async () => (await h.cli(['ps', '-a', '-q'])).stdout.trim() === '', 10_000);
  assert.deepEqual(fs.readdirSync(path.join(h.root, 'containers')).filter((n) => !n.startsWith('.')), [], 'no container directory, build step ones included');
  assert.deepEqual(await mountsUnder(h.dir), [], 'nothing mounted under the test root');
  assert.equal(await tagsOf(h), tagsBefore, 'no new tag');
  assert.deepEqual(stagingDirs(h.root), [], 'no staging directory');
}

function cacheEntries(h: TestHelper): Record<string, string> {
  try {
    return (JSON.parse(fs.readFileSync(path.join(h.root, 'build', 'cache', '0.json'), 'utf8')) as { entries: Record<string, string> }).entries;
  } catch {
    return {};
  }
}

test('only the stages the target needs are built: a stage it does not need, with a failing RUN, does not fail the build', async (t) => {
  const h = await helper(t);
  const dir = context(t, ['FROM busybox AS unused', 'RUN echo never-runs && exit 9', 'FROM busybox AS used', 'RUN echo used > /used', 'FROM busybox', 'COPY --from=used /used /used'].join('\n'));
  const r = await h.cli(['build', '--progress=plain', dir]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout, /never-runs|RUN echo never-runs/);
  assert.match(r.stdout, /Step 1\/4 : FROM busybox AS used/);
  assert.match(r.stdout, /Step 4\/4 : COPY --from=used \/used \/used/);
});

test('independent stages build side by side: both sleeps overlap, lines are prefixed with their step, and the result is what a rebuild from cache gives', async (t) => {
  const h = await helper(t);
  const dir = context(t, [
    'FROM busybox AS a',
    'RUN echo a-start && sleep 2 && echo a-end && echo from-a > /a',
    'FROM busybox AS b',
    'RUN echo b-start && sleep 2 && echo b-end && echo from-b > /b',
    'FROM busybox',
    'COPY --from=a /a /out/a',
    'COPY --from=b /b /out/b',
    'CMD ["cat", "/out/a", "/out/b"]',
  ].join('\n'));
  const b = started(h, ['build', '--progress=plain', '-t', 'side:by', dir]);
  const { code } = await b.done;
  assert.equal(code, 0, b.stdout + b.stderr);
  const aStart = arrival(b.lines, /a-start$/);
  const bStart = arrival(b.lines, /b-start$/);
  const aEnd = arrival(b.lines, /a-end$/);
  const bEnd = arrival(b.lines, /b-end$/);
  assert.ok(Math.max(aStart, bStart) < Math.min(aEnd, bEnd), 'each stage started its sleep before the other ended its own');
  const window = Math.max(aEnd, bEnd) - Math.min(aStart, bStart);
  // one after the other, the two sleeps alone would take 4 s between those lines, plus a container's start
  assert.ok(window < 4000, `two 2 s sleeps took ${window} ms from the first start to the last end: side by side, not one after the other`);
  // while both ran, each of their lines names its step
  assert.match(b.stdout, /^#2 a-start$/m);
  assert.match(b.stdout, /^#4 b-start$/m);
  // the step numbers follow the plan, whatever order the stages ran in
  for (const [n, ins] of [[1, 'FROM busybox AS a'], [3, 'FROM busybox AS b'], [5, 'FROM busybox'], [6, 'COPY --from=a /a /out/a'], [7, 'COPY --from=b /b /out/b']] as const) {
    assert.match(b.stdout, new RegExp(`^Step ${n}/8 : ${ins.replace(/[/.]/g, '\\$&')}$`, 'm'));
  }
  const run = await h.cli(['run', '--rm', '--network', 'none', 'side:by']);
  assert.equal(run.stdout, 'from-a\nfrom-b\n', run.stderr);
  // scheduled side by side or not, every step has the key it would have had: all 5 cacheable steps hit
  const again = await h.cli(['build', '--progress=plain', dir]);
  assert.equal(again.stdout.split('\n').filter((l) => / ---> Using cache$/.test(l)).length, 5, again.stdout);
  process.stdout.write(`# two independent 2 s RUN steps: ${window} ms from the first start to the last end\n`);
});

test('the first failing step stops its sibling stage (its container killed) and the build fails with that step\'s error', async (t) => {
  const h = await helper(t);
  const dir = context(t, ['FROM busybox AS slow', 'RUN echo slow-running && sleep 1000', 'FROM busybox AS bad', 'RUN sleep 1 && exit 5', 'FROM busybox', 'COPY --from=slow /etc/hostname /a', 'COPY --from=bad /etc/hostname /b'].join('\n'));
  const t0 = Date.now();
  const r = await h.cli(['build', '--progress=plain', '-t', 'never:made', dir], { timeoutMs: 60_000 });
  assert.notEqual(r.code, 0);
  assert.ok(Date.now() - t0 < 30_000, 'the sibling did not run its 1000 s');
  assert.match(r.stderr, /step 4 \(RUN sleep 1 && exit 5\) failed: the command returned a non-zero code: 5/);
  assert.doesNotMatch(r.stderr, /cancelled/);
  assert.equal((await h.cli(['ps', '-a', '-q'])).stdout.trim(), '', 'no build container left');
  assert.doesNotMatch(await tagsOf(h), /never/);
  assert.deepEqual(await mountsUnder(h.dir), []);
});

test('a RUN\'s output streams as it comes: a line echoed before a sleep arrives before the sleep ends', async (t) => {
  const h = await helper(t);
  const dir = context(t, 'FROM busybox\nRUN echo before-sleep && sleep 3 && echo after-sleep\n');
  const b = started(h, ['build', '--progress=plain', dir]);
  assert.equal((await b.done).code, 0, b.stdout + b.stderr);
  const gap = arrival(b.lines, /^after-sleep$/) - arrival(b.lines, /^before-sleep$/);
  assert.ok(gap > 2000, `the line before the sleep came ${gap} ms before the one after it: it was not held until the step ended`);
  assert.match(b.stdout, /^Step 2\/2 : RUN echo before-sleep/m);
});

for (const program of ['warm', 'node'] as const) {
  test(`Ctrl-C during a RUN (${program === 'warm' ? 'bin/capsa through the warm CLI' : 'the Node CLI'}) exits 130 and leaves no container, mount, tag or staging directory; the cache holds only finished steps; the next build succeeds`, async (t) => {
    const h = await helper(t);
    const dir = context(t, 'FROM busybox\nENV PHASE=one\nRUN echo step-running && sleep 1000\n');
    const tagsBefore = await tagsOf(h);
    const b = started(h, ['build', '--progress=plain', '-t', 'never:made', dir], program);
    t.after(() => b.child.kill('SIGKILL'));
    await until(`the RUN to be running; stdout so far:\n${b.stdout}${b.stderr}`, async () => /^step-running$/m.test(b.stdout), 30_000);
    if (program === 'warm') {
      const log = fs.readFileSync(path.join(h.dir, 'helper.log'), 'utf8');
      assert.match(log, new RegExp(`warm CLI \\d+ took a call from pid ${b.child.pid}\\n`), 'a warm CLI process serves the build');
    }
    const t0 = Date.now();
    b.child.kill('SIGINT');
    const { code } = await b.done;
    const took = Date.now() - t0;
    assert.equal(code, 130, b.stdout + b.stderr);
    assert.ok(took < 15_000, `the CLI exited ${took} ms after Ctrl-C`);
    assert.match(b.stderr, /build cancelled/);
    await assertNothingLeft(h, tagsBefore);
    // the cache: the ENV step finished, the RUN did not
    const entries = Object.values(cacheEntries(h));
    assert.equal(entries.length, 1, JSON.stringify(entries));
    const ids = (await h.cli(['images', '-q'])).stdout;
    for (const id of entries) assert.ok(ids.includes(id.replace(/^sha256:/, '').slice(0, 12)), `cache entry ${id} names an image of the store:\n${ids}`);
    fs.writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox\nENV PHASE=one\nRUN echo fine > /f\n');
    const next = await h.cli(['build', '--progress=plain', '-t', 'made:after', dir]);
    assert.equal(next.code, 0, next.stdout + next.stderr);
    assert.match(next.stdout, /Step 2\/3 : ENV PHASE=one\n ---> Using cache\n/);
  });
}

test('Ctrl-C during a COPY of a large context exits 130 and leaves nothing behind; the next build succeeds', async (t) => {
  const h = await helper(t);
  const dir = context(t, 'FROM busybox\nCOPY big /big\n');
  // 256 MiB of random bytes: unpacking, copying and compressing them takes seconds
  const fd = fs.openSync(path.join(dir, 'big'), 'w');
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < 256; i++) fs.writeSync(fd, randomFillSync(chunk));
  fs.closeSync(fd);
  const tagsBefore = await tagsOf(h);
  const b = started(h, ['build', '--progress=plain', '-t', 'never:made', dir]);
  t.after(() => b.child.kill('SIGKILL'));
  await until(`the COPY to start; stdout so far:\n${b.stdout}${b.stderr}`, async () => /^Step 2\/2 : COPY big \/big$/m.test(b.stdout), 60_000);
  b.child.kill('SIGINT');
  const t0 = Date.now();
  const { code } = await b.done;
  const took = Date.now() - t0;
  assert.equal(code, 130, b.stdout + b.stderr);
  assert.ok(took < 30_000, `the CLI exited ${took} ms after Ctrl-C`);
  await assertNothingLeft(h, tagsBefore);
  assert.deepEqual(Object.keys(cacheEntries(h)), [], 'the COPY did not finish: no entry');
  fs.writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox\nRUN true\n');
  const next = await h.cli(['build', '-q', dir]);
  assert.equal(next.code, 0, next.stderr);
  process.stdout.write(`# Ctrl-C during a 256 MiB COPY: the CLI exited after ${took} ms\n`);
});

test('Ctrl-C during the pull of the base image exits 130 at once and tags nothing; the next build succeeds', async (t) => {
  const h = await helper(t);
  const big = await tarLayer([{ type: 'file', path: 'big.bin', content: randomBytes(4 << 20).toString('latin1') }]);
  const repo = `slow/${randomBytes(4).toString('hex')}`;
  await pushImage(registry, repo, 'latest', { layers: [await busyboxLayer(), big], compression: 'none' });
  const proxy = await startFaultProxy(registry, { bytesPerSecond: 128 << 10 });
  t.after(() => proxy.stop());
  const dir = context(t, `FROM ${proxy.host}/${repo}:latest\nRUN true\n`);
  const tagsBefore = await tagsOf(h);
  const b = started(h, ['build', '--progress=plain', '-t', 'never:made', dir]);
  t.after(() => b.child.kill('SIGKILL'));
  // 4 MiB at 128 KiB/s takes 32 s: the pull is under way for a good while
  await until('the pull to fetch a blob', async () => proxy.count(/^GET \/v2\/.+\/blobs\//) > 0, 30_000);
  b.child.kill('SIGINT');
  const t0 = Date.now();
  const { code } = await b.done;
  const took = Date.now() - t0;
  assert.equal(code, 130, b.stdout + b.stderr);
  assert.ok(took < 15_000, `the CLI exited ${took} ms after Ctrl-C, not when the pull was done`);
  assert.doesNotMatch(await tagsOf(h), new RegExp(repo), 'the base image is not recorded');
  await assertNothingLeft(h, tagsBefore);
  const next = await h.cli(['build', '-q', context(t, 'FROM busybox\nRUN true\n')]);
  assert.equal(next.code, 0, next.stderr);
});

test('-q prints only the image id and --iidfile writes it', async (t) => {
  const h = await helper(t);
  const dir = context(t, 'FROM busybox\nRUN echo quiet-output\n');
  const iid = path.join(path.dirname(dir), `${path.basename(dir)}.iid`);
  t.after(() => fs.rmSync(iid, { force: true }));
  const r = await h.cli(['build', '-q', '--iidfile', iid, dir]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^sha256:[0-9a-f]{64}\n$/);
  assert.equal(fs.readFileSync(iid, 'utf8'), r.stdout.trim());
});

test('--progress=auto on a real pty (Node CLI and warm CLI) draws the in-place view: [+] Building, a line per step with its time, CACHED marks, FINISHED; --progress=plain there prints the plain lines', async (t) => {
  const h = await helper(t);
  const dir = context(t, 'FROM busybox AS base\nRUN echo tty-output && sleep 1\nFROM base\nCOPY f /f\n', { f: 'x\n' });
  const pidFile = path.join(h.dir, 'client-pid');
  // `warm`: bin/capsa run as a program, so the compiled client hands the terminal to a warm CLI process
  const screenOf = async (extra: string, program: 'warm' | 'node' = 'node'): Promise<{ code: number; screen: string }> => {
    const cli = program === 'warm' ? CLI : `${process.execPath} -- ${CLI}`;
    const shell = `stty rows 40 cols 120; echo $$ > ${pidFile}; exec ${cli} build ${extra} ${dir}`;
    const child = spawn('script', ['-qefc', shell, '/dev/null'], { env: h.env, stdio: ['pipe', 'pipe', 'pipe'] });
    t.after(() => child.kill('SIGKILL'));
    let screen = '';
    child.stdout.on('data', (d: Buffer) => (screen += d.toString()));
    const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
    return { code, screen };
  };
  const first = await screenOf('--progress=auto');
  assert.equal(first.code, 0, first.screen);
  assert.match(first.screen, /\[\+\] Building \d+\.\ds \(\d+\/4\)/);
  assert.match(first.screen, /\x1b\[\d+A/, 'redrawn in place');
  assert.match(first.screen, / => \[base 2\/2\] RUN echo tty-output && sleep 1 +\d+\.\ds/);
  assert.match(first.screen, / => => # tty-output/, "the running step's output under it");
  assert.match(first.screen, /\[\+\] Building \d+\.\ds \(4\/4\) FINISHED/);
  assert.doesNotMatch(first.screen, /Step \d\/4 :/, 'not the plain lines');
  const second = await screenOf('', 'warm');
  assert.equal(second.code, 0, second.screen);
  const pid = fs.readFileSync(pidFile, 'utf8').trim();
  assert.match(fs.readFileSync(path.join(h.dir, 'helper.log'), 'utf8'), new RegExp(`warm CLI \\d+ took a call from pid ${pid}\\n`), 'the warm CLI drew the cached build');
  assert.match(second.screen, /\[\+\] Building \d+\.\ds \(4\/4\) FINISHED/);
  assert.match(second.screen, / => CACHED \[base 2\/2\] RUN echo tty-output/);
  assert.match(second.screen, / => CACHED \[2\/2\] COPY f \/f/);
  const plain = await screenOf('--progress=plain');
  assert.match(plain.screen, /Step 2\/4 : RUN echo tty-output/);
});
