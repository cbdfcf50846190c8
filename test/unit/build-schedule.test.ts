/**
 * The stage scheduler (build/schedule.ts) and the CLI's progress views
 * (cli/buildprogress.ts), without a helper: dependencies before
 * dependants, the parallel bound, the first failure stopping the rest and
 * being the error thrown; the plain view's classic lines and `#N` prefixes
 * while steps run at once; the tty view's frame.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { DEFAULT_PARALLEL_STAGES, scheduleStages } from '../../server/build/schedule';
import { PlainView, TtyView, progressMode } from '../../server/cli/buildprogress';
import type { BuildStepEvent } from '../../server/protocol';

const tick = (ms = 5): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('a stage starts only after the stages it needs, independent ones start together, at most `limit` at once', async () => {
  // 0 and 1 independent; 2 needs both; 3 needs 0; 4..7 independent of all
  const stages = [
    { index: 0, dependsOn: [] },
    { index: 1, dependsOn: [] },
    { index: 2, dependsOn: [0, 1] },
    { index: 3, dependsOn: [0] },
    { index: 4, dependsOn: [] },
    { index: 5, dependsOn: [] },
    { index: 6, dependsOn: [] },
  ];
  const log: string[] = [];
  let running = 0;
  let most = 0;
  await scheduleStages(stages, 3, new AbortController(), async (s) => {
    running++;
    most = Math.max(most, running);
    log.push(`start ${s.index}`);
    await tick(10);
    log.push(`end ${s.index}`);
    running--;
  });
  assert.equal(most, 3);
  const at = (e: string): number => log.indexOf(e);
  for (const s of stages) for (const d of s.dependsOn) assert.ok(at(`end ${d}`) < at(`start ${s.index}`), `${d} before ${s.index}: ${log.join(', ')}`);
  assert.ok(at('start 1') < at('end 0'), 'the independent stages 0 and 1 ran side by side');
  assert.equal(DEFAULT_PARALLEL_STAGES, 4);
});

test('the first failure aborts the siblings, starts nothing more, and is the error thrown once all have ended', async () => {
  const stop = new AbortController();
  const ended: number[] = [];
  const stages = [
    { index: 0, dependsOn: [] },
    { index: 1, dependsOn: [] },
    { index: 2, dependsOn: [1] },
  ];
  await assert.rejects(
    scheduleStages(stages, 4, stop, async (s) => {
      if (s.index === 1) {
        await tick(5);
        throw new Error('step 2 failed');
      }
      // stage 0 runs until aborted, then fails as a cancelled step does
      await new Promise<void>((_, reject) => stop.signal.addEventListener('abort', () => setTimeout(() => {
        ended.push(s.index);
        reject(new Error('cancelled'));
      }, 20)));
    }),
    /step 2 failed/,
  );
  assert.deepEqual(ended, [0], 'the sibling ended before the failure was thrown; stage 2 never started');
});

test('a cancelled build with nothing failed says so', async () => {
  const stop = new AbortController();
  stop.abort();
  await assert.rejects(scheduleStages([{ index: 0, dependsOn: [] }], 4, stop, async () => undefined), /the build was cancelled/);
});

function sink(): { out: Writable & { columns?: number; rows?: number }; text: () => string } {
  let s = '';
  const out = new Writable({ write: (c, _e, cb) => ((s += c.toString()), cb()) }) as Writable & { columns?: number; rows?: number };
  out.columns = 60;
  out.rows = 20;
  return { out, text: () => s };
}

const start = (step: number, instruction: string, stage = 'a', pos = 1, count = 2): BuildStepEvent => ({ kind: 'start', step, total: 4, stage, pos, count, instruction });

test('the plain view prints the classic lines, and prefixes lines with their step while two steps run at once', () => {
  const { out, text } = sink();
  const v = new PlainView(out);
  v.event(start(1, 'FROM busybox AS a'));
  v.event({ kind: 'done', step: 1, id: 'sha256:' + 'a'.repeat(64), ms: 1 });
  v.event(start(2, 'RUN one'));
  v.event({ kind: 'output', step: 2, text: 'alone\n' });
  v.event(start(4, 'RUN two', 'b', 2));
  v.event({ kind: 'output', step: 2, text: 'par' });
  v.event({ kind: 'output', step: 4, text: 'other\n' });
  v.event({ kind: 'output', step: 2, text: 'tial\n' });
  v.event({ kind: 'cached', step: 4 });
  v.event({ kind: 'done', step: 4, id: 'sha256:' + 'b'.repeat(64), ms: 1 });
  v.event({ kind: 'done', step: 2, id: 'sha256:' + 'c'.repeat(64), ms: 1 });
  v.end();
  assert.equal(
    text(),
    ['Step 1/4 : FROM busybox AS a', ` ---> ${'a'.repeat(12)}`, 'Step 2/4 : RUN one', 'alone', 'Step 4/4 : RUN two', '#4 other', '#2 partial', '#4  ---> Using cache', `#4  ---> ${'b'.repeat(12)}`, ` ---> ${'c'.repeat(12)}`, ''].join('\n'),
  );
});

test('the tty view draws [+] Building, a line per step with its state and time, the running step\'s last lines, redrawn in place', async () => {
  const { out, text } = sink();
  const v = new TtyView(out);
  v.event(start(1, 'FROM busybox AS a'));
  v.event({ kind: 'done', step: 1, ms: 0 });
  v.event(start(2, 'RUN make', 'a', 2));
  v.event({ kind: 'output', step: 2, text: ' ---> Running in 0123456789ab\ncompiling\n' });
  await tick(400); // output is drawn on the view's next redraw
  v.event({ kind: 'done', step: 2, id: 'sha256:' + 'c'.repeat(64), ms: 1500 });
  v.event(start(3, 'COPY x /', '', 1, 2));
  v.event({ kind: 'cached', step: 3 });
  v.event({ kind: 'done', step: 3, ms: 0 });
  v.end(true);
  const s = text();
  assert.match(s, /\x1b\[\d+A/, 'cursor up: redrawn in place');
  assert.match(s, / => => # compiling/);
  assert.doesNotMatch(s, /Running in/);
  const last = s.slice(s.lastIndexOf('[+] Building'));
  assert.match(last, /^\[\+\] Building \d+\.\ds \(3\/4\) FINISHED\n/);
  assert.match(last, /\x1b\[2K => \[a 2\/2\] RUN make +1\.5s\n/);
  assert.match(last, / => CACHED \[1\/2\] COPY x \/ +0\.0s\n/);
  for (const line of last.split('\n')) assert.ok(line.replace(/\x1b\[[0-9]*[A-Za-z]/g, '').length <= 59, `a line fits the width: ${JSON.stringify(line)}`);
});

test('--progress auto is tty on a terminal and plain elsewhere; BUILDKIT_PROGRESS sets the default', () => {
  assert.equal(progressMode(undefined, true, {}), 'tty');
  assert.equal(progressMode(undefined, false, {}), 'plain');
  assert.equal(progressMode('auto', false, {}), 'plain');
  assert.equal(progressMode('plain', true, {}), 'plain');
  assert.equal(progressMode(undefined, true, { BUILDKIT_PROGRESS: 'plain' }), 'plain');
});
