/** The protocol's container shapes, built at the edge from the runtime's own types. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ContainerDetails } from '../../server/runtime/container';
import { containerEvent, containerInspect, containerRow, containerSummary } from '../../server/views/containers';

const details = (): ContainerDetails => ({
  record: {
    version: 2, id: 'c'.repeat(64), owner: 1000, name: 'web', image: 'busybox', imageRef: 'docker.io/library/busybox:latest', imageId: 'sha256:i', created: '2026-01-01T00:00:00Z',
    hostname: 'cccc', options: { image: 'busybox', labels: { a: 'b' }, cmd: ['sh'] }, stopSignal: 'SIGQUIT',
    plan: { args: ['/bin/sh', '-c', 'x'], env: ['A=1'], cwd: '/w', rootfs: '/r/containers/c/rootfs' } as never,
    binds: [{ source: '/v/data/_data', target: '/data', readOnly: true, type: 'volume' } as never],
  },
  state: { state: 'running', pid: 42, startedAt: '2026-01-01T00:00:01Z' },
  ports: ['127.0.0.1:8080->80/tcp'],
  network: { network: 'bridge', ipAddress: '10.88.0.2', prefixLength: 16, gateway: '10.88.0.1', ports: { '80/tcp': '127.0.0.1:8080' } },
  logPath: '/r/containers/c/container.log',
});

test('a summary has the record\'s names and command and the state\'s times; exitCode only once exited', () => {
  const s = containerSummary(details());
  assert.deepEqual(s, {
    id: 'c'.repeat(64), name: 'web', image: 'busybox', imageId: 'sha256:i', command: ['/bin/sh', '-c', 'x'], state: 'running', exitCode: undefined,
    created: '2026-01-01T00:00:00Z', startedAt: '2026-01-01T00:00:01Z', finishedAt: undefined, pid: 42, labels: { a: 'b' }, ports: ['127.0.0.1:8080->80/tcp'],
  });
  const d = details();
  assert.equal(containerSummary({ ...d, state: { state: 'exited', exitCode: 3 } }).exitCode, 3);
});

test('inspect carries Docker\'s fields next to Capsa\'s', () => {
  const i = containerInspect(details());
  assert.equal(i.Name, '/web');
  assert.equal(i.Path, '/bin/sh');
  assert.deepEqual(i.Args, ['-c', 'x']);
  assert.equal(i.State.Running, true);
  assert.equal(i.State.Pid, 42);
  assert.equal(i.State.FinishedAt, '0001-01-01T00:00:00Z');
  assert.equal(i.Config.StopSignal, 'SIGQUIT');
  assert.equal(i.LogPath, '/r/containers/c/container.log');
  assert.deepEqual(i.NetworkSettings.Ports, { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '8080' }] });
  assert.deepEqual(i.Mounts, [{ Type: 'volume', Source: '/v/data/_data', Destination: '/data', Mode: 'ro', RW: false, Propagation: 'rprivate' }]);
  assert.deepEqual(i.mounts, [{ type: 'volume', source: '/v/data/_data', destination: '/data', readOnly: true }]);
  assert.equal(i.rootfs, '/r/containers/c/rootfs');
  assert.equal(i.networkSettings?.ipAddress, '10.88.0.2');
});

test('inspect of a container without network settings names its mode, and Docker\'s fields are empty', () => {
  const d = details();
  const i = containerInspect({ ...d, network: undefined, record: { ...d.record, options: { image: 'busybox' } } });
  assert.deepEqual(i.networkSettings, { network: 'none' });
  assert.equal(i.NetworkSettings.IPAddress, '');
  assert.equal(i.Config.Cmd, null);
});

test('an event is the action and the summary', () => {
  const d = details();
  assert.deepEqual(containerEvent({ action: 'die', container: d }), { action: 'die', container: containerSummary(d) });
});

test('the owner is in a summary and an inspect result only when asked for (root\'s)', () => {
  const d = details();
  assert.equal('owner' in containerSummary(d), false);
  assert.equal('owner' in containerRow(d, false), false);
  assert.equal(containerRow(d, true).owner, 1000);
  assert.equal('owner' in containerInspect(d), false);
  assert.equal(containerInspect(d, true).owner, 1000);
});
