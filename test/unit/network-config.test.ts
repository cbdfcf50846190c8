/**
 * The pure parts of networking: subnets, address picking, `-p` parsing,
 * the nftables table, /etc/hosts and resolv.conf, the host MTU.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { formatIPv4, gatewayOf, overlaps, parseIPv4, parseSubnet } from '../../server/runtime/network/subnet';
import { Ipam, pickAddress } from '../../server/runtime/network/ipam';
import { formatMapping, parsePublish, checkDistinct } from '../../server/runtime/network/ports';
import { rulesetText } from '../../server/runtime/network/firewall';
import { containerResolvConf, hostsFile } from '../../server/runtime/network/names';
import { hostMtu, vethName } from '../../server/runtime/network/manager';
import { buildRunPlan } from '../../server/runtime/spec';
import { encodePlan } from '../../server/runtime/plan';

test('subnets parse strictly and know their gateway and overlaps', () => {
  const s = parseSubnet('10.88.0.0/16');
  assert.equal(formatIPv4(gatewayOf(s)), '10.88.0.1');
  assert.ok(overlaps(s, parseSubnet('10.88.5.0/24')));
  assert.ok(!overlaps(s, parseSubnet('10.89.0.0/24')));
  for (const bad of ['10.88.0.1/16', '10.88.0.0', '10.88.0.0/31', '300.1.1.0/24', '10.0.0.0/4', 'x/24']) {
    assert.throws(() => parseSubnet(bad), /invalid subnet|invalid IPv4/, bad);
  }
  assert.equal(parseIPv4('255.255.255.255'), 0xffffffff);
});

test('addresses are picked after the gateway, round robin, skipping taken ones, until the subnet is full', () => {
  const s = parseSubnet('10.0.0.0/29'); // .1 gateway, .2-.6 usable, .7 broadcast
  assert.equal(formatIPv4(pickAddress(s, {})), '10.0.0.2');
  assert.equal(formatIPv4(pickAddress(s, { '10.0.0.2': 'a' })), '10.0.0.3');
  assert.equal(formatIPv4(pickAddress(s, {}, '10.0.0.3')), '10.0.0.4', 'a just-released address is not reused at once');
  assert.equal(formatIPv4(pickAddress(s, { '10.0.0.2': 'a' }, '10.0.0.6')), '10.0.0.3', 'wraps around');
  const full = Object.fromEntries(['2', '3', '4', '5', '6'].map((x) => [`10.0.0.${x}`, x]));
  assert.throws(() => pickAddress(s, full), /no free address left in 10\.0\.0\.0\/29/);
});

test('concurrent allocations never share an address, and survive a new allocator on the same files', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-ipam-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const s = parseSubnet('10.1.0.0/24');
  const ipam = new Ipam(dir);
  const got = await Promise.all(Array.from({ length: 100 }, (_, i) => ipam.allocate('n', s, `c${i}`)));
  assert.equal(new Set(got).size, 100);
  assert.equal(await ipam.allocate('n', s, 'c7'), got[7], 'an owner keeps its address');
  const again = new Ipam(dir);
  await again.release('n', 'c0');
  const dropped = await again.retain('n', (o) => o !== 'c1');
  assert.deepEqual(dropped, [got[1]]);
  const fresh = await again.allocate('n', s, 'new');
  assert.ok(!got.slice(2).includes(fresh), 'no live address is handed out twice');
});

test('-p mappings: Docker syntax, loopback by default, clear errors', () => {
  const cases: Array<[string, string]> = [
    ['80', '127.0.0.1:0->80/tcp'],
    ['8080:80', '127.0.0.1:8080->80/tcp'],
    ['0.0.0.0:8080:80/udp', '0.0.0.0:8080->80/udp'],
    ['127.0.0.2::53/udp', '127.0.0.2:0->53/udp'],
    ['::80', '127.0.0.1:0->80/tcp'],
  ];
  for (const [spec, want] of cases) assert.equal(formatMapping(parsePublish(spec)), want, spec);
  const bad: Array<[string, RegExp]> = [
    ['', /non-empty/],
    ['80/sctp', /protocol must be tcp or udp/],
    ['70000', /out of range/],
    ['0', /out of range/],
    ['a:80', /host port "a" is not a number/],
    ['host:80:80', /not an IPv4 address/],
    ['1:2:3:4', /expected \[IP:\]\[HOSTPORT:\]CONTAINERPORT/],
  ];
  for (const [spec, re] of bad) assert.throws(() => parsePublish(spec), re, spec);
  assert.throws(() => checkDistinct(['8080:80', '8080:81'].map(parsePublish)), /published twice/);
  assert.doesNotThrow(() => checkDistinct(['8080:80', '8080:80/udp', '80', '81'].map(parsePublish)));
});

test('the nftables table: isolation between bridges always, masquerade only with forwarding, all tagged', () => {
  const nets = [
    { bridge: 'capsa0', subnet: '10.88.0.0/16' },
    { bridge: 'capsa-1', subnet: '10.89.0.0/24' },
  ];
  const off = rulesetText(nets, false);
  assert.match(off, /^table ip capsa\ndelete table ip capsa\n/);
  assert.match(off, /iifname "capsa0" oifname \{ "capsa-1" \} drop comment "capsa"/);
  assert.match(off, /iifname "capsa-1" oifname \{ "capsa0" \} drop comment "capsa"/);
  assert.doesNotMatch(off, /masquerade/);
  const on = rulesetText(nets, true);
  assert.match(on, /ip saddr 10\.88\.0\.0\/16 oifname != "capsa0" masquerade comment "capsa"/);
  for (const line of on.split('\n').filter((l) => /drop|masquerade/.test(l))) assert.match(line, /comment "capsa"$/);
  assert.equal(rulesetText([], true), 'table ip capsa\ndelete table ip capsa\n', 'no network: the table goes');
});

test('/etc/hosts names the container (hostname, name, id) and its peers', () => {
  const text = hostsFile({ address: '10.88.0.2', names: ['abc', 'web', 'abc'] }, [{ address: '10.88.0.3', names: ['db'] }]);
  assert.equal(text, '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.88.0.2\tabc web\n10.88.0.3\tdb\n');
});

test('resolv.conf drops loopback resolvers, falls back to the stub’s upstreams, then public ones; --dns wins', () => {
  const files: Record<string, string> = { '/run/systemd/resolve/resolv.conf': 'nameserver 192.0.2.53\n' };
  const read = (p: string): string | undefined => files[p];
  assert.equal(containerResolvConf({ host: 'search lan\nnameserver 192.0.2.1\nnameserver 127.0.0.53\n', readFile: read }), 'search lan\nnameserver 192.0.2.1\n');
  assert.equal(containerResolvConf({ host: 'nameserver 127.0.0.53\noptions edns0\n', readFile: read }), 'options edns0\nnameserver 192.0.2.53\n');
  assert.equal(containerResolvConf({ host: 'nameserver ::1\n', readFile: () => undefined }), 'nameserver 8.8.8.8\nnameserver 8.8.4.4\n');
  assert.equal(containerResolvConf({ host: 'search lan\nnameserver 192.0.2.1\n', dns: ['192.0.2.9'], readFile: read }), 'search lan\nnameserver 192.0.2.9\n');
});

test('the MTU comes from the default route’s interface', () => {
  const route = 'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n eth9\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n eth9\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\n';
  assert.equal(hostMtu(route, (dev) => (dev === 'eth9' ? '9000\n' : '1500')), 9000);
  assert.equal(hostMtu('Iface\tDestination\n', () => '9000'), 1500, 'no default route: 1500');
  assert.equal(vethName('0123456789abcdef'), 'veth01234567');
});

test('a plan joins a prepared network namespace with a netns record, never together with a new one', () => {
  const plan = buildRunPlan({
    layerDirs: ['/l'],
    image: { Cmd: ['true'] },
    paths: { dir: '/c', rootfs: '/c/rootfs', upper: '/c/upper', work: '/c/work', hostname: '/c/hostname', hosts: '/c/hosts', resolvConf: '/c/resolv.conf' },
    hostname: 'h',
    user: { uid: 0, gid: 0, additionalGids: [] },
    tty: false,
    binds: [],
    namespaces: ['mount', 'pid', 'uts', 'ipc', 'cgroup'],
  });
  plan.netnsPath = '/var/lib/capsa/netns/abc';
  const fields = encodePlan(plan).toString('utf8').split('\0');
  assert.equal(fields[fields.indexOf('netns') + 1], '/var/lib/capsa/netns/abc');
  assert.ok(!fields[fields.indexOf('ns') + 1].split(',').includes('net'));
  assert.throws(() => encodePlan({ ...plan, namespaces: [...plan.namespaces, 'net'] }), /must not also create a net namespace/);
});
