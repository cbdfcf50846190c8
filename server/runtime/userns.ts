/**
 * `--userns auto`: each container gets its own block of 65536 host ids,
 * container id N being host id start+N, recorded in `<root>/userns.json`
 * (atomic rewrite) so blocks never overlap, across helper restarts too.
 *
 * Where the blocks come from, in order:
 * - `/etc/subuid` and `/etc/subgid` entries for the user `capsa` (or
 *   CAPSA_SUBID_USER), as for rootless Podman: `capsa:200000:655360` gives
 *   ten blocks; uid and gid blocks are paired in order;
 * - otherwise 100000000 upwards (as systemd's and Podman's automatic ranges
 *   keep clear of ids a host's accounts use), 1000 blocks.
 *
 * A container of a user other than root always has one (container/unprivileged.ts),
 * taken from that user's own `/etc/subuid` and `/etc/subgid` entries when
 * they have some (ids the administrator gave that user already), and from
 * the blocks above when they have none or all of theirs are in use (useradd
 * gives each user one block, enough for one container). Every block is in
 * the one record, and a block overlapping a recorded one is never handed
 * out.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CapsaError } from '../errors';
import { writeFileAtomic } from '../util/atomic';
import type { Plan, PlanIdmap, PlanUserns } from './plan';
import { ifMissing } from '../util/missing';

export const USERNS_SIZE = 65536;
const DEFAULT_START = 100_000_000;
const DEFAULT_BLOCKS = 1000;

export interface IdRange {
  /** Host uid that container uid 0 maps to. */
  uid: number;
  /** Host gid that container gid 0 maps to. */
  gid: number;
  size: number;
}

export class UsernsExhaustedError extends CapsaError {
  constructor(source: string) {
    super('E_USERNS_EXHAUSTED', `userns: no free block of ${USERNS_SIZE} ids left in ${source}`);
  }
}

/** Starts of the whole 65536-id blocks in `name`'s entries of an /etc/subuid-style file. */
export function subidBlocks(text: string, name: string): number[] {
  const out: number[] = [];
  for (const line of text.split('\n')) {
    const [user, start, count] = line.trim().split(':');
    if (user !== name || !/^\d+$/.test(start ?? '') || !/^\d+$/.test(count ?? '')) continue;
    for (let s = Number(start); s + USERNS_SIZE <= Number(start) + Number(count) && s + USERNS_SIZE <= 0xffffffff; s += USERNS_SIZE) out.push(s);
  }
  return out;
}

export class UsernsAllocator {
  private readonly file: string;
  private ranges?: Map<string, IdRange>;
  /** The blocks of each source: `''` for the default, else a user's name. */
  private readonly blocks = new Map<string, { uid: number[]; gid: number[]; source: string }>();
  /** Serialises allocations and releases: each reads and rewrites the record. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    root: string,
    private readonly opts: { user?: string; subuid?: string; subgid?: string } = {},
  ) {
    this.file = path.join(root, 'userns.json');
  }

  /** The blocks for a container of `owner` (a user's name; none for root's `--userns auto`). */
  private async available(owner?: string): Promise<{ uid: number[]; gid: number[]; source: string }> {
    const known = this.blocks.get(owner ?? '');
    if (known) return known;
    const subuid = this.opts.subuid ?? '/etc/subuid';
    const subgid = this.opts.subgid ?? '/etc/subgid';
    const [uidText, gidText] = await Promise.all([fs.readFile(subuid, 'utf8').catch(ifMissing('')), fs.readFile(subgid, 'utf8').catch(ifMissing(''))]);
    const entries = (user: string): { uid: number[]; gid: number[]; source: string } | undefined => {
      const uid = subidBlocks(uidText, user);
      const gid = subidBlocks(gidText, user);
      const n = Math.min(uid.length, gid.length);
      return n ? { uid: uid.slice(0, n), gid: gid.slice(0, n), source: `${subuid} and ${subgid} for ${user}` } : undefined;
    };
    const all = Array.from({ length: DEFAULT_BLOCKS }, (_, i) => DEFAULT_START + i * USERNS_SIZE);
    const fallback = entries(this.opts.user ?? process.env.CAPSA_SUBID_USER ?? 'capsa') ?? { uid: all, gid: all, source: `the default range from ${DEFAULT_START}` };
    const own = owner !== undefined ? entries(owner) : undefined;
    // a user's own entries first; once they are all in use (useradd gives one block), the helper's
    const blocks = own ? { uid: [...own.uid, ...fallback.uid], gid: [...own.gid, ...fallback.gid], source: `${own.source}, then ${fallback.source}` } : fallback;
    // a user's entries are read once per helper, as the default's are: a change to /etc/subuid is seen after a restart
    this.blocks.set(owner ?? '', blocks);
    return blocks;
  }

  private async load(): Promise<Map<string, IdRange>> {
    if (!this.ranges) {
      // only a missing file is an empty table: an unreadable one must not hand out ranges in use
      const text = await fs.readFile(this.file, 'utf8').catch(ifMissing('{}'));
      this.ranges = new Map(Object.entries(JSON.parse(text) as Record<string, IdRange>));
    }
    return this.ranges;
  }

  private save(ranges: Map<string, IdRange>): Promise<void> {
    return writeFileAtomic(this.file, JSON.stringify(Object.fromEntries(ranges), null, 1));
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    // the queue goes on after a failed task; its caller gets the failure from `run`
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * The block recorded for `id`, or a free one, recorded before it is
   * returned; `owner`: the name of the user (not root) whose container it is.
   */
  allocate(id: string, owner?: string): Promise<IdRange> {
    return this.serial(async () => {
      const ranges = await this.load();
      const mine = ranges.get(id);
      if (mine) return mine;
      const blocks = await this.available(owner);
      // by overlap, not by start: a user's entries need not be aligned with the helper's blocks
      const taken = [...ranges.values()];
      const overlaps = (start: number, key: 'uid' | 'gid'): boolean => taken.some((r) => start < r[key] + r.size && r[key] < start + USERNS_SIZE);
      const i = blocks.uid.findIndex((u, k) => !overlaps(u, 'uid') && !overlaps(blocks.gid[k], 'gid'));
      if (i < 0) throw new UsernsExhaustedError(blocks.source);
      const range = { uid: blocks.uid[i], gid: blocks.gid[i], size: USERNS_SIZE };
      ranges.set(id, range);
      await this.save(ranges);
      return range;
    });
  }

  release(id: string): Promise<void> {
    return this.serial(async () => {
      const ranges = await this.load();
      if (ranges.delete(id)) await this.save(ranges);
    });
  }

  /** After a crash: drops the blocks of containers that no longer exist, keeps the others' (so none is handed out twice). */
  reconcile(existing: Set<string>): Promise<void> {
    return this.serial(async () => {
      const ranges = await this.load();
      const stale = [...ranges.keys()].filter((id) => !existing.has(id));
      for (const id of stale) ranges.delete(id);
      if (stale.length) await this.save(ranges);
    });
  }
}

/**
 * The on-disk half of a `--userns auto` container, made while the rest of
 * its setup runs: an empty staging directory per image layer
 * (`<container>/lower/<n>`, top-most first as `layerDirs`) that the shim
 * covers with an idmapped copy of that layer, and the upper and work
 * directories given to the container's root, so the root filesystem is owned
 * inside as the image says, with nothing copied or chowned in the layers.
 */
export async function stageUserns(range: IdRange, layerDirs: string[], paths: { dir: string; upper: string; work: string }): Promise<PlanUserns> {
  const lowers = layerDirs.map((source, i) => ({ source, target: path.join(paths.dir, 'lower', String(i)) }));
  await fs.mkdir(path.join(paths.dir, 'lower'), { mode: 0o700 });
  await Promise.all([...lowers.map((l) => fs.mkdir(l.target)), fs.chown(paths.upper, range.uid, range.gid), fs.chown(paths.work, range.uid, range.gid)]);
  return { uid: range.uid, gid: range.gid, size: range.size, lowers };
}

/**
 * Turns a run plan into a `--userns auto` one with what stageUserns made:
 * the overlay's lowerdirs become the staging directories. The plan's layers
 * must be the ones staged, in the same order.
 */
export function useUserns(plan: Plan, staged: PlanUserns): void {
  const overlay = plan.mounts.find((m) => m.fstype === 'overlay' && m.target === '/');
  const m = overlay && /(^|,)lowerdir=([^,]*)/.exec(overlay.data);
  if (!overlay || !m) throw new Error('userns: the plan has no root overlay');
  const layers = m[2].split(':');
  if (layers.length !== staged.lowers.length || layers.some((l, i) => l !== staged.lowers[i].source)) {
    throw new Error(`userns: the plan's layers (${layers.join(':')}) are not the ones staged (${staged.lowers.map((l) => l.source).join(':')})`);
  }
  overlay.data = overlay.data.replace(m[0], `${m[1]}lowerdir=${staged.lowers.map((l) => l.target).join(':')}`);
  plan.userns = staged;
}

/**
 * A plan's idmaps (by container ids, idmap.ts) for a container with a user
 * namespace: the kernel sees the container's id N as the block's host id
 * start+N, so that is the id an idmapped mount must map.
 */
export function idmapsInBlock(maps: PlanIdmap[] | undefined, range: IdRange): PlanIdmap[] | undefined {
  return maps?.map((m) => ({ path: m.path, uid: [range.uid + m.uid[0], m.uid[1]], gid: [range.gid + m.gid[0], m.gid[1]] }));
}

/** The image's layer directories of a plan, whether or not it has a user namespace. */
export function planLayerDirs(plan: Plan): string[] {
  if (plan.userns) return plan.userns.lowers.map((l) => l.source);
  const m = /lowerdir=([^,]*)/.exec(plan.mounts.find((x) => x.fstype === 'overlay')?.data ?? '');
  return m ? m[1].split(':') : [];
}
