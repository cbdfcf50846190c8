/**
 * Capsa's packet filter rules: one nftables table (`ip capsa`) that the helper
 * rewrites as a whole, atomically, whenever its networks change. Every rule
 * carries the comment `capsa`, and nothing outside the table is touched, so
 * `nft delete table ip capsa` undoes all of it.
 *
 *  - masquerade: outbound traffic from a network's subnet leaving through any
 *    other interface is NATed, only when the host forwards IPv4 (Capsa does
 *    not turn forwarding on behind the administrator's back);
 *  - isolation: packets routed from one Capsa bridge to another are dropped,
 *    so containers on different networks cannot reach each other.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export const TABLE = 'capsa';
export const COMMENT = 'capsa';

export interface FirewallNetwork {
  bridge: string;
  subnet: string;
}

function q(s: string): string {
  return JSON.stringify(s);
}

/** The table's complete text for `nft -f`, replacing any previous one. Pure. */
export function rulesetText(networks: FirewallNetwork[], forwarding: boolean): string {
  const lines = [`table ip ${TABLE}`, `delete table ip ${TABLE}`];
  if (networks.length === 0) return lines.join('\n') + '\n';
  lines.push(`table ip ${TABLE} {`);
  lines.push('  chain forward {', '    type filter hook forward priority filter; policy accept;');
  const bridges = networks.map((n) => n.bridge);
  for (const b of bridges) {
    const others = bridges.filter((o) => o !== b);
    if (others.length) lines.push(`    iifname ${q(b)} oifname { ${others.map(q).join(', ')} } drop comment ${q(COMMENT)}`);
  }
  lines.push('  }');
  lines.push('  chain postrouting {', '    type nat hook postrouting priority srcnat; policy accept;');
  if (forwarding) {
    for (const n of networks) lines.push(`    ip saddr ${n.subnet} oifname != ${q(n.bridge)} masquerade comment ${q(COMMENT)}`);
  }
  lines.push('  }', '}');
  return lines.join('\n') + '\n';
}

export function forwardingEnabled(): boolean {
  try {
    return readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim() === '1';
  } catch {
    return false;
  }
}

export class FirewallError extends Error {}

/** Loads a ruleset through `nft -f -` (one transaction). */
export function applyRuleset(text: string, nft = 'nft'): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(nft, ['-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => reject(new FirewallError(`cannot run ${nft}: ${err.message}`)));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new FirewallError(`nft failed (${code}): ${stderr.trim()}`))));
    child.stdin.end(text);
  });
}
