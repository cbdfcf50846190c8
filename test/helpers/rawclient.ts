/**
 * A protocol client a test user can run: plain JSON-RPC over the socket in
 * one script with no modules (a created user may not read the checkout's
 * node_modules). It sends its steps one after another, each request once the
 * previous one is answered, and prints every answer and every notification.
 * With LINGER=1 in its environment it says `answered` on stderr after the
 * last step and stays connected until its stdin closes, so that a test can
 * act meanwhile and see what reached this connection.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { asUser, type TestUser } from './users';

const SCRIPT = `
const net = require('net');
const [socket, stepsJson] = process.argv.slice(2);
const steps = JSON.parse(stepsJson);
const s = net.connect(socket);
let buf = Buffer.alloc(0);
const answers = [];
const notifications = [];
let pending;
const next = (i) => {
  if (i === steps.length) return done();
  const step = steps[i];
  if (step.waitMs !== undefined) return setTimeout(() => next(i + 1), step.waitMs);
  if (step.notify) { const body = JSON.stringify({ jsonrpc: '2.0', method: step.notify, params: step.params }); s.write('Content-Length: ' + Buffer.byteLength(body) + '\\r\\n\\r\\n' + body); return next(i + 1); }
  pending = () => next(i + 1);
  // a params value '$session' stands for the session id of the latest answer that had one
  const last = answers.filter((a) => a && a.result && a.result.session).pop();
  const params = step.params && typeof step.params === 'object' && last ? Object.fromEntries(Object.entries(step.params).map(([k, v]) => [k, v === '$session' ? last.result.session : v])) : step.params;
  const body = JSON.stringify({ jsonrpc: '2.0', id: i, method: step.method, params });
  s.write('Content-Length: ' + Buffer.byteLength(body) + '\\r\\n\\r\\n' + body);
};
const finish = () => { console.log(JSON.stringify({ answers, notifications })); s.destroy(); };
const done = () => {
  if (process.env.LINGER !== '1') return finish();
  process.stdin.resume();
  process.stdin.on('end', finish);
  console.error('answered');
};
s.on('connect', () => next(0));
s.on('error', (e) => { console.log(JSON.stringify({ error: e.code, answers, notifications })); process.exit(0); });
s.on('data', (d) => {
  buf = Buffer.concat([buf, d]);
  for (;;) {
    const end = buf.indexOf('\\r\\n\\r\\n');
    if (end < 0) break;
    const len = Number(/Content-Length: (\\d+)/.exec(buf.subarray(0, end).toString())[1]);
    if (buf.length < end + 4 + len) break;
    const m = JSON.parse(buf.subarray(end + 4, end + 4 + len).toString());
    buf = buf.subarray(end + 4 + len);
    if (m.id === undefined || m.id === null) notifications.push(m);
    else if (m.method === undefined) { answers[m.id] = m; const p = pending; pending = undefined; if (p) p(); }
  }
});
`;

/** A step: a request (answered before the next step; a params value '$session' is replaced by the latest answer's `result.session`), a notification, or a pause that gathers notifications. */
export type Step = { method: string; params?: unknown } | { notify: string; params?: unknown } | { waitMs: number };

export interface Answer {
  result?: any;
  error?: { message: string; data?: { code?: string } };
}

export interface RawRun {
  /** By step index (pauses and notifications have none). */
  answers: Answer[];
  notifications: Array<{ method: string; params: any }>;
}

/** Writes the client script into `dir` (which the user must be able to traverse) and returns its path. */
export function writeRawClient(dir: string): string {
  const file = path.join(dir, 'rawclient.js');
  writeFileSync(file, SCRIPT, { mode: 0o644 });
  return file;
}

/** Runs `steps` as `user` (root when absent) against `socket`; resolves with what it got. */
export function rawSession(client: string, socket: string, steps: Step[], user?: TestUser): Promise<RawRun> {
  const argv = [process.execPath, client, socket, JSON.stringify(steps)];
  const [cmd, ...args] = user ? asUser(user, argv) : argv;
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: { PATH: process.env.PATH }, timeout: 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`raw client failed: ${err.message}\n${stderr}`));
      try {
        resolve(JSON.parse(stdout) as RawRun);
      } catch {
        reject(new Error(`raw client printed no result: ${stdout}\n${stderr}`));
      }
    });
  });
}

/** One request as `user`: its answer. */
export async function rawRequest(client: string, socket: string, method: string, params: unknown, user?: TestUser): Promise<Answer> {
  return (await rawSession(client, socket, [{ method, params }], user)).answers[0];
}

