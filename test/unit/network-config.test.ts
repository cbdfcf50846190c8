/**
 * The pure parts of networking: subnets, address picking, `-p` parsing,
 * the nftables table, /etc/hosts and resolv.conf, the host MTU.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { formatIPv4, gatewayOf, overlaps, parseIPv4, parseSubnet } from '../../server/util/subnet';
import { Ipam, pickAddress } from '../../server/runtime/network/ipam';
import { formatMapping, parsePublish, checkDistinct } from '../../server/runtime/network/ports';
import { applyIptables, applyRuleset, FirewallError, iptablesRestoreText, rulesetText, selectBackend, type FirewallPort } from '../../server/runtime/network/firewall';
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

const NETS = [
  { bridge: 'capsa0', subnet: '10.88.0.0/16' },
  { bridge: 'capsa-1', subnet: '10.89.0.0/24' },
];
const PORTS: FirewallPort[] = [
  { bridge: 'capsa0', hostIp: '127.0.0.1', hostPort: 8080, protocol: 'tcp', address: '10.88.0.2', containerPort: 80 },
  { bridge: 'capsa-1', hostIp: '0.0.0.0', hostPort: 5353, protocol: 'udp', address: '10.89.0.7', containerPort: 53 },
  { bridge: 'capsa-1', hostIp: '192.0.2.10', hostPort: 9000, protocol: 'tcp', address: '10.89.0.7', containerPort: 9 },
  { bridge: 'gone0', hostIp: '127.0.0.1', hostPort: 1, protocol: 'tcp', address: '10.1.0.2', containerPort: 1 },
];

test('nftables DNAT for published ports: output always, prerouting only with forwarding (bridges included: hairpin), loopback and hairpin sources masqueraded', () => {
  const on = rulesetText(NETS, true, PORTS);
  const chain = (text: string, name: string): string => new RegExp(`chain ${name} \\{\\n([\\s\\S]*?)\\n  \\}`).exec(text)![1];
  assert.equal(
    chain(on, 'output'),
    [
      '    type nat hook output priority -100; policy accept;',
      '    ip daddr 127.0.0.1 tcp dport 8080 dnat to 10.88.0.2:80 comment "capsa"',
      '    fib daddr type local udp dport 5353 dnat to 10.89.0.7:53 comment "capsa"',
      '    ip daddr 192.0.2.10 tcp dport 9000 dnat to 10.89.0.7:9 comment "capsa"',
    ].join('\n'),
    'a port on a bridge that does not exist yet has no rule',
  );
  assert.equal(
    chain(on, 'prerouting'),
    [
      '    type nat hook prerouting priority dstnat; policy accept;',
      '    fib daddr type local udp dport 5353 dnat to 10.89.0.7:53 comment "capsa"',
      '    ip daddr 192.0.2.10 tcp dport 9000 dnat to 10.89.0.7:9 comment "capsa"',
    ].join('\n'),
    '127.0.0.1 never arrives from outside; every other interface, bridges included, is DNATed',
  );
  assert.match(chain(on, 'postrouting'), /ip saddr 127\.0\.0\.0\/8 oifname "capsa0" masquerade comment "capsa"/);
  assert.match(chain(on, 'postrouting'), /ip saddr 127\.0\.0\.0\/8 oifname "capsa-1" masquerade comment "capsa"/);
  assert.match(chain(on, 'postrouting'), /ip saddr 10\.89\.0\.0\/24 oifname "capsa-1" ct status dnat counter masquerade comment "capsa"/);
  assert.doesNotMatch(chain(on, 'postrouting'), /10\.88\.0\.0\/16 oifname "capsa0" ct status dnat/, 'capsa0 publishes only on 127.0.0.1: no hairpin');
  assert.match(chain(on, 'forward'), /^ {4}ct status dnat counter accept comment "capsa"\n {4}iifname/m, 'a published port is reachable from another network, before the isolation drops');
  const off = rulesetText(NETS, false, PORTS);
  assert.doesNotMatch(chain(off, 'prerouting'), /dnat/, 'without forwarding, other hosts go through the proxy');
  assert.doesNotMatch(off, /ct status dnat/, 'nor is there hairpin NAT or a way through the isolation');
  assert.match(chain(off, 'output'), /dnat/);
  for (const line of on.split('\n').filter((l) => /drop|masquerade|dnat/.test(l))) assert.match(line, /comment "capsa"$/);
});

test('the iptables fallback: Capsa chains refilled by iptables-restore, every rule tagged', () => {
  assert.equal(
    iptablesRestoreText({ networks: NETS, forwarding: true, ports: PORTS }),
    [
      '*filter',
      ':CAPSA-FORWARD - [0:0]',
      '-A CAPSA-FORWARD -m conntrack --ctstate DNAT -m comment --comment capsa -j RETURN',
      '-A CAPSA-FORWARD -i capsa0 -o capsa-1 -m comment --comment capsa -j DROP',
      '-A CAPSA-FORWARD -i capsa-1 -o capsa0 -m comment --comment capsa -j DROP',
      'COMMIT',
      '*nat',
      ':CAPSA-PREROUTING - [0:0]',
      ':CAPSA-OUTPUT - [0:0]',
      ':CAPSA-POSTROUTING - [0:0]',
      '-A CAPSA-PREROUTING -m addrtype --dst-type LOCAL -p udp -m udp --dport 5353 -m comment --comment capsa -j DNAT --to-destination 10.89.0.7:53',
      '-A CAPSA-PREROUTING -d 192.0.2.10/32 -p tcp -m tcp --dport 9000 -m comment --comment capsa -j DNAT --to-destination 10.89.0.7:9',
      '-A CAPSA-OUTPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -m comment --comment capsa -j DNAT --to-destination 10.88.0.2:80',
      '-A CAPSA-OUTPUT -m addrtype --dst-type LOCAL -p udp -m udp --dport 5353 -m comment --comment capsa -j DNAT --to-destination 10.89.0.7:53',
      '-A CAPSA-OUTPUT -d 192.0.2.10/32 -p tcp -m tcp --dport 9000 -m comment --comment capsa -j DNAT --to-destination 10.89.0.7:9',
      '-A CAPSA-POSTROUTING -s 10.88.0.0/16 ! -o capsa0 -m comment --comment capsa -j MASQUERADE',
      '-A CAPSA-POSTROUTING -s 10.89.0.0/24 ! -o capsa-1 -m comment --comment capsa -j MASQUERADE',
      '-A CAPSA-POSTROUTING -s 127.0.0.0/8 -o capsa0 -m comment --comment capsa -j MASQUERADE',
      '-A CAPSA-POSTROUTING -s 127.0.0.0/8 -o capsa-1 -m comment --comment capsa -j MASQUERADE',
      '-A CAPSA-POSTROUTING -s 10.89.0.0/24 -o capsa-1 -m conntrack --ctstate DNAT -m comment --comment capsa -j MASQUERADE',
      'COMMIT',
      '',
    ].join('\n'),
  );
  const off = iptablesRestoreText({ networks: NETS, forwarding: false });
  assert.doesNotMatch(off, /MASQUERADE|DNAT|RETURN/);
});

test('the firewall backend: CAPSA_FIREWALL, else nft, else iptables, else none', () => {
  const has = (...bins: string[]) => (b: string) => bins.includes(b);
  assert.equal(selectBackend({}, has('nft', 'iptables')), 'nft');
  assert.equal(selectBackend({}, has('iptables')), 'iptables');
  assert.equal(selectBackend({}, has()), undefined);
  assert.equal(selectBackend({ CAPSA_FIREWALL: 'iptables' }, has('nft', 'iptables')), 'iptables');
  assert.throws(() => selectBackend({ CAPSA_FIREWALL: 'pf' }, has('nft')), /CAPSA_FIREWALL must be nft or iptables/);
});

test('a firewall tool that fails at once, before reading its input or checking a rule, is an error, not a crash', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-fw-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tool = (name: string, script: string): string => {
    const file = path.join(dir, name);
    writeFileSync(file, `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    return file;
  };
  // more input than a socket buffer holds: the write meets the closed pipe (EPIPE)
  const big = `# ${'x'.repeat(4 << 20)}\n`;
  const nft = tool('nft', 'echo "nft: refused" >&2; exit 1');
  for (let i = 0; i < 3; i++) await assert.rejects(applyRuleset(big, nft), (e: Error) => e instanceof FirewallError && /nft -f - failed \(1\): nft: refused/.test(e.message));
  tool('iptables-restore', 'exit 4');
  const iptables = tool('iptables', 'exit 0');
  const state = { networks: [{ bridge: 'capsa0', subnet: '10.88.0.0/16' }], forwarding: true, ports: [] };
  await assert.rejects(applyIptables(state, iptables), /iptables-restore -w --noflush failed \(4\)/);
  // the rule checks take no input: nothing is written to a tool that is gone at once
  tool('iptables-restore', 'cat >/dev/null');
  for (let i = 0; i < 3; i++) await applyIptables(state, iptables);
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
