/**
 * JSON-RPC requests sent to a test helper by a created non-root user, over
 * the helper's socket, with a client that needs no modules (the user may not
 * read the checkout's node_modules). The helper's socket must be open to the
 * user (CAPSA_SOCKET_MODE) and its directory traversable.
 */
import { chmodSync } from 'node:fs';
import { rawSession, writeRawClient } from './rawclient';
import type { TestUser } from './users';


export interface RpcAnswer<T = unknown> {
  id: number;
  result?: T;
  error?: { code: number; message: string; data?: { code?: string } };
}

/** Writes the client into `dir` (readable by everyone) and opens `dir` for traversal; once per helper directory. */
export function installUserClient(dir: string): string {
  chmodSync(dir, 0o711);
  return writeRawClient(dir);
}

/** The answers `user` gets for `calls`, sent one after another on one connection. */
export async function callAs(user: TestUser, client: string, socket: string, calls: Array<[string, unknown?]>): Promise<RpcAnswer[]> {
  const run = await rawSession(client, socket, calls.map(([method, params]) => ({ method, params })), user);
  const failed = (run as { error?: string }).error;
  if (failed) throw new Error(`the client as ${user.name} could not connect: ${failed}`);
  return run.answers as RpcAnswer[];
}

/** The result of one call as `user`, or a thrown error carrying the helper's refusal. */
export async function askAs<T>(user: TestUser, client: string, socket: string, method: string, params?: unknown): Promise<T> {
  const [a] = await callAs(user, client, socket, [[method, params]]);
  if (a.error) throw Object.assign(new Error(a.error.message), { code: a.error.data?.code });
  return a.result as T;
}
