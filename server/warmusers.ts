/**
 * Warm CLI pools of users other than root. A warm process runs its call
 * with its own rights, so a user's calls are served by processes running as
 * that user (or by the Node CLI), never by root's. A user that connects to
 * the helper (its Node CLI, the extension) gets a pool of one idle process
 * of its own, on `capsa-cli.d/UID.sock` beside the helper's socket: the
 * directory is root's (0755, in the helper's own socket directory), the
 * socket is the user's, mode 0600, so no one else can connect, and the
 * process refuses any peer but its own uid besides (server/cli/warm/process.ts).
 *
 * The process starts as root and drops to the user, with the groups
 * /etc/group gives it, before anything else (server/cli/warm/become.ts);
 * then it connects to the helper, which knows it as that user from
 * SO_PEERCRED alone. Its environment is a minimal one of the user's; each
 * call brings its client's own.
 *
 * At most `maxUsers` pools live at once, and one that served no call for
 * `idleMs` ends (its processes and its socket); the user's next connection
 * makes another. Each pool has the failure backoff of server/warmclipool.ts.
 */
import { chmodSync, lstatSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { describeError } from './errors';
import { WarmCliPool, type WarmUser } from './warmclipool';

export interface WarmUsersOptions {
  /** `warmCliUserDir(socket)`: made here, root's, 0755. */
  dir: string;
  /** The helper's socket, which the processes connect to. */
  helperSocket: string;
  maxUsers: number;
  /** A pool that served no call this long ends. */
  idleMs: number;
  log: (message: string) => void;
  /** The CLI script run with `--warm` (WarmCliOptions.entry). */
  entry?: string;
  /** Where users are looked up. Default /etc/passwd. */
  passwd?: string;
}

/** A user of /etc/passwd, as its warm processes need it. */
export interface PasswdUser extends WarmUser {
  home: string;
}

/** What the processes' environment is, whatever the helper's: the user's own basics, and this helper. */
export function userEnv(user: PasswdUser, helperSocket: string): NodeJS.ProcessEnv {
  return {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    HOME: user.home,
    USER: user.name,
    LOGNAME: user.name,
    CAPSA_SOCKET: helperSocket,
    CAPSA_AUTOSTART: '0',
  };
}

/** `uid`'s entry in passwd(5) text, or why there is none it can run as. */
export function passwdEntry(text: string, uid: number): PasswdUser | string {
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || f[2] !== String(uid)) continue;
    const [name, , , gid, , home] = f;
    // a name that could not pass through `--as` (nor, for most tools, be a login) is not served warm
    if (!/^[^:\s/]+$/.test(name)) return `its name in the user database is ${JSON.stringify(name)}`;
    if (!/^\d+$/.test(gid)) return `its gid in the user database is ${JSON.stringify(gid)}`;
    return { uid, gid: Number(gid), name, home: home || '/' };
  }
  return 'it is not in the user database';
}

interface UserPool {
  user: PasswdUser;
  pool: WarmCliPool;
  lastCall: number;
  timer?: NodeJS.Timeout;
}

export class WarmCliUsers {
  private readonly pools = new Map<number, UserPool>();
  /** Why a uid has no pool, last logged: each connection of such a uid does not log it again. */
  private readonly told = new Map<number, string>();
  private closed = false;

  constructor(private readonly opts: WarmUsersOptions) {}

  /** Makes the sockets' directory afresh: root's, 0755 (what an earlier helper left there is gone). */
  init(): void {
    const { dir } = this.opts;
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    const st = lstatSync(dir);
    if (!st.isDirectory() || st.uid !== 0) throw new Error(`${dir} is not a directory of root's after it was made`);
  }

  /** A connection from `uid` (process `pid`): that user gets a pool if it has none; any but its own processes' counts as use. */
  use(uid: number, pid: number): void {
    if (this.closed || uid === 0) return;
    const had = this.pools.get(uid);
    if (had) {
      if (!had.pool.owns(pid)) had.lastCall = Date.now();
      return;
    }
    if (this.pools.size >= this.opts.maxUsers) return this.tell(uid, `${this.opts.maxUsers} users have one already (warmCliUsers)`);
    const user = this.lookUp(uid);
    if (typeof user === 'string') return this.tell(uid, user);
    const socket = path.join(this.opts.dir, `${uid}.sock`);
    const entry: UserPool = { user, lastCall: Date.now(), pool: undefined as unknown as WarmCliPool };
    entry.pool = new WarmCliPool({
      socket,
      size: 1,
      env: userEnv(user, this.opts.helperSocket),
      log: (m) => this.opts.log(`uid ${uid}: ${m}`),
      entry: this.opts.entry,
      user,
      check: () => this.changed(user),
      onTaken: () => (entry.lastCall = Date.now()),
    });
    try {
      entry.pool.start();
    } catch (err) {
      void entry.pool.close();
      return this.tell(uid, `cannot listen on ${socket}: ${describeError(err)}`);
    }
    this.told.delete(uid);
    this.pools.set(uid, entry);
    this.opts.log(`uid ${uid}: warm CLI pool for ${user.name} on ${socket}`);
    this.arm(uid, entry, this.opts.idleMs);
  }

  /** Ends every pool: their idle processes, their sockets and the directory. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.pools.values()];
    this.pools.clear();
    for (const e of all) clearTimeout(e.timer);
    await Promise.all(all.map((e) => e.pool.close()));
    rmSync(this.opts.dir, { recursive: true, force: true });
  }

  /** The uids with a pool now. */
  users(): number[] {
    return [...this.pools.keys()];
  }

  private arm(uid: number, entry: UserPool, ms: number): void {
    entry.timer = setTimeout(() => this.expire(uid, entry), Math.max(ms, 50));
    entry.timer.unref();
  }

  /** Retires a pool that served no call for idleMs (one serving a call now is looked at again later). */
  private expire(uid: number, entry: UserPool): void {
    if (this.pools.get(uid) !== entry) return;
    const left = entry.lastCall + this.opts.idleMs - Date.now();
    if (left > 0 || entry.pool.serving) return this.arm(uid, entry, left > 0 ? left : this.opts.idleMs);
    this.pools.delete(uid);
    this.opts.log(`uid ${uid}: warm CLI pool retired after ${Math.round(this.opts.idleMs / 1000)} s without a call`);
    void entry.pool.close();
  }

  private tell(uid: number, why: string): void {
    if (this.told.get(uid) === why) return;
    // bounded: one line per uid and reason, and no more than that many remembered
    if (this.told.size >= 1024) this.told.clear();
    this.told.set(uid, why);
    this.opts.log(`uid ${uid}: no warm CLI pool (its calls run the Node CLI): ${why}`);
  }

  private lookUp(uid: number): PasswdUser | string {
    const file = this.opts.passwd ?? '/etc/passwd';
    try {
      return passwdEntry(readFileSync(file, 'utf8'), uid);
    } catch (err) {
      return `cannot read ${file}: ${describeError(err)}`;
    }
  }

  /** Before each process starts: the user is still there, as it was. */
  private changed(user: PasswdUser): string | undefined {
    const now = this.lookUp(user.uid);
    if (typeof now === 'string') return `uid ${user.uid} (${user.name}): ${now}`;
    if (now.name !== user.name || now.gid !== user.gid) return `uid ${user.uid} is now ${now.name} of gid ${now.gid}, not ${user.name} of gid ${user.gid}`;
    return undefined;
  }
}
