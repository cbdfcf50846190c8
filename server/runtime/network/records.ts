/**
 * The networks' records: the built-in `bridge` network and the user-defined
 * ones (`<root>/network/networks.json`), their owners and the owner-scoped
 * lookups by name or id prefix. No kernel object is touched here: bridges,
 * rules and address pools are the manager's.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ConflictError, InvalidArgumentError, NotFoundError, assertSafeName } from '../../errors';
import { writeFileAtomic } from '../../util/atomic';
import type { NetworkSummary } from '../../protocol/types';
import { AmbiguousOwnerError, pickOwned, ROOT_UID, visibleTo, type Asker } from '../../util/owners';
import { broadcastOf, contains, formatIPv4, formatSubnet, gatewayOf, overlaps, parseIPv4, parseSubnet, type Subnet } from '../../util/subnet';

export class NetworkNotFoundError extends NotFoundError {
  constructor(name: string) {
    super('E_NETWORK_NOT_FOUND', `no such network: ${name}`, { fields: { network: name } });
  }
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

export const ROOT: Asker = { uid: ROOT_UID };

/** The built-in network's record, on `bridge` with `subnet`. */
export function builtinRecord(bridge: string, subnetText: string): NetworkRecord {
  const subnet = parseSubnet(subnetText);
  checkBridgeName(bridge);
  return { name: DEFAULT_NETWORK, id: '0'.repeat(64), bridge, subnet: formatSubnet(subnet), gateway: formatIPv4(gatewayOf(subnet)), created: new Date(0).toISOString(), builtin: true };
}

function checkBridgeName(name: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$/.test(name)) throw new InvalidArgumentError(`invalid bridge name ${JSON.stringify(name)}: at most 15 letters, digits, '_', '.' or '-'`);
}

/** The built-in network and the user-defined ones, kept in `file`. */
export class NetworkRecords {
  /** User-defined networks by id (names are per owner, ids are unique). */
  private readonly user = new Map<string, NetworkRecord>();

  constructor(
    private readonly file: string,
    readonly builtin: NetworkRecord,
  ) {}

  /** Reads the user-defined networks; none yet is no file. */
  async load(): Promise<void> {
    try {
      const list = JSON.parse(await fs.readFile(this.file, 'utf8')) as NetworkRecord[];
      for (const n of list) this.user.set(n.id, n);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  async save(): Promise<void> {
    await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file, JSON.stringify([...this.user.values()], null, 2));
  }

  /** The user-defined networks, every owner's, in the order they were made. */
  userDefined(): NetworkRecord[] {
    return [...this.user.values()];
  }

  add(n: NetworkRecord): void {
    this.user.set(n.id, n);
  }

  delete(n: NetworkRecord): void {
    this.user.delete(n.id);
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

  /**
   * The record `capsa network create` makes for `owner` (not yet added): a
   * bridge network with its own subnet (default: the next free
   * 10.89.N.0/24). Names clash only with the same owner's; subnets with
   * every network's (they share the host's routing), and a clash with
   * another owner's network does not name it.
   */
  plan(opts: { name: string; subnet?: string; gateway?: string }, owner: Asker): NetworkRecord {
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
    return {
      name: opts.name, id, bridge: `capsa-${id.slice(0, 8)}`, subnet: formatSubnet(subnet), gateway: formatIPv4(gateway), created: new Date().toISOString(),
      ...(owner.uid !== ROOT_UID ? { owner: owner.uid } : {}),
    };
  }
}
