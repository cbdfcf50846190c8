/**
 * A protocol client that runs as a created test user: a script with no
 * modules (the user may not be able to read node_modules), written into a
 * directory the user can traverse, that sends each request in turn and
 * prints every answer and every notification it got as JSON.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { asUser, type TestUser } from './users';

const SCRIPT = `
const net = require('net');
const [socket, json] = process.argv.slice(2);
const requests = JSON.parse(json);
const s = net.connect(socket);
let buf = Buffer.alloc(0);
const answers = [];
const notifications = [];
let next = 0;
const send = () => {
  const r = requests[next];
  const body = JSON.stringify({ jsonrpc: '2.0', id: next, method: r.method, params: r.params });
  s.write('Content-Length: ' + Buffer.byteLength(body) + '\\r\\n\\r\\n' + body);
};
s.on('connect', () => (requests.length ? send() : done()));
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
    if (m.id === undefined) { notifications.push({ method: m.method, params: m.params }); continue; }
    if (m.method !== undefined) continue; // a request from the helper (progress creation): unanswered is fine
    answers.push(m);
    if (++next < requests.length) send(); else done();
  }
});
const finish = () => { console.log(JSON.stringify({ answers, notifications })); s.destroy(); };
let ended = false;
const done = () => {
  if (ended) return;
  ended = true;
  // with LINGER=1 it stays connected until its stdin closes, and reports the notifications it got meanwhile
  if (process.env.LINGER !== '1') return finish();
  process.stdin.resume();
  process.stdin.on('end', finish);
  console.error('answered');
};
`;

export interface RawAnswer {
  id: number;
  result?: unknown;
  error?: { message: string; data?: { code: string } };
}

export interface RawOutcome {
  answers: RawAnswer[];
  notifications: Array<{ method: string; params: unknown }>;
}

/** Writes the client script into `dir` (which the user must be able to traverse) and returns its path. */
export function writeRawClient(dir: string): string {
  const file = path.join(dir, 'raw-client.js');
  writeFileSync(file, SCRIPT, { mode: 0o644 });
  return file;
}

/**
 * Connects to `socket` as `user` and sends `requests` one after another.
 * With `linger`, resolves `answered` once every request is answered and keeps
 * the connection open until `finish()`, which resolves with what it got.
 */
export function rawSession(
  user: TestUser,
  client: string,
  socket: string,
  requests: Array<{ method: string; params?: unknown }>,
  opts: { linger?: boolean } = {},
): { answered: Promise<void>; finish: () => Promise<RawOutcome> } {
  const [cmd, ...args] = asUser(user, [process.execPath, client, socket, JSON.stringify(requests)]);
  const child = spawn(cmd, args, { env: { PATH: process.env.PATH, LINGER: opts.linger ? '1' : '0' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  const closed = new Promise<number | null>((r) => child.once('close', r));
  const answered = opts.linger
    ? new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (err.includes('answered')) resolve();
        };
        child.stderr.on('data', check);
        void closed.then(() => reject(new Error(`the client as ${user.name} ended before its answers: ${err}${out}`)));
      })
    : closed.then(() => undefined);
  const finish = async (): Promise<RawOutcome> => {
    child.stdin.end();
    const code = await closed;
    if (code !== 0) throw new Error(`the client as ${user.name} exited ${String(code)}: ${err}`);
    return JSON.parse(out) as RawOutcome;
  };
  return { answered, finish };
}

/** Sends `requests` as `user` and returns the answers, in order. */
export async function askAs(user: TestUser, client: string, socket: string, requests: Array<{ method: string; params?: unknown }>): Promise<RawAnswer[]> {
  return (await rawSession(user, client, socket, requests).finish()).answers;
}
