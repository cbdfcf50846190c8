/**
 * The native shim against the real kernel, as root: what a container sees
 * from inside, how setup failures are reported, terminals and exec.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname as hostHostname } from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { test, TestContext } from 'node:test';
import { ContainerSetupError, ShimHandle, startShim, StartShimOptions } from '../../server/runtime/native';
import { MS, Plan, PlanMount, RLIMIT } from '../../server/runtime/plan';
import { makeBusyboxRootfs } from '../helpers/rootfs';

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface Sandbox {
  dir: string;
  lower: string;
  plan(args: string[], extra?: Partial<Plan>): Plan;
  /** Every shim started here is killed (with its container) after the test. */
  start(plan: Plan, opts?: Partial<StartShimOptions>): ShimHandle;
}

function mountsMentioning(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(dir));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A fresh tmp dir with a busybox image tree; everything is undone in t.after(). */
function sandbox(t: TestContext): Sandbox {
  const dir = mkdtempSync('/tmp/capsa-test-');
  const lower = path.join(dir, 'lower');
  for (const d of ['lower', 'upper', 'work', 'rootfs']) mkdirSync(path.join(dir, d));
  makeBusyboxRootfs(lower);
  const handles: ShimHandle[] = [];
  const containerPids: number[] = [];

  t.after(async () => {
    for (const h of handles) {
      for (const pid of containerPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
      h.kill('SIGKILL'); // nothing once it has ended
      await h.exited.catch(() => undefined);
    }
    // nothing should be mounted here; lazily unmount whatever a failure left
    for (const line of mountsMentioning(dir).reverse()) {
      const mountPoint = line.split(' ')[4];
      try {
        execFileSync('umount', ['-l', mountPoint]);
      } catch {
        /* already gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  return {
    dir,
    lower,
    plan(args, extra = {}) {
      const mounts: PlanMount[] = [
        {
          source: 'overlay',
          target: '/',
          fstype: 'overlay',
          flags: 0,
          data: `lowerdir=${lower},upperdir=${path.join(dir, 'upper')},workdir=${path.join(dir, 'work')}`,
        },
        { source: 'proc', target: '/proc', fstype: 'proc', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: '' },
        { source: 'tmpfs', target: '/dev', fstype: 'tmpfs', flags: MS.NOSUID | MS.STRICTATIME, data: 'mode=755,size=65536k' },
        {
          source: 'devpts',
          target: '/dev/pts',
          fstype: 'devpts',
          flags: MS.NOSUID | MS.NOEXEC,
          data: 'newinstance,ptmxmode=0666,mode=0620,gid=5',
        },
        { source: 'shm', target: '/dev/shm', fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: 'mode=1777,size=65536k' },
        { source: 'mqueue', target: '/dev/mqueue', fstype: 'mqueue', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: '' },
        { source: 'sysfs', target: '/sys', fstype: 'sysfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.RDONLY, data: '' },
      ];
      const dev = (name: string, major: number, minor: number) => ({
        path: `/dev/${name}`,
        type: 'c' as const,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
      });
      return {
        namespaces: ['mount', 'pid', 'uts', 'ipc', 'net', 'cgroup'],
        rootfs: path.join(dir, 'rootfs'),
        mounts,
        devices: [dev('null', 1, 3), dev('zero', 1, 5), dev('full', 1, 7), dev('random', 1, 8), dev('urandom', 1, 9), dev('tty', 5, 0)],
        symlinks: [
          { target: 'pts/ptmx', path: '/dev/ptmx' },
          { target: '/proc/self/fd', path: '/dev/fd' },
          { target: '/proc/self/fd/0', path: '/dev/stdin' },
          { target: '/proc/self/fd/1', path: '/dev/stdout' },
          { target: '/proc/self/fd/2', path: '/dev/stderr' },
        ],
        maskedPaths: ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/sys/firmware'],
        readonlyPaths: ['/proc/sys', '/proc/sysrq-trigger', '/proc/irq', '/proc/bus'],
        hostname: 'capsa-test',
        cwd: '/',
        env: [DEFAULT_PATH, 'HOME=/root'],
        args,
        uid: 0,
        gid: 0,
        additionalGids: [],
        terminal: false,
        loopbackUp: true,
        cgroupProcs: [],
        ...extra,
      };
    },
    start(plan, opts = {}) {
      const h = startShim(plan, { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', mode: 'run', ...opts });
      handles.push(h);
      h.started.then((pid) => containerPids.push(pid), () => undefined);
      return h;
    },
  };
}

function collect(stream: Readable | null): Promise<string> {
  if (!stream) return Promise.resolve('');
  stream.setEncoding('utf8');
  let out = '';
  stream.on('data', (c: string) => (out += c));
  return new Promise((resolve, reject) => {
    stream.on('end', () => resolve(out));
    stream.on('error', reject);
  });
}

/** Runs args to completion and returns what it printed and its exit code. */
async function run(sb: Sandbox, args: string[], extra: Partial<Plan> = {}) {
  const h = sb.start(sb.plan(args, extra));
  const [stdout, stderr, code] = await Promise.all([collect(h.stdout), collect(h.stderr), h.exited]);
  return { stdout, stderr, code, pid: await h.started.catch(() => 0) };
}

/** Resolves with everything read once `pattern` has appeared in stream. */
function waitFor(stream: Readable, pattern: RegExp, timeoutMs = 10000): Promise<string> {
  stream.setEncoding('utf8');
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; got ${JSON.stringify(out)}`)), timeoutMs);
    const onData = (c: string) => {
      out += c;
      if (pattern.test(out)) {
        clearTimeout(timer);
        stream.off('data', onData);
        resolve(out);
      }
    };
    stream.on('data', onData);
  });
}

test('runs a command and returns its output and exit status 0', async (t) => {
  const sb = sandbox(t);
  const r = await run(sb, ['echo', 'hi']);
  assert.equal(r.stdout, 'hi\n');
  assert.equal(r.stderr, '');
  assert.equal(r.code, 0);
  assert.ok(r.pid > 1, 'started reports the host pid');
  assert.deepEqual(mountsMentioning(sb.dir), []);
});

test('without a terminal, stdin is piped and stdout and stderr stay apart', async (t) => {
  const sb = sandbox(t);
  const h = sb.start(sb.plan(['sh', '-c', 'read a; echo "out $a"; echo "err $a" >&2; cat; ls /proc/self/fd']), { stdin: 'pipe' });
  const out = collect(h.stdout);
  const err = collect(h.stderr);
  h.stdin!.end('one\ntwo\n');
  assert.equal(await h.exited, 0);
  // fd 3 is ls's own directory handle: nothing of the shim's leaked in
  assert.equal(await out, 'out one\ntwo\n0\n1\n2\n3\n');
  assert.equal(await err, 'err one\n');
});

test('exit codes propagate', async (t) => {
  const sb = sandbox(t);
  for (const code of [0, 1, 3, 42, 255]) {
    assert.equal((await run(sb, ['sh', '-c', `exit ${code}`])).code, code);
  }
});

test('a container killed by a signal exits 128 + signal', async (t) => {
  const sb = sandbox(t);
  const h = sb.start(sb.plan(['sleep', '30']));
  await h.started;
  h.signal(9);
  assert.equal(await h.exited, 137);
});

test('signals sent to the shim reach the container process', async (t) => {
  const sb = sandbox(t);
  const h = sb.start(sb.plan(['sh', '-c', 'trap "exit 42" TERM; echo ready; while :; do sleep 0.05; done']));
  await waitFor(h.stdout!, /ready/);
  h.kill('SIGTERM');
  assert.equal(await h.exited, 42);
});

test('the command is PID 1 and no host process is visible', async (t) => {
  const sb = sandbox(t);
  const r = await run(sb, ['sh', '-c', 'echo $$; cat /proc/1/cmdline | tr "\\0" " "; echo; ls /proc']);
  const [pid1, cmdline, ...procEntries] = r.stdout.trim().split('\n');
  assert.equal(pid1, '1');
  assert.equal(cmdline.trim(), `sh -c ${'echo $$; cat /proc/1/cmdline | tr "\\0" " "; echo; ls /proc'}`);
  const pids = procEntries.join(' ').split(/\s+/).filter((e) => /^\d+$/.test(e)).map(Number);
  assert.ok(pids.includes(1));
  assert.ok(pids.every((p) => p < 10), `only the container's few processes: ${pids.join(' ')}`);
});

test('the container has its own hostname and loopback is up', async (t) => {
  const sb = sandbox(t);
  const r = await run(sb, ['sh', '-c', 'hostname; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags; ls /sys/class/net']);
  const [name, , flags, ifaces] = r.stdout.trim().split('\n');
  assert.equal(name, 'capsa-test');
  assert.notEqual(name, hostHostname());
  assert.equal(Number(flags) & 1, 1, 'IFF_UP');
  assert.equal(ifaces.trim(), 'lo');
});

test('mountinfo shows only the container mounts', async (t) => {
  const sb = sandbox(t);
  const r = await run(sb, ['cat', '/proc/self/mountinfo']);
  assert.equal(r.code, 0);
  const points = new Set(r.stdout.trim().split('\n').map((l) => l.split(' ')[4]));
  const expected = new Set([
    '/', '/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys',
    '/proc/kcore', '/proc/keys', '/proc/timer_list', '/sys/firmware',
    '/proc/sys', '/proc/sysrq-trigger', '/proc/irq', '/proc/bus',
  ]);
  for (const p of points) assert.ok(expected.has(p), `unexpected mount ${p} in\n${r.stdout}`);
});

test('the host root is unreachable, also after cd /.. games', async (t) => {
  const sb = sandbox(t);
  const r = await run(sb, ['sh', '-c', 'cd /..; cd ../../..; pwd; ls; ls /proc/1/root/']);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines[0], '/');
  const inImage = ['bin', 'dev', 'etc', 'home', 'proc', 'root', 'sys', 'tmp'];
  assert.deepEqual(lines.slice(1).join(' ').split(/\s+/).sort(), [...inImage, ...inImage].sort());
});

test('masked and read-only paths are enforced', async (t) => {
  const sb = sandbox(t);
  // which of these exist depends on the kernel's configuration
  const files = ['/proc/kcore', '/proc/keys', '/proc/timer_list'].filter((f) => existsSync(f));
  assert.ok(files.length > 0);
  const r = await run(sb, [
    'sh',
    '-c',
    `for f in ${files.join(' ')}; do wc -c < $f; done; ls /sys/firmware | wc -l; ` +
      'echo 1 > /proc/sys/kernel/ostype 2>/dev/null && echo wrote || echo ro; touch /sys/x 2>/dev/null && echo wrote || echo ro',
  ]);
  assert.deepEqual(r.stdout.trim().split('\n').map((s) => s.trim()), [...files.map(() => '0'), '0', 'ro', 'ro']);
});

test('devices and links in /dev are exactly the planned ones', async (t) => {
  const sb = sandbox(t);
  const r = await run(sb, ['sh', '-c', 'ls /dev; stat -c "%t,%T %a" /dev/null /dev/zero; echo x > /dev/null && head -c 4 /dev/zero | wc -c']);
  const lines = r.stdout.trim().split('\n');
  assert.deepEqual(lines.slice(0, -3).join(' ').split(/\s+/).sort(),
    ['fd', 'full', 'mqueue', 'null', 'ptmx', 'pts', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero']);
  assert.deepEqual(lines.slice(-3), ['1,3 666', '1,5 666', '4']);
});

// Each case plants a symlink in the image pointing at the host's /etc and
// mounts through it; the mount must land on the container's own /etc.
for (const [name, link, target] of [
  ['absolute symlink', '/etc', '/evil'],
  ['relative symlink climbing out', '../../../../../../etc', '/evil'],
  ['dot-dot in the target', '/etc', '/../../../evil'],
  ['symlink in a middle component', '/etc', '/evil/sub'],
] as const) {
  test(`a mount target through an image symlink stays inside the rootfs (${name})`, async (t) => {
    const sb = sandbox(t);
    symlinkSync(link, path.join(sb.lower, 'evil'));
    const marker = `capsa-escape-${path.basename(sb.dir)}`;
    const hostFile = path.join(sb.dir, 'hostfile');
    writeFileSync(hostFile, 'from the host\n');
    const inside = target === '/evil/sub' ? '/etc/sub' : '/etc';
    const plan = sb.plan(['sh', '-c', `ls /etc; cat ${inside}/${marker}`]);
    plan.mounts.push(
      { source: 'tmpfs', target, fstype: 'tmpfs', flags: 0, data: '' },
      { source: hostFile, target: `${target}/${marker}`, fstype: 'bind', flags: MS.BIND | MS.RDONLY, data: '' },
    );
    const h = sb.start(plan);
    const [out, code] = await Promise.all([collect(h.stdout), h.exited]);
    assert.equal(code, 0, out);
    assert.ok(!existsSync(`/etc/${marker}`), 'nothing was created in the host /etc');
    assert.ok(!existsSync(`/etc/sub`) || target !== '/evil/sub');
    if (target === '/evil/sub') {
      // the tmpfs is on /etc/sub inside: the image's /etc is still there
      assert.equal(out, `group\npasswd\nsub\nfrom the host\n`);
    } else {
      assert.equal(out, `${marker}\nfrom the host\n`);
    }
    assert.deepEqual(mountsMentioning(sb.dir), []);
  });
}

test('a :ro bind refuses writes', async (t) => {
  const sb = sandbox(t);
  const shared = path.join(sb.dir, 'shared');
  mkdirSync(shared);
  const plan = sb.plan(['sh', '-c', 'touch /data/x 2>/dev/null && echo wrote || echo refused; ls /data']);
  plan.mounts.push({ source: shared, target: '/data', fstype: 'bind', flags: MS.BIND | MS.REC | MS.RDONLY, data: '' });
  const r = await run(sb, plan.args, { mounts: plan.mounts });
  assert.equal(r.stdout, 'refused\n');
  assert.ok(!existsSync(path.join(shared, 'x')));
});

test('a missing binary fails with exec: executable file not found in $PATH and leaves nothing', async (t) => {
  const sb = sandbox(t);
  const before = mountsMentioning(sb.dir).length;
  const h = sb.start(sb.plan(['pyhton', 'app.py']));
  const err = await h.started.then(() => assert.fail('started'), (e: unknown) => e);
  assert.ok(err instanceof ContainerSetupError);
  assert.equal(err.message, 'exec: "pyhton": executable file not found in $PATH');
  assert.equal(err.step, 'exec');
  assert.equal(err.path, 'pyhton');
  assert.equal(err.errnoName, 'ENOENT');
  assert.equal(err.code, 'E_CONTAINER_SETUP');
  assert.equal(await h.exited, 125);
  assert.equal(mountsMentioning(sb.dir).length, before);
});

test('setup failures name the step, the path and the errno', async (t) => {
  const sb = sandbox(t);
  const cases: Array<{ name: string; plan: Plan; message: string; step: string }> = [
    {
      name: 'unknown filesystem',
      plan: (() => {
        const p = sb.plan(['true']);
        p.mounts[1] = { ...p.mounts[1], fstype: 'nosuchfs' };
        return p;
      })(),
      step: 'mount',
      message: 'container setup failed at mount "/proc": no such device (ENODEV)',
    },
    {
      name: 'missing bind source',
      plan: (() => {
        const p = sb.plan(['true']);
        p.mounts.push({ source: path.join(sb.dir, 'nope'), target: '/data', fstype: 'bind', flags: MS.BIND, data: '' });
        return p;
      })(),
      step: 'mount',
      message: `container setup failed at mount "/data": bind source ${path.join(sb.dir, 'nope')}: no such file or directory (ENOENT)`,
    },
    {
      name: 'missing working directory',
      plan: sb.plan(['true'], { cwd: '/nowhere' }),
      step: 'cwd',
      message: 'container setup failed at cwd "/nowhere": no such file or directory (ENOENT)',
    },
    {
      name: 'not executable',
      plan: sb.plan(['/etc/passwd']),
      step: 'exec',
      message: 'exec: "/etc/passwd": permission denied',
    },
  ];
  for (const c of cases) {
    const h = sb.start(c.plan);
    const err = await h.started.then(() => assert.fail(`${c.name}: started`), (e: unknown) => e);
    assert.ok(err instanceof ContainerSetupError, c.name);
    assert.equal(err.step, c.step, c.name);
    assert.equal(err.message, c.message, c.name);
    // the layers the failure passed through, outermost first
    assert.equal(err.context[0], 'while creating the container', c.name);
    assert.equal(err.context[1], "while setting up the container's first process", c.name);
    assert.equal(await h.exited, 125, c.name);
  }
  assert.deepEqual(mountsMentioning(sb.dir), []);
});

test('user, group and supplementary groups are applied; PATH comes from the plan', async (t) => {
  const sb = sandbox(t);
  const r = await run(sb, ['sh', '-c', 'id -u; id -g; id -G; echo $PATH'], {
    uid: 1000,
    gid: 1000,
    additionalGids: [5, 1000],
    env: ['PATH=/bin', 'HOME=/home/user'],
    cwd: '/home/user',
  });
  assert.equal(r.stdout, '1000\n1000\n1000 5\n/bin\n');
});

test('with a terminal, the container gets a pty of the planned size', async (t) => {
  const sb = sandbox(t);
  const h = sb.start(
    sb.plan(['sh', '-c', 'tty; stty size; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty; ls -l /dev/console | wc -l'], {
      terminal: true,
      winsize: { rows: 30, cols: 100 },
      env: [DEFAULT_PATH, 'TERM=xterm'],
    }),
  );
  const [out, code] = await Promise.all([collect(h.stdout), h.exited]);
  assert.equal(code, 0);
  assert.equal(out, '/dev/pts/0\r\n30 100\r\nall-tty\r\n1\r\n');
});

test('the terminal relays input and resizes', async (t) => {
  const sb = sandbox(t);
  const h = sb.start(
    sb.plan(['sh', '-c', 'read line; echo "got $line"; while [ "$(stty size)" != "50 120" ]; do sleep 0.02; done; echo resized; exit 7'], {
      terminal: true,
      winsize: { rows: 24, cols: 80 },
    }),
    { stdin: 'pipe' },
  );
  await h.started;
  h.stdin!.write('hello\n');
  await waitFor(h.stdout!, /got hello/);
  h.resize(50, 120);
  await waitFor(h.stdout!, /resized/);
  assert.equal(await h.exited, 7);
});

test('exec joins the namespaces of a running container', async (t) => {
  const sb = sandbox(t);
  const first = sb.start(sb.plan(['sleep', '30']));
  const pid = await first.started;
  const kinds = ['cgroup', 'ipc', 'mnt', 'net', 'pid', 'uts'];
  const expected = kinds.map((k) => readlinkSync(`/proc/${pid}/ns/${k}`));
  assert.ok(expected.every((ns, i) => ns !== readlinkSync(`/proc/self/ns/${kinds[i]}`)), 'the container has its own namespaces');

  const plan = sb.plan(['sh', '-c', `for n in ${kinds.join(' ')}; do readlink /proc/self/ns/$n; done; hostname; pwd; tr "\\0" " " < /proc/1/cmdline; echo; echo $$`], {
    joinPid: pid,
    mounts: [],
    devices: [],
    symlinks: [],
    maskedPaths: [],
    readonlyPaths: [],
    hostname: undefined,
    loopbackUp: false,
  });
  const h = sb.start(plan, { mode: 'exec' });
  const [out, code] = await Promise.all([collect(h.stdout), h.exited]);
  assert.equal(code, 0);
  const lines = out.trim().split('\n');
  assert.deepEqual(lines.slice(0, kinds.length), expected);
  assert.deepEqual(lines.slice(kinds.length, kinds.length + 3), ['capsa-test', '/', 'sleep 30 ']);
  assert.ok(Number(lines[kinds.length + 3]) > 1, 'the exec process is not PID 1');

  const tty = sb.start({ ...plan, args: ['sh', '-c', 'tty; stty size; exit 5'], terminal: true, winsize: { rows: 12, cols: 34 } }, { mode: 'exec' });
  const [ttyOut, ttyCode] = await Promise.all([collect(tty.stdout), tty.exited]);
  assert.equal(ttyCode, 5);
  assert.equal(ttyOut, '/dev/pts/0\r\n12 34\r\n');

  first.signal(9);
  assert.equal(await first.exited, 137);
});

test('exec into a process that does not exist fails at setns', async (t) => {
  const sb = sandbox(t);
  const h = sb.start(sb.plan(['true'], { joinPid: 0x7ffffff0 }), { mode: 'exec' });
  const err = await h.started.then(() => assert.fail('started'), (e: unknown) => e);
  assert.ok(err instanceof ContainerSetupError);
  assert.equal(err.step, 'setns');
  assert.equal(err.errnoName, 'ENOENT');
  assert.equal(await h.exited, 125);
});

test('the container process is born in the planned cgroup (v1)', { skip: !existsSync('/sys/fs/cgroup/pids/cgroup.procs') }, async (t) => {
  const sb = sandbox(t);
  const cg = path.join('/sys/fs/cgroup/pids', path.basename(sb.dir));
  mkdirSync(cg);
  t.after(() => rmdirSync(cg));
  const h = sb.start(sb.plan(['sleep', '30'], { cgroupProcs: [path.join(cg, 'cgroup.procs')] }));
  const pid = await h.started;
  assert.ok(readFileSync(path.join(cg, 'cgroup.procs'), 'utf8').split('\n').includes(String(pid)));
  h.signal(9);
  assert.equal(await h.exited, 137);
});

test('rlimits are applied', async (t) => {
  const sb = sandbox(t);
  const r = await run(sb, ['sh', '-c', 'ulimit -n; ulimit -Hn; ulimit -c'], {
    rlimits: [
      { resource: RLIMIT.NOFILE, soft: 1234, hard: 2048 },
      { resource: RLIMIT.CORE, soft: Infinity, hard: Infinity },
    ],
  });
  assert.equal(r.stdout, '1234\n2048\nunlimited\n');
});

// Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID
// SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
const DOCKER_CAPS = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31].reduce((m, c) => m | (1n << BigInt(c)), 0n);
const caps = (m: bigint) => ({ bounding: m, effective: m, permitted: m, inheritable: 0n, ambient: 0n });
const statusField = (out: string, name: string) => out.match(new RegExp(`^${name}:\\s*(\\S+)`, 'm'))?.[1];

test('capabilities are reduced to the planned sets, also for a non-root user', async (t) => {
  const sb = sandbox(t);
  const root = await run(sb, ['cat', '/proc/self/status'], { capabilities: caps(DOCKER_CAPS) });
  assert.equal(root.code, 0, root.stderr);
  for (const f of ['CapEff', 'CapPrm', 'CapBnd']) assert.equal(BigInt(`0x${statusField(root.stdout, f)}`), DOCKER_CAPS, f);
  assert.equal(BigInt(`0x${statusField(root.stdout, 'CapInh')}`), 0n);
  // CAP_SYS_ADMIN is gone: mounting fails even as root
  const mount = await run(sb, ['sh', '-c', 'mount -t tmpfs t /tmp 2>/dev/null && echo mounted || echo refused'], { capabilities: caps(DOCKER_CAPS) });
  assert.equal(mount.stdout, 'refused\n');

  const user = await run(sb, ['cat', '/proc/self/status'], { capabilities: caps(DOCKER_CAPS), uid: 1000, gid: 1000 });
  assert.equal(BigInt(`0x${statusField(user.stdout, 'CapEff')}`), 0n);
  assert.equal(BigInt(`0x${statusField(user.stdout, 'CapBnd')}`), DOCKER_CAPS);
});

test('ambient capabilities reach a non-root process', async (t) => {
  const sb = sandbox(t);
  const netBind = 1n << 10n;
  const r = await run(sb, ['cat', '/proc/self/status'], {
    capabilities: { bounding: DOCKER_CAPS, effective: netBind, permitted: netBind, inheritable: netBind, ambient: netBind },
    uid: 1000,
    gid: 1000,
  });
  assert.equal(BigInt(`0x${statusField(r.stdout, 'CapEff')}`), netBind);
  assert.equal(BigInt(`0x${statusField(r.stdout, 'CapAmb')}`), netBind);
});

/** A seccomp program refusing sethostname(2) with EPERM (x86-64 numbering). */
function denySethostname(): Buffer {
  const insns: Array<[number, number, number, number]> = [
    [0x20, 0, 0, 0], // ld [0]: syscall number
    [0x15, 0, 1, 170], // jeq #__NR_sethostname
    [0x06, 0, 0, 0x00050000 | 1], // ret SECCOMP_RET_ERRNO | EPERM
    [0x06, 0, 0, 0x7fff0000], // ret SECCOMP_RET_ALLOW
  ];
  const buf = Buffer.alloc(insns.length * 8);
  insns.forEach(([code, jt, jf, k], i) => {
    buf.writeUInt16LE(code, i * 8);
    buf.writeUInt8(jt, i * 8 + 2);
    buf.writeUInt8(jf, i * 8 + 3);
    buf.writeUInt32LE(k, i * 8 + 4);
  });
  return buf;
}

for (const noNewPrivileges of [true, false]) {
  test(`a seccomp filter is loaded and enforced (no_new_privs ${noNewPrivileges})`, { skip: process.arch !== 'x64' }, async (t) => {
    const sb = sandbox(t);
    const r = await run(sb, ['sh', '-c', 'grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status; hostname other 2>&1; hostname'], {
      seccomp: denySethostname(),
      noNewPrivileges,
      capabilities: caps(DOCKER_CAPS | (1n << 21n)), // with CAP_SYS_ADMIN, only the filter can refuse
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Seccomp:\s+2$/m);
    assert.match(r.stdout, new RegExp(`^NoNewPrivs:\\s+${noNewPrivileges ? 1 : 0}$`, 'm'));
    assert.match(r.stdout, /Operation not permitted/);
    assert.match(r.stdout, /\ncapsa-test\n$/);
  });
}

test('with init, the shim is PID 1, reaps orphans and forwards signals', async (t) => {
  const sb = sandbox(t);
  // The orphan's /proc entry goes only when it is reaped: wait for that (up to 5 s on a loaded machine)
  // rather than a fixed time, then count zombies; one that is never reaped stays and counts.
  const r = await run(
    sb,
    ['sh', '-c', 'echo $$; tr "\\0" " " < /proc/1/cmdline; echo; o=$(sleep 0.1 >/dev/null 2>&1 & echo $!); i=0; while [ -e /proc/$o ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; ps -o stat | grep -c Z; exit 4'],
    { init: true },
  );
  assert.equal(r.code, 4);
  assert.deepEqual(r.stdout.split('\n').slice(0, 3).map((l) => l.trim()), ['2', 'init', '0']);

  const h = sb.start(sb.plan(['sh', '-c', 'trap "exit 42" TERM; echo ready; while :; do sleep 0.05; done'], { init: true }));
  await waitFor(h.stdout!, /ready/);
  h.kill('SIGTERM');
  assert.equal(await h.exited, 42);

  const missing = sb.start(sb.plan(['pyhton'], { init: true }));
  await assert.rejects(missing.started, /executable file not found/);
  assert.equal(await missing.exited, 125);
});
