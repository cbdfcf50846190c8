/**
 * Leases, in containerd's model: work in progress (a pull, a load, a save)
 * holds a lease on every blob, layer and temporary file it creates or relies
 * on before an image record references them. Garbage collection keeps what
 * an image record or a live lease references and deletes the rest; it never
 * skips because other work runs. A lease ends when its work ends; what it
 * held is then kept only if a record references it.
 *
 * Resources are strings: `blob:<digest>`, `layer:<diff-id>`,
 * `tmp:<path relative to the store root>`. Leases live in this process
 * only, like the work they protect: a helper that restarts has no work in
 * progress, and recovery at start clears what the old one left half-done.
 */

export const blobResource = (digest: string): string => `blob:${digest}`;
export const layerResource = (diffId: string): string => `layer:${diffId}`;

export class Lease {
  private readonly held = new Set<string>();
  private ended = false;

  /** @internal use Leases.create */
  constructor(
    private readonly leases: Leases,
    /** What the lease is for, in messages: `pull of docker.io/library/busybox:latest`. */
    readonly label: string,
  ) {}

  /**
   * Holds `resource` until the lease ends. Resolves once no collection is
   * deleting it any more, so a presence check made after this tells the
   * truth for as long as the lease lasts.
   */
  async add(resource: string): Promise<void> {
    if (this.ended) throw new Error(`${this.label}: lease already ended, cannot hold ${resource}`);
    this.held.add(resource);
    await this.leases.settled(resource);
  }

  blob(digest: string): Promise<void> {
    return this.add(blobResource(digest));
  }

  layer(diffId: string): Promise<void> {
    return this.add(layerResource(diffId));
  }

  /** Lets go of one resource before the lease ends (a temporary file that is gone). */
  drop(resource: string): void {
    this.held.delete(resource);
  }

  has(resource: string): boolean {
    return !this.ended && this.held.has(resource);
  }

  get resources(): string[] {
    return [...this.held];
  }

  get active(): boolean {
    return !this.ended;
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.held.clear();
    this.leases._forget(this);
  }
}

export class Leases {
  private readonly live = new Set<Lease>();
  /** Resource → the deletion a collection is carrying out on it. */
  private readonly deleting = new Map<string, Promise<void>>();

  create(label: string): Lease {
    const lease = new Lease(this, label);
    this.live.add(lease);
    return lease;
  }

  /** Runs `fn` under a fresh lease, ended however `fn` ends. */
  async with<T>(label: string, fn: (lease: Lease) => Promise<T>): Promise<T> {
    const lease = this.create(label);
    try {
      return await fn(lease);
    } finally {
      lease.end();
    }
  }

  /** True when a live lease holds `resource`. */
  held(resource: string): boolean {
    for (const l of this.live) if (l.has(resource)) return true;
    return false;
  }

  /** Labels of the live leases that hold `resource`. */
  holders(resource: string): string[] {
    return [...this.live].filter((l) => l.has(resource)).map((l) => l.label);
  }

  /** The live leases, for diagnostics and tests. */
  list(): Array<{ label: string; resources: string[] }> {
    return [...this.live].map((l) => ({ label: l.label, resources: l.resources }));
  }

  /**
   * For garbage collection: deletes `resource` with `rm` unless a lease
   * holds it, and returns whether it did. The check and the start of the
   * deletion happen in the same turn, and a lease taken meanwhile waits
   * (Lease.add) until the deletion is over, so nobody trusts a resource
   * that is going away.
   */
  async deleteUnlessHeld(resource: string, rm: () => Promise<void>): Promise<boolean> {
    if (this.held(resource)) return false;
    const running = rm().finally(() => this.deleting.delete(resource));
    // The marker only orders waiters; the deletion's own failure reaches the caller through `running`.
    this.deleting.set(resource, running.then(noop, noop));
    await running;
    return true;
  }

  /** Resolves once no deletion of `resource` is in progress. */
  settled(resource: string): Promise<void> {
    return this.deleting.get(resource) ?? Promise.resolve();
  }

  /** @internal */
  _forget(lease: Lease): void {
    this.live.delete(lease);
  }
}

function noop(): void {}
