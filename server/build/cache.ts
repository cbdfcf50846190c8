/**
 * The build cache: step key → the image id that step made, one JSON file a
 * namespace under `<root>/build/cache/<owner>.json`.
 *
 * Per owner, never shared: a key covers the step's inputs, but a result is
 * only as good as whoever ran the step. A user's RUN runs in that user's
 * container and could write anything into its layer; sharing would let the
 * user's result stand in for root's same key (cache poisoning). Each entry
 * names an image record of the owner's namespace, so the layers stay while
 * the entry does; an entry whose image went (image prune) is a miss.
 *
 * Written whole to a temporary file and renamed, so a helper killed
 * mid-write leaves the previous file; it survives helper restarts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export class BuildCache {
  private entries: Map<string, string> | undefined;

  constructor(private readonly file: string) {}

  static forOwner(root: string, owner: number): BuildCache {
    return new BuildCache(path.join(root, 'build', 'cache', `${owner}.json`));
  }

  private load(): Map<string, string> {
    if (this.entries) return this.entries;
    try {
      const o = JSON.parse(fs.readFileSync(this.file, 'utf8')) as { entries?: Record<string, string> };
      this.entries = new Map(Object.entries(o.entries ?? {}).filter(([k, v]) => /^sha256:[0-9a-f]{64}$/.test(k) && /^sha256:[0-9a-f]{64}$/.test(v)));
    } catch {
      // absent or unreadable: an empty cache (a damaged file is rebuilt, never trusted in part)
      this.entries = new Map();
    }
    return this.entries;
  }

  get(key: string): string | undefined {
    return this.load().get(key);
  }

  set(key: string, imageId: string): void {
    this.load().set(key, imageId);
    this.save();
  }

  /** Every image an entry names. */
  images(): string[] {
    return [...new Set(this.load().values())];
  }

  /** Drops every entry; returns how many there were. */
  clear(): number {
    const n = this.load().size;
    this.entries = new Map();
    this.save();
    return n;
  }

  private save(): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ version: 1, entries: Object.fromEntries(this.load()) }), { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }
}
