/**
 * Container networking against the real kernel: every test runs the helper
 * inside a network namespace it creates (`ip netns add`), so the bridge, the
 * veths, the nftables table and every packet stay inside it; the only other
 * traffic is to the test registry on 127.0.0.1 of the host namespace.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { seedBusybox } from '../helpers/oci';
import { restartHelper, startHelper, type TestHelper } from '../helpers/capsa';

let registry: TestRegistry;
let fixtures: string;

/**
 * Debian's busybox nc has no UDP mode, so UDP is exercised with a tiny
 * static program built here and bind-mounted into the containers:
 * `udp serve PORT` prints the first datagram and answers `ack`;
 * `udp send IP PORT MSG` sends MSG (retrying) until the answer comes.
 */
const UDP_C = `
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
int main(int argc, char **argv) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  char buf[512];
  if (argc == 3 && !strcmp(argv[1], "serve")) {
    a.sin_port = htons(atoi(argv[2]));
    if (bind(s, (void *)&a, sizeof a)) return perror("bind"), 1;
    struct sockaddr_in from; socklen_t fl = sizeof from;
    ssize_t n = recvfrom(s, buf, sizeof buf - 1, 0, (void *)&from, &fl);
    if (n < 0) return 1;
    buf[n] = 0; printf("%s\\n", buf); fflush(stdout);
    sendto(s, "ack", 3, 0, (void *)&from, fl);
    return 0;
  }
  if (argc == 5 && !strcmp(argv[1], "send")) {
    a.sin_port = htons(atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) return 2;
    struct timeval tv = {0, 200000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0; i < 25; i++) {
      sendto(s, argv[4], strlen(argv[4]), 0, (void *)&a, sizeof a);
      ssize_t n = recv(s, buf, sizeof buf, 0);
      if (n == 3 && !memcmp(buf, "ack", 3)) return 0;
    }
    return 1;
  }
  return 2;
}
`;

before(async () => {
  registry = await startRegistry();
  await seedBusybox(registry);
  fixtures = mkdtempSync(path.join(tmpdir(), 'capsa-netfix-'));
  writeFileSync(path.join(fixtures, 'udp.c'), UDP_C);
  execFileSync('cc', ['-static', '-O2', '-o', path.join(fixtures, 'udp'), path.join(fixtures, 'udp.c')]);
});
after(async () => {
  await registry?.stop();
  if (fixtures) rmSync(fixtures, { recursive: true, force: true });
});

type T = { after: (fn: () => Promise<void> | void) => void };

/** Runs a command in the test's namespace. */
function inNs(ns: string, argv: string[], input?: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8', input, timeout: 30_000 });
  return { code: r.status ?? 255, stdout: r.stdout, stderr: r.stderr + (r.error ? String(r.error) : r.signal ? `killed by ${r.signal}` : '') };
}

/** A fresh namespace with lo up; the caller removes it (`ip netns del`) last. */
function testNetns(opts: { forwarding?: boolean } = {}): string {
  const ns = `capsa-t-${randomBytes(4).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  // a new namespace copies the host's setting: say it either way when it matters
  if (opts.forwarding !== undefined) inNs(ns, ['sysctl', '-qw', `net.ipv4.ip_forward=${opts.forwarding ? 1 : 0}`]);
  return ns;
}

/**
 * A helper in its own namespace; its containers are removed before the
 * namespace goes. The registry lives on the host's loopback, out of the
 * namespace's reach, so a first helper on the same root pulls busybox from
 * the host namespace, and the namespaced one takes over that root.
 */
async function netHelper(t: T, opts: { forwarding?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<{ h: TestHelper; ns: string }> {
  const ns = testNetns(opts);
  // one hook, in this order: the CLI needs the namespace to remove the containers
  t.after(async () => {
    const ids = (await h.cli(['ps', '-a', '-q'])).stdout.split('\n').filter(Boolean);
    if (ids.length) await h.cli(['rm', '-f', ...ids]);
    await h.stop();
    spawnSync('ip', ['netns', 'del', ns]);
  });
  const h = await startHelper({ mirror: registry.url });
  const pulled = await h.cli(['pull', '-q', 'busybox']);
  assert.equal(pulled.code, 0, pulled.stderr);
  h.process.kill('SIGTERM');
  await new Promise((r) => h.process.once('exit', r));
  h.env.CAPSA_TEST_NETNS = ns;
  Object.assign(h.env, opts.env);
  await restartHelper(h);
  return { h, ns };
}

/** The veths of the namespace, once the count settles at `want` (the kernel destroys a released namespace's devices asynchronously). */
async function vethsSettle(ns: string, want: number): Promise<number> {
  let n = links(ns, 'veth').length;
  for (let i = 0; i < 50 && n !== want; i++) {
    await new Promise((r) => setTimeout(r, 100));
    n = links(ns, 'veth').length;
  }
  return n;
}

function links(ns: string, type?: string): string[] {
  const out = inNs(ns, ['ip', '-o', 'link', 'show', ...(type ? ['type', type] : [])]).stdout;
  return out.split('\n').filter(Boolean).map((l) => l.split(': ')[1].split('@')[0]);
}

test('ip a in a bridge container shows lo and eth0 with an address in the subnet', async (t) => {
  const { h } = await netHelper(t);
  const r = await h.cli(['run', '--rm', 'busybox', 'ip', '-o', '-4', 'addr']);
  assert.equal(r.code, 0, r.stderr);
  const ifs = r.stdout.trim().split('\n').map((l) => l.split(/\s+/).slice(1, 4));
  assert.deepEqual(ifs.map((i) => i[0]), ['lo', 'eth0'], r.stdout);
  assert.match(ifs[1][2], /^10\.88\.\d+\.\d+\/16$/);
  const route = await h.cli(['run', '--rm', 'busybox', 'ip', 'route']);
  assert.match(route.stdout, /^default via 10\.88\.0\.1 dev eth0/m);
});

test('--network none shows only lo; --network host shows the test namespace’s own interfaces', async (t) => {
  const { h, ns } = await netHelper(t);
  const none = await h.cli(['run', '--rm', '--network', 'none', 'busybox', 'ip', '-o', 'link']);
  assert.equal(none.code, 0, none.stderr);
  assert.deepEqual(none.stdout.trim().split('\n').map((l) => l.split(': ')[1]), ['lo']);
  assert.equal(inNs(ns, ['ip', 'link', 'add', 'capsa-probe', 'type', 'bridge']).code, 0);
  const host = await h.cli(['run', '--rm', '--network', 'host', 'busybox', 'ip', '-o', 'link']);
  assert.equal(host.code, 0, host.stderr);
  const names = host.stdout.trim().split('\n').map((l) => l.split(': ')[1].split('@')[0]);
  assert.deepEqual(names.sort(), links(ns).sort());
  assert.ok(names.includes('capsa-probe'));
});

/** Starts a detached container and returns its name and address. */
async function server(h: TestHelper, name: string, args: string[], cmd: string[]): Promise<string> {
  const r = await h.cli(['run', '-d', '--name', name, ...args, 'busybox', ...cmd]);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse((await h.cli(['inspect', name])).stdout)[0];
  return info.networkSettings.ipAddress as string;
}

async function logsOf(h: TestHelper, name: string): Promise<string> {
  return (await h.cli(['logs', name])).stdout;
}

/**
 * A TCP and a UDP server in one container (logging what they receive), then a
 * client container reaching both at `target` (an address, or a name that the
 * client resolves through its /etc/hosts).
 */
async function exchange(h: TestHelper, net: string[], target: (srv: string, ip: string) => string, tag: string): Promise<void> {
  const udp = ['-v', `${path.join(fixtures, 'udp')}:/udp:ro`];
  // the TCP server's stdin stays open: busybox nc shuts its sending side at
  // stdin EOF, and a client that sees that EOF before it reads its own stdin
  // leaves without sending (a rare loss seen on loaded machines)
  const ip = await server(h, `srv-${tag}`, [...net, ...udp], ['sh', '-c', 'sleep 600 | nc -l -p 5000 & /udp serve 5001; wait']);
  const host = target(`srv-${tag}`, ip);
  // busybox resolves names from /etc/hosts; the UDP tool takes a numeric address
  const script = [
    `addr=$(ping -c 1 -W 1 ${host} | sed -n '1s/^[^(]*(\\([0-9.]*\\)).*/\\1/p')`,
    `for i in $(seq 1 75); do echo tcp-${tag} | nc $addr 5000 && break; sleep 0.2; done`,
    `/udp send $addr 5001 udp-${tag}`,
  ].join('; ');
  const c = await h.cli(['run', '--rm', ...net, ...udp, 'busybox', 'sh', '-c', script]);
  assert.equal(c.code, 0, c.stdout + c.stderr);
  let lines: string[] = [];
  for (let i = 0; i < 75; i++) {
    lines = (await logsOf(h, `srv-${tag}`)).trim().split('\n').sort();
    if (lines.length >= 2) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  assert.deepEqual(lines, [`tcp-${tag}`, `udp-${tag}`]);
  assert.equal((await h.cli(['kill', `srv-${tag}`])).code, 0);
  assert.equal((await h.cli(['wait', `srv-${tag}`])).stdout.trim(), '137');
}

test('two containers on the default network exchange TCP and UDP by address', async (t) => {
  const { h } = await netHelper(t);
  await exchange(h, [], (_n, ip) => ip, 'addr');
});

test('containers on a user-defined network reach each other by name; other networks cannot reach them', async (t) => {
  const { h, ns } = await netHelper(t, { forwarding: true });
  const created = await h.cli(['network', 'create', '--subnet', '10.90.0.0/24', 'front']);
  assert.equal(created.code, 0, created.stderr);
  assert.equal((await h.cli(['network', 'create', 'back'])).code, 0);
  await exchange(h, ['--network', 'front'], (name) => name, 'name');
  const hosts = await h.cli(['run', '--rm', '--network', 'front', '--name', 'peer', 'busybox', 'cat', '/etc/hosts']);
  assert.match(hosts.stdout, /^10\.90\.0\.\d+\tsrv-name /m, 'a stopped member keeps its address and its entry');
  // isolation: forwarding is on in this namespace, so only Capsa's rule keeps the networks apart
  const ip = await server(h, 'isolated', ['--network', 'front'], ['nc', '-l', '-p', '5000']);
  const other = await h.cli(['run', '--rm', '--network', 'back', 'busybox', 'sh', '-c', `echo x | nc -w 2 ${ip} 5000; echo rc=$?`]);
  assert.match(other.stdout, /rc=1/);
  const same = await h.cli(['run', '--rm', '--network', 'front', 'busybox', 'sh', '-c', `echo x | nc -w 2 ${ip} 5000; echo rc=$?`]);
  assert.match(same.stdout, /rc=0/);
  const rules = inNs(ns, ['nft', 'list', 'table', 'ip', 'capsa']).stdout;
  assert.match(rules, /masquerade comment "capsa"/);
  assert.match(rules, /drop comment "capsa"/);
});

/** GET from the test namespace, retrying while the server in the container is not listening yet. */
async function httpGet(ns: string, url: string): Promise<{ code: number; stdout: string; stderr: string }> {
  let r = { code: 1, stdout: '', stderr: '' };
  // a server in a container that was just started: up to 15 s on a loaded machine
  for (let i = 0; i < 75; i++) {
    // (Debian's busybox wget crashes with -T; spawnSync's timeout bounds it instead)
    r = inNs(ns, ['busybox', 'wget', '-q', '-O', '-', url]);
    if (r.code === 0 && r.stdout) return r;
    await new Promise((res) => setTimeout(res, 200));
  }
  return r;
}

test('a published port reaches busybox httpd from 127.0.0.1; -p CTRPORT picks a free port; a taken port is a clear error', async (t) => {
  const { h, ns } = await netHelper(t);
  const web = await h.cli(['run', '-d', '--name', 'web', '-p', '18080:80', 'busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']);
  assert.equal(web.code, 0, web.stderr);
  const hostname = (await h.cli(['exec', 'web', 'hostname'])).stdout.trim();
  let got = await httpGet(ns, 'http://127.0.0.1:18080/hostname');
  assert.equal(got.stdout.trim(), hostname, got.stderr);
  const ps = await h.cli(['ps']);
  assert.match(ps.stdout, /127\.0\.0\.1:18080->80\/tcp/);

  const rnd = await h.cli(['run', '-d', '--name', 'web2', '-p', '80', 'busybox', 'httpd', '-f', '-p', '80', '-h', '/etc']);
  assert.equal(rnd.code, 0, rnd.stderr);
  const port = await h.cli(['port', 'web2', '80']);
  const m = /^127\.0\.0\.1:(\d+)$/.exec(port.stdout.trim());
  assert.ok(m, port.stdout);
  assert.notEqual(m[1], '0');
  got = await httpGet(ns, `http://127.0.0.1:${m[1]}/hostname`);
  assert.equal(got.code, 0, got.stderr);

  const taken = await h.cli(['run', '-d', '--name', 'web3', '-p', '18080:80', 'busybox', 'httpd', '-f']);
  assert.equal(taken.code, 125);
  assert.match(taken.stderr, /host port 18080 is already in use on 127\.0\.0\.1/);
  assert.equal((await h.cli(['ps', '-a', '--quiet'])).stdout.trim().split('\n').length, 2, 'the failed run leaves no container');
  // the address of the failed run is free again, nothing else is left
  assert.equal(await vethsSettle(ns, 2), 2);
});

/** A second namespace, `client`, linked to the test one by a veth: 10.201.0.1 (test side) ↔ 10.201.0.2 (client). */
function clientNetns(t: T, ns: string): string {
  const client = `capsa-c-${randomBytes(4).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', client]);
  t.after(() => void spawnSync('ip', ['netns', 'del', client]));
  execFileSync('ip', ['-n', client, 'link', 'set', 'lo', 'up']);
  execFileSync('ip', ['-n', ns, 'link', 'add', 'vclient', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', client]);
  execFileSync('ip', ['-n', ns, 'addr', 'add', '10.201.0.1/24', 'dev', 'vclient']);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'vclient', 'up']);
  execFileSync('ip', ['-n', client, 'addr', 'add', '10.201.0.2/24', 'dev', 'eth0']);
  execFileSync('ip', ['-n', client, 'link', 'set', 'eth0', 'up']);
  return client;
}

/** busybox httpd serving /cgi-bin/peer, which answers the client address it sees (REMOTE_ADDR). */
function peerSite(): string {
  const www = mkdtempSync(path.join(tmpdir(), 'capsa-www-'));
  mkdirSync(path.join(www, 'cgi-bin'));
  writeFileSync(path.join(www, 'cgi-bin', 'peer'), '#!/bin/sh\necho Content-Type: text/plain\necho\necho "$REMOTE_ADDR"\n', { mode: 0o755 });
  return www;
}

/** The IPv4 address in what busybox httpd reports as REMOTE_ADDR (`[::ffff:10.88.0.1]`). */
function v4(remoteAddr: string): string {
  return remoteAddr.trim().replace(/^\[?(::ffff:)?/, '').replace(/\]$/, '');
}

function routeLocalnet(ns: string, dev: string): string {
  return inNs(ns, ['cat', `/proc/sys/net/ipv4/conf/${dev}/route_localnet`]).stdout.trim();
}

test('published ports are DNATed: a client in another namespace keeps its address, 127.0.0.1 works, rules and route_localnet go with the container', async (t) => {
  const { h, ns } = await netHelper(t, { forwarding: true });
  const client = clientNetns(t, ns);
  const www = peerSite();
  t.after(() => rmSync(www, { recursive: true, force: true }));
  assert.equal(routeLocalnet(ns, 'lo'), '0');
  const r = await h.cli(['run', '-d', '--name', 'peer', '-p', '0.0.0.0:18090:80', '-v', `${www}:/www:ro`, 'busybox', 'httpd', '-f', '-p', '80', '-h', '/www']);
  assert.equal(r.code, 0, r.stderr);
  const ip = JSON.parse((await h.cli(['inspect', 'peer'])).stdout)[0].networkSettings.ipAddress as string;
  // another host: prerouting DNAT, forwarded, source untouched
  const remote = await httpGet(client, 'http://10.201.0.1:18090/cgi-bin/peer');
  assert.match(remote.stdout.trim(), /^\[?(::ffff:)?10\.201\.0\.2\]?$/, remote.stderr);
  // this host, by one of its addresses: output DNAT, source untouched
  const local = await httpGet(ns, 'http://10.201.0.1:18090/cgi-bin/peer');
  assert.match(local.stdout.trim(), /^\[?(::ffff:)?10\.201\.0\.1\]?$/, local.stderr);
  // this host, by 127.0.0.1: output DNAT with route_localnet, the source masqueraded to the gateway
  const loop = await httpGet(ns, 'http://127.0.0.1:18090/cgi-bin/peer');
  assert.match(loop.stdout.trim(), /^\[?(::ffff:)?10\.88\.0\.1\]?$/, loop.stderr);
  const rules = inNs(ns, ['nft', 'list', 'table', 'ip', 'capsa']).stdout;
  assert.match(rules, new RegExp(`tcp dport 18090 dnat to ${ip.replace(/\./g, '\\.')}:80 comment "capsa"`));
  assert.equal(routeLocalnet(ns, 'capsa0'), '1');
  assert.equal(routeLocalnet(ns, 'all'), '0', 'only the bridge, never host-wide');
  assert.equal((await h.cli(['rm', '-f', 'peer'])).code, 0);
  assert.doesNotMatch(inNs(ns, ['nft', 'list', 'table', 'ip', 'capsa']).stdout, /dnat/);
  assert.equal(routeLocalnet(ns, 'capsa0'), '0');
});

test('with forwarding, containers reach a published port through a host address in the kernel: from their own network, from itself, from another network', async (t) => {
  const { h, ns } = await netHelper(t, { forwarding: true });
  const www = peerSite();
  t.after(() => rmSync(www, { recursive: true, force: true }));
  assert.equal((await h.cli(['network', 'create', '--subnet', '10.91.0.0/24', 'other'])).code, 0);
  const r = await h.cli(['run', '-d', '--name', 'peer', '-p', '0.0.0.0:18093:80', '-v', `${www}:/www:ro`, 'busybox', 'httpd', '-f', '-p', '80', '-h', '/www']);
  assert.equal(r.code, 0, r.stderr);
  const hairpinPackets = (): number => {
    const chain = inNs(ns, ['nft', 'list', 'chain', 'ip', 'capsa', 'postrouting']).stdout;
    const m = /ip saddr 10\.88\.0\.0\/16 oifname "capsa0" ct status dnat counter packets (\d+)/.exec(chain);
    assert.ok(m, chain);
    return Number(m[1]);
  };
  const get = (args: string[], url: string) =>
    h.cli([...args, 'sh', '-c', `for i in $(seq 1 25); do wget -q -O - ${url} && exit 0; sleep 0.2; done; exit 1`]);
  // a container of the same network, by the gateway's address: DNAT, then masqueraded
  // to the gateway so the answer comes back the way it went (the proxy would look the same: the counter tells)
  const before = hairpinPackets();
  const same = await get(['run', '--rm', 'busybox'], 'http://10.88.0.1:18093/cgi-bin/peer');
  assert.equal(same.code, 0, same.stderr);
  assert.equal(v4(same.stdout), '10.88.0.1');
  assert.ok(hairpinPackets() > before, 'the kernel carried it, not the proxy');
  // the publishing container itself
  const self = await get(['exec', 'peer'], 'http://10.88.0.1:18093/cgi-bin/peer');
  assert.equal(v4(self.stdout), '10.88.0.1', self.stderr);
  // another network, through its own gateway: DNATed traffic passes the isolation between
  // networks (and is masqueraded as it leaves its own, as Docker's bridges do)
  // (the rule appears with the second bridge, made for this container: its counter starts here)
  const other = await get(['run', '--rm', '--network', 'other', 'busybox'], 'http://10.91.0.1:18093/cgi-bin/peer');
  assert.equal(other.code, 0, other.stderr);
  assert.equal(v4(other.stdout), '10.88.0.1');
  const crossed = /ct status dnat counter packets (\d+)/.exec(inNs(ns, ['nft', 'list', 'chain', 'ip', 'capsa', 'forward']).stdout);
  assert.ok(crossed && Number(crossed[1]) > 0, 'the kernel carried it, not the proxy');
  assert.equal((await h.cli(['rm', '-f', 'peer'])).code, 0);
  assert.doesNotMatch(inNs(ns, ['nft', 'list', 'table', 'ip', 'capsa']).stdout, /ct status dnat/, 'the hairpin rules go with the port');
});

test('without IPv4 forwarding, another host still reaches a published port, through the proxy', async (t) => {
  const { h, ns } = await netHelper(t, { forwarding: false });
  const client = clientNetns(t, ns);
  const www = peerSite();
  t.after(() => rmSync(www, { recursive: true, force: true }));
  const r = await h.cli(['run', '-d', '--name', 'peer', '-p', '0.0.0.0:18091:80', '-v', `${www}:/www:ro`, 'busybox', 'httpd', '-f', '-p', '80', '-h', '/www']);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(inNs(ns, ['nft', 'list', 'chain', 'ip', 'capsa', 'prerouting']).stdout, /dnat/, 'no prerouting DNAT the host would not forward');
  const remote = await httpGet(client, 'http://10.201.0.1:18091/cgi-bin/peer');
  assert.match(remote.stdout.trim(), /^\[?(::ffff:)?10\.88\.0\.1\]?$/, remote.stderr);
});

test('with iptables instead of nft: NAT, DNAT keeping the client address, 127.0.0.1, rules tagged and gone with the container', async (t) => {
  const { h, ns } = await netHelper(t, { forwarding: true, env: { CAPSA_FIREWALL: 'iptables' } });
  const client = clientNetns(t, ns);
  const www = peerSite();
  t.after(() => rmSync(www, { recursive: true, force: true }));
  const r = await h.cli(['run', '-d', '--name', 'peer', '-p', '0.0.0.0:18092:80', '-v', `${www}:/www:ro`, 'busybox', 'httpd', '-f', '-p', '80', '-h', '/www']);
  assert.equal(r.code, 0, r.stderr);
  const remote = await httpGet(client, 'http://10.201.0.1:18092/cgi-bin/peer');
  assert.match(remote.stdout.trim(), /^\[?(::ffff:)?10\.201\.0\.2\]?$/, remote.stderr);
  const loop = await httpGet(ns, 'http://127.0.0.1:18092/cgi-bin/peer');
  assert.match(loop.stdout.trim(), /^\[?(::ffff:)?10\.88\.0\.1\]?$/, loop.stderr);
  const saved = inNs(ns, ['iptables-save']).stdout;
  assert.match(saved, /-A CAPSA-OUTPUT -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 18092 -m comment --comment capsa -j DNAT --to-destination 10\.88\.0\.\d+:80/);
  assert.match(saved, /-A POSTROUTING -m comment --comment capsa -j CAPSA-POSTROUTING/);
  assert.match(saved, /-A CAPSA-POSTROUTING -s 10\.88\.0\.0\/16 ! -o capsa0 -m comment --comment capsa -j MASQUERADE/);
  for (const line of saved.split('\n').filter((l) => l.startsWith('-A'))) assert.match(line, /--comment capsa/, line);
  assert.equal(inNs(ns, ['nft', 'list', 'table', 'ip', 'capsa']).code, 1, 'no nft table when iptables is chosen');
  assert.equal((await h.cli(['rm', '-f', 'peer'])).code, 0);
  assert.doesNotMatch(inNs(ns, ['iptables-save']).stdout, /DNAT/);
});

function ruleCount(ns: string): number {
  return (inNs(ns, ['nft', 'list', 'ruleset']).stdout.match(/comment "capsa"/g) ?? []).length;
}

test('50 containers started concurrently get 50 distinct addresses; rm removes every veth and rule they had', async (t) => {
  const { h, ns } = await netHelper(t, { forwarding: true });
  const warm = await h.cli(['run', '--rm', 'busybox', 'true']);
  assert.equal(warm.code, 0, warm.stderr);
  // the warm-up container's veth goes with its namespace, which the kernel destroys a moment later
  const vethsBefore = await vethsSettle(ns, 0);
  const rulesBefore = ruleCount(ns);
  const runs = await Promise.all(Array.from({ length: 50 }, (_, i) => h.cli(['run', '-d', '--name', `c${i}`, 'busybox', 'sleep', '300'], { timeoutMs: 120_000 })));
  for (const r of runs) assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse((await h.cli(['inspect', ...runs.map((_, i) => `c${i}`)])).stdout) as Array<{ networkSettings: { ipAddress: string } }>;
  const addrs = info.map((i) => i.networkSettings.ipAddress);
  assert.equal(new Set(addrs).size, 50, addrs.join(' '));
  assert.equal(links(ns, 'veth').length, vethsBefore + 50);
  const rm = await h.cli(['rm', '-f', ...runs.map((_, i) => `c${i}`)], { timeoutMs: 120_000 });
  assert.equal(rm.code, 0, rm.stderr);
  assert.equal(await vethsSettle(ns, vethsBefore), vethsBefore);
  assert.equal(ruleCount(ns), rulesBefore);
  assert.deepEqual(inNs(ns, ['sh', '-c', `ls ${h.root}/netns`]).stdout, '');
});

test('after a killed helper restarts, no address is handed out twice and leftovers are cleaned', async (t) => {
  const { h, ns } = await netHelper(t);
  for (const n of ['a1', 'a2', 'a3']) assert.equal((await h.cli(['run', '-d', '--name', n, 'busybox', 'sleep', '300'])).code, 0);
  await h.crash();
  await restartHelper(h);
  for (const n of ['b1', 'b2', 'b3']) {
    const r = await h.cli(['run', '-d', '--name', n, 'busybox', 'sleep', '300']);
    assert.equal(r.code, 0, r.stderr);
  }
  const info = JSON.parse((await h.cli(['inspect', 'a1', 'a2', 'a3', 'b1', 'b2', 'b3'])).stdout) as Array<{ networkSettings: { ipAddress: string } }>;
  const addrs = info.map((i) => i.networkSettings.ipAddress);
  assert.equal(new Set(addrs).size, 6, addrs.join(' '));
  // a survivor from before the crash still answers on its address
  const ping = await h.cli(['run', '--rm', 'busybox', 'ping', '-c', '3', '-W', '2', addrs[0]]);
  assert.equal(ping.code, 0, ping.stdout + ping.stderr);
  // rm -f from the restarted helper kills the survivors too
  const pids = (info.slice(0, 3) as Array<{ pid?: number; state?: { pid?: number } }>).map((i) => i.pid ?? i.state?.pid);
  assert.ok(pids.every((p) => typeof p === 'number' && p > 0), JSON.stringify(pids));
  const rm = await h.cli(['rm', '-f', 'a1', 'a2', 'a3', 'b1', 'b2', 'b3']);
  assert.equal(rm.code, 0, rm.stderr);
  for (const pid of pids) assert.throws(() => process.kill(pid!, 0), /ESRCH/, `process ${pid} of a container from before the crash is gone`);
  assert.equal(await vethsSettle(ns, 0), 0);
});
