/**
 * Hostile and broken flag values of every `capsa` verb, through the real CLI
 * against a real helper. Each one ends with exit 125 (the CLI's own argument
 * errors, Docker's convention) and a lower-case message that names the flag
 * or value and what was expected; nothing is created (no container, volume
 * or network, nothing under the Capsa root beyond what was there, nothing in
 * the CLI's working directory); and the helper is the same process and
 * still answers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CLI, fileRegistry, ok, testHelper, type TestHelper } from '../helpers/capsa';

const root = process.getuid?.() === 0;
const skip = !root && 'the helper needs root';
const registry = fileRegistry();

const KiB = 1024;
const long = (n: number, c = 'a') => c.repeat(n);

/** [what, argv, stderr must match]. Every case must exit 125 and create nothing. */
type Case = [string, string[], RegExp];

const RUN: Case[] = [
  ['an unknown flag', ['run', '--nope', 'busybox', 'true'], /unknown flag: --nope/],
  ['an unknown shorthand flag', ['run', '-Y', 'busybox', 'true'], /unknown shorthand flag: 'Y'/],
  ['a value flag at the end', ['run', '--name'], /flag needs an argument: --name/],
  ['a short value flag at the end', ['run', '-e'], /flag needs an argument: 'e'/],
  ['a bool flag given a value', ['run', '--rm=yes', 'busybox', 'true'], /--rm: expected true or false/],
  ['no image', ['run'], /requires at least 1 argument: IMAGE/],
  ['an empty image', ['run', '', 'true'], /IMAGE/],
  ['an empty name', ['run', '--name', '', 'busybox', 'true'], /--name/],
  ['a name with ..', ['run', '--name', '../x', 'busybox', 'true'], /--name/],
  ['a name with /', ['run', '--name', 'a/b', 'busybox', 'true'], /--name/],
  ['a name with a newline', ['run', '--name', 'a\nb', 'busybox', 'true'], /--name/],
  ['a name with an escape', ['run', '--name', 'a\x1b[2Jb', 'busybox', 'true'], /--name/],
  ['a name of 200 characters', ['run', '--name', long(200), 'busybox', 'true'], /--name/],
  ['a hostname with /', ['run', '-h', 'a/b', 'busybox', 'true'], /--hostname/],
  ['an empty hostname', ['run', '-h', '', 'busybox', 'true'], /--hostname/],
  ['a hostname of 70 characters', ['run', '-h', long(70), 'busybox', 'true'], /--hostname/],
  ['a hostname with a newline', ['run', '-h', 'a\nb', 'busybox', 'true'], /--hostname/],
  ['an env with an empty key', ['run', '-e', '=x', 'busybox', 'true'], /--env/],
  ['an empty env', ['run', '-e', '', 'busybox', 'true'], /--env/],
  ['an env key with a newline', ['run', '-e', 'A\nB=1', 'busybox', 'true'], /--env/],
  ['an env key with a space', ['run', '-e', 'A B=1', 'busybox', 'true'], /--env/],
  // the kernel takes no argument longer than 128 KiB (MAX_ARG_STRLEN): the largest a command line can carry
  ['an env of 127 KiB', ['run', '-e', `A=${long(127 * KiB)}`, 'busybox', 'true'], /--env/],
  ['an env that sums to over 1 MiB', ['run', ...Array.from({ length: 9 }, (_, i) => `-eV${i}=${long(127 * KiB)}`), 'busybox', 'true'], /--env/],
  ['100,000 env flags', ['run', ...Array.from({ length: 100_000 }, (_, i) => `-eV${i}=1`), 'busybox', 'true'], /--env/],
  ['a label with an empty key', ['run', '-l', '=x', 'busybox', 'true'], /--label/],
  ['a label key with a newline', ['run', '-l', 'a\nb=x', 'busybox', 'true'], /--label/],
  ['a label value with an escape', ['run', '-l', 'a=\x1b]0;x\x07', 'busybox', 'true'], /--label/],
  ['a label of 127 KiB', ['run', '-l', `a=${long(127 * KiB)}`, 'busybox', 'true'], /--label/],
  ['a negative memory', ['run', '-m', '-1', 'busybox', 'true'], /--memory/],
  ['an empty memory', ['run', '-m', '', 'busybox', 'true'], /--memory/],
  ['a memory of 1e400', ['run', '-m', '1e400', 'busybox', 'true'], /--memory/],
  ['a memory of 0', ['run', '-m', '0', 'busybox', 'true'], /memory/],
  ['a memory too large', ['run', '-m', '99999999999999999999', 'busybox', 'true'], /--memory/],
  ['a memory-swap below memory', ['run', '-m', '64m', '--memory-swap', '32m', 'busybox', 'true'], /memory-swap/],
  ['a memory-swap of -2', ['run', '-m', '64m', '--memory-swap', '-2', 'busybox', 'true'], /--memory-swap/],
  ['cpus of 1e400', ['run', '--cpus', '1e400', 'busybox', 'true'], /--cpus/],
  ['cpus of -1', ['run', '--cpus', '-1', 'busybox', 'true'], /--cpus/],
  ['cpus of 0', ['run', '--cpus', '0', 'busybox', 'true'], /cpus/],
  ['cpus of 100000', ['run', '--cpus', '100000', 'busybox', 'true'], /cpus/],
  ['cpus of NaN', ['run', '--cpus', 'NaN', 'busybox', 'true'], /--cpus/],
  ['cpu-shares of -1', ['run', '-c', '-1', 'busybox', 'true'], /cpu-shares/],
  ['a pids-limit that overflows', ['run', '--pids-limit', '99999999999999999999', 'busybox', 'true'], /--pids-limit/],
  ['a pids-limit of 1.5', ['run', '--pids-limit', '1.5', 'busybox', 'true'], /--pids-limit/],
  ['a pids-limit of -5', ['run', '--pids-limit', '-5', 'busybox', 'true'], /pids-limit/],
  ['a ulimit with soft above hard', ['run', '--ulimit', 'nofile=5:1', 'busybox', 'true'], /ulimit/],
  ['an unknown ulimit', ['run', '--ulimit', 'nope=1', 'busybox', 'true'], /ulimit/],
  ['a ulimit that overflows', ['run', '--ulimit', 'nofile=99999999999999999999', 'busybox', 'true'], /ulimit/],
  ['a relative --device path', ['run', '--device', 'dev/null', 'busybox', 'true'], /--device "dev\/null": host path "dev\/null" is not an absolute path/],
  ['a --device of a regular file', ['run', '--device', '/etc/passwd', 'busybox', 'true'], /--device "\/etc\/passwd": .*not a character or block device/],
  ['--device permissions rwx', ['run', '--device', '/dev/null:/dev/n:rwx', 'busybox', 'true'], /bad permissions "rwx"/],
  ['a --device of 64 KiB', ['run', '--device', `/dev/${long(64 * KiB)}`, 'busybox', 'true'], /--device .*longer than/],
  ['a port above 65535', ['run', '-p', '70000:80', 'busybox', 'true'], /--publish|port/],
  ['a host port of 0', ['run', '-p', '0:80', 'busybox', 'true'], /--publish|port/],
  ['ports that are not numbers', ['run', '-p', 'a:b', 'busybox', 'true'], /--publish|port/],
  ['an empty port', ['run', '-p', '', 'busybox', 'true'], /--publish|port/],
  ['a port with an unknown protocol', ['run', '-p', '80/sctp', 'busybox', 'true'], /--publish|port/],
  ['a port with a bad address', ['run', '-p', '1.2.3:80:80', 'busybox', 'true'], /--publish|port/],
  ['a volume with .. in the container path', ['run', '-v', '/tmp:/a/../..', 'busybox', 'true'], /volume/],
  ['a relative container path', ['run', '-v', '/tmp:rel', 'busybox', 'true'], /volume/],
  ['a volume with an empty source', ['run', '-v', ':/x', 'busybox', 'true'], /volume/],
  ['a volume with an empty target', ['run', '-v', '/tmp:', 'busybox', 'true'], /volume/],
  ['a volume with an empty mode', ['run', '-v', '/tmp:/x:', 'busybox', 'true'], /volume/],
  ['a volume with :rw:ro', ['run', '-v', '/tmp:/x:rw:ro', 'busybox', 'true'], /volume/],
  ['a volume with rw,ro', ['run', '-v', '/tmp:/x:rw,ro', 'busybox', 'true'], /volume/],
  ['a volume name with a slash', ['run', '-v', 'a/b:/x', 'busybox', 'true'], /volume/],
  ['a volume over /', ['run', '-v', '/tmp:/', 'busybox', 'true'], /volume/],
  ['an empty volume', ['run', '-v', '', 'busybox', 'true'], /volume/],
  ['a mount with an unknown key', ['run', '--mount', 'type=bind,source=/tmp,target=/x,nope=1', 'busybox', 'true'], /mount/],
  ['a mount with a duplicate key', ['run', '--mount', 'type=bind,source=/tmp,target=/x,target=/y', 'busybox', 'true'], /mount/],
  ['a mount of an unknown type', ['run', '--mount', 'type=nfs,target=/x', 'busybox', 'true'], /mount/],
  ['a mount without a target', ['run', '--mount', 'type=bind,source=/tmp', 'busybox', 'true'], /mount/],
  ['an empty mount', ['run', '--mount', '', 'busybox', 'true'], /mount/],
  ['a tmpfs with a relative path', ['run', '--tmpfs', 'rel', 'busybox', 'true'], /tmpfs/],
  ['a tmpfs with an unknown option', ['run', '--tmpfs', '/t:nope', 'busybox', 'true'], /tmpfs/],
  ['a network container: with nothing', ['run', '--network', 'container:', 'busybox', 'true'], /--network/],
  ['an empty network', ['run', '--network', '', 'busybox', 'true'], /--network/],
  ['a network name with ..', ['run', '--network', '../x', 'busybox', 'true'], /network/],
  ['a dns that is not an address', ['run', '--dns', 'not-an-ip', 'busybox', 'true'], /--dns/],
  ['an empty dns', ['run', '--dns', '', 'busybox', 'true'], /--dns/],
  ['a relative workdir', ['run', '-w', 'relative', 'busybox', 'true'], /--workdir/],
  ['an empty workdir', ['run', '-w', '', 'busybox', 'true'], /--workdir/],
  ['a workdir with a newline', ['run', '-w', '/a\nb', 'busybox', 'true'], /--workdir/],
  ['a uid of 2^32', ['run', '-u', '4294967296', 'busybox', 'true'], /--user/],
  ['a gid of 2^32', ['run', '-u', '0:4294967296', 'busybox', 'true'], /--user/],
  ['an empty user', ['run', '-u', '', 'busybox', 'true'], /--user/],
  ['a user with three parts', ['run', '-u', '1:2:3', 'busybox', 'true'], /--user/],
  ['a user with a newline', ['run', '-u', 'a\nb', 'busybox', 'true'], /--user/],
  ['a negative uid', ['run', '-u', '-1', 'busybox', 'true'], /--user/],
  ['a user name with a newline', ['run', '-u', 'root\n', 'busybox', 'true'], /--user/],
  ['a group-add of 2^32', ['run', '--group-add', '4294967296', 'busybox', 'true'], /--group-add/],
  ['an empty group-add', ['run', '--group-add', '', 'busybox', 'true'], /--group-add/],
  ['an unknown capability', ['run', '--cap-add', 'NOPE', 'busybox', 'true'], /cap/i],
  ['an unknown security-opt', ['run', '--security-opt', 'nope=1', 'busybox', 'true'], /security option/],
  ['a seccomp profile that is no file', ['run', '--security-opt', 'seccomp=/nonexistent/x', 'busybox', 'true'], /seccomp/],
  ['a pull policy of garbage', ['run', '--pull', 'sometimes', 'busybox', 'true'], /pull/],
  ['a platform of ../../x', ['run', '--platform', '../../x', 'busybox', 'true'], /--platform/],
  ['an empty platform', ['run', '--platform', '', 'busybox', 'true'], /--platform/],
  ['a pid namespace of garbage', ['run', '--pid', 'container:x', 'busybox', 'true'], /--pid/],
  ['a userns of garbage', ['run', '--userns', 'keep-id', 'busybox', 'true'], /--userns/],
  ['detach-keys of garbage', ['run', '--detach-keys', 'ctrl-ü', 'busybox', 'true'], /--detach-keys/],
  ['empty detach-keys', ['run', '-d', '--detach-keys', '', 'busybox', 'true'], /--detach-keys/],
  ['detach-keys of garbage with -d', ['run', '-d', '--detach-keys', 'ctrl-', 'busybox', 'true'], /--detach-keys/],
  ['an env file that does not exist', ['run', '--env-file', '/nonexistent/env', 'busybox', 'true'], /env file/],
  ['a stop-timeout (not a flag of capsa)', ['run', '--stop-timeout', '-1', 'busybox', 'true'], /unknown flag: --stop-timeout/],
];

const OTHERS: Case[] = [
  ['create with an unknown flag', ['create', '--nope', 'busybox'], /unknown flag: --nope/],
  ['create with a name with ..', ['create', '--name', '..', 'busybox'], /--name/],
  ['create with detach-keys of garbage', ['create', '--detach-keys', 'ctrl-', 'busybox'], /--detach-keys/],
  ['create with a port of 70000', ['create', '-p', '70000:80', 'busybox'], /--publish|port/],
  ['exec with an unknown flag', ['exec', '--nope', 'c', 'true'], /unknown flag/],
  ['exec with a relative workdir', ['exec', '-w', 'rel', 'c', 'true'], /--workdir/],
  ['exec with a uid of 2^32', ['exec', '-u', '4294967296', 'c', 'true'], /--user/],
  ['exec with an empty env key', ['exec', '-e', '=x', 'c', 'true'], /--env/],
  ['exec with detach-keys of garbage', ['exec', '--detach-keys', 'nope-nope', 'c', 'true'], /--detach-keys/],
  ['stop with a negative time', ['stop', '-t', '-1', 'c'], /--time/],
  ['stop with an empty time', ['stop', '-t', '', 'c'], /--time/],
  ['stop with a time of 1e400', ['stop', '-t', '1e400', 'c'], /--time/],
  ['stop with a time of 0x10', ['stop', '-t', '0x10', 'c'], /--time/],
  ['stop with a time of 1.5', ['stop', '-t', '1.5', 'c'], /--time/],
  ['restart with a negative time', ['restart', '-t', '-5', 'c'], /--time/],
  ['restart with an empty time', ['restart', '-t', '', 'c'], /--time/],
  ['logs with a negative tail', ['logs', '--tail', '-5', 'c'], /--tail/],
  ['logs with an empty tail', ['logs', '--tail', '', 'c'], /--tail/],
  ['logs with a tail of 1e3', ['logs', '-n', '1e3', 'c'], /--tail/],
  ['logs with a tail that overflows', ['logs', '--tail', '99999999999999999999', 'c'], /--tail/],
  ['kill with an unknown signal', ['kill', '-s', 'NOPE', 'c'], /--signal/],
  ['kill with an empty signal', ['kill', '-s', '', 'c'], /--signal/],
  ['kill with signal 0', ['kill', '-s', '0', 'c'], /--signal/],
  ['kill with signal 65', ['kill', '-s', '65', 'c'], /--signal/],
  ['kill with a negative signal', ['kill', '-s', '-9', 'c'], /--signal/],
  ['start with detach-keys of garbage', ['start', '-a', '--detach-keys', 'ctrl-', 'c'], /--detach-keys/],
  ['attach with detach-keys of garbage', ['attach', '--detach-keys', 'ctrl-', 'c'], /--detach-keys/],
  ['wait with an unknown flag', ['wait', '--nope', 'c'], /unknown flag: --nope/],
  ['wait without a container', ['wait'], /requires at least 1 argument/],
  ['top with an unknown flag', ['top', '--nope', 'c'], /unknown flag: --nope/],
  ['inspect with an unknown flag', ['inspect', '--nope', 'c'], /unknown flag: --nope/],
  ['version with an unknown flag', ['version', '--nope'], /unknown flag: --nope/],
  ['version with an argument', ['version', 'x'], /version/],
  ['ps with an unknown flag', ['ps', '--nope'], /unknown flag: --nope/],
  ['ps with an argument', ['ps', 'x'], /ps/],
  ['images with an unknown flag', ['images', '--filter', 'x'], /unknown flag: --filter/],
  ['rm with an unknown flag', ['rm', '--nope', 'c'], /unknown flag/],
  ['rm without a container', ['rm'], /requires at least 1 argument/],
  ['rmi with an unknown flag', ['rmi', '--nope', 'x'], /unknown flag/],
  ['pull with a platform of ../../x', ['pull', '--platform', '../../x', 'busybox'], /--platform/],
  ['pull with two references', ['pull', 'a', 'b'], /exactly 1 argument/],
  ['pull with an empty reference', ['pull', ''], /reference|image/],
  ['pull with a reference with a newline', ['pull', 'busy\nbox'], /reference/],
  ['container prune with an argument', ['container', 'prune', 'x'], /prune/],
  ['an unknown container subcommand', ['container', 'nope'], /is not a capsa command/],
  ['an unknown verb', ['nope'], /is not a capsa command/],
  ['network create with an unknown flag', ['network', 'create', '--nope', 'n'], /unknown flag/],
  ['network create with a subnet of garbage', ['network', 'create', '--subnet', 'nope', 'n'], /subnet/],
  ['network create with a subnet prefix of 33', ['network', 'create', '--subnet', '10.99.0.0/33', 'n'], /subnet/],
  ['network create with a gateway of garbage', ['network', 'create', '--subnet', '10.99.0.0/24', '--gateway', 'nope', 'n'], /gateway/],
  ['network create with a name with ..', ['network', 'create', '../x'], /network/],
  ['network create with a name with a newline', ['network', 'create', 'a\nb'], /network/],
  ['network create with an empty name', ['network', 'create', ''], /network/],
  ['network create with a driver of garbage', ['network', 'create', '-d', 'macvlan', 'n'], /driver/],
  ['network ls with an argument', ['network', 'ls', 'x'], /network ls/],
  ['network with an unknown subcommand', ['network', 'nope'], /network/],
  ['volume create with a name with ..', ['volume', 'create', '..'], /volume name/],
  ['volume create with a name with /', ['volume', 'create', 'a/b'], /volume name/],
  ['volume create with an empty name', ['volume', 'create', ''], /volume name/],
  ['volume create with a name of 200 characters', ['volume', 'create', long(200)], /volume name/],
  ['volume create with a label with an empty key', ['volume', 'create', '--label', '=x', 'v'], /--label/],
  ['volume create with a driver of garbage', ['volume', 'create', '-d', 'nfs', 'v'], /driver/],
  ['volume with an unknown subcommand', ['volume', 'nope'], /volume/],
  ['volume rm with an unknown flag', ['volume', 'rm', '--nope', 'v'], /unknown flag/],
  ['load without -i', ['load'], /-i FILE/],
  ['load with an empty -i', ['load', '-i', ''], /-i FILE/],
  ['load with an argument', ['load', 'x'], /accepts no arguments/],
  ['save without -o', ['save', 'busybox'], /-o FILE/],
  ['save with an empty -o', ['save', '-o', '', 'busybox'], /-o FILE/],
  ['image prune with an argument', ['image', 'prune', 'x'], /accepts no arguments/],
  ['image prune with an unknown flag', ['image', 'prune', '--nope'], /unknown flag/],
  ['system with an unknown subcommand', ['system', 'nope'], /system/],
  ['system df with an unknown flag', ['system', 'df', '--nope'], /unknown flag/],
  ['port with a port of 70000', ['port', 'c', '70000'], /port/],
  ['port with a protocol of garbage', ['port', 'c', '80/sctp'], /port/],
  ['port with too many arguments', ['port', 'c', '80', '81'], /requires 1 or 2 arguments/],
];

/** `capsa ARGV…` in `cwd`, to its end. */
function cli(h: TestHelper, argv: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(CLI, argv, { env: h.env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 137 : 128), stdout, stderr });
    });
  });
}

/** What the helper holds and what lies under the root and the working directory: none of it may change. */
async function snapshot(h: TestHelper, cwd: string): Promise<Record<string, string[]>> {
  const list = async (dir: string): Promise<string[]> => {
    const out: string[] = [];
    for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(dir, e.name);
      out.push(p);
      // blobs and layers are the image's, unchanged by a refused call; the walk stops there
      if (e.isDirectory() && !/\/(blobs|layers|tmp)$/.test(p)) out.push(...(await list(p)));
    }
    return out;
  };
  const lines = (s: string) => s.split('\n').filter(Boolean);
  return {
    containers: lines(await ok(h, ['ps', '-a', '-q'])),
    volumes: lines(await ok(h, ['volume', 'ls', '-q'])),
    networks: lines(await ok(h, ['network', 'ls', '-q'])),
    root: (await list(h.root)).filter((p) => !p.endsWith('.log')).sort(),
    cwd: (await list(cwd)).sort(),
  };
}

/** What `after` holds that `before` did not, or lost, in a few words. */
function changes(before: Record<string, string[]>, after: Record<string, string[]>): string[] {
  const out: string[] = [];
  for (const k of Object.keys(before)) {
    const added = after[k].filter((x) => !before[k].includes(x));
    const gone = before[k].filter((x) => !after[k].includes(x));
    if (added.length) out.push(`${k} gained ${added.slice(0, 2).join(', ')}${added.length > 2 ? ` and ${added.length - 2} more` : ''}`);
    if (gone.length) out.push(`${k} lost ${gone.slice(0, 2).join(', ')}`);
  }
  return out;
}

for (const [group, cases] of [['run', RUN], ['the other verbs', OTHERS]] as const) {
  test(`hostile flags of ${group}: each exits 125 with a message naming what is wrong, creates nothing, and the helper keeps serving`, { skip, timeout: 600_000 }, async (t) => {
    const h = await testHelper(t, registry.url);
    // an image in the store, so that a value wrongly accepted would really create a container
    await ok(h, ['pull', '-q', 'busybox']);
    // and one run, so that what the first container makes once (the bridge's state) is there before the cases
    await ok(h, ['run', '--rm', 'busybox', 'true']);
    const pid = h.process.pid!;
    const cwd = await fs.mkdtemp(path.join(h.dir, 'cwd-'));
    const before = await snapshot(h, cwd);
    const failures: string[] = [];
    for (const [what, argv, message] of cases) {
      const r = await cli(h, argv, cwd);
      const wrong: string[] = [];
      if (r.code !== 125) wrong.push(`exit ${r.code}`);
      if (!message.test(r.stderr)) wrong.push(`message ${JSON.stringify(r.stderr.slice(0, 300))} does not match ${message}`);
      if (/[\x00-\x08\x0b-\x1f\x7f]/.test(r.stderr)) wrong.push('raw control characters in the message');
      if (r.stderr.length > 4096) wrong.push(`a message of ${r.stderr.length} bytes`);
      if (r.stdout !== '') wrong.push(`output ${JSON.stringify(r.stdout.slice(0, 200))}`);
      const changed = changes(before, await snapshot(h, cwd));
      if (changed.length) {
        wrong.push(...changed);
        // undo it, so the next case starts from the same place
        const ids = (await ok(h, ['ps', '-a', '-q'])).split('\n').filter(Boolean);
        if (ids.length) await h.cli(['rm', '-f', ...ids]);
        for (const v of (await ok(h, ['volume', 'ls', '-q'])).split('\n').filter(Boolean)) await h.cli(['volume', 'rm', '-f', v]);
        for (const n of (await ok(h, ['network', 'ls', '-q'])).split('\n').filter(Boolean)) if (!['bridge', 'host', 'none'].includes(n)) await h.cli(['network', 'rm', n]);
      }
      assert.equal(h.process.exitCode, null, `the helper exited after ${what}`);
      if (wrong.length) failures.push(`${what} (${JSON.stringify(argv.slice(0, 6).map((a) => (a.length > 40 ? `${a.slice(0, 20)}…(${a.length})` : a)))}): ${wrong.join('; ')}`);
    }
    const v = await ok(h, ['version']);
    assert.match(v, new RegExp(`pid ${pid}\\n`), 'the same helper process answers');
    assert.deepEqual(failures, []);
  });
}
