/**
 * Cancelling a pull from its work-done progress (the Cancel button of VS
 * Code's notification) cancels it, for a client that initialized with
 * work-done progress support, as VS Code does, and for one that did not.
 * vscode-languageserver replaces the helper's handler for that notification
 * when such a client initializes; this test fails if the helper's is lost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { InitializeRequest, InitializedNotification, WorkDoneProgress, WorkDoneProgressCancelNotification } from 'vscode-languageserver-protocol';
import { connectProtocol, fileRegistry, testHelper, until } from '../helpers/capsa';
import { startFaultProxy } from '../helpers/registry';
import { busyboxLayer, pushImage, tarLayer } from '../helpers/oci';
import { ImagePullRequest, VersionRequest } from '../../server/protocol';

const registry = fileRegistry();

for (const initialize of [true, false]) {
  test(`a pull is cancelled by cancelling its work-done progress (${initialize ? 'a client that initialized with progress support, as VS Code' : 'a client that never initialized, as the CLI'})`, { skip: process.getuid?.() !== 0 && 'the helper needs root', timeout: 120_000 }, async (t) => {
    const h = await testHelper(t, registry.url);
    const pid = h.process.pid!;
    const big = await tarLayer([{ type: 'file', path: 'big.bin', content: randomBytes(4 << 20).toString('latin1') }]);
    const repo = `slow/${randomBytes(4).toString('hex')}`;
    await pushImage(registry, repo, 'latest', { layers: [await busyboxLayer(), big], compression: 'none' });
    const proxy = await startFaultProxy(registry, { bytesPerSecond: 128 << 10 });
    t.after(() => proxy.stop());
    const c = await connectProtocol(h.socket);
    t.after(() => c.dispose());
    if (initialize) {
      await c.sendRequest(InitializeRequest.type, { processId: process.pid, rootUri: null, capabilities: { window: { workDoneProgress: true } } });
      await c.sendNotification(InitializedNotification.type, {});
    }
    let begun = false;
    c.onProgress(WorkDoneProgress.type, 'pull-1', (p) => (begun ||= p.kind === 'begin' || p.kind === 'report'));
    const started = Date.now();
    const pull = c.sendRequest(ImagePullRequest.type, { reference: `${proxy.host}/${repo}:latest`, workDoneToken: 'pull-1' });
    pull.catch(() => undefined);
    await until('the pull to report progress', async () => begun, 30_000);
    await c.sendNotification(WorkDoneProgressCancelNotification.type, { token: 'pull-1' });
    await assert.rejects(pull, /cancel/i);
    // 4 MiB at 128 KiB/s would take 32 s
    assert.ok(Date.now() - started < 20_000, 'the pull ended when cancelled, not when done');
    const v = await c.sendRequest(VersionRequest.type);
    assert.equal(v.pid, pid);
  });
}
