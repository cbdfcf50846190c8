/**
 * Keeping the firewall in step with the networks: Capsa's rules (nftables,
 * else iptables) rewritten for the bridges that exist and the ports being
 * forwarded, one update after another, plus route_localnet on the bridges
 * that 127.0.0.1 ports are sent to. A missing or failing firewall is logged,
 * not fatal (the port proxies still serve published ports).
 */
import { writeFileSync } from 'node:fs';
import { applyIptables, applyRuleset, forwardingEnabled, reachedFromLoopback, rulesetText, selectBackend, type FirewallBackend, type FirewallNetwork, type FirewallPort } from './firewall';

/** What the rules are to cover now. */
export interface FirewallWanted {
  networks: FirewallNetwork[];
  ports: FirewallPort[];
}

export class FirewallSync {
  private appliedRules?: string;
  private firewall?: FirewallBackend | null;
  /** Firewall updates, one after another, each writing the state of its time. */
  private queue: Promise<void> = Promise.resolve();
  /** Bridges on which Capsa turned route_localnet on (for DNAT of 127.0.0.1). */
  private readonly localnet = new Set<string>();

  constructor(
    /** Read when an update runs, not when it is queued. */
    private readonly wanted: () => FirewallWanted,
    private readonly log: (m: string) => void,
  ) {}

  /** Rewrites the rules for the state of the time the update runs. */
  sync(): Promise<void> {
    const next = this.queue.then(() => this.apply());
    // the queue goes on after a failed sync; its caller gets the failure from `next`
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async apply(): Promise<void> {
    const { networks, ports } = this.wanted();
    const forwarding = forwardingEnabled();
    const key = JSON.stringify({ networks, ports, forwarding });
    if (key === this.appliedRules) return;
    if (this.firewall === undefined) {
      try {
        this.firewall = selectBackend() ?? null;
      } catch (err) {
        this.log(`network: ${(err as Error).message}`);
        this.firewall = null;
      }
      if (!this.firewall) this.log('network: neither nft nor iptables found: no NAT, no isolation between networks; published ports go through the proxy');
    }
    if (!this.firewall) return;
    // DNAT of 127.0.0.1 to a bridge needs the kernel to route loopback
    // addresses there (and back): per device, on Capsa's own bridge, in the
    // helper's namespace only; off again once no such port is left
    const wanted = new Set(ports.filter(reachedFromLoopback).map((p) => p.bridge));
    for (const b of wanted) if (!this.localnet.has(b) && setRouteLocalnet(b, true)) this.localnet.add(b);
    try {
      if (this.firewall === 'nft') await applyRuleset(rulesetText(networks, forwarding, ports));
      else await applyIptables({ networks, forwarding, ports });
      this.appliedRules = key;
    } catch (err) {
      this.log(`network: cannot apply ${this.firewall} rules (no NAT, no isolation between networks; published ports go through the proxy): ${(err as Error).message}`);
    }
    for (const b of [...this.localnet]) {
      if (wanted.has(b)) continue;
      setRouteLocalnet(b, false);
      this.localnet.delete(b);
    }
  }
}

/** Writes net.ipv4.conf.BRIDGE.route_localnet (synchronously: on the main thread, in the helper's own namespace). */
function setRouteLocalnet(bridge: string, on: boolean): boolean {
  try {
    writeFileSync(`/proc/sys/net/ipv4/conf/${bridge}/route_localnet`, on ? '1' : '0');
    return true;
  } catch {
    return false; // the bridge is gone, and its setting with it
  }
}
