/**
 * Requests sent as a created test user through rawclient.ts's script, with
 * the connection optionally kept open (LINGER) while the test acts.
 */
import { spawn } from 'node:child_process';
import { asUser, type TestUser } from './users';

export interface RawAnswer {
  id: number;
  result?: unknown;
  error?: { message: string; data?: { code: string } };
}

export interface RawOutcome {
  answers: RawAnswer[];
  notifications: Array<{ method: string; params: unknown }>;
}

/** The client script (test/helpers/rawclient.ts), written into `dir`. */
export { writeRawClient } from './rawclient';

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
  // rawclient.ts's script: a request list is a list of its steps
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
