/**
 * Address allocation for one network: which addresses of its subnet belong
 * to which container. Persisted as one JSON file per network, replaced
 * atomically (see state.ts on durability); callers serialise changes (one allocator per helper process,
 * see {@link Ipam}), so concurrent runs can never be handed the same address.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ConflictError } from '../../errors';
import { replaceFile } from './state';
import { broadcastOf, formatIPv4, formatSubnet, gatewayOf, parseIPv4, type Subnet } from '../../util/subnet';

/** address (dotted) → container id */
export type Allocations = Record<string, string>;

/**
 * The lowest free address after the gateway, or after `last` when given
 * (round robin, as Docker does: a just-released address is not reused at once,
 * so a stale peer cannot reach the wrong container). Pure.
 */
export function pickAddress(subnet: Subnet, taken: Allocations, last?: string): number {
  const first = gatewayOf(subnet) + 1;
  const end = broadcastOf(subnet); // exclusive
  const size = end - first;
  const start = last !== undefined ? parseIPv4(last) + 1 : first;
  for (let i = 0; i < size; i++) {
    let a = start + i;
    if (a >= end || a < first) a = first + ((a - first) % size + size) % size;
    const text = formatIPv4(a >>> 0);
    if (!(text in taken)) return a >>> 0;
  }
  throw new ConflictError(`no free address left in ${formatSubnet(subnet)}`);
}

interface IpamFile {
  last?: string;
  allocations: Allocations;
}

/** A mutex by promise chain: each task starts after the previous settled. */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.tail.then(task, task);
    // the queue goes on after a failed task; its caller gets the failure from `next`
    this.tail = next.catch(() => undefined);
    return next;
  }
}

export class Ipam {
  private readonly serial = new Serial();

  /** @param dir `<root>/network/ipam` */
  constructor(private readonly dir: string) {}

  private file(network: string): string {
    return path.join(this.dir, `${network}.json`);
  }

  private async read(network: string): Promise<IpamFile> {
    try {
      const f = JSON.parse(await fs.readFile(this.file(network), 'utf8')) as IpamFile;
      return { last: f.last, allocations: f.allocations ?? {} };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { allocations: {} };
      throw err;
    }
  }

  private async write(network: string, f: IpamFile): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await replaceFile(this.file(network), JSON.stringify(f));
  }

  /** Allocates an address for `owner` (idempotent: an owner keeps its address). */
  allocate(network: string, subnet: Subnet, owner: string): Promise<string> {
    return this.serial.run(async () => {
      const f = await this.read(network);
      const mine = Object.entries(f.allocations).find(([, o]) => o === owner);
      if (mine) return mine[0];
      const addr = formatIPv4(pickAddress(subnet, f.allocations, f.last));
      f.allocations[addr] = owner;
      f.last = addr;
      await this.write(network, f);
      return addr;
    });
  }

  release(network: string, owner: string): Promise<void> {
    return this.serial.run(async () => {
      const f = await this.read(network);
      const before = Object.keys(f.allocations).length;
      for (const [a, o] of Object.entries(f.allocations)) if (o === owner) delete f.allocations[a];
      if (Object.keys(f.allocations).length !== before) await this.write(network, f);
    });
  }

  /** Drops every allocation whose owner `keep` rejects (reconciliation after a crash). */
  retain(network: string, keep: (owner: string) => boolean): Promise<string[]> {
    return this.serial.run(async () => {
      const f = await this.read(network);
      const dropped: string[] = [];
      for (const [a, o] of Object.entries(f.allocations)) {
        if (!keep(o)) {
          delete f.allocations[a];
          dropped.push(a);
        }
      }
      if (dropped.length) await this.write(network, f);
      return dropped;
    });
  }

  async allocations(network: string): Promise<Allocations> {
    return (await this.read(network)).allocations;
  }

  async remove(network: string): Promise<void> {
    await fs.rm(this.file(network), { force: true });
  }
}
