/**
 * Workspace ownership: with `idmapMounts`, what root in the container writes
 * in a bind-mounted folder belongs on the host to the folder's user (here
 * uid/gid 1000, standing for the VS Code user), whose files appear to the
 * container as root's; nothing in the folder is chowned. Real helper, real
 * kernel (mount_setattr with MOUNT_ATTR_IDMAP).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chownSync, promises as fs, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { ContainerRunRequest, StreamExitNotification, StreamOutputNotification, type ContainerRunParams } from '../../server/protocol';
import { mountsUnder, protocolSession } from '../helpers/capsa';

const USER = 1000;

/** Runs to completion with its output collected, as the extension's attached runs do. */
function run(conn: MessageConnection, params: ContainerRunParams): Promise<{ exitCode: number; output: string; error?: string }> {
  const attachId = randomBytes(6).toString('hex');
  let output = '';
  return new Promise((resolve, reject) => {
    const out = conn.onNotification(StreamOutputNotification.type, (p) => {
      if (p.attachId === attachId) output += Buffer.from(p.data, 'base64').toString();
    });
    const exit = conn.onNotification(StreamExitNotification.type, (p) => {
      if (p.attachId !== attachId) return;
      out.dispose();
      exit.dispose();
      resolve({ exitCode: p.exitCode, output, error: p.error });
    });
    conn.sendRequest(ContainerRunRequest.type, { ...params, attachId }).catch(reject);
  });
}

test('an idmapped workspace bind: files root writes in the container belong to the workspace user on the host, nothing is chowned', { skip: process.getuid?.() !== 0 && 'the helper needs root', timeout: 120_000 }, async (t) => {
  const ws = mkdtempSync(path.join(tmpdir(), 'capsa-idmap-ws-'));
  const { conn } = await protocolSession(t);
  // after the session's own hooks: the helper has stopped
  t.after(async () => {
    assert.deepEqual(await mountsUnder(ws), [], 'nothing stays mounted on the workspace');
    await fs.rm(ws, { recursive: true, force: true });
  });

  // The user's workspace: theirs, with a file of theirs and one of root's.
  writeFileSync(path.join(ws, 'mine.txt'), 'mine\n');
  chownSync(path.join(ws, 'mine.txt'), USER, USER);
  writeFileSync(path.join(ws, 'roots.txt'), 'root\n');
  chownSync(ws, USER, USER);
  const before = { ws: statSync(ws), mine: statSync(path.join(ws, 'mine.txt')), roots: statSync(path.join(ws, 'roots.txt')) };

  const script = [
    'id -u',
    'stat -c "mine %u:%g" /workspaces/w/mine.txt',
    'stat -c "roots %u:%g" /workspaces/w/roots.txt',
    'echo made > /workspaces/w/made.txt',
    'mkdir /workspaces/w/made-dir && touch /workspaces/w/made-dir/inner',
    'echo more >> /workspaces/w/mine.txt',
  ].join('; ');
  const r = await run(conn, {
    image: 'busybox',
    network: 'none',
    rm: true,
    cmd: ['sh', '-c', script],
    volumes: [`${ws}:/workspaces/w`],
    idmapMounts: [{ target: '/workspaces/w', uid: USER, gid: USER }],
  });
  assert.equal(r.exitCode, 0, `${r.output}${r.error ?? ''}`);
  const lines = r.output.replace(/\r/g, '').trim().split('\n');
  assert.equal(lines[0], '0', 'the container runs as root');
  assert.equal(lines[1], 'mine 0:0', "the user's files are root's inside");
  assert.equal(lines[2], 'roots 65534:65534', 'ids outside the mapping show as nobody');

  for (const f of ['made.txt', 'made-dir', 'made-dir/inner', 'mine.txt']) {
    const st = statSync(path.join(ws, f));
    assert.deepEqual([st.uid, st.gid], [USER, USER], `${f} belongs to the workspace user on the host`);
  }
  const after = { ws: statSync(ws), mine: statSync(path.join(ws, 'mine.txt')), roots: statSync(path.join(ws, 'roots.txt')) };
  assert.deepEqual([after.roots.uid, after.roots.gid, after.roots.ctimeMs], [before.roots.uid, before.roots.gid, before.roots.ctimeMs], "root's file was not chowned");
  assert.deepEqual([after.ws.uid, after.ws.gid], [before.ws.uid, before.ws.gid]);

  // Without the option the same write is root's on the host: the idmap made the difference.
  const plain = await run(conn, { image: 'busybox', network: 'none', rm: true, cmd: ['sh', '-c', 'echo plain > /workspaces/w/plain.txt'], volumes: [`${ws}:/workspaces/w`] });
  assert.equal(plain.exitCode, 0, plain.output);
  assert.equal(statSync(path.join(ws, 'plain.txt')).uid, 0);

  // A target that is not one of the container's binds is refused before anything runs.
  await assert.rejects(
    run(conn, { image: 'busybox', network: 'none', rm: true, cmd: ['true'], volumes: [`${ws}:/workspaces/w`], idmapMounts: [{ target: '/elsewhere', uid: USER, gid: USER }] }),
    /idmap target \/elsewhere is not a bind mount/,
  );
});
