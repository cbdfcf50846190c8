/**
 * Capsa's packet filter rules, rewritten as a whole whenever its networks or
 * published ports change. Every rule carries the comment `capsa` and nothing
 * else of the host's is edited, so the rules can always be found and undone:
 *
 *  - nftables (preferred): one table, `ip capsa`, replaced atomically by
 *    `nft -f` (`nft delete table ip capsa` undoes all of it);
 *  - iptables (iptables-nft or -legacy, when `nft` is absent): four chains of
 *    Capsa's own (CAPSA-FORWARD in filter; CAPSA-PREROUTING, CAPSA-OUTPUT,
 *    CAPSA-POSTROUTING in nat) refilled by `iptables-restore --noflush`, each
 *    entered by one jump from the built-in chain, tagged like every rule.
 *
 * What the rules do:
 *  - masquerade: outbound traffic from a network's subnet leaving through any
 *    other interface is NATed, only when the host forwards IPv4 (Capsa does
 *    not turn forwarding on behind the administrator's back);
 *  - isolation: packets routed from one Capsa bridge to another are dropped,
 *    so containers on different networks cannot reach each other;
 *  - published ports (see ports.ts for why, and what the proxy still covers):
 *    DNAT of the host address and port to the container's in `output`
 *    (connections made on this host, 127.0.0.1 included) and, when the host
 *    forwards, in `prerouting` (other hosts, and containers calling a
 *    published port through a host address: hairpin). Loopback sources that
 *    DNAT sends to a bridge are masqueraded to the gateway, as a container
 *    cannot answer 127.0.0.1; so are containers that reach a container of
 *    their own network through the host, or the answer would come straight
 *    back over the bridge from an address they did not call. A published
 *    port is reachable from another Capsa network the same way (DNATed
 *    traffic is let through the isolation), as it was through the proxy.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { CapsaError, type ErrorOptions } from '../../errors';

export const TABLE = 'capsa';
export const COMMENT = 'capsa';

export interface FirewallNetwork {
  bridge: string;
  subnet: string;
}

/** A published port that the kernel forwards: hostIp:hostPort → address:containerPort on bridge. */
export interface FirewallPort {
  bridge: string;
  /** 0.0.0.0 means every local address. */
  hostIp: string;
  hostPort: number;
  protocol: 'tcp' | 'udp';
  address: string;
  containerPort: number;
}

export interface FirewallState {
  networks: FirewallNetwork[];
  /** The host forwards IPv4 (`net.ipv4.ip_forward`). */
  forwarding: boolean;
  ports?: FirewallPort[];
}

export type FirewallBackend = 'nft' | 'iptables';

const ANY = '0.0.0.0';

function q(s: string): string {
  return JSON.stringify(s);
}

/** Ports whose rules are written: only on bridges that exist (are in `networks`). */
function portsOf(s: FirewallState): FirewallPort[] {
  const bridges = new Set(s.networks.map((n) => n.bridge));
  return (s.ports ?? []).filter((p) => bridges.has(p.bridge));
}

/** True when DNAT can send loopback traffic to this port: the bridge then needs route_localnet and the masquerade. */
export function reachedFromLoopback(p: FirewallPort): boolean {
  return p.hostIp === ANY || p.hostIp.startsWith('127.');
}

/** The table's complete text for `nft -f`, replacing any previous one. Pure. */
export function rulesetText(networks: FirewallNetwork[], forwarding: boolean, ports: FirewallPort[] = []): string {
  const state: FirewallState = { networks, forwarding, ports };
  const lines = [`table ip ${TABLE}`, `delete table ip ${TABLE}`];
  if (networks.length === 0) return lines.join('\n') + '\n';
  const bridges = networks.map((n) => n.bridge);
  const published = portsOf(state);
  const tag = `comment ${q(COMMENT)}`;
  const dnat = (p: FirewallPort): string => {
    const dst = p.hostIp === ANY ? 'fib daddr type local' : `ip daddr ${p.hostIp}`;
    return `${dst} ${p.protocol} dport ${p.hostPort} dnat to ${p.address}:${p.containerPort} ${tag}`;
  };
  const external = forwarding ? published.filter((p) => !p.hostIp.startsWith('127.')) : [];
  lines.push(`table ip ${TABLE} {`);
  lines.push('  chain forward {', '    type filter hook forward priority filter; policy accept;');
  if (external.length && bridges.length > 1) lines.push(`    ct status dnat counter accept ${tag}`);
  for (const b of bridges) {
    const others = bridges.filter((o) => o !== b);
    if (others.length) lines.push(`    iifname ${q(b)} oifname { ${others.map(q).join(', ')} } drop ${tag}`);
  }
  lines.push('  }');
  lines.push('  chain prerouting {', '    type nat hook prerouting priority dstnat; policy accept;');
  for (const p of external) lines.push(`    ${dnat(p)}`);
  lines.push('  }');
  lines.push('  chain output {', '    type nat hook output priority -100; policy accept;');
  for (const p of published) lines.push(`    ${dnat(p)}`);
  lines.push('  }');
  lines.push('  chain postrouting {', '    type nat hook postrouting priority srcnat; policy accept;');
  if (forwarding) {
    for (const n of networks) lines.push(`    ip saddr ${n.subnet} oifname != ${q(n.bridge)} masquerade ${tag}`);
  }
  for (const b of new Set(published.filter(reachedFromLoopback).map((p) => p.bridge))) lines.push(`    ip saddr 127.0.0.0/8 oifname ${q(b)} masquerade ${tag}`);
  // hairpin: counted, so a test can tell the kernel carried it rather than the proxy
  for (const n of hairpinNetworks(networks, external)) lines.push(`    ip saddr ${n.subnet} oifname ${q(n.bridge)} ct status dnat counter masquerade ${tag}`);
  lines.push('  }', '}');
  return lines.join('\n') + '\n';
}

/** Networks with a published port that their own containers may call through a host address. */
function hairpinNetworks(networks: FirewallNetwork[], external: FirewallPort[]): FirewallNetwork[] {
  return networks.filter((n) => external.some((p) => p.bridge === n.bridge));
}

/** Capsa's iptables chains: [table, built-in chain it is entered from, own chain]. */
export const IPTABLES_CHAINS: Array<[table: 'filter' | 'nat', from: string, chain: string]> = [
  ['filter', 'FORWARD', 'CAPSA-FORWARD'],
  ['nat', 'PREROUTING', 'CAPSA-PREROUTING'],
  ['nat', 'OUTPUT', 'CAPSA-OUTPUT'],
  ['nat', 'POSTROUTING', 'CAPSA-POSTROUTING'],
];

/** The jump into a Capsa chain, as `iptables` arguments after `-t TABLE -I|-C|-D FROM`. */
export function iptablesJump(chain: string): string[] {
  return ['-m', 'comment', '--comment', COMMENT, '-j', chain];
}

/** Input for `iptables-restore --noflush`: declaring a chain empties it, then its rules follow. Pure. */
export function iptablesRestoreText(state: FirewallState): string {
  const tag = `-m comment --comment ${COMMENT}`;
  const bridges = state.networks.map((n) => n.bridge);
  const published = portsOf(state);
  const dnat = (p: FirewallPort): string => {
    const dst = p.hostIp === ANY ? '-m addrtype --dst-type LOCAL' : `-d ${p.hostIp}/32`;
    return `${dst} -p ${p.protocol} -m ${p.protocol} --dport ${p.hostPort} ${tag} -j DNAT --to-destination ${p.address}:${p.containerPort}`;
  };
  const external = state.forwarding ? published.filter((p) => !p.hostIp.startsWith('127.')) : [];
  const out = ['*filter', ':CAPSA-FORWARD - [0:0]'];
  // RETURN, not ACCEPT: the host's own FORWARD rules still apply after Capsa's
  if (external.length && bridges.length > 1) out.push(`-A CAPSA-FORWARD -m conntrack --ctstate DNAT ${tag} -j RETURN`);
  for (const b of bridges) for (const o of bridges) if (o !== b) out.push(`-A CAPSA-FORWARD -i ${b} -o ${o} ${tag} -j DROP`);
  out.push('COMMIT', '*nat', ':CAPSA-PREROUTING - [0:0]', ':CAPSA-OUTPUT - [0:0]', ':CAPSA-POSTROUTING - [0:0]');
  for (const p of external) out.push(`-A CAPSA-PREROUTING ${dnat(p)}`);
  for (const p of published) out.push(`-A CAPSA-OUTPUT ${dnat(p)}`);
  if (state.forwarding) for (const n of state.networks) out.push(`-A CAPSA-POSTROUTING -s ${n.subnet} ! -o ${n.bridge} ${tag} -j MASQUERADE`);
  for (const b of new Set(published.filter(reachedFromLoopback).map((p) => p.bridge))) out.push(`-A CAPSA-POSTROUTING -s 127.0.0.0/8 -o ${b} ${tag} -j MASQUERADE`);
  for (const n of hairpinNetworks(state.networks, external)) out.push(`-A CAPSA-POSTROUTING -s ${n.subnet} -o ${n.bridge} -m conntrack --ctstate DNAT ${tag} -j MASQUERADE`);
  out.push('COMMIT');
  return out.join('\n') + '\n';
}

export function forwardingEnabled(): boolean {
  try {
    return readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim() === '1';
  } catch {
    // no /proc/sys/net here (a namespace without it): forwarding counts as off, which the caller reports
    return false;
  }
}

/**
 * `CAPSA_FIREWALL` (`nft` or `iptables`) if set, else nft when the `nft`
 * binary is on PATH, else iptables when `iptables` is, else none.
 */
export function selectBackend(env: NodeJS.ProcessEnv = process.env, onPath: (bin: string) => boolean = binaryOnPath): FirewallBackend | undefined {
  const forced = env.CAPSA_FIREWALL;
  if (forced === 'nft' || forced === 'iptables') return forced;
  if (forced) throw new FirewallError(`CAPSA_FIREWALL must be nft or iptables, not ${JSON.stringify(forced)}`);
  if (onPath('nft')) return 'nft';
  if (onPath('iptables')) return 'iptables';
  return undefined;
}

function binaryOnPath(bin: string, pathVar = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'): boolean {
  // root's PATH may lack the sbin directories where both live
  for (const dir of [...pathVar.split(':'), '/usr/sbin', '/sbin']) {
    try {
      accessSync(path.join(dir, bin), fsConstants.X_OK);
      return true;
    } catch {
      /* not here */
    }
  }
  return false;
}

/** The firewall's rules could not be chosen or applied (the program's own words in the message). */
export class FirewallError extends CapsaError {
  constructor(message: string, options?: ErrorOptions) {
    super('E_FIREWALL', message, options);
  }
}

function run(bin: string, args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => reject(new FirewallError(`cannot run ${bin}: ${err.message}`, { cause: err })));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new FirewallError(`${bin} ${args.join(' ')} failed (${code}): ${stderr.trim()}`))));
    if (child.stdin) {
      // a tool that fails before reading its input closes the pipe: EPIPE
      // here is that failure, which 'exit' reports (unhandled, it would end the helper)
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
    }
  });
}

/** Loads a ruleset through `nft -f -` (one transaction). */
export function applyRuleset(text: string, nft = 'nft'): Promise<void> {
  return run(nft, ['-f', '-'], text);
}

/**
 * Applies the state with iptables: refills Capsa's chains in one
 * `iptables-restore --noflush`, then makes sure each is entered once; with no
 * network left, removes the jumps and the chains.
 */
export async function applyIptables(state: FirewallState, iptables = 'iptables'): Promise<void> {
  const restore = `${iptables}-restore`;
  if (state.networks.length === 0) {
    for (const [table, from, chain] of IPTABLES_CHAINS) {
      // -D fails once no jump is left: that ends the loop; -F and -X fail only for a chain that is not there, which is the goal
      while (await run(iptables, ['-w', '-t', table, '-D', from, ...iptablesJump(chain)]).then(() => true, () => false));
      await run(iptables, ['-w', '-t', table, '-F', chain]).catch(() => undefined);
      await run(iptables, ['-w', '-t', table, '-X', chain]).catch(() => undefined);
    }
    return;
  }
  await run(restore, ['-w', '--noflush'], iptablesRestoreText(state));
  for (const [table, from, chain] of IPTABLES_CHAINS) {
    const jump = ['-w', '-t', table];
    const present = await run(iptables, [...jump, '-C', from, ...iptablesJump(chain)]).then(() => true, () => false);
    if (!present) await run(iptables, [...jump, '-I', from, '1', ...iptablesJump(chain)]);
  }
}
