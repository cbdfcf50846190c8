import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import type { Entry } from '../../server/runtime/container/entry';
import { readLogs } from '../../server/runtime/container/logs';
import type { StreamSink } from '../../server/runtime/container/streams';

const line = (n: number): string => `2026-12-07T00:00:00.000000000Z stdout F tick${n}\n`;

test('logs -f: output logged while the head is still being read is followed once, after the head, never repeating it', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-logs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'container.log');
  writeFileSync(file, [1, 2, 3, 4].map(line).join(''));
  const sinks = new Set<StreamSink>();
  const e = { live: { sinks }, state: { state: 'running' } } as unknown as Entry;
  const followed: string[] = [];
  const follow: StreamSink = { output: (_s, data) => void followed.push(data.toString()), exit: () => undefined };

  const head = readLogs(e, file, { follow });
  // the monitor logs a line and tells the sinks before the head read has finished
  appendFileSync(file, line(5));
  for (const s of sinks) s.output('stdout', Buffer.from('tick5'));
  const records = await head;
  await new Promise((r) => setTimeout(r, 50));

  const all = [...records.map((r) => Buffer.from(r.data, 'base64').toString()), ...followed];
  assert.deepEqual(all, ['tick1\n', 'tick2\n', 'tick3\n', 'tick4\n', 'tick5\n'], 'each line once, in order');
});
