/** systemd socket activation: which process the variables are for, what they must pass, and that they go from the environment. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { activationSocket, boundPath } from '../../server/util/activation';
import { socketFd } from '../../server/util/peercred';

test('no LISTEN_PID/LISTEN_FDS: not activated', () => {
  assert.equal(activationSocket({}, 42), undefined);
});

test("variables meant for another pid are ignored, and removed so that the helper's children do not take them", () => {
  const env: NodeJS.ProcessEnv = { LISTEN_PID: '41', LISTEN_FDS: '1', LISTEN_FDNAMES: 'capsa.socket', PATH: '/bin' };
  assert.equal(activationSocket(env, 42), undefined);
  assert.deepEqual(env, { PATH: '/bin' });
});

test('more than one socket, or an fd 3 that is not a listening unix stream socket, is refused naming what is wrong', () => {
  assert.throws(() => activationSocket({ LISTEN_PID: '42', LISTEN_FDS: '2' }, 42), /E_SOCKET_ACTIVATION|exactly one socket/);
  // fd 3 of a test process is whatever the runner left there, never a listening unix socket of ours
  assert.throws(() => activationSocket({ LISTEN_PID: '42', LISTEN_FDS: '1' }, 42), /fd 3 is not (a socket|a unix stream socket|listening)/);
});

test('boundPath gives the path a listening unix socket is bound to', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-activation-'));
  const server = net.createServer();
  const where = path.join(dir, 'capsa.sock');
  await new Promise<void>((resolve) => server.listen(where, resolve));
  t.after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  assert.equal(boundPath(socketFd(server)), where);
});
