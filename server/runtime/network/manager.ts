/**
 * NetworkManager: the container's network, decided and set up before its
 * process starts, and torn down when it is removed.
 *
 *  - `bridge` (default) and user-defined networks: a netns pinned under
 *    `<root>/netns/<id>`, a veth pair (host end `veth<id8>` on the network's
 *    bridge, container end `eth0`), an address from the network's subnet, the
 *    gateway as default route, the host's MTU, published ports;
 *  - `none`: the shim makes a fresh netns with loopback only;
 *  - `host`: no network namespace;
 *  - `container:NAME`: the plan joins that container's netns.
 *
 * State: `<root>/network/networks.json` (user-defined networks),
 * `<root>/network/ipam/<network>.json` (addresses), and
 * `<root>/network/containers/<id>.json` (one per attached container, written
 * before any kernel object is made, so a crash leaves a record of what to
 * clean). {@link reconcile} runs at start-up and removes what belongs to no
 * container, then restarts the port forwarders of running ones.
 */
import { readFileSync, writeFileSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ConflictError, InvalidArgumentError, NotFoundError, assertSafeName, describeError } from '../../errors';
import { writeFileAtomic } from '../../util/atomic';
import { replaceFile } from './state';
import type { ContainerInspect, NetworkSummary, RunOptions } from '../../protocol/types';
import { applyIptables, applyRuleset, forwardingEnabled, reachedFromLoopback, rulesetText, selectBackend, type FirewallBackend, type FirewallPort } from './firewall';
import { Ipam, Serial } from './ipam';
import { Netlink, NetlinkError, IFF_UP } from './netlink';
import { createNetns, removeNetns } from './netns';
import { containerResolvConf, hostsFile, type HostEntry } from './names';
import { checkDistinct, formatMapping, parsePublish, startForwarder, type Forwarder, type PortMapping } from './ports';
import { AmbiguousOwnerError, pickOwned, ROOT_UID, visibleTo, type Asker } from '../../util/owners';
import { broadcastOf, contains, formatIPv4, formatSubnet, gatewayOf, overlaps, parseIPv4, parseSubnet, type Subnet } from '../../util/subnet';

export class NetworkNotFoundError extends NotFoundError {
  constructor(name: string) {
    super('E_NETWORK_NOT_FOUND', `no such network: ${name}`, { fields: { network: name } });
  }
}

export interface NetworkOptions {
  /** Bridge of the default `bridge` network. Default `capsa0`. */
  bridgeName?: string;
  /** Subnet of the default network. Default `10.88.0.0/16`. */
  subnet?: string;
  /** Logs a line (firewall problems are reported, not fatal). */
  log?: (message: string) => void;
}

export const DEFAULT_BRIDGE = 'capsa0';
export const DEFAULT_SUBNET = '10.88.0.0/16';
export const DEFAULT_NETWORK = 'bridge';

/**
 * A network as the helper keeps it: exactly what clients are shown. The
 * built-in `bridge` network cannot be removed, gives no name resolution
 * between members (as Docker's) and is everyone's. A user-defined one belongs
 * to its `owner` (absent: root's, as every record older than owners), and
 * names are per owner (server/util/owners.ts).
 */
export type NetworkRecord = NetworkSummary;

/** A user-defined network's owner: root for records older than owners. */
export function networkOwner(n: NetworkRecord): number {
  return n.owner ?? ROOT_UID;
}

/**
 * The name of a network's address pool (its ipam file): root's networks keep
 * their name, as before owners; another owner's use the id, which no other
 * owner's network of the same name shares.
 */
export function poolOf(n: NetworkRecord): string {
  return n.builtin || networkOwner(n) === ROOT_UID ? n.name : n.id;
}

const ROOT: Asker = { uid: ROOT_UID };

/** A container's network as `inspect` shows it. */
export type NetworkSettings = NonNullable<ContainerInspect['networkSettings']>;

export interface NetworkRequest {
  id: string;
  name: string;
  hostname: string;
  options: Pick<RunOptions, 'network' | 'publish' | 'dns'>;
  hostsPath: string;
  resolvConfPath: string;
  /** Whose container it is: `--network NAME` names one of its networks (root's when not given). */
  caller?: Asker;
  /** Finds a container for `container:NAME`: its id and, while it runs, its pid. */
  lookup(ref: string): { id: string; name: string; pid?: number };
}

export interface NetworkAttachment {
  /** The plan joins this namespace file. */
  netnsPath?: string;
  /** The shim creates a new, loopback-only namespace (`none`). */
  newNetns: boolean;
  settings: NetworkSettings;
}

interface AttachmentState {
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

export class NetworkManager {
  private readonly dir: string;
  private readonly netnsDir: string;
  private readonly ipam: Ipam;
  private readonly attachments = new Map<string, AttachmentState>();
  private readonly forwarders = new Map<string, Forwarder[]>();
  /** User-defined networks by id (names are per owner, ids are unique). */
  private readonly user = new Map<string, NetworkRecord>();
  private readonly builtin: NetworkRecord;
  private readonly bridges = new Map<string, Promise<number>>();
  /** Bridges that exist: the firewall's rules cover these. */
  private readonly bridgesUp = new Set<string>();
  private readonly serial = new Serial();
  private readonly log: (m: string) => void;
  private appliedRules?: string;
  private firewall?: FirewallBackend | null;
  /** Firewall updates, one after another, each writing the state of its time. */
  private firewallQueue: Promise<void> = Promise.resolve();
  /** Bridges on which Capsa turned route_localnet on (for DNAT of 127.0.0.1). */
  private readonly localnet = new Set<string>();
  private nl?: Netlink;
  private mtu?: number;

  constructor(
    root: string,
    opts: NetworkOptions = {},
  ) {
    this.dir = path.join(root, 'network');
    this.netnsDir = path.join(root, 'netns');
    this.ipam = new Ipam(path.join(this.dir, 'ipam'));
    this.log = opts.log ?? (() => undefined);
    const subnet = parseSubnet(opts.subnet ?? DEFAULT_SUBNET);
    const bridge = opts.bridgeName ?? DEFAULT_BRIDGE;
    checkBridgeName(bridge);
    this.builtin = { name: DEFAULT_NETWORK, id: '0'.repeat(64), bridge, subnet: formatSubnet(subnet), gateway: formatIPv4(gatewayOf(subnet)), created: new Date(0).toISOString(), builtin: true };
  }

  /** The helper's netlink socket, in the helper's own namespace. */
  private host(): Netlink {
    return (this.nl ??= Netlink.open());
  }

  private networksFile(): string {
    return path.join(this.dir, 'networks.json');
  }

  private stateFile(id: string): string {
    return path.join(this.dir, 'containers', `${id}.json`);
  }

  /** Loads state and removes whatever belongs to no known container. `running`: ids whose process is alive. */
  async reconcile(known: Set<string>, running: Set<string>): Promise<void> {
    await fs.mkdir(path.join(this.dir, 'containers'), { recursive: true, mode: 0o700 });
    await fs.mkdir(this.netnsDir, { recursive: true, mode: 0o700 });
    try {
      const list = JSON.parse(await fs.readFile(this.networksFile(), 'utf8')) as NetworkRecord[];
      for (const n of list) this.user.set(n.id, n);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    for (const f of await fs.readdir(path.join(this.dir, 'containers'))) {
      if (!f.endsWith('.json')) continue;
      let s: AttachmentState;
      try {
        s = JSON.parse(await fs.readFile(path.join(this.dir, 'containers', f), 'utf8')) as AttachmentState;
      } catch (err) {
        // a record cut short by a crash: its container is gone with it, so the record goes too
        this.log(`network: removing the unreadable attachment record ${f}: ${describeError(err)}`);
        await fs.rm(path.join(this.dir, 'containers', f), { force: true });
        continue;
      }
      this.attachments.set(s.id, s);
      if (!known.has(s.id)) {
        this.log(`network: removing leftovers of container ${s.id.slice(0, 12)} (${s.address} on ${s.network})`);
        await this.teardown(s.id);
      }
    }
    for (const f of await fs.readdir(this.netnsDir)) {
      if (!this.attachments.has(f)) removeNetns(path.join(this.netnsDir, f));
    }
    for (const n of this.networks()) {
      const dropped = await this.ipam.retain(poolOf(n), (owner) => this.attachments.has(owner));
      if (dropped.length) this.log(`network: released ${dropped.join(', ')} on ${n.name}`);
    }
    // rules for bridges that survived the previous helper
    for (const n of this.networks()) if (this.host().link(n.bridge)) await this.ensureBridge(n);
    for (const s of this.attachments.values()) {
      if (running.has(s.id) && s.ports.length) {
        await this.startForwarders(s).catch((err: Error) => this.log(`network: cannot restore published ports of ${s.name}: ${err.message}`));
      }
    }
  }

  /** The networks `asker` sees: the built-in one and its own, or every owner's for root (the default). */
  networks(asker: Asker = ROOT): NetworkRecord[] {
    const mine = [...this.user.values()].filter((n) => visibleTo(asker, networkOwner(n)));
    return [this.builtin, ...mine.sort((a, b) => a.name.localeCompare(b.name) || networkOwner(a) - networkOwner(b))];
  }

  /**
   * The network `ref` (a name, or an id prefix of at least 6 digits) names
   * for `asker`: the built-in one, else its own of that name (root: its own,
   * else the only owner's; several owners' → AmbiguousOwnerError), else one
   * it sees by id prefix. Another owner's network is not found, with the
   * message a missing one gets.
   */
  network(ref: string, asker: Asker = ROOT): NetworkRecord {
    const b = this.builtin;
    if (b.name === ref || (ref.length >= 6 && b.id.startsWith(ref))) return b;
    const visible = this.networks(asker).filter((n) => !n.builtin);
    const named = pickOwned(asker, visible, networkOwner, (n) => n.name === ref, (owners) =>
      new AmbiguousOwnerError('E_NETWORK_AMBIGUOUS', 'network', ref, owners, 'name it by its id'),
    );
    if (named) return named;
    if (ref.length >= 6) for (const n of visible) if (n.id.startsWith(ref)) return n;
    throw new NetworkNotFoundError(ref);
  }

  /**
   * The network `--network NAME` of a container run by `caller` joins: the
   * built-in `bridge` (everyone's), or one of the caller's own by name or id
   * prefix. Never another owner's, root's runs included: root's containers
   * join root's networks, as before owners existed.
   */
  resolveForRun(caller: Asker, ref: string): NetworkRecord {
    const b = this.builtin;
    if (b.name === ref || (ref.length >= 6 && b.id.startsWith(ref))) return b;
    const own = [...this.user.values()].filter((n) => networkOwner(n) === caller.uid);
    const n = own.find((x) => x.name === ref) ?? (ref.length >= 6 ? own.find((x) => x.id.startsWith(ref)) : undefined);
    if (!n) throw new NetworkNotFoundError(ref);
    return n;
  }

  /** Whether an attachment is to `n` (records older than owners name root's network by name). */
  private attachedTo(s: AttachmentState, n: NetworkRecord): boolean {
    if (s.networkId !== undefined) return s.networkId === n.id;
    return s.network === n.name && (n.builtin === true || networkOwner(n) === ROOT_UID);
  }

  /** The network an attachment is on, if it still exists. */
  private recordOf(s: AttachmentState): NetworkRecord | undefined {
    return this.networks().find((n) => this.attachedTo(s, n));
  }

  /**
   * Members of a network, for `network inspect` by `asker` (every member for
   * root, the default): on the built-in network, everyone's, another user
   * sees only its own containers.
   */
  members(n: NetworkRecord, asker: Asker = ROOT): Array<{ id: string; name: string; ipAddress: string; macAddress?: string }> {
    return [...this.attachments.values()].filter((s) => this.attachedTo(s, n) && visibleTo(asker, s.owner ?? ROOT_UID)).map((s) => ({ id: s.id, name: s.name, ipAddress: `${s.address}/${s.prefix}`, macAddress: s.mac }));
  }

  /**
   * `capsa network create`: a user-defined bridge network of `owner` with its
   * own subnet (default: the next free 10.89.N.0/24). Names clash only with
   * the same owner's; subnets with every network's (they share the host's
   * routing), and a clash with another owner's network does not name it.
   */
  create(opts: { name: string; subnet?: string; gateway?: string }, owner: Asker = ROOT): Promise<NetworkRecord> {
    return this.serial.run(async () => {
      assertSafeName('network name', opts.name);
      if (['bridge', 'host', 'none'].includes(opts.name) || opts.name.startsWith('container')) throw new InvalidArgumentError(`network name ${JSON.stringify(opts.name)} is reserved`);
      if (this.networks().some((n) => n.name === opts.name && !n.builtin && networkOwner(n) === owner.uid)) throw new ConflictError(`network with name ${opts.name} already exists`);
      const taken = this.networks().map((n) => parseSubnet(n.subnet));
      let subnet: Subnet;
      if (opts.subnet) {
        subnet = parseSubnet(opts.subnet);
        const clash = this.networks().find((n) => overlaps(parseSubnet(n.subnet), subnet));
        if (clash && (clash.builtin || visibleTo(owner, networkOwner(clash)))) throw new ConflictError(`subnet ${opts.subnet} overlaps with network ${clash.name} (${clash.subnet})`);
        if (clash) throw new ConflictError(`subnet ${opts.subnet} overlaps with a network of another user`);
      } else {
        const free = Array.from({ length: 256 }, (_, i) => parseSubnet(`10.89.${i}.0/24`)).find((s) => !taken.some((t) => overlaps(t, s)));
        if (!free) throw new ConflictError('no free subnet left in 10.89.0.0/16: give one with --subnet');
        subnet = free;
      }
      const gateway = opts.gateway ? parseIPv4(opts.gateway) : gatewayOf(subnet);
      if (!contains(subnet, gateway) || gateway === subnet.base || gateway === broadcastOf(subnet)) throw new InvalidArgumentError(`gateway ${formatIPv4(gateway)} is not a host address of ${formatSubnet(subnet)}`);
      const id = randomBytes(32).toString('hex');
      const record: NetworkRecord = {
        name: opts.name, id, bridge: `capsa-${id.slice(0, 8)}`, subnet: formatSubnet(subnet), gateway: formatIPv4(gateway), created: new Date().toISOString(),
        ...(owner.uid !== ROOT_UID ? { owner: owner.uid } : {}),
      };
      this.user.set(record.id, record);
      await this.saveNetworks();
      return record;
    });
  }

  /** `capsa network rm` of what `ref` names for `asker`: refuses while containers are attached; removes the bridge and its rules. */
  remove(ref: string, asker: Asker = ROOT): Promise<NetworkRecord> {
    return this.serial.run(async () => {
      const n = this.network(ref, asker);
      if (n.builtin) throw new ConflictError(`network ${n.name} is built in and cannot be removed`);
      const users = this.members(n);
      if (users.length) throw new ConflictError(`network ${n.name} has active endpoints: ${users.map((u) => u.name).join(', ')}`);
      await this.drop(n);
      return n;
    });
  }

  /**
   * `capsa network prune`: removes `asker`'s own user-defined networks that
   * no container is attached to (root: root's own; another owner's are that
   * owner's to prune). Returns their names.
   */
  prune(asker: Asker = ROOT): Promise<string[]> {
    return this.serial.run(async () => {
      const unused = [...this.user.values()].filter((n) => networkOwner(n) === asker.uid && this.members(n).length === 0);
      for (const n of unused) await this.drop(n);
      return unused.map((n) => n.name).sort();
    });
  }

  /** Forgets a network and removes its bridge, rules and address pool (inside the serial queue). */
  private async drop(n: NetworkRecord): Promise<void> {
    this.user.delete(n.id);
    await this.saveNetworks();
    this.bridges.delete(n.bridge);
    this.bridgesUp.delete(n.bridge);
    this.host().deleteLink(n.bridge);
    await this.syncFirewall();
    await this.ipam.remove(poolOf(n));
  }

  private async saveNetworks(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.networksFile(), JSON.stringify([...this.user.values()], null, 2));
  }

  /** Creates the network's bridge (once per helper) with the gateway address, up; returns its ifindex. */
  private ensureBridge(n: NetworkRecord): Promise<number> {
    let p = this.bridges.get(n.bridge);
    if (!p) {
      p = (async () => {
        const nl = this.host();
        let link = nl.link(n.bridge);
        if (!link) {
          try {
            nl.createBridge(n.bridge);
          } catch (err) {
            if (!(err instanceof NetlinkError && err.errno === 17)) throw err;
          }
          link = nl.link(n.bridge);
          if (!link) throw new ConflictError(`bridge ${n.bridge} vanished while it was set up`);
        }
        const subnet = parseSubnet(n.subnet);
        nl.addAddress(link.index, parseIPv4(n.gateway), subnet.prefix, broadcastOf(subnet), { exist: true });
        if (!(link.flags & IFF_UP)) nl.setUp(link.index);
        this.bridgesUp.add(n.bridge);
        await this.syncFirewall();
        return link.index;
      })();
      this.bridges.set(n.bridge, p);
      // a bridge that failed is forgotten so that the next setup tries again; the caller gets the failure from p
      p.catch(() => this.bridges.delete(n.bridge));
    }
    return p;
  }

  /**
   * Rewrites Capsa's rules (nftables, else iptables) for the bridges that
   * exist and the ports being forwarded; a missing or failing firewall is
   * logged, not fatal (the port proxies still serve published ports).
   */
  private syncFirewall(): Promise<void> {
    const next = this.firewallQueue.then(() => this.applyFirewall());
    // the queue goes on after a failed sync; its caller gets the failure from `next`
    this.firewallQueue = next.catch(() => undefined);
    return next;
  }

  private async applyFirewall(): Promise<void> {
    const networks = this.networks().filter((n) => this.bridgesUp.has(n.bridge)).map((n) => ({ bridge: n.bridge, subnet: n.subnet }));
    const ports: FirewallPort[] = [];
    for (const [id, fwd] of this.forwarders) {
      const s = this.attachments.get(id);
      const n = s && this.recordOf(s);
      if (!s || !n) continue;
      for (const f of fwd) ports.push({ bridge: n.bridge, hostIp: f.mapping.hostIp, hostPort: f.mapping.hostPort, protocol: f.mapping.protocol, address: s.address, containerPort: f.mapping.containerPort });
    }
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

  /** Decides and sets up a container's network; on failure nothing is left behind. */
  async setup(req: NetworkRequest): Promise<NetworkAttachment> {
    const mode = req.options.network ?? DEFAULT_NETWORK;
    if (typeof mode !== 'string' || mode === '') throw new InvalidArgumentError('network mode must be a non-empty string');
    const publish = req.options.publish ?? [];
    const dns = req.options.dns;
    if (dns !== undefined) for (const d of dns) parseIPv4(d);
    if (mode === 'host') {
      // the host's own resolver, loopback stub included, is reachable here
      if (dns?.length) await fs.writeFile(req.resolvConfPath, containerResolvConf({ dns }));
      else await fs.writeFile(req.resolvConfPath, readText('/etc/resolv.conf'));
      return { newNetns: false, settings: { network: 'host' } };
    }
    if (publish.length && mode === 'none') throw new InvalidArgumentError('published ports need a network: --network none has none');
    await fs.writeFile(req.resolvConfPath, containerResolvConf({ dns }));
    if (mode === 'none') return { newNetns: true, settings: { network: 'none' } };
    if (mode.startsWith('container:')) {
      if (publish.length) throw new InvalidArgumentError('published ports belong to the container whose network is shared, not to this one');
      const target = req.lookup(mode.slice('container:'.length));
      if (!target.pid) throw new ConflictError(`cannot join the network of container ${target.name}: it is not running`);
      const s = this.attachments.get(target.id);
      return { netnsPath: `/proc/${target.pid}/ns/net`, newNetns: false, settings: { ...(s ? this.settingsOf(s) : {}), network: mode } };
    }
    const n = this.resolveForRun(req.caller ?? ROOT, mode);
    const ports = publish.map(parsePublish);
    checkDistinct(ports);
    const subnet = parseSubnet(n.subnet);
    const pool = poolOf(n);
    const address = await this.ipam.allocate(pool, subnet, req.id);
    const state: AttachmentState = {
      id: req.id,
      name: req.name,
      hostname: req.hostname,
      network: n.name,
      address,
      prefix: subnet.prefix,
      gateway: n.gateway,
      veth: vethName(req.id),
      netns: path.join(this.netnsDir, req.id),
      mac: macFor(parseIPv4(address)),
      ports,
      hostsPath: req.hostsPath,
      networkId: n.id,
      pool,
      ...(req.caller && req.caller.uid !== ROOT_UID ? { owner: req.caller.uid } : {}),
    };
    this.attachments.set(req.id, state);
    try {
      await this.saveState(state);
      const bridgeIndex = await this.ensureBridge(n);
      const mtu = (this.mtu ??= hostMtu());
      const host = this.host();
      await fs.mkdir(this.netnsDir, { recursive: true, mode: 0o700 });
      createNetns(state.netns, (nl, nsFd) => {
        host.createVeth({ hostName: state.veth, peerName: 'eth0', peerMac: state.mac!, peerNsFd: nsFd, mtu, masterIndex: bridgeIndex });
        // only a container that publishes ports can call itself through one
        if (ports.length) {
          const port = host.link(state.veth);
          if (port) host.setHairpin(port.index);
        }
        nl.setUp(1); // lo is always ifindex 1 in a new namespace
        const eth0 = nl.link('eth0');
        if (!eth0) throw new ConflictError('eth0 did not appear in the container network namespace');
        nl.setUp(eth0.index);
        nl.addAddress(eth0.index, parseIPv4(address), subnet.prefix, broadcastOf(subnet));
        nl.addDefaultRoute(parseIPv4(n.gateway), eth0.index);
      });
      await this.startForwarders(state);
      if (ports.some((m) => m.hostPort === 0)) await this.saveState(state); // the random ports the kernel chose
      await this.writeHosts(n);
      return { netnsPath: state.netns, newNetns: false, settings: this.settingsOf(state) };
    } catch (err) {
      // the setup's own failure is what the caller needs; a teardown failure on top is only logged
      await this.teardown(req.id).catch((e: unknown) => this.log(`network: cleaning up after a failed setup of ${req.id}: ${describeError(e)}`));
      throw err;
    }
  }

  private async startForwarders(s: AttachmentState): Promise<void> {
    const started: Forwarder[] = [];
    try {
      for (const m of s.ports) started.push(await startForwarder(m, s.address));
    } catch (err) {
      await Promise.all(started.map((f) => f.close()));
      throw err;
    }
    this.forwarders.set(s.id, started);
    // keep a random port the same across a helper restart
    s.ports = started.map((f) => f.mapping);
    if (started.length) await this.syncFirewall();
  }

  /** Removes everything {@link setup} made for a container; safe to repeat. */
  async teardown(id: string): Promise<void> {
    const s = this.attachments.get(id);
    const fwd = this.forwarders.get(id);
    this.forwarders.delete(id);
    // the rules go first, so no new connection is sent to a container that is going
    if (fwd?.length) await this.syncFirewall();
    await Promise.all((fwd ?? []).map((f) => f.close()));
    if (!s) return;
    // Unpinning the namespace is enough: once its last process is gone the
    // kernel destroys it and its eth0, and with eth0 the veth's host end.
    // Deleting the veth here instead costs ~25 ms of RCU grace periods in
    // unregister_netdevice, paid synchronously on every `rm` (and `run --rm`);
    // the namespace's cleanup batches that work off the caller's path.
    removeNetns(s.netns);
    await this.ipam.release(s.pool ?? s.network, id);
    this.attachments.delete(id);
    await fs.rm(this.stateFile(id), { force: true });
    const n = this.recordOf(s);
    if (n && !n.builtin) await this.writeHosts(n);
  }

  /** /etc/hosts of every member: itself and, on user-defined networks, its peers by name. */
  private async writeHosts(n: NetworkRecord): Promise<void> {
    const members = [...this.attachments.values()].filter((s) => this.attachedTo(s, n));
    const entry = (s: AttachmentState, self: boolean): HostEntry => ({ address: s.address, names: self ? [s.hostname, s.name, s.id.slice(0, 12)] : [s.name, s.id.slice(0, 12)] });
    await Promise.all(
      members.map((s) => {
        const peers = n.builtin ? [] : members.filter((o) => o !== s).map((o) => entry(o, false));
        // in place (O_TRUNC, same inode): the file is bind-mounted into the running container
        // a member removed meanwhile has no hosts file to update; one that cannot be written keeps its old peers
        return fs.writeFile(s.hostsPath, hostsFile(entry(s, true), peers)).catch((e: unknown) => {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log(`network: cannot update ${s.hostsPath}: ${describeError(e)}`);
        });
      }),
    );
  }

  private async saveState(s: AttachmentState): Promise<void> {
    await fs.mkdir(path.dirname(this.stateFile(s.id)), { recursive: true, mode: 0o700 });
    await replaceFile(this.stateFile(s.id), JSON.stringify(s));
  }

  private settingsOf(s: AttachmentState): NetworkSettings {
    return {
      network: s.network,
      ipAddress: s.address,
      prefixLength: s.prefix,
      gateway: s.gateway,
      macAddress: s.mac,
      ports: Object.fromEntries(s.ports.map((m) => [`${m.containerPort}/${m.protocol}`, `${m.hostIp}:${m.hostPort}`])),
    };
  }

  settings(id: string): NetworkSettings | undefined {
    const s = this.attachments.get(id);
    return s ? this.settingsOf(s) : undefined;
  }

  /** `127.0.0.1:8080->80/tcp` for `ps`. */
  ports(id: string): string[] {
    return (this.attachments.get(id)?.ports ?? []).map(formatMapping);
  }

  /** Stops the port forwarders (helper shutdown); kernel state stays for the containers that keep running. */
  async close(): Promise<void> {
    await Promise.all([...this.forwarders.values()].flat().map((f) => f.close()));
    this.forwarders.clear();
    this.nl?.close();
    this.nl = undefined;
  }
}

/** Docker's scheme: 02:42 and the IPv4 address, so a re-used address keeps its MAC and neighbours' ARP caches stay right. */
export function macFor(addr: number): string {
  return ['02', '42', ...[24, 16, 8, 0].map((sh) => ((addr >>> sh) & 255).toString(16).padStart(2, '0'))].join(':');
}

function checkBridgeName(name: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$/.test(name)) throw new InvalidArgumentError(`invalid bridge name ${JSON.stringify(name)}: at most 15 letters, digits, '_', '.' or '-'`);
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

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    // a host without /etc/resolv.conf: the container gets an empty one, as Docker does
    return '';
  }
}
