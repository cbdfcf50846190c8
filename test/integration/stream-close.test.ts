/**
 * `capsa/stream/close`: a client that is done with a session (its terminal
 * closed) hangs up an exec, and stops a log follow, over the real protocol.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ContainerExecRequest,
  ContainerLogsRequest,
  StreamCloseNotification,
  StreamExitNotification,
  StreamInputNotification,
  StreamOutputNotification,
  VersionRequest,
  type StreamExitParams,
} from '../../server/protocol';
import { protocolSession } from '../helpers/capsa';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('stream/close hangs up an exec and stops a log follow', { skip: process.getuid?.() !== 0 && 'the helper needs root', timeout: 120_000 }, async (t) => {
  const { helper, conn } = await protocolSession(t);
  const outputs = new Map<string, number>();
  const exits = new Map<string, StreamExitParams>();
  conn.onNotification(StreamOutputNotification.type, (p) => outputs.set(p.attachId, (outputs.get(p.attachId) ?? 0) + 1));
  conn.onNotification(StreamExitNotification.type, (p) => exits.set(p.attachId, p));
  const until = async (what: string, ok: () => boolean, ms = 10_000): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(25);
    }
  };

  const run = await helper.cli(['run', '-d', '--network', 'none', 'busybox', 'sh', '-c', 'while true; do echo tick; sleep 0.05; done']);
  assert.equal(run.code, 0, run.stderr);
  const id = run.stdout.trim();

  // An exec with a terminal, as the container shell runs it: closing hangs it up (128 + SIGHUP).
  await conn.sendRequest(ContainerExecRequest.type, { container: id, cmd: ['sh'], tty: true, interactive: true, size: { rows: 24, cols: 80 }, attachId: 'shell' });
  await until('the shell prompt', () => (outputs.get('shell') ?? 0) > 0);
  conn.sendNotification(StreamCloseNotification.type, { attachId: 'shell' });
  await until('the shell to exit', () => exits.has('shell'));
  assert.equal(exits.get('shell')!.exitCode, 129);

  // A log follow: after the close, no more output and no exit for it, while the container keeps writing.
  await conn.sendRequest(ContainerLogsRequest.type, { container: id, followAttachId: 'logs' });
  await until('followed output', () => (outputs.get('logs') ?? 0) >= 3);
  conn.sendNotification(StreamCloseNotification.type, { attachId: 'logs' });
  // The helper handles one connection's messages in order: once a request sent after the close
  // is answered, everything the follow wrote before the close has arrived.
  await conn.sendRequest(VersionRequest.type);
  const seen = outputs.get('logs');
  await sleep(1000);
  assert.equal(outputs.get('logs'), seen, 'no output after the follow was closed');
  assert.equal(exits.has('logs'), false);

  // The attachId is free again on this connection; an unknown one is ignored.
  conn.sendNotification(StreamCloseNotification.type, { attachId: 'nobody' });
  await conn.sendRequest(ContainerLogsRequest.type, { container: id, followAttachId: 'logs' });
  await until('output of the second follow', () => (outputs.get('logs') ?? 0) > seen! + 2);
});

test('input for an exec whose process closed its stdin is dropped: the helper keeps serving and the exit is reported', { skip: process.getuid?.() !== 0 && 'the helper needs root', timeout: 120_000 }, async (t) => {
  const { helper, conn } = await protocolSession(t);
  const exits = new Map<string, StreamExitParams>();
  conn.onNotification(StreamExitNotification.type, (p) => exits.set(p.attachId, p));
  const run = await helper.cli(['run', '-d', '--network', 'none', 'busybox', 'sleep', '300']);
  assert.equal(run.code, 0, run.stderr);
  const id = run.stdout.trim();

  // the process closes its stdin at once and lives on: what the client sends then meets a closed pipe
  await conn.sendRequest(ContainerExecRequest.type, { container: id, cmd: ['sh', '-c', 'exec 0<&-; sleep 1; exit 5'], interactive: true, attachId: 'closer' });
  await sleep(300);
  const chunk = Buffer.alloc(256 * 1024, 0x61).toString('base64');
  for (let i = 0; i < 16; i++) conn.sendNotification(StreamInputNotification.type, { attachId: 'closer', data: chunk });
  conn.sendNotification(StreamInputNotification.type, { attachId: 'closer', data: '', eof: true });
  const deadline = Date.now() + 15_000;
  while (!exits.has('closer') && Date.now() < deadline && helper.process.exitCode === null) await sleep(25);
  assert.equal(helper.process.exitCode, null, 'the helper is alive');
  assert.equal(exits.get('closer')?.exitCode, 5);
  const ps = await helper.cli(['exec', id, 'echo', 'still serving']);
  assert.equal(ps.stdout, 'still serving\n', ps.stderr);
});
