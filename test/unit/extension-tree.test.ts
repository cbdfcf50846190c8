import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ContainerSummary, ImageSummary } from '../../server/protocol';
import { containerRow, formatDuration, formatSize, groupImages, shortId, sortContainers, splitReference } from '../../extension/views/model';

const NOW = Date.parse('2024-06-01T12:00:00Z');
const image = (over: Partial<ImageSummary>): ImageSummary => ({
  id: 'sha256:' + '1'.repeat(64),
  references: [],
  names: [],
  manifestDigest: 'sha256:' + 'f'.repeat(64),
  repoDigests: [],
  created: '2024-05-30T12:00:00Z',
  size: 4_260_000,
  os: 'linux',
  architecture: 'amd64',
  ...over,
});
const container = (over: Partial<ContainerSummary>): ContainerSummary => ({
  id: 'c'.repeat(64),
  name: 'quirky_name',
  image: 'busybox',
  imageId: 'sha256:' + '1'.repeat(64),
  command: ['sh'],
  state: 'running',
  created: '2024-06-01T11:00:00Z',
  startedAt: '2024-06-01T11:57:00Z',
  ...over,
});

test('sizes, ids and durations read like docker', () => {
  assert.equal(formatSize(0), '0 B');
  assert.equal(formatSize(4_260_000), '4.26 MB');
  assert.equal(formatSize(72_800_000), '72.8 MB');
  assert.equal(formatSize(1_234_000_000), '1.23 GB');
  assert.equal(shortId('sha256:0123456789abcdef'), '0123456789ab');
  assert.equal(formatDuration(1000), 'a second');
  assert.equal(formatDuration(3 * 60_000), '3 minutes');
  assert.equal(formatDuration(86_400_000), '1 day');
});

test('references split into repository and tag, registry ports kept', () => {
  assert.deepEqual(splitReference('busybox:latest'), { repository: 'busybox', tag: 'latest' });
  assert.deepEqual(splitReference('127.0.0.1:5757/library/busybox'), { repository: '127.0.0.1:5757/library/busybox', tag: 'latest' });
  assert.deepEqual(splitReference('ghcr.io/o/r:v1.2'), { repository: 'ghcr.io/o/r', tag: 'v1.2' });
});

test('images group by repository with tag, size, short id and age', () => {
  const groups = groupImages(
    [
      image({ names: ['busybox:latest', 'busybox:1.36'] }),
      image({ id: 'sha256:' + '2'.repeat(64), names: ['alpine:3'], size: 7_800_000, created: undefined }),
      image({ id: 'sha256:' + '3'.repeat(64), names: [] }),
    ],
    NOW,
  );
  assert.deepEqual(
    groups.map((g) => [g.repository, g.tags.map((t) => t.label)]),
    [
      ['alpine', ['3']],
      ['busybox', ['1.36', 'latest']],
      ['<none>', ['<none>']],
    ],
  );
  const latest = groups[1].tags[1];
  assert.equal(latest.description, '4.26 MB · 111111111111 · 2 days ago');
  assert.equal(latest.contextValue, 'image');
  assert.equal(latest.reference, 'busybox:latest');
  assert.match(latest.tooltip, /digest: sha256:f{64}/);
  assert.equal(groups[0].tags[0].description, '7.80 MB · 222222222222');
  assert.equal(groups[2].tags[0].reference, 'sha256:' + '3'.repeat(64), 'an untagged image is acted on by id');
});

test('container rows show state with a themed icon, exit code and uptime', () => {
  const running = containerRow(container({}), NOW);
  assert.equal(running.label, 'quirky_name');
  assert.equal(running.description, 'busybox · up 3 minutes');
  assert.equal(running.contextValue, 'container.running');
  assert.deepEqual([running.icon, running.color], ['debug-start', 'testing.iconPassed']);

  const failed = containerRow(container({ state: 'exited', exitCode: 3, finishedAt: '2024-06-01T11:00:00Z' }), NOW);
  assert.equal(failed.description, 'busybox · exited (3) 1 hour ago');
  assert.equal(failed.contextValue, 'container.exited');
  assert.deepEqual([failed.icon, failed.color], ['debug-stop', 'testing.iconFailed']);

  const clean = containerRow(container({ state: 'exited', exitCode: 0 }), NOW);
  assert.equal(clean.color, 'disabledForeground', 'a clean exit is not shown as a failure');

  assert.equal(containerRow(container({ state: 'created' }), NOW).contextValue, 'container.created');
  assert.equal(containerRow(container({ state: 'paused' }), NOW).icon, 'debug-pause');
});

test('running containers sort first, then newest', () => {
  const list = sortContainers([
    container({ name: 'old-exited', state: 'exited', created: '2024-01-01T00:00:00Z' }),
    container({ name: 'new-exited', state: 'exited', created: '2024-05-01T00:00:00Z' }),
    container({ name: 'running', state: 'running', created: '2023-01-01T00:00:00Z' }),
  ]);
  assert.deepEqual(list.map((c) => c.name), ['running', 'new-exited', 'old-exited']);
});

test('rendering hundreds of containers stays fast', () => {
  const many = Array.from({ length: 2000 }, (_, i) => container({ id: String(i).padStart(64, '0'), name: `c${i}`, state: i % 3 ? 'exited' : 'running', exitCode: i % 5 }));
  const t0 = performance.now();
  const rows = sortContainers(many).map((c) => containerRow(c, NOW));
  assert.equal(rows.length, 2000);
  // Loose enough for a loaded machine: the bound is there to catch a quadratic sort or render, not to time a linear one.
  assert.ok(performance.now() - t0 < 2000, `took ${performance.now() - t0} ms`);
});
