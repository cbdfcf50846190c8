/**
 * A real user of the machine for a test, made with useradd and removed after
 * it: its own primary group and one supplementary group, no home directory,
 * no login shell.
 */
import { execFileSync, spawn } from 'node:child_process';
import { CLI, type TestHelper } from './capsa';
import { randomBytes } from 'node:crypto';

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  /** A supplementary group of the user's alone. */
  extraGroup: string;
  extraGid: number;
}

export function createUser(t: { after: (fn: () => void) => void }): TestUser {
  const tag = `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
  const name = `capsat${tag}`;
  const extraGroup = `capsag${tag}`;
  retried(['groupadd', extraGroup]);
  try {
    retried(['useradd', '--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', '--groups', extraGroup, name]);
  } catch (err) {
    retried(['groupdel', extraGroup]);
    throw err;
  }
  t.after(() => {
    // --force: a helper still running may keep the user's warm CLI processes (server/warmusers.ts) until it stops
    retried(['userdel', '--force', name]);
    retried(['groupdel', extraGroup]);
  });
  const id = (flag: string, who = name) => Number(execFileSync('id', [flag, who], { encoding: 'utf8' }).trim());
  const extraGid = Number(execFileSync('getent', ['group', extraGroup], { encoding: 'utf8' }).split(':')[2]);
  return { name, uid: id('-u'), gid: id('-g'), extraGroup, extraGid };
}

/** Runs a shadow tool, again after a moment when it failed: another process may hold /etc/passwd's lock. */
function retried(argv: string[]): void {
  for (let attempt = 1; ; attempt++) {
    try {
      execFileSync(argv[0], argv.slice(1), { stdio: 'pipe' });
      return;
    } catch (err) {
      if (attempt === 5) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200 * attempt);
    }
  }
}

/** argv that runs `argv` as the user with its groups (setpriv --init-groups; Node's spawn with uid/gid would drop them). */
export function asUser(user: Pick<TestUser, 'uid' | 'gid'>, argv: string[]): string[] {
  return ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--', ...argv];
}

/**
 * Runs `argv` to its end with `input` (or nothing) on its stdin, collecting its output; `what` names it if it
 * outlives `timeoutMs` (then killed). A signal ends it with 128 + the signal's number, as a shell reports it.
 */
export function collect(argv: string[], o: { env: NodeJS.ProcessEnv; cwd?: string; input?: string; timeoutMs?: number; what: string }): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { cwd: o.cwd, env: o.env, stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d));
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${o.what} timed out; stdout ${stdout}; stderr ${stderr}`));
    }, o.timeoutMs ?? 60_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128 + (signal === 'SIGKILL' ? 9 : 15), stdout, stderr });
    });
    if (o.input !== undefined) child.stdin!.end(o.input);
  });
}

/** `capsa ARGS` as `user`, with its groups, in `cwd`. */
export function cliAs(h: TestHelper, user: TestUser, cwd: string, args: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { PATH: process.env.PATH, HOME: cwd, CAPSA_SOCKET: h.socket, CAPSA_AUTOSTART: '0' };
  return collect(asUser(user, [process.execPath, '--', CLI, ...args]), { env, cwd, timeoutMs, what: `capsa ${args.join(' ')} as ${user.name}` });
}
