/**
 * The clean-ups that run after a container's exit was reported (an --rm
 * container's network, cgroup, directory and id block: Lifecycle.onExit).
 * Helper shutdown waits for them (drain); a create that finds no id block or
 * no address free waits for them and tries once more (retry), as what they
 * give back may be just what it lacks.
 */
import { ConflictError } from '../../errors';

export class PendingRemovals {
  private readonly running = new Set<Promise<void>>();

  get size(): number {
    return this.running.size;
  }

  track(p: Promise<void>): void {
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  }

  async drain(): Promise<void> {
    while (this.running.size) await Promise.all([...this.running]);
  }

  /**
   * `make`, tried again once the pending removals are done when it failed
   * for want of something they give back (`scarce`): by default the network
   * manager's ConflictError (no address free), whose failed setup leaves
   * nothing behind, so a second try starts clean.
   */
  async retry<T>(make: () => Promise<T>, scarce: (err: unknown) => boolean = (err) => err instanceof ConflictError): Promise<T> {
    try {
      return await make();
    } catch (err) {
      if (!scarce(err) || !this.running.size) throw err;
      await this.drain();
      return make();
    }
  }
}
