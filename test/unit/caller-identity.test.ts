/**
 * Who a connection is: the kernel's word at accept (SO_PEERCRED,
 * SO_PEERGROUPS), the one place that reads a Node socket's descriptor, and
 * the gate that keeps callers other than root to the handshake until
 * per-user access exists.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fstatSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Connection } from 'vscode-languageserver/node';
import { forCaller, hasFullAccess } from '../../server/handlers/access';
import { validating } from '../../server/handlers/validated';
import { ContainerListRequest, ImagePullRequest, VersionRequest } from '../../server/protocol';
import { describeCaller, groupsFromProc, ownCaller, peerCaller, socketFd, type Caller } from '../../server/util/peercred';
import { warmRefusal } from '../../server/cli/warm/process';

const sorted = (a: readonly number[]) => [...a].sort((x, y) => x - y);
/** This process's supplementary groups as the kernel lists them (process.getgroups() adds the egid). */
const kernelGroups = (): number[] =>
  sorted(
    (/^Groups:[ \t]*(.*)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '')
      .split(/\s+/)
      .filter(Boolean)
      .map(Number),
  );

/** A listening unix socket in a temporary directory and one client connected to it: the server's end of it. */
async function connectedPair(t: { after: (fn: () => void) => void }): Promise<{ server: net.Server; accepted: net.Socket }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-peercred-'));
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(path.join(dir, 's.sock'), resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect(path.join(dir, 's.sock'));
  const sock = await accepted;
  t.after(() => {
    client.destroy();
    sock.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { server, accepted: sock };
}

test("socketFd reads the descriptor of Node's accepted and listening unix sockets (contract: _handle.fd)", async (t) => {
  const { server, accepted } = await connectedPair(t);
  for (const s of [accepted, server]) {
    const fd = socketFd(s);
    assert.ok(Number.isInteger(fd) && fd > 2, `a real descriptor, got ${fd}`);
    assert.ok(fstatSync(fd).isSocket(), 'the descriptor is the socket');
  }
  assert.throws(() => socketFd({} as net.Socket), /E_PEER_CREDENTIALS|_handle\.fd/);
});

test("peerCaller gives the connecting process's uid, gid, pid and supplementary groups from the kernel", async (t) => {
  const { accepted } = await connectedPair(t);
  const c = peerCaller(socketFd(accepted));
  assert.equal(c.uid, process.getuid!());
  assert.equal(c.gid, process.getgid!());
  assert.equal(c.pid, process.pid);
  assert.deepEqual(sorted(c.groups), kernelGroups());
  assert.deepEqual(sorted(ownCaller().groups), kernelGroups());
});

test('groupsFromProc (kernels without SO_PEERGROUPS) reads Groups: and gives none when the uid does not match', () => {
  assert.deepEqual(sorted(groupsFromProc(process.pid, process.getuid!())), kernelGroups());
  assert.deepEqual(groupsFromProc(process.pid, process.getuid!() + 1), [], 'another uid: a reused pid, no groups');
  assert.deepEqual(groupsFromProc(2 ** 22 + 1, 0), [], 'no such process');
});

test('describeCaller names uid, gid, groups and pid for the log', () => {
  assert.equal(describeCaller({ uid: 1000, gid: 1001, groups: [27, 1001], pid: 42 }), 'uid 1000 gid 1001 groups 27,1001 pid 42');
  assert.equal(describeCaller({ uid: 5, gid: 5, groups: [], pid: 1 }), 'uid 5 gid 5 groups none pid 1');
});

/** A Connection that records the catch-all handlers validating() registers on it. */
function fakeConnection() {
  const fake = {
    request: undefined as undefined | ((method: string, params: unknown, token: unknown) => unknown),
    notification: undefined as undefined | ((method: string, params: unknown) => unknown),
    onRequest(h: (method: string, params: unknown, token: unknown) => unknown) {
      fake.request = h;
      return { dispose() {} };
    },
    onNotification(h: (method: string, params: unknown) => unknown) {
      fake.notification = h;
      return { dispose() {} };
    },
  };
  return fake;
}

const root: Caller = { uid: 0, gid: 0, groups: [0], pid: 1 };
const user: Caller = { uid: 1000, gid: 1000, groups: [1000], pid: 2 };

function gated(caller: Caller) {
  const fake = fakeConnection();
  const conn = validating(forCaller(fake as unknown as Connection, caller));
  const seen: string[] = [];
  conn.onRequest(VersionRequest.type, () => (seen.push('version'), { version: 'x' }));
  conn.onRequest(ContainerListRequest.type, () => (seen.push('list'), []));
  conn.onRequest(ImagePullRequest.type, () => (seen.push('pull'), { id: 'x' }) as never);
  conn.onNotification('capsa/stream/input', () => void seen.push('input'));
  return { fake, conn, seen };
}

test('a caller other than root gets its version and E_PERMISSION_DENIED for a method not opened to users (the gate denies what it does not list), before its params are checked', async () => {
  const { fake, seen } = gated(user);
  assert.deepEqual(await fake.request!(VersionRequest.method, undefined, {}), { version: 'x' });
  await assert.rejects(
    async () => fake.request!('capsa/unlisted/method', { reference: 42 }, {}),
    (err: { message: string; data?: { code: string } }) => {
      assert.equal(err.data?.code, 'E_PERMISSION_DENIED');
      assert.match(err.message, /capsa\/unlisted\/method refused for uid 1000: not open to users other than root/);
      return true;
    },
  );
  assert.deepEqual(seen, ['version'], 'the unlisted handler was never reached');
});

test('a caller other than root reaches the container methods and stream notifications (each scoped to it by its handler)', async () => {
  const { fake, seen } = gated(user);
  assert.deepEqual(await fake.request!(ContainerListRequest.method, { all: true }, {}), []);
  fake.notification!('capsa/stream/input', { attachId: 'a', data: '' });
  assert.deepEqual(seen, ['list', 'input']);
});

test('root reaches every handler, and handlers read the caller from the connection', async () => {
  const { fake, conn, seen } = gated(root);
  assert.deepEqual(await fake.request!(ContainerListRequest.method, {}, {}), []);
  assert.deepEqual((conn as unknown as { caller: Caller }).caller, root);
  assert.deepEqual(seen, ['list']);
  assert.equal(hasFullAccess(root), true);
  assert.equal(hasFullAccess({ ...user, groups: [0] }), false, 'group root is not root');
});

test('a warm CLI process serves its own uid alone: other callers run the Node CLI', () => {
  assert.equal(warmRefusal(0, 0), undefined);
  assert.equal(warmRefusal(1000, 1000), undefined);
  assert.match(warmRefusal(1000, 0)!, /uid 1000 is not served by the warm CLI of uid 0/);
  assert.match(warmRefusal(0, 1000)!, /uid 0/, "root's calls are served by root's processes");
  assert.match(warmRefusal(-1, 0)!, /uid -1/, 'an unidentified peer');
});
