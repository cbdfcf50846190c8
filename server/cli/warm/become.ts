/**
 * A user's warm CLI process becomes that user here, before anything else of
 * the CLI loads. The helper (server/warmusers.ts) starts it as root with
 * `--warm --as UID:GID:NAME`, because a spawn with a uid and gid (libuv's,
 * posix_spawn's) would leave it without the user's supplementary groups:
 * here it takes them from /etc/group (initgroups, as a login does), then
 * the primary gid, then the uid, and checks that nothing of root is left
 * (ids, groups, capabilities, in every thread) before it goes on. Any doubt
 * ends the process: it never serves a call with more than its user has.
 *
 * server/cli/main.ts imports this module first, so that its check runs
 * before any other module is evaluated.
 */
import { readdirSync, readFileSync, writeSync } from 'node:fs';

/** Who a warm process serves, as `--as` names it. */
export interface WarmUser {
  uid: number;
  gid: number;
  name: string;
}

const REPORT_FD = 4;

/** `--as UID:GID:NAME` after `--warm`, or undefined when it is absent; throws when it is there but malformed (or names root). */
export function parseWarmAs(argv: string[]): WarmUser | undefined {
  const i = argv.indexOf('--as');
  if (i < 0) return undefined;
  const m = /^(\d+):(\d+):([^:\s/]+)$/.exec(argv[i + 1] ?? '');
  if (!m) throw new Error(`--as expects UID:GID:NAME, got ${JSON.stringify(argv[i + 1] ?? '')}`);
  const user = { uid: Number(m[1]), gid: Number(m[2]), name: m[3] };
  if (user.uid === 0) throw new Error('--as names root: root is served by the warm CLI without --as');
  return user;
}

/**
 * What /proc/PID/status (`text`) shows that is not `user`'s: ids other than
 * its uid and gid, a capability, groups other than `groups`. Undefined: none.
 */
export function statusProblem(text: string, user: WarmUser, groups: number[]): string | undefined {
  const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1].trim() ?? '';
  const ids = (name: string): number[] => field(name).split(/\s+/).filter(Boolean).map(Number);
  const uids = ids('Uid');
  const gids = ids('Gid');
  if (uids.length !== 4 || uids.some((u) => u !== user.uid)) return `its uids are ${uids.join(' ')}, not all ${user.uid}`;
  if (gids.length !== 4 || gids.some((g) => g !== user.gid)) return `its gids are ${gids.join(' ')}, not all ${user.gid}`;
  for (const cap of ['CapEff', 'CapPrm', 'CapAmb', 'CapInh']) {
    const v = field(cap);
    if (!/^0+$/.test(v)) return `its ${cap} is ${v || 'missing'}, not 0`;
  }
  // the primary gid may or may not be listed (getgroups(2)): compared with it in both
  const sorted = (list: number[]): number[] => [...new Set([...list, user.gid])].sort((a, b) => a - b);
  const have = sorted(ids('Groups'));
  const want = sorted(groups);
  if (have.join(',') !== want.join(',')) return `its groups are ${have.join(',') || 'none'}, not ${want.join(',')}`;
  return undefined;
}

/** Drops to `user` for good, or throws saying what is amiss. */
export function becomeUser(user: WarmUser): void {
  if (process.getuid!() !== 0) throw new Error(`only root can become uid ${user.uid} (this process is uid ${process.getuid!()})`);
  // Node has it (libc's initgroups), its type declarations do not
  (process as unknown as { initgroups(user: string, group: number): void }).initgroups(user.name, user.gid);
  process.setgid!(user.gid);
  process.setuid!(user.uid);
  const groups = process.getgroups!();
  if (process.getuid!() !== user.uid || process.geteuid!() !== user.uid || process.getgid!() !== user.gid || process.getegid!() !== user.gid) {
    throw new Error(`the drop to uid ${user.uid} gid ${user.gid} did not take: uid ${process.getuid!()} euid ${process.geteuid!()} gid ${process.getgid!()} egid ${process.getegid!()}`);
  }
  let regained = false;
  try {
    process.setuid!(0);
    regained = true;
  } catch {
    // as it must: no way back to root
  }
  if (regained) throw new Error('setuid(0) succeeded after the drop');
  // glibc applies set*id to every thread; each is checked all the same (V8's threads already run)
  for (const task of readdirSync('/proc/self/task')) {
    const problem = statusProblem(readFileSync(`/proc/self/task/${task}/status`, 'utf8'), user, groups);
    if (problem) throw new Error(`after the drop to ${user.name}, thread ${task} is not the user's alone: ${problem}`);
  }
}

/** This module's own act, when the process is a user's warm one. */
function becomeFromArgv(): void {
  try {
    const user = parseWarmAs(process.argv.slice(3));
    if (user) becomeUser(user);
  } catch (err) {
    const message = `cannot become the warm CLI's user: ${err instanceof Error ? err.message : String(err)}`;
    try {
      writeSync(REPORT_FD, `failed ${message.replace(/\n/g, ' ')}\n`);
    } catch {
      // no helper on fd 4: started by hand
    }
    process.stderr.write(`capsa: ${message}\n`);
    process.exit(1);
  }
}

if (process.argv[2] === '--warm') becomeFromArgv();
