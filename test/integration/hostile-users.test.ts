/**
 * The hostile table of a non-root user, end to end: a user the test creates
 * runs the real CLI against a root helper whose socket is open to every
 * local user, and tries every way the Security model says it must not get
 * past its own uid's reach: binds of what it cannot read, files it names
 * for the helper to read or write, every option that reaches past a user
 * namespace, another user's containers, volumes and networks by name, full
 * id and id prefix, messages that name an owner, the root warm CLI's
 * socket. Each case must fail with an error that says why, and the host
 * must be exactly as before: the files, root's images, the other user's
 * containers and volume, the mounts, the same helper serving.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileRegistry, mountsUnder, startHelper, until } from '../helpers/capsa';
import { createUser, asUser, cliAs, type TestUser } from '../helpers/users';
import { rawRequest, writeRawClient } from '../helpers/rawclient';
import { warmCliSocketPath, warmCliUserSocketPath } from '../../server/config';

const registry = fileRegistry();

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** What a write through the helper would change: its owner, mode and, for a file the test made, its content. */
function digest(file: string, content = false): string {
  const st = statSync(file);
  return `${content ? createHash('sha256').update(readFileSync(file)).digest('hex') : ''} ${st.mode} ${st.uid}:${st.gid}`;
}

interface Case {
  name: string;
  args: string[];
  /** What the error must say (stderr). */
  says: RegExp;
}

test("a non-root user's hostile table through the real CLI: every case refused with a clear error, the host unchanged, the helper serving", { timeout: 300_000 }, async (t) => {
  const a = createUser(t);
  const b = createUser(t);
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  chmodSync(h.dir, 0o711);
  await until('the socket to be open to every user (the default)', async () => (statSync(h.socket).mode & 0o777) === 0o666);
  const home = (u: TestUser, name: string): string => {
    const d = path.join(h.dir, name);
    mkdirSync(d, { mode: 0o700 });
    chownSync(d, u.uid, u.gid);
    return d;
  };
  const aHome = home(a, 'a-home');
  const bHome = home(b, 'b-home');
  writeFileSync(path.join(bHome, 'secret'), 'b only\n', { mode: 0o600 });
  chownSync(path.join(bHome, 'secret'), b.uid, b.gid);
  const own = path.join(aHome, 'own');
  mkdirSync(own);
  writeFileSync(path.join(own, 'mine'), 'a\n');
  chownSync(own, a.uid, a.gid);
  const asA = (args: string[]) => cliAs(h, a, aHome, args);
  const asB = (args: string[]) => cliAs(h, b, bHome, args);
  const must = async (r: Promise<Result>, what: string): Promise<string> => {
    const x = await r;
    assert.equal(x.code, 0, `${what}: ${x.stderr}`);
    return x.stdout;
  };

  // root's image, and b's container, volume and network: what a must not reach
  await must(h.cli(['pull', 'busybox']), 'root pulls busybox');
  await must(asA(['pull', 'busybox']), 'a pulls busybox');
  await must(asB(['pull', 'busybox']), 'b pulls busybox');
  await must(asB(['volume', 'create', 'bvol']), 'b creates bvol');
  await must(asB(['run', '--rm', '--network', 'none', '-v', 'bvol:/d', 'busybox', 'sh', '-c', 'echo b-secret > /d/s']), 'b writes into bvol');
  await must(asB(['network', 'create', 'bnet']), 'b creates bnet');
  const bid = (await must(asB(['run', '-d', '--name', 'bweb', '--network', 'none', 'busybox', 'sleep', '300']), 'b runs bweb')).trim();
  assert.match(bid, /^[0-9a-f]{64}$/);
  const client = writeRawClient(h.dir);

  const snapshot = async () => ({
    // (other tests' useradd may rewrite /etc/shadow itself: its owner and mode are what a hostile bind could change)
    files: ['/etc/shadow', '/etc/passwd', '/root'].map((f) => digest(f)).concat(digest(path.join(bHome, 'secret'), true)),
    cron: readdirSync('/etc/cron.d').sort(),
    root: readdirSync('/root').sort(),
    bHome: readdirSync(bHome).sort(),
    rootImages: await must(h.cli(['images', '-q']), 'root lists images'),
    bContainers: await must(asB(['ps', '-a', '-q']), 'b lists its containers'),
    bState: (await must(asB(['inspect', 'bweb']), 'b inspects bweb')).match(/"Status": "\w+"/)?.[0],
    bVolume: await must(asB(['run', '--rm', '--network', 'none', '-v', 'bvol:/d', 'busybox', 'cat', '/d/s']), 'b reads bvol'),
    bNetworks: await must(asB(['network', 'ls', '-q']), 'b lists networks'),
    mounts: (await mountsUnder(h.dir)).length,
  });
  const before = await snapshot();
  assert.equal(before.bState, '"Status": "running"');
  assert.equal(before.bVolume, 'b-secret\n');

  const run = (...opts: string[]): string[] => ['run', '--rm', '--network', 'none', ...opts, 'busybox', 'true'];
  const denied = /permission denied/i;
  const cases: Case[] = [
    // binds of what the user cannot reach
    { name: 'bind /etc/shadow', args: run('-v', '/etc/shadow:/x:ro'), says: /bind source path \/etc\/shadow \(permission denied for uid \d+/ },
    { name: 'bind /root', args: run('-v', '/root:/x'), says: /bind source path \/root \(permission denied for uid \d+/ },
    { name: "bind another user's 0700 home", args: run('-v', `${bHome}:/x`), says: denied },
    { name: "bind a file inside another user's home", args: run('-v', `${bHome}/secret:/x:ro`), says: denied },
    { name: "bind the helper's root through /proc/1/root", args: run('-v', '/proc/1/root/etc:/x:ro'), says: denied },
    { name: `bind the helper's own descriptors through /proc/${h.process.pid}/fd`, args: run('-v', `/proc/${h.process.pid}/fd/0:/x:ro`), says: denied },
    { name: '--mount of /etc/shadow', args: run('--mount', 'type=bind,source=/etc/shadow,target=/x,readonly'), says: denied },
    { name: 'a world-readable system directory, read-write', args: run('-v', '/etc:/x'), says: /read and write access needed|permission denied/ },
    { name: 'a symlink in the user\'s own directory to /root', args: run('-v', `${aHome}/to-root:/x`), says: denied },
    // files the request names
    { name: '--env-file /etc/shadow', args: run('--env-file', '/etc/shadow'), says: /\/etc\/shadow.*(permission denied|EACCES)/i },
    { name: 'save -o /etc/cron.d/capsa-x', args: ['save', '-o', '/etc/cron.d/capsa-x', 'busybox'], says: denied },
    { name: 'save -o /root/x.tar', args: ['save', '-o', '/root/x.tar', 'busybox'], says: denied },
    { name: 'load -i /etc/shadow', args: ['load', '-i', '/etc/shadow'], says: denied },
    { name: "load -i another user's file", args: ['load', '-i', `${bHome}/secret`], says: denied },
    // options that reach past the user namespace, each named
    { name: '--privileged', args: run('--privileged'), says: /--privileged refused/ },
    { name: '--userns host', args: run('--userns', 'host'), says: /--userns host refused/ },
    { name: '--pid host', args: run('--pid', 'host'), says: /--pid host refused/ },
    { name: '--ipc host', args: run('--ipc', 'host'), says: /--ipc host refused/ },
    { name: '--network host', args: ['run', '--rm', '--network', 'host', 'busybox', 'true'], says: /--network host refused/ },
    { name: '--device', args: run('--device', '/dev/null:/dev/n'), says: /--device "\/dev\/null:\/dev\/n" refused/ },
    { name: '--security-opt seccomp=unconfined', args: run('--security-opt', 'seccomp=unconfined'), says: /seccomp=unconfined refused/ },
    // Capsa has no per-container --cgroup-parent (for root either): the flag itself is refused, by name
    { name: '--cgroup-parent', args: run('--cgroup-parent', 'capsa-hostile'), says: /unknown flag: --cgroup-parent/ },
    { name: '--cap-add SYS_ADMIN', args: run('--cap-add', 'SYS_ADMIN'), says: /--cap-add SYS_ADMIN refused|SYS_ADMIN.*refused/ },
    { name: '--cap-add ALL', args: run('--cap-add', 'ALL'), says: /ALL.*refused/ },
    { name: 'a host port below ip_unprivileged_port_start', args: ['run', '--rm', '-p', '127.0.0.1:80:80', 'busybox', 'true'], says: /port 80.*refused|refused.*port 80/ },
    // another user's objects are missing ones
    { name: "--network container: of another user's container", args: ['run', '--rm', '--network', 'container:bweb', 'busybox', 'true'], says: /no such container: bweb/i },
    { name: "--network of another user's network", args: ['run', '--rm', '--network', 'bnet', 'busybox', 'true'], says: /network bnet not found|No such network/i },
    { name: "volume rm of another user's volume", args: ['volume', 'rm', 'bvol'], says: /no such volume: bvol/i },
    { name: "volume inspect of another user's volume", args: ['volume', 'inspect', 'bvol'], says: /no such volume: bvol/i },
    { name: "network rm of another user's network", args: ['network', 'rm', 'bnet'], says: /network bnet not found|No such network/i },
    { name: "network inspect of another user's network", args: ['network', 'inspect', 'bnet'], says: /network bnet not found|No such network/i },
  ];
  for (const [how, ref] of [['name', 'bweb'], ['full id', bid], ['id prefix', bid.slice(0, 5)]] as const) {
    for (const verb of [['exec', ref, 'true'], ['stop', '-t', '1', ref], ['kill', ref], ['rm', '-f', ref], ['logs', ref], ['inspect', ref], ['attach', ref], ['wait', ref], ['top', ref], ['port', ref], ['restart', '-t', '1', ref], ['start', ref]]) {
      // plain `inspect` looks a name up as a container, then as an image, and says what Docker says when neither is there
      const says = verb[0] === 'inspect' ? new RegExp(`^Error: No such object: ${ref}$`, 'm') : new RegExp(`no such container: ${ref}$`, 'im');
      cases.push({ name: `${verb[0]} of another user's container by ${how}`, args: verb, says });
    }
  }
  symlinkSync('/root', path.join(aHome, 'to-root'));

  let refused = 0;
  const wrong: string[] = [];
  for (const c of cases) {
    const r = await asA(c.args);
    // refused, saying why in the CLI's one line (not a stack)
    if (r.code !== 0 && c.says.test(r.stderr) && !/\n\s+at /.test(r.stderr)) refused++;
    else wrong.push(`${c.name}: exit ${r.code}, ${JSON.stringify(r.stderr.trim())}`);
  }
  assert.deepEqual(wrong, [], `cases not refused as they must be:\n${wrong.join('\n')}`);

  // a volume name another user uses is, to a, a new volume of a's own: b's data stays b's
  const mine = await asA(['run', '--rm', '--network', 'none', '-v', 'bvol:/d', 'busybox', 'sh', '-c', 'cat /d/s 2>&1; echo done']);
  assert.equal(mine.code, 0, mine.stderr);
  assert.doesNotMatch(mine.stdout, /b-secret/, "a's bvol is its own, empty");
  refused++;

  // block devices: mknod inside a's container fails, so no disk is read through it
  const mknod = await asA(['run', '--rm', '--network', 'none', 'busybox', 'sh', '-c', 'mknod /tmp/disk b 8 0 && head -c 1 /tmp/disk']);
  assert.notEqual(mknod.code, 0, 'a block device made in a user\'s container');
  assert.match(mknod.stderr, /Operation not permitted|Permission denied/, mknod.stderr);
  refused++;

  // a link a swaps between its own directory and /root while it runs: never /root's listing
  const link = path.join(aHome, 'link');
  symlinkSync(own, link);
  const swapper = spawn('sh', ['-c', `cd ${aHome} && while :; do ln -sfn /root t1 && mv -T t1 link; ln -sfn ${own} t2 && mv -T t2 link; done`], { uid: a.uid, gid: a.gid, stdio: 'ignore', detached: true });
  const swapped = once(swapper, 'exit');
  const rootNames = readdirSync('/root');
  let swapDenied = 0;
  try {
    for (let i = 0; i < 10; i++) {
      const r = await asA(['run', '--rm', '--network', 'none', '-v', `${link}:/x:ro`, 'busybox', 'ls', '-a', '/x']);
      if (r.code !== 0) {
        assert.match(r.stderr, denied, r.stderr);
        swapDenied++;
      } else {
        assert.match(r.stdout, /mine/, `the user's own directory: ${r.stdout}`);
        for (const n of rootNames.filter((x) => !['.', '..', 'mine'].includes(x))) assert.doesNotMatch(r.stdout, new RegExp(`^${n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), `root's ${n} seen`);
      }
    }
  } finally {
    process.kill(-swapper.pid!, 'SIGKILL');
    await swapped;
  }
  t.diagnostic(`symlink swap: ${swapDenied} of 10 runs found /root and were refused, the rest mounted the user's own directory`);
  refused++;

  // messages that name an owner or a uid: the kernel's word only
  for (const [method, params] of [
    ['capsa/container/list', { all: true, owner: 0 }],
    ['capsa/container/run', { image: 'busybox', network: 'none', cmd: ['true'], owner: 0 }],
    ['capsa/volume/create', { name: 'x', owner: b.uid }],
    ['capsa/image/list', { uid: 0 }],
  ] as const) {
    const r = await rawRequest(client, h.socket, method, params, a);
    assert.match(r.error?.message ?? '', /is not a known field/, `${method}: ${JSON.stringify(r)}`);
    refused++;
  }

  // the root warm CLI's socket and b's own warm CLI socket, used directly: the kernel refuses the connect
  const connectAsA = (socket: string): string => {
    try {
      const [cmd, ...args] = asUser(a, ['python3', '-c', `import socket\ns=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\ns.connect(${JSON.stringify(socket)})\nprint("connected")`]);
      return execFileSync(cmd, args, { stdio: 'pipe', encoding: 'utf8' });
    } catch (err) {
      return String((err as { stderr?: string }).stderr);
    }
  };
  const warm = warmCliSocketPath(h.socket);
  const bWarm = warmCliUserSocketPath(h.socket, b.uid);
  await until("b's own warm CLI socket (b has used the helper)", async () => existsSync(bWarm));
  const warmSockets = [warm, bWarm].filter((w) => existsSync(w));
  for (const w of warmSockets) {
    assert.match(connectAsA(w), /PermissionError|Permission denied/, `a user cannot connect to ${w}`);
    refused++;
  }

  const tried = cases.length + 1 + 1 + 1 + 4 + warmSockets.length;
  t.diagnostic(`hostile table as uid ${a.uid}: ${tried} tried, ${refused} refused`);
  assert.equal(refused, tried);

  // nothing changed on the host, and the same helper serves
  const after = await snapshot();
  assert.deepEqual(after, before);
  assert.equal(existsSync('/etc/cron.d/capsa-x'), false);
  assert.equal(existsSync('/root/x.tar'), false);
  assert.equal(h.process.exitCode, null, 'the helper still runs');
  assert.equal((await must(h.cli(['version']), 'root asks the version')).length > 0, true);
});
