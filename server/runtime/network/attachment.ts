/**
 * One container on a bridge network: the record of what was made for it
 * (`<root>/network/containers/<id>.json`, written before any kernel object,
 * so that a crash leaves a record of what to clean) and the plumbing of its
 * namespace (veth pair, eth0's address and default route).
 */
import { readFileSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ConflictError } from '../../errors';
import { replaceFile } from './state';
import type { Netlink } from './netlink';
import { createNetns } from './netns';
import type { PortMapping } from './ports';
import { networkOwner, type NetworkRecord } from './records';
import { ROOT_UID } from '../../util/owners';
import { broadcastOf, parseIPv4, type Subnet } from '../../util/subnet';

export interface AttachmentState {
  id: string;
  name: string;
  hostname: string;
  network: string;
  address: string;
  prefix: number;
  gateway: string;
  veth: string;
  netns: string;
  mac?: string;
  ports: PortMapping[];
  hostsPath: string;
  /** The network's id (records older than owners have only the name, of root's network). */
  networkId?: string;
  /** The address pool the address came from (absent: the network's name). */
  pool?: string;
  /** Whose container it is (absent: root's). */
  owner?: number;
}

/** `veth` + 8 hex digits of the id: within IFNAMSIZ, and derivable from the id when cleaning up. */
export function vethName(id: string): string {
  return `veth${id.slice(0, 8)}`;
}

/** The MTU of the interface carrying the default route (/proc/net/route), else 1500. */
export function hostMtu(routeText?: string, readMtu = (dev: string) => readFileSync(`/sys/class/net/${dev}/mtu`, 'utf8')): number {
  try {
    const text = routeText ?? readFileSync('/proc/net/route', 'utf8');
    for (const line of text.split('\n').slice(1)) {
      const [dev, dest, , , , , , maskHex] = line.trim().split(/\s+/);
      if (dest === '00000000' && maskHex === '00000000') {
        const mtu = Number(readMtu(dev).trim());
        if (Number.isInteger(mtu) && mtu >= 576) return mtu;
      }
    }
  } catch {
    /* no route table, no such device: the Ethernet default below */
  }
  return 1500;
}

/** Docker's scheme: 02:42 and the IPv4 address, so a re-used address keeps its MAC and neighbours' ARP caches stay right. */
export function macFor(addr: number): string {
  return ['02', '42', ...[24, 16, 8, 0].map((sh) => ((addr >>> sh) & 255).toString(16).padStart(2, '0'))].join(':');
}

/** Whether an attachment is to `n` (records older than owners name root's network by name). */
export function attachedTo(s: AttachmentState, n: NetworkRecord): boolean {
  if (s.networkId !== undefined) return s.networkId === n.id;
  return s.network === n.name && (n.builtin === true || networkOwner(n) === ROOT_UID);
}

/** The attachment records' directory, `<root>/network/containers`. */
export class AttachmentFiles {
  constructor(readonly dir: string) {}

  file(id: string): string {
    return path.join(this.dir, `${id}.json`);
  }

  async save(s: AttachmentState): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await replaceFile(this.file(s.id), JSON.stringify(s));
  }

  async remove(id: string): Promise<void> {
    await fs.rm(this.file(id), { force: true });
  }
}

/**
 * Makes the container's namespace, pinned at `s.netns`: the veth pair (host
 * end on the bridge `bridgeIndex`, container end `eth0` with the record's
 * MAC), loopback and eth0 up, the address and the default route via the
 * gateway. `hairpin`: the container can reach itself through a published
 * port.
 */
export function plumb(host: Netlink, s: AttachmentState, subnet: Subnet, opts: { bridgeIndex: number; mtu: number; hairpin: boolean }): void {
  createNetns(s.netns, (nl, nsFd) => {
    host.createVeth({ hostName: s.veth, peerName: 'eth0', peerMac: s.mac!, peerNsFd: nsFd, mtu: opts.mtu, masterIndex: opts.bridgeIndex });
    if (opts.hairpin) {
      const port = host.link(s.veth);
      if (port) host.setHairpin(port.index);
    }
    nl.setUp(1); // lo is always ifindex 1 in a new namespace
    const eth0 = nl.link('eth0');
    if (!eth0) throw new ConflictError('eth0 did not appear in the container network namespace');
    nl.setUp(eth0.index);
    nl.addAddress(eth0.index, parseIPv4(s.address), subnet.prefix, broadcastOf(subnet));
    nl.addDefaultRoute(parseIPv4(s.gateway), eth0.index);
  });
}
