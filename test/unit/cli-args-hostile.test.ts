/**
 * The CLI's checks of hostile and broken flag values: each is refused with
 * an InvalidArgumentError whose message is lower case, names the flag and
 * what was expected, and carries no raw control character; the values a
 * user really types still pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFlags, type FlagSpec } from '../../server/cli/args';
import { parseCpus, parseIntFlag, parseMemorySize } from '../../server/cli/limits';
import * as check from '../../server/cli/validate';
import { InvalidArgumentError } from '../../server/errors';

function refused(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `an InvalidArgumentError, not ${String(err)}`);
    assert.match(err.message, message);
    assert.doesNotMatch(err.message, /[\x00-\x1f\x7f]/, 'no raw control characters');
    assert.ok(err.message.length < 400, `a short message, not ${err.message.length} characters`);
    assert.match(err.message, /^[a-z']/, 'starts lower case');
    return true;
  });
}

const long = (n: number) => 'a'.repeat(n);

const REFUSED: Array<[string, () => unknown, RegExp]> = [
  ['a name with ..', () => check.checkName('../x'), /--name: expected/],
  ['an empty name', () => check.checkName(''), /--name/],
  ['a name of 200 characters', () => check.checkName(long(200)), /--name.*at most 128/],
  ['a name with an escape', () => check.checkName('a\x1b[2J'), /--name/],
  ['a hostname with /', () => check.checkHostname('a/b'), /--hostname/],
  ['a hostname of 64 characters', () => check.checkHostname(long(64)), /--hostname/],
  ['a hostname label ending in -', () => check.checkHostname('a-.b'), /--hostname/],
  ['an env with an empty key', () => check.checkEnv('env', ['=x']), /--env: expected KEY=VALUE/],
  ['an empty env', () => check.checkEnv('env', ['']), /--env/],
  ['an env key with a newline', () => check.checkEnv('env', ['A\nB=1']), /--env/],
  ['an env over 64 KiB', () => check.checkEnv('env', [`A=${long(64 * 1024)}`]), /--env: a variable is at most 65536 bytes/],
  ['more env variables than the ceiling', () => check.checkEnv('env', Array.from({ length: 10_001 }, (_, i) => `V${i}=1`)), /too many environment variables \(10001\) for --env: at most 10000/],
  ['an env over 1 MiB in all', () => check.checkEnv('env', Array.from({ length: 20 }, (_, i) => `V${i}=${long(60 * 1024)}`)), /--env: at most 1048576 bytes in all/],
  ['a label with an empty key', () => check.checkLabels('label', ['=x']), /--label/],
  ['a label with an escape', () => check.checkLabels('label', ['a=\x1b]0;x\x07']), /--label/],
  ['more labels than the ceiling', () => check.checkLabels('label', Array.from({ length: 1001 }, (_, i) => `l${i}=1`)), /too many labels/],
  ['a volume with :rw:ro', () => check.checkVolume('/tmp:/x:rw:ro'), /--volume: expected SOURCE:CONTAINER-PATH/],
  ['a volume with rw,ro', () => check.checkVolume('/tmp:/x:rw,ro'), /--volume: options may be given once each/],
  ['a volume with an empty source', () => check.checkVolume(':/x'), /--volume/],
  ['a volume with an empty mode', () => check.checkVolume('/tmp:/x:'), /--volume: unknown option ""/],
  ['a volume with .. in the target', () => check.checkVolume('/tmp:/a/../b'), /--volume.*may not contain '\.\.'/],
  ['a volume with a relative target', () => check.checkVolume('/tmp:rel'), /--volume.*must be absolute/],
  ['a volume over /', () => check.checkVolume('/tmp:/'), /--volume: cannot mount over/],
  ['a mount with an unknown key', () => check.checkMount('type=bind,source=/tmp,target=/x,nope=1'), /--mount: unknown key "nope"/],
  ['a mount with a duplicate key', () => check.checkMount('type=bind,src=/tmp,source=/tmp,target=/x'), /--mount: source is given twice/],
  ['a mount with target and dst', () => check.checkMount('type=bind,source=/tmp,target=/x,dst=/y'), /--mount: target is given twice/],
  ['a mount of an unknown type', () => check.checkMount('type=nfs,target=/x'), /--mount: unknown type "nfs"/],
  ['a mount without a target', () => check.checkMount('type=bind,source=/tmp'), /--mount: a target is required/],
  ['a tmpfs with a relative path', () => check.checkTmpfs('rel:size=1m'), /--tmpfs/],
  ['a port of 70000', () => check.checkPublish('70000:80'), /--publish: host port "70000"/],
  ['a host port of 0', () => check.checkPublish('0:80'), /--publish: host port "0"/],
  ['ports a:b', () => check.checkPublish('a:b'), /--publish: container port "b"/],
  ['an empty port', () => check.checkPublish(''), /--publish/],
  ['a port of sctp', () => check.checkPublish('80/sctp'), /--publish: protocol "sctp"/],
  ['a port with a bad address', () => check.checkPublish('1.2.3:80:80'), /--publish: "1\.2\.3" is not an IPv4 address/],
  ['a ulimit with soft above hard', () => check.checkUlimit('nofile=5:1'), /--ulimit: the soft limit 5 is above the hard limit 1/],
  ['a ulimit that overflows', () => check.checkUlimit('nofile=99999999999999999999'), /--ulimit/],
  ['a ulimit of garbage', () => check.checkUlimit('nofile=1e3'), /--ulimit: expected NAME=SOFT/],
  ['a network container: with nothing', () => check.checkNetwork('container:'), /--network: container: must name a container/],
  ['an empty network', () => check.checkNetwork(''), /--network/],
  ['a dns that is no address', () => check.checkDns('not-an-ip'), /--dns: expected an IP address/],
  ['a relative workdir', () => check.checkWorkdir('workdir', 'rel'), /--workdir: expected an absolute path/],
  ['a uid of 2^32', () => check.checkUser('user', '4294967296'), /--user: user id 4294967296 is out of range/],
  ['a uid of 2^32-1', () => check.checkUser('user', '4294967295'), /--user: user id/],
  ['a gid of 2^32', () => check.checkUser('user', '0:4294967296'), /--user: group id/],
  ['a user of three parts', () => check.checkUser('user', '1:2:3'), /--user: expected name\|uid/],
  ['an empty user', () => check.checkUser('user', ''), /--user/],
  ['a negative uid', () => check.checkUser('user', '-1'), /--user/],
  ['a group of 2^32', () => check.checkGroup('group-add', '4294967296'), /--group-add/],
  ['a platform of ../../x', () => check.checkPlatform('../../x'), /--platform: expected os\/arch/],
  ['a platform of four parts', () => check.checkPlatform('linux/amd64/v8/x'), /--platform/],
  ['a negative time', () => check.checkSeconds('time', '-1'), /--time: expected whole seconds/],
  ['an empty time', () => check.checkSeconds('time', ''), /--time/],
  ['a time of 0x10', () => check.checkSeconds('time', '0x10'), /--time/],
  ['a time of 1e400', () => check.checkSeconds('time', '1e400'), /--time/],
  ['a negative tail', () => check.checkTail('-5'), /--tail: expected a number of lines/],
  ['an empty tail', () => check.checkTail(''), /--tail/],
  ['a tail of 1e3', () => check.checkTail('1e3'), /--tail/],
  ['a signal NOPE', () => check.checkSignal('NOPE'), /--signal: expected a signal name/],
  ['signal 0', () => check.checkSignal('0'), /--signal/],
  ['signal 65', () => check.checkSignal('65'), /--signal/],
  ['an empty signal', () => check.checkSignal(''), /--signal/],
  ['a subnet prefix of 33', () => check.checkSubnet('10.0.0.0/33'), /--subnet/],
  ['a gateway of garbage', () => check.checkGateway('nope'), /--gateway/],
  ['a network name with ..', () => check.checkObjectName('network', '..'), /invalid network name/],
  ['a volume name with a newline', () => check.checkObjectName('volume', 'a\nb'), /invalid volume name "a\\nb"/],
  ['a memory of -1', () => parseMemorySize('memory', '-1', 6 * 1024 * 1024), /--memory/],
  ['a memory of 1e400', () => parseMemorySize('memory', '1e400'), /--memory/],
  ['a memory below 6m', () => parseMemorySize('memory', '1m', 6 * 1024 * 1024), /--memory: the minimum is 6m/],
  ['cpus of 1e400', () => parseCpus('1e400'), /--cpus/],
  ['cpus of 0', () => parseCpus('0'), /--cpus: the minimum is 0\.01/],
  ['cpus of 0.001', () => parseCpus('0.001'), /--cpus: the minimum is 0\.01/],
  ['a pids-limit that overflows', () => parseIntFlag('pids-limit', '99999999999999999999', -1), /--pids-limit: out of range/],
  ['a pids-limit of -5', () => parseIntFlag('pids-limit', '-5', -1), /--pids-limit: out of range -1/],
  ['cpu-shares of 1', () => parseIntFlag('cpu-shares', '1', 2, 262144), /--cpu-shares: out of range 2-262144/],
];

for (const [what, fn, message] of REFUSED) {
  test(`the CLI refuses ${what}, naming the flag`, () => refused(fn, message));
}

test('the values users type still pass the checks', () => {
  assert.equal(check.checkName('web-1.a_b'), 'web-1.a_b');
  assert.equal(check.checkHostname('db.local'), 'db.local');
  assert.deepEqual(check.checkEnv('env', ['A=1', 'B', 'C=x=y', 'MULTI=line1\nline2']), ['A=1', 'B', 'C=x=y', 'MULTI=line1\nline2']);
  assert.deepEqual(check.checkLabels('label', ['a=1', 'b']), { a: '1', b: '' });
  for (const v of ['/tmp:/x', '/tmp:/x:ro', 'data:/data:rw', './rel:/x:ro,z', '../up:/x']) assert.equal(check.checkVolume(v), v);
  for (const m of ['type=bind,source=/tmp,target=/x,readonly', 'type=volume,src=data,dst=/d', 'type=tmpfs,target=/t,tmpfs-size=1m']) assert.equal(check.checkMount(m), m);
  for (const p of ['80', '8080:80', ':80', '127.0.0.1:8080:80/udp', '127.0.0.1::80']) assert.equal(check.checkPublish(p), p);
  for (const u of ['nofile=1024:4096', 'nproc=-1', 'core=unlimited:unlimited']) assert.equal(check.checkUlimit(u), u);
  for (const n of ['bridge', 'host', 'none', 'container:web', 'my-net']) assert.equal(check.checkNetwork(n), n);
  for (const u of ['root', '1000', '1000:1000', 'www-data:www-data', '4294967294']) assert.equal(check.checkUser('user', u), u);
  assert.equal(check.checkDns('::1'), '::1');
  assert.equal(check.checkPlatform('linux/arm64/v8'), 'linux/arm64/v8');
  assert.equal(check.checkSeconds('time', '0'), 0);
  assert.equal(check.checkTail('all'), undefined);
  assert.equal(check.checkTail('10'), 10);
  for (const s of ['KILL', 'SIGTERM', 'usr1', '9', '64', 'RTMIN+3']) assert.equal(check.checkSignal(s), s);
  assert.equal(check.checkSubnet('10.90.0.0/24'), '10.90.0.0/24');
  assert.equal(parseMemorySize('memory', '6m', 6 * 1024 * 1024), 6 * 1024 * 1024);
  assert.equal(parseCpus('0.5'), 0.5);
});

test('an unknown flag with escape bytes in its name is printed escaped', () => {
  const specs: FlagSpec[] = [{ name: 'rm', kind: 'bool', help: '' }];
  refused(() => parseFlags(['--a\x1b[2Jb', 'x'], specs, { stopAtPositional: true, verb: 'run' }), /unknown flag: --a\\x1b\[2Jb/);
  refused(() => parseFlags(['-\x1b'], specs, { stopAtPositional: true, verb: 'run' }), /unknown shorthand flag: '\\x1b'/);
  refused(() => parseFlags([`--${'x'.repeat(100_000)}`], specs, { stopAtPositional: true, verb: 'run' }), /unknown flag: --x{64}…/);
});
