/**
 * Users' warm CLI pools, their pure parts: where a user's socket is, the
 * settings, how a user is looked up and what its processes' environment
 * is, how a process reads `--as` and checks its own status after the drop,
 * and the users that get no pool (none in /etc/passwd, too many pools).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadConfig, warmCliUserDir, warmCliUserSocketPath } from '../../server/config';
import { parseWarmAs, statusProblem } from '../../server/cli/warm/become';
import { passwdEntry, userEnv, WarmCliUsers } from '../../server/warmusers';

test("a user's warm socket is UID.sock in a directory beside the helper's socket", () => {
  assert.equal(warmCliUserDir('/run/capsa/capsa.sock'), '/run/capsa/capsa-cli.d');
  assert.equal(warmCliUserSocketPath('/run/capsa/capsa.sock', 1000), '/run/capsa/capsa-cli.d/1000.sock');
  assert.equal(warmCliUserSocketPath('/tmp/x/helper', 42), '/tmp/x/helper.cli.d/42.sock');
});

test('warmCliUsers defaults to 16 and warmCliIdle to 600 s; the environment and the file set them; bad values are refused', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'c.json');
  writeFileSync(file, '{}');
  const load = (env: Record<string, string> = {}) => loadConfig({ CAPSA_CONFIG: file, ...env } as NodeJS.ProcessEnv);
  assert.deepEqual([load().warmCliUsers, load().warmCliIdle], [16, 600]);
  assert.deepEqual([load({ CAPSA_WARM_CLI_USERS: '0' }).warmCliUsers, load({ CAPSA_WARM_CLI_IDLE: '2' }).warmCliIdle], [0, 2]);
  writeFileSync(file, '{"warmCliUsers": 3, "warmCliIdle": 60}');
  assert.deepEqual([load().warmCliUsers, load().warmCliIdle], [3, 60]);
  for (const bad of ['-1', '257', 'many', '1.5']) assert.throws(() => load({ CAPSA_WARM_CLI_USERS: bad }), /CAPSA_WARM_CLI_USERS: expected a number of users with a warm CLI pool from 0 to 256/, bad);
  for (const bad of ['0', '86401', 'soon']) assert.throws(() => load({ CAPSA_WARM_CLI_IDLE: bad }), /CAPSA_WARM_CLI_IDLE: expected a number of seconds from 1 to 86400/, bad);
  writeFileSync(file, '{"warmCliIdle": "60"}');
  assert.throws(() => load(), /warmCliIdle: expected a number of seconds/);
});

const PASSWD = ['root:x:0:0:root:/root:/bin/bash', 'alice:x:1000:1000:Alice:/home/alice:/bin/sh', 'odd name:x:1001:1001::/:/bin/sh', 'bob:x:1002:x::/home/bob:/bin/sh', 'nohome:x:1003:1003:::/bin/sh', ''].join('\n');

test('a user is found in passwd text by uid; a missing one, or one whose name or gid cannot be used, is said why', () => {
  assert.deepEqual(passwdEntry(PASSWD, 1000), { uid: 1000, gid: 1000, name: 'alice', home: '/home/alice' });
  assert.deepEqual(passwdEntry(PASSWD, 1003), { uid: 1003, gid: 1003, name: 'nohome', home: '/' });
  assert.equal(passwdEntry(PASSWD, 4242), 'it is not in the user database');
  assert.match(passwdEntry(PASSWD, 1001) as string, /its name in the user database is "odd name"/);
  assert.match(passwdEntry(PASSWD, 1002) as string, /its gid in the user database is "x"/);
});

test("a user's warm processes get the user's own basics and this helper's socket, nothing of the helper's environment", () => {
  const env = userEnv({ uid: 1000, gid: 1000, name: 'alice', home: '/home/alice' }, '/run/capsa/capsa.sock');
  assert.deepEqual(env, { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/home/alice', USER: 'alice', LOGNAME: 'alice', CAPSA_SOCKET: '/run/capsa/capsa.sock', CAPSA_AUTOSTART: '0' });
});

test('--as UID:GID:NAME is read; a malformed one, or one naming root, is refused; without it the process is root\'s', () => {
  assert.equal(parseWarmAs([]), undefined);
  assert.deepEqual(parseWarmAs(['--as', '1000:1001:alice']), { uid: 1000, gid: 1001, name: 'alice' });
  for (const bad of [['--as'], ['--as', '1000:alice'], ['--as', '1000:1000:a:b'], ['--as', 'x:1:alice'], ['--as', '1000:1000:../x']]) assert.throws(() => parseWarmAs(bad), /--as expects UID:GID:NAME/, bad.join(' '));
  assert.throws(() => parseWarmAs(['--as', '0:0:root']), /names root/);
});

function status(o: { uid?: string; gid?: string; groups?: string; capEff?: string; capPrm?: string } = {}): string {
  return [
    'Name:\tnode',
    `Uid:\t${o.uid ?? '1000\t1000\t1000\t1000'}`,
    `Gid:\t${o.gid ?? '1000\t1000\t1000\t1000'}`,
    `Groups:\t${o.groups ?? '1000 1005 '}`,
    'CapInh:\t0000000000000000',
    `CapPrm:\t${o.capPrm ?? '0000000000000000'}`,
    `CapEff:\t${o.capEff ?? '0000000000000000'}`,
    'CapBnd:\t000001ffffffffff',
    'CapAmb:\t0000000000000000',
  ].join('\n');
}

test("a dropped process's status is checked: all four uids and gids the user's, no capability, exactly its groups (the primary gid listed or not)", () => {
  const alice = { uid: 1000, gid: 1000, name: 'alice' };
  assert.equal(statusProblem(status(), alice, [1000, 1005]), undefined);
  assert.equal(statusProblem(status({ groups: '1005' }), alice, [1005]), undefined, 'the primary gid need not be listed');
  assert.match(statusProblem(status({ uid: '1000\t0\t1000\t1000' }), alice, [1000, 1005])!, /its uids are 1000 0 1000 1000, not all 1000/);
  assert.match(statusProblem(status({ gid: '1000\t1000\t0\t1000' }), alice, [1000, 1005])!, /its gids are/);
  assert.match(statusProblem(status({ capEff: '000001ffffffffff' }), alice, [1000, 1005])!, /its CapEff is 000001ffffffffff, not 0/);
  assert.match(statusProblem(status({ capPrm: '0000000000000400' }), alice, [1000, 1005])!, /its CapPrm/);
  assert.match(statusProblem(status({ groups: '0 1000 1005' }), alice, [1000, 1005])!, /its groups are 0,1000,1005, not 1000,1005/);
  assert.match(statusProblem('Name:\tnode', alice, [])!, /its uids are/);
});

test('a uid not in /etc/passwd gets no pool, and says why once; root never gets one here; past the bound no user gets one', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const passwd = path.join(dir, 'passwd');
  writeFileSync(passwd, PASSWD);
  const lines: string[] = [];
  const users = new WarmCliUsers({ dir: path.join(dir, 'capsa-cli.d'), helperSocket: path.join(dir, 'capsa.sock'), maxUsers: 4, idleMs: 1000, log: (m) => lines.push(m), passwd });
  users.init();
  const st = statSync(path.join(dir, 'capsa-cli.d'));
  assert.deepEqual([st.isDirectory(), st.mode & 0o777], [true, 0o755]);
  users.use(4242, 1);
  users.use(4242, 2);
  users.use(0, 3);
  assert.deepEqual(users.users(), []);
  assert.deepEqual(lines, ['uid 4242: no warm CLI pool (its calls run the Node CLI): it is not in the user database']);
  const none = new WarmCliUsers({ dir: path.join(dir, 'other.d'), helperSocket: path.join(dir, 'capsa.sock'), maxUsers: 0, idleMs: 1000, log: (m) => lines.push(m), passwd });
  none.use(1000, 1);
  assert.equal(lines.at(-1), 'uid 1000: no warm CLI pool (its calls run the Node CLI): 0 users have one already (warmCliUsers)');
  await users.close();
  assert.equal(existsSync(path.join(dir, 'capsa-cli.d')), false, 'close removes the directory');
});
