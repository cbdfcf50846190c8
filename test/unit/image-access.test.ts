/**
 * The gate lets a caller other than root reach the image requests that act
 * in that caller's own namespace, and nothing more of the image side: load
 * and save stay root's until their files are opened with the caller's rights.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Connection } from 'vscode-languageserver/node';
import { forCaller } from '../../server/handlers/access';
import { validating } from '../../server/handlers/validated';
import {
  ImageListRequest,
  ImageLoadRequest,
  ImagePruneRequest,
  ImagePullRequest,
  ImageRemoveRequest,
  ImageSaveRequest,
  SystemDfRequest,
} from '../../server/protocol';
import type { Caller } from '../../server/util/peercred';

const user: Caller = { uid: 1000, gid: 1000, groups: [1000], pid: 2 };

/** A Connection that records the catch-all request handler validating() registers on it. */
function gated(caller: Caller) {
  let request: ((method: string, params: unknown, token: unknown) => unknown) | undefined;
  const fake = {
    onRequest(h: typeof request) {
      request = h;
      return { dispose() {} };
    },
    onNotification() {
      return { dispose() {} };
    },
  };
  const conn = validating(forCaller(fake as unknown as Connection, caller));
  const seen: string[] = [];
  for (const t of [ImageListRequest, ImagePullRequest, ImageRemoveRequest, ImagePruneRequest, SystemDfRequest, ImageLoadRequest, ImageSaveRequest]) {
    (conn.onRequest as (m: string, h: () => unknown) => void)(t.method, () => (seen.push(t.method), 'ok'));
  }
  return { send: (method: string, params?: unknown) => request!(method, params, {}), seen };
}

test('a caller other than root reaches list, pull, rmi, prune and df, which its handlers scope to its own names', async () => {
  const { send, seen } = gated(user);
  assert.equal(await send(ImageListRequest.method), 'ok');
  assert.equal(await send(ImagePullRequest.method, { reference: 'busybox' }), 'ok');
  assert.equal(await send(ImageRemoveRequest.method, { image: 'busybox' }), 'ok');
  assert.equal(await send(ImagePruneRequest.method, {}), 'ok');
  assert.equal(await send(SystemDfRequest.method), 'ok');
  assert.deepEqual(seen, [ImageListRequest.method, ImagePullRequest.method, ImageRemoveRequest.method, ImagePruneRequest.method, SystemDfRequest.method]);
});

test('a caller other than root reaches load and save (its files opened with its rights, its names in its namespace), and a pull that names an owner is refused by its schema', async () => {
  const { send, seen } = gated(user);
  assert.equal(await send(ImageLoadRequest.method, { input: '/tmp/x.tar' }), 'ok');
  assert.equal(await send(ImageSaveRequest.method, { images: ['busybox'], output: '/tmp/x.tar' }), 'ok');
  await assert.rejects(async () => send(ImagePullRequest.method, { reference: 'busybox', owner: 0 }), (e: { data?: { code: string } }) => e.data?.code === 'E_INVALID_ARGUMENT');
  assert.deepEqual(seen, [ImageLoadRequest.method, ImageSaveRequest.method]);
});
