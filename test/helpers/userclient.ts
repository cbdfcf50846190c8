/**
 * JSON-RPC requests sent to a test helper by a created non-root user, over
 * the helper's socket, with a client that needs no modules (the user may not
 * read the checkout's node_modules). The helper's socket must be open to the
 * user (CAPSA_SOCKET_MODE) and its directory traversable.
 */
import { execFile } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { asUser, type TestUser } from './users';

/** Sends each `[method, params]` of argv[3] (JSON) in turn, and prints the answers as a JSON array. */
const CLIENT = `
const net = require('net');
const [socket, callsJson] = process.argv.slice(2);
const calls = JSON.parse(callsJson);
const s = net.connect(socket);
let buf = Buffer.alloc(0);
const answers = [];
const send = (i) => {
  const [method, params] = calls[i];
  const body = JSON.stringify({ jsonrpc: '2.0', id: i, method, params });
  s.write('Content-Length: ' + Buffer.byteLength(body) + '\\r\\n\\r\\n' + body);
};
s.on('connect', () => send(0));
s.on('error', (e) => { console.log(JSON.stringify({ error: e.code })); process.exit(0); });
s.on('data', (d) => {
  buf = Buffer.concat([buf, d]);
  for (;;) {
    const end = buf.indexOf('\\r\\n\\r\\n');
    if (end < 0) break;
    const len = Number(/Content-Length: (\\d+)/.exec(buf.subarray(0, end).toString())[1]);
    if (buf.length < end + 4 + len) break;
    const m = JSON.parse(buf.subarray(end + 4, end + 4 + len).toString());
    buf = buf.subarray(end + 4 + len);
    if (m.id === undefined) continue;
    answers.push(m);
    if (answers.length === calls.length) { console.log(JSON.stringify(answers)); s.destroy(); return; }
    send(answers.length);
  }
});
`;

export interface RpcAnswer<T = unknown> {
  id: number;
  result?: T;
  error?: { code: number; message: string; data?: { code?: string } };
}

/** Writes the client into `dir` (readable by everyone) and opens `dir` for traversal; once per helper directory. */
export function installUserClient(dir: string): string {
  chmodSync(dir, 0o711);
  const file = path.join(dir, 'user-client.js');
  writeFileSync(file, CLIENT, { mode: 0o644 });
  return file;
}

/** The answers `user` gets for `calls`, sent one after another on one connection. */
export function callAs(user: TestUser, client: string, socket: string, calls: Array<[string, unknown?]>): Promise<RpcAnswer[]> {
  const argv = asUser(user, [process.execPath, client, socket, JSON.stringify(calls)]);
  return new Promise((resolve, reject) => {
    execFile(argv[0], argv.slice(1), { env: { PATH: process.env.PATH }, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`the client as ${user.name} failed: ${err.message}\n${stderr}`));
      const out = JSON.parse(stdout) as RpcAnswer[] | { error: string };
      if (!Array.isArray(out)) return reject(new Error(`the client as ${user.name} could not connect: ${out.error}`));
      resolve(out);
    });
  });
}

/** The result of one call as `user`, or a thrown error carrying the helper's refusal. */
export async function askAs<T>(user: TestUser, client: string, socket: string, method: string, params?: unknown): Promise<T> {
  const [a] = await callAs(user, client, socket, [[method, params]]);
  if (a.error) throw Object.assign(new Error(a.error.message), { code: a.error.data?.code });
  return a.result as T;
}
