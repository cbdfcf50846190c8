/**
 * The queue between the applier and the file writer's thread: operations on
 * a layer's paths, batched into messages, run in the order queued, at most
 * MAX_PENDING paths and MAX_BYTES_IN_FLIGHT bytes of file data at once. The
 * applier waits on a path (settled) before it touches that path again.
 */
import { fileWriter, type WriteOp } from './filewriter';

/** Background file writes in flight at most. */
const MAX_PENDING = 128;
/** Operations per message to the file writer, and bytes. */
const BATCH_OPS = 64;
/** File contents queued for the file writer at most. */
const MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024;
const BATCH_BYTES = 1024 * 1024;

export class WriteQueue {
  /** Background writes by relative path. */
  private readonly pending = new Map<string, Promise<void>>();
  /** Small files queued for the file writer, not sent yet. */
  private batch: Array<{ op: WriteOp; resolve: () => void; reject: (err: unknown) => void }> = [];
  private batchBytes = 0;
  /** File contents queued or being written by the file writer. */
  private bytesInFlight = 0;
  private flushScheduled = false;
  /** The first background write that failed. */
  error: unknown;

  /** Runs `task` in the background for `rel`, after at most MAX_PENDING others. */
  async background(rel: string, task: () => Promise<void>): Promise<void> {
    while (this.pending.size >= MAX_PENDING || this.bytesInFlight >= MAX_BYTES_IN_FLIGHT) {
      this.flushSmallFiles();
      await Promise.race(this.pending.values());
    }
    // A path may have several operations queued (mkdir, then its owner and mode): the writer
    // runs them in order, so waiting for the last one is waiting for all.
    const done = (): void => {
      if (this.pending.get(rel) === p) this.pending.delete(rel);
    };
    const p: Promise<void> = task().then(done, (err: unknown) => {
      done();
      this.error ??= err;
    });
    this.pending.set(rel, p);
  }

  /** Queues `op` on `rel` for the file writer, in archive order. */
  enqueue(rel: string, op: WriteOp): Promise<void> {
    return this.background(rel, () => this.queueOp(op));
  }

  /** Waits for a background write to `rel`, if there is one. */
  async settled(rel: string): Promise<void> {
    const p = this.pending.get(rel);
    if (!p) return;
    this.flushSmallFiles();
    await p;
  }

  /** Waits for every background write; rethrows the first failure. */
  async drain(): Promise<void> {
    while (this.pending.size) {
      this.flushSmallFiles();
      await Promise.all(this.pending.values());
    }
    if (this.error) throw this.error;
  }

  /** Queues `op` for the file writer; resolves when it is done (or rejects with why not). */
  private queueOp(op: WriteOp): Promise<void> {
    const bytes = 'data' in op ? op.data.length : 0;
    this.bytesInFlight += bytes;
    const done = new Promise<void>((resolve, reject) => {
      this.batch.push({ op, resolve, reject });
      this.batchBytes += bytes;
      if (this.batch.length >= BATCH_OPS || this.batchBytes >= BATCH_BYTES) this.flushSmallFiles();
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        // Whatever is queued goes as soon as the archive waits for input.
        setImmediate(() => this.flushSmallFiles());
      }
    });
    return done.finally(() => (this.bytesInFlight -= bytes));
  }

  private flushSmallFiles(): void {
    this.flushScheduled = false;
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    fileWriter()
      .write(batch.map((b) => b.op))
      .then(
        (errors) => batch.forEach((b, i) => (errors[i] ? b.reject(errors[i]) : b.resolve())),
        (err: unknown) => batch.forEach((b) => b.reject(err)),
      );
  }
}
