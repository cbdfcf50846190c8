/**
 * `RUN --mount=type=cache` directories: persistent, one per owner (the
 * caller's uid) and cache id, at `<root>/build/cachemounts/<uid>/<sha256 of
 * the id>/data`, so they survive the helper and are freed by `capsa builder
 * prune`. Their content is never in a layer nor in a cache key (BuildKit's
 * rule: a build must work whatever the cache holds).
 *
 * Sharing, as BuildKit defines it: `shared` lets any number of steps use the
 * directory at once; `locked` makes a second user wait until the first is
 * done; `private` gives a second user a fresh directory while the first
 * holds it (discarded afterwards). The helper is one process, so the
 * bookkeeping is in memory.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BuildStepError } from './steperror';

export interface CacheDirSpec {
  id: string;
  sharing: 'shared' | 'private' | 'locked';
  /** Ids and mode a new directory gets, as the disk holds them. */
  uid: number;
  gid: number;
  mode: number;
}

export interface HeldCacheDir {
  /** The directory to mount. */
  dir: string;
  release(): Promise<void>;
}

interface Slot {
  users: number;
  /** The end of the last locked holder's turn. */
  turn: Promise<void>;
}

export class CacheMounts {
  private static readonly byRoot = new Map<string, CacheMounts>();
  private readonly slots = new Map<string, Slot>();

  private constructor(private readonly root: string) {}

  /** The one instance of a Capsa root: every connection's builds must see the same holders. */
  static forRoot(root: string): CacheMounts {
    let c = CacheMounts.byRoot.get(root);
    if (!c) CacheMounts.byRoot.set(root, (c = new CacheMounts(root)));
    return c;
  }

  /** Where an owner's cache directories live. */
  ownerDir(uid: number): string {
    return path.join(this.root, 'build', 'cachemounts', String(uid));
  }

  /**
   * Takes the cache directory `spec.id` of `uid`, creating it (with
   * `init` filling it first, for `from=`) when new; `scratch` gives a fresh
   * directory for a `private` user when the cache is taken.
   */
  async acquire(uid: number, spec: CacheDirSpec, init: (dir: string) => Promise<void>, scratch: () => Promise<string>, signal?: AbortSignal): Promise<HeldCacheDir> {
    const hash = createHash('sha256').update(spec.id).digest('hex');
    const key = `${uid}/${hash}`;
    let slot = this.slots.get(key);
    if (!slot) this.slots.set(key, (slot = { users: 0, turn: Promise.resolve() }));
    const s = slot;
    if (spec.sharing === 'private' && s.users > 0) {
      const dir = path.join(await scratch(), 'cache');
      await this.makeDir(dir, spec, init);
      return { dir, release: () => fs.promises.rm(path.dirname(dir), { recursive: true, force: true }) };
    }
    let endTurn: () => void = () => undefined;
    let before = Promise.resolve();
    if (spec.sharing === 'locked') {
      before = s.turn;
      const mine = new Promise<void>((resolve) => (endTurn = resolve));
      // the next in line waits for this turn and every one before it, even when this one is cancelled while waiting
      s.turn = before.then(() => mine);
    }
    s.users++;
    const done = (): void => {
      s.users--;
      endTurn();
      if (s.users === 0) this.slots.delete(key);
    };
    try {
      if (spec.sharing === 'locked') await waitOrAbort(before, signal, spec.id);
      const base = path.join(this.ownerDir(uid), hash);
      const dir = path.join(base, 'data');
      if (!fs.existsSync(dir)) {
        await fs.promises.mkdir(base, { recursive: true, mode: 0o700 });
        await fs.promises.writeFile(path.join(base, 'id'), spec.id + '\n', { mode: 0o600 });
        // made aside and renamed: a helper stopped half way leaves no half-made cache
        const tmp = path.join(base, `data.new-${process.pid}-${Date.now()}`);
        await this.makeDir(tmp, spec, init);
        try {
          await fs.promises.rename(tmp, dir);
        } catch {
          await fs.promises.rm(tmp, { recursive: true, force: true }); // another step made it first
        }
      }
      return { dir, release: async () => done() };
    } catch (err) {
      done();
      throw err;
    }
  }

  /** Removes every cache directory of `uid` (`capsa builder prune`); returns how many there were. */
  async prune(uid: number): Promise<number> {
    const dir = this.ownerDir(uid);
    let names: string[];
    try {
      names = await fs.promises.readdir(dir);
    } catch {
      return 0;
    }
    let n = 0;
    for (const name of names) {
      // one in use stays: a running step still has it mounted
      if (this.slots.has(`${uid}/${name}`)) continue;
      await fs.promises.rm(path.join(dir, name), { recursive: true, force: true });
      n++;
    }
    return n;
  }

  private async makeDir(dir: string, spec: CacheDirSpec, init: (dir: string) => Promise<void>): Promise<void> {
    await fs.promises.mkdir(dir, { recursive: true });
    await init(dir);
    await fs.promises.chown(dir, spec.uid, spec.gid);
    await fs.promises.chmod(dir, spec.mode);
  }
}

/** `p`, or a rejection once `signal` aborts (a cancelled build stops waiting for a locked cache). */
function waitOrAbort(p: Promise<void>, signal: AbortSignal | undefined, id: string): Promise<void> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new BuildStepError(`the build was cancelled while waiting for cache mount ${JSON.stringify(id)}`));
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => reject(new BuildStepError(`the build was cancelled while waiting for cache mount ${JSON.stringify(id)}`));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}
