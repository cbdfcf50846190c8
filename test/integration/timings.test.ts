/**
 * `capsa run --debug-timings`: the run's phases, the helper's and the shim's,
 * printed to stderr in order once it ends; and CAPSA_TRACE=1 in the helper's
 * environment, which logs every run's, teardown included.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileRegistry, startHelper, testHelper } from '../helpers/capsa';

const registry = fileRegistry();

/** Every phase a run with a network goes through, in the order they end (the parallel ones aside). */
const PHASES = [
  'request parsed',
  'options prepared',
  'image resolved',
  'directory made',
  'plan built',
  'record written',
  'starting recorded',
  'shim spawned',
  'plan sent',
  'shim: shim running',
  'shim: plan read',
  'shim: monitor detached',
  'shim: sandbox prepared',
  'shim: cloned',
  'shim: rootfs mounted',
  'shim: exec',
  'shim: exec seen',
  'started reported',
  'exit seen',
  'exit reported',
];
/*
 * `running recorded` is not among them: an --rm run's exit is reported
 * without waiting for that write, which may end after the report.
 */
/** The shim runs while the helper's spawn call returns: its first stamp may come before these two. */
const AROUND_SPAWN = ['shim spawned', 'plan sent', 'shim: shim running'];
/** Made side by side, between `directory made` and `plan built`. */
const PARALLEL = ['cgroup made', 'user resolved', 'network attached'];
/** With a user namespace (every user's container, root's --userns auto), one more of them: its id block and staging directories. */
const PARALLEL_USERNS = [...PARALLEL, 'userns staged'];

function parseTable(stderr: string): Array<{ phase: string; at: number; delta: number }> {
  const lines = stderr.trimEnd().split('\n');
  const head = lines.findIndex((l) => /^phase\s+at ms\s+\+ms$/.test(l));
  assert.ok(head >= 0, `a timings table in stderr: ${stderr}`);
  assert.match(lines[lines.length - 1], /^total\s+\d+\.\d\d$/);
  return lines.slice(head + 1, -1).map((l) => {
    const m = /^(.+?)\s+(-?\d+\.\d\d)\s+(-?\d+\.\d\d)$/.exec(l);
    assert.ok(m, `a table row: ${JSON.stringify(l)}`);
    return { phase: m[1], at: Number(m[2]), delta: Number(m[3]) };
  });
}

test('--debug-timings prints every phase of the run in order, with non-negative durations, after its output (with a user namespace, its block is made beside the network)', async (t) => {
  const h = await testHelper(t, registry.url);
  assert.equal((await h.cli(['pull', 'busybox'])).code, 0);
  for (const flags of [[], ['--network', 'none'], ['--userns', 'auto']]) {
    const r = await h.cli(['run', '--rm', '--debug-timings', ...flags, 'busybox', 'echo', 'hi']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hi\n', 'the output is the command\'s alone');
    const rows = parseTable(r.stderr);
    const names = rows.map((x) => x.phase);
    // --network none too: its namespace is made by the network manager, with lo alone
    const expected = flags.includes('--userns') ? PARALLEL_USERNS : PARALLEL;
    const sequential = names.filter((n) => !PARALLEL_USERNS.includes(n) && !AROUND_SPAWN.includes(n) && n !== 'running recorded');
    assert.deepEqual(sequential, PHASES.filter((n) => !AROUND_SPAWN.includes(n)), `every phase, in order: ${names.join(', ')}`);
    for (const p of AROUND_SPAWN) assert.ok(names.indexOf(p) > names.indexOf('starting recorded') && names.indexOf(p) < names.indexOf('shim: plan read'), p);
    assert.ok(names.indexOf('shim spawned') < names.indexOf('plan sent'));
    assert.deepEqual(names.filter((n) => PARALLEL_USERNS.includes(n)).sort(), [...expected].sort());
    for (const p of expected) assert.ok(names.indexOf(p) > names.indexOf('directory made') && names.indexOf(p) < names.indexOf('plan built'), p);
    assert.equal(rows[0].at, 0);
    for (const [i, row] of rows.entries()) {
      assert.ok(row.delta >= 0, `${row.phase} took ${row.delta} ms`);
      if (i) assert.ok(row.at >= rows[i - 1].at, `${row.phase} ends after ${rows[i - 1].phase}`);
    }
  }
  const plain = await h.cli(['run', '--rm', 'busybox', 'true']);
  assert.equal(plain.stderr, '', 'no table without the flag');
});

test('CAPSA_TRACE=1 logs every run\'s phases in the helper\'s log, teardown included', async (t) => {
  const h = await startHelper({ mirror: registry.url, env: { CAPSA_TRACE: '1' } });
  t.after(() => h.stop());
  const r = await h.cli(['run', '--rm', '--network', 'none', 'busybox', 'true']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '', 'the client asked for none');
  const logFile = path.join(h.dir, 'helper.log');
  let log = '';
  for (let i = 0; i < 100 && !/teardown done/.test(log); i++) {
    await new Promise((res) => setTimeout(res, 50));
    log = readFileSync(logFile, 'utf8');
  }
  const rows = log.split('\n').filter((l) => / run [0-9a-f]{12}: /.test(l)).map((l) => l.replace(/^.* run [0-9a-f]{12}: /, ''));
  const names = rows.map((l) => l.replace(/\s+-?\d+\.\d\d.*$/, ''));
  for (const p of ['request parsed', 'shim: rootfs mounted', 'exit reported', 'teardown done', 'total']) assert.ok(names.includes(p), `${p} in ${names.join(', ')}`);
  assert.ok(names.indexOf('exit reported') < names.indexOf('teardown done'));
});
