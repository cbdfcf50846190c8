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
 * State: `<root>/network/networks.json` (user-defined networks, records.ts),
 * `<root>/network/ipam/<network>.json` (addresses), and
 * `<root>/network/containers/<id>.json` (one per attached container,
 * attachment.ts). {@link reconcile} runs at start-up and removes what belongs
 * to no container, then restarts the port forwarders of running ones. The
 * firewall's rules follow the bridges and ports through rules.ts.
 *
 * The records, the attachment plumbing and the firewall updates live in
 * their own modules; this one ties them together and is what the rest of
 * the helper imports (their public names are re-exported below).
 */
import { readFileSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ConflictError, InvalidArgumentError, describeError } from '../../errors';
import type { ContainerInspect, RunOptions } from '../../protocol/types';
import type { FirewallPort } from './firewall';
import { Ipam, Serial } from './ipam';
import { Netlink, NetlinkError, IFF_UP } from './netlink';
import { removeNetns } from './netns';
import { containerResolvConf, hostsFile, type HostEntry } from './names';
import { checkDistinct, formatMapping, parsePublish, startForwarder, type Forwarder } from './ports';
import { ROOT_UID, visibleTo, type Asker } from '../../util/owners';
import { broadcastOf, parseIPv4, parseSubnet } from '../../util/subnet';
import { DEFAULT_BRIDGE, DEFAULT_NETWORK, DEFAULT_SUBNET, NetworkRecords, ROOT, builtinRecord, networkOwner, poolOf, type NetworkRecord } from './records';
import { AttachmentFiles, attachedTo, hostMtu, macFor, plumb, vethName, type AttachmentState } from './attachment';
import { FirewallSync } from './rules';

export { DEFAULT_BRIDGE, DEFAULT_NETWORK, DEFAULT_SUBNET, NetworkNotFoundError, networkOwner, poolOf, type NetworkRecord } from './records';
export { hostMtu, macFor, vethName } from './attachment';

export interface NetworkOptions {
  /** Bridge of the default `bridge` network. Default `capsa0`. */
  bridgeName?: string;
  /** Subnet of the default network. Default `10.88.0.0/16`. */
  subnet?: string;
  /** Logs a line (firewall problems are reported, not fatal). */
  log?: (message: string) => void;
}

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

export class NetworkManager {
  private readonly dir: string;
  private readonly netnsDir: string;
  private readonly ipam: Ipam;
  private readonly records: NetworkRecords;
  private readonly files: AttachmentFiles;
  private readonly attachments = new Map<string, AttachmentState>();
  private readonly forwarders = new Map<string, Forwarder[]>();
  private readonly bridges = new Map<string, Promise<number>>();
  /** Bridges that exist: the firewall's rules cover these. */
  private readonly bridgesUp = new Set<string>();
  private readonly serial = new Serial();
  private readonly log: (m: string) => void;
  private readonly firewall: FirewallSync;
  private nl?: Netlink;
  private mtu?: number;

  constructor(
    root: string,
    opts: NetworkOptions = {},
  ) {
    this.dir = path.join(root, 'network');
    this.netnsDir = path.join(root, 'netns');
    this.ipam = new Ipam(path.join(this.dir, 'ipam'));
    this.files = new AttachmentFiles(path.join(this.dir, 'containers'));
    this.log = opts.log ?? (() => undefined);
    this.records = new NetworkRecords(path.join(this.dir, 'networks.json'), builtinRecord(opts.bridgeName ?? DEFAULT_BRIDGE, opts.subnet ?? DEFAULT_SUBNET));
    this.firewall = new FirewallSync(() => this.firewallWanted(), this.log);
  }

  /** The helper's netlink socket, in the helper's own namespace. */
  private host(): Netlink {
    return (this.nl ??= Netlink.open());
  }

  /** Loads state and removes whatever belongs to no known container. `running`: ids whose process is alive. */
  async reconcile(known: Set<string>, running: Set<string>): Promise<void> {
    await fs.mkdir(this.files.dir, { recursive: true, mode: 0o700 });
    await fs.mkdir(this.netnsDir, { recursive: true, mode: 0o700 });
    await this.records.load();
    for (const f of await fs.readdir(this.files.dir)) {
      if (!f.endsWith('.json')) continue;
      let s: AttachmentState;
      try {
        s = JSON.parse(await fs.readFile(path.join(this.files.dir, f), 'utf8')) as AttachmentState;
      } catch (err) {
        // a record cut short by a crash: its container is gone with it, so the record goes too
        this.log(`network: removing the unreadable attachment record ${f}: ${describeError(err)}`);
        await fs.rm(path.join(this.files.dir, f), { force: true });
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
    return this.records.networks(asker);
  }

  /** The network `ref` (a name, or an id prefix of at least 6 digits) names for `asker` ({@link NetworkRecords.network}). */
  network(ref: string, asker: Asker = ROOT): NetworkRecord {
    return this.records.network(ref, asker);
  }

  /** The network `--network NAME` of a container run by `caller` joins ({@link NetworkRecords.resolveForRun}). */
  resolveForRun(caller: Asker, ref: string): NetworkRecord {
    return this.records.resolveForRun(caller, ref);
  }

  /** The network an attachment is on, if it still exists. */
  private recordOf(s: AttachmentState): NetworkRecord | undefined {
    return this.networks().find((n) => attachedTo(s, n));
  }

  /**
   * Members of a network, for `network inspect` by `asker` (every member for
   * root, the default): on the built-in network, everyone's, another user
   * sees only its own containers.
   */
  members(n: NetworkRecord, asker: Asker = ROOT): Array<{ id: string; name: string; ipAddress: string; macAddress?: string }> {
    return [...this.attachments.values()].filter((s) => attachedTo(s, n) && visibleTo(asker, s.owner ?? ROOT_UID)).map((s) => ({ id: s.id, name: s.name, ipAddress: `${s.address}/${s.prefix}`, macAddress: s.mac }));
  }

  /** `capsa network create`: a user-defined bridge network of `owner` ({@link NetworkRecords.plan} says which). */
  create(opts: { name: string; subnet?: string; gateway?: string }, owner: Asker = ROOT): Promise<NetworkRecord> {
    return this.serial.run(async () => {
      const record = this.records.plan(opts, owner);
      this.records.add(record);
      await this.records.save();
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
      const unused = this.records.userDefined().filter((n) => networkOwner(n) === asker.uid && this.members(n).length === 0);
      for (const n of unused) await this.drop(n);
      return unused.map((n) => n.name).sort();
    });
  }

  /** Forgets a network and removes its bridge, rules and address pool (inside the serial queue). */
  private async drop(n: NetworkRecord): Promise<void> {
    this.records.delete(n);
    await this.records.save();
    this.bridges.delete(n.bridge);
    this.bridgesUp.delete(n.bridge);
    this.host().deleteLink(n.bridge);
    await this.firewall.sync();
    await this.ipam.remove(poolOf(n));
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
        await this.firewall.sync();
        return link.index;
      })();
      this.bridges.set(n.bridge, p);
      // a bridge that failed is forgotten so that the next setup tries again; the caller gets the failure from p
      p.catch(() => this.bridges.delete(n.bridge));
    }
    return p;
  }

  /** What the firewall's rules are to cover: the bridges that exist and the ports being forwarded. */
  private firewallWanted(): { networks: Array<{ bridge: string; subnet: string }>; ports: FirewallPort[] } {
    const networks = this.networks().filter((n) => this.bridgesUp.has(n.bridge)).map((n) => ({ bridge: n.bridge, subnet: n.subnet }));
    const ports: FirewallPort[] = [];
    for (const [id, fwd] of this.forwarders) {
      const s = this.attachments.get(id);
      const n = s && this.recordOf(s);
      if (!s || !n) continue;
      for (const f of fwd) ports.push({ bridge: n.bridge, hostIp: f.mapping.hostIp, hostPort: f.mapping.hostPort, protocol: f.mapping.protocol, address: s.address, containerPort: f.mapping.containerPort });
    }
    return { networks, ports };
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
      return { netnsPath: `/proc/${target.pid}/ns/net`, newNetns: false, settings: { ...(s ? settingsOf(s) : {}), network: mode } };
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
      await this.files.save(state);
      const bridgeIndex = await this.ensureBridge(n);
      const mtu = (this.mtu ??= hostMtu());
      await fs.mkdir(this.netnsDir, { recursive: true, mode: 0o700 });
      // only a container that publishes ports can call itself through one
      plumb(this.host(), state, subnet, { bridgeIndex, mtu, hairpin: ports.length > 0 });
      await this.startForwarders(state);
      if (ports.some((m) => m.hostPort === 0)) await this.files.save(state); // the random ports the kernel chose
      await this.writeHosts(n);
      return { netnsPath: state.netns, newNetns: false, settings: settingsOf(state) };
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
    if (started.length) await this.firewall.sync();
  }

  /** Removes everything {@link setup} made for a container; safe to repeat. */
  async teardown(id: string): Promise<void> {
    const s = this.attachments.get(id);
    const fwd = this.forwarders.get(id);
    this.forwarders.delete(id);
    // the rules go first, so no new connection is sent to a container that is going
    if (fwd?.length) await this.firewall.sync();
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
    await this.files.remove(id);
    const n = this.recordOf(s);
    if (n && !n.builtin) await this.writeHosts(n);
  }

  /** /etc/hosts of every member: itself and, on user-defined networks, its peers by name. */
  private async writeHosts(n: NetworkRecord): Promise<void> {
    const members = [...this.attachments.values()].filter((s) => attachedTo(s, n));
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

  settings(id: string): NetworkSettings | undefined {
    const s = this.attachments.get(id);
    return s ? settingsOf(s) : undefined;
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

function settingsOf(s: AttachmentState): NetworkSettings {
  return {
    network: s.network,
    ipAddress: s.address,
    prefixLength: s.prefix,
    gateway: s.gateway,
    macAddress: s.mac,
    ports: Object.fromEntries(s.ports.map((m) => [`${m.containerPort}/${m.protocol}`, `${m.hostIp}:${m.hostPort}`])),
  };
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    // a host without /etc/resolv.conf: the container gets an empty one, as Docker does
    return '';
  }
}
