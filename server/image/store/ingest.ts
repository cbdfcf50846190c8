/**
 * Ingest: bytes stream into tmp/ while hashed, and `commit` proves them
 * (size and digest) before renaming them into blobs/sha256/<hex>. Nothing is
 * visible under a digest it has not proven. An interrupted ingest leaves
 * `tmp/<hex>.partial`, which the next ingest of that digest resumes.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { InvalidArgumentError } from '../../errors';
import { DigestMismatchError, SizeMismatchError } from '../errors';
import { assertDigest, digestHex } from '../reference';
import type { StoreLayout } from './layout';
import type { Leases } from './leases';

/** Writes in flight at most per ingest (each one chunk, positional). */
const MAX_INGEST_WRITES = 8;

/**
 * Streams bytes into tmp/ while hashing them; `commit` proves and publishes
 * them. Writes are positional and several may be in flight, so the bytes
 * flowing on to the unpacker never wait for the disk; `commit` and `abort`
 * wait for all of them.
 */
export class BlobWriter {
  private hash: Hash | undefined;
  private handle: fs.FileHandle | undefined;
  private written: number;
  private done = false;
  private readonly writes = new Set<Promise<void>>();
  private writeError: unknown;

  /** @internal use Ingests.ingest (ImageStore.ingest) */
  constructor(
    private readonly target: string,
    private readonly release: () => void,
    readonly digest: string,
    readonly expectedSize: number,
    readonly tmpPath: string,
    handle: fs.FileHandle,
    hash: Hash | undefined,
    offset: number,
  ) {
    this.handle = handle;
    this.hash = hash;
    this.written = offset;
  }

  /** Bytes already in the ingest (a resumed partial download starts above 0). */
  get offset(): number {
    return this.written;
  }

  /** The bytes of a resumed partial ingest, to replay through an unpacker. */
  partial(): Readable | undefined {
    const n = this.written;
    return n > 0 ? createReadStream(this.tmpPath, { start: 0, end: n - 1 }) : undefined;
  }

  /**
   * Appends `chunk` (kept by reference until written: the caller must not
   * reuse it); refuses content longer than the descriptor says. Resolves once
   * the write is queued, waiting only when MAX_INGEST_WRITES are in flight.
   */
  async write(chunk: Uint8Array): Promise<void> {
    if (!this.handle) throw new Error(`blob ${this.digest}: ingest already closed`);
    if (this.writeError) throw this.writeError;
    if (this.written + chunk.length > this.expectedSize) {
      throw new SizeMismatchError(`blob ${this.digest}`, this.expectedSize, this.written + chunk.length);
    }
    this.hash?.update(chunk);
    const handle = this.handle;
    let position = this.written;
    this.written += chunk.length;
    const p = (async () => {
      let off = 0;
      while (off < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, off, chunk.length - off, position);
        off += bytesWritten;
        position += bytesWritten;
      }
    })().then(
      () => void this.writes.delete(p),
      (err: unknown) => {
        this.writes.delete(p);
        this.writeError ??= err;
      },
    );
    this.writes.add(p);
    while (this.writes.size >= MAX_INGEST_WRITES) await Promise.race(this.writes);
    if (this.writeError) throw this.writeError;
  }

  private async settle(): Promise<void> {
    while (this.writes.size) await Promise.all(this.writes);
  }

  /**
   * Verifies size and digest and renames the ingest to blobs/sha256/<hex>.
   * An ingest opened with `{ hash: false }` takes the digest its caller
   * measured over exactly the bytes it wrote (and replayed) as `measured`.
   * On a mismatch the ingest is deleted and DigestMismatchError/SizeMismatchError thrown.
   *
   * The blob is not fsynced. A kill at any moment leaves the page cache, so
   * the renamed file is whole; only a power loss or kernel crash could leave
   * it short or zeroed under its digest name, and no reader trusts a blob
   * for that: unpacking one from disk (pull.ts) measures its digest while
   * streaming and drops it on a mismatch so the next pull downloads it
   * again, and `capsa save` checks the diff-id of what it
   * reads. The unpacked layer, not
   * this blob, is what containers use, and it is published the same way
   * (rename, no fsync). Syncing here cost a second write-out of every
   * compressed byte on the pull's critical path.
   */
  async commit(measured?: string): Promise<void> {
    if (this.done) return;
    const handle = this.handle;
    if (!handle) throw new Error(`blob ${this.digest}: ingest already closed`);
    try {
      await this.settle();
      if (this.writeError) throw this.writeError;
      if (this.written !== this.expectedSize) {
        throw new SizeMismatchError(`blob ${this.digest}`, this.expectedSize, this.written);
      }
      const actual = this.hash ? 'sha256:' + this.hash.digest('hex') : measured;
      if (actual === undefined) throw new Error(`blob ${this.digest}: ingest opened without hashing needs the measured digest`);
      if (actual !== this.digest) throw new DigestMismatchError(`blob ${this.digest}`, this.digest, actual);
      await handle.close();
      this.handle = undefined;
      await fs.rename(this.tmpPath, this.target);
      this.done = true;
    } catch (err) {
      await this.abort(false);
      throw err;
    } finally {
      this.release();
    }
  }

  /**
   * Closes the ingest. With `keepPartial` the bytes written so far stay in
   * tmp/ so the next pull resumes with a Range request.
   */
  async abort(keepPartial: boolean): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.settle();
    const handle = this.handle;
    this.handle = undefined;
    // Closing only releases the descriptor; the file is removed or kept below either way.
    await handle?.close().catch(() => undefined);
    // A failed write leaves a hole: the bytes after it cannot be resumed from.
    if (this.writeError) keepPartial = false;
    if (!keepPartial || this.written === 0) await fs.rm(this.tmpPath, { force: true });
    this.release();
  }
}

/** Who is ingesting what: one ingest per digest at a time in this process. */
export class Ingests {
  private readonly open = new Set<string>();

  constructor(
    private readonly layout: StoreLayout,
    private readonly leases: Leases,
  ) {}

  /**
   * Opens an ingest for the blob `digest` of `size` bytes. If an earlier
   * ingest of it was interrupted, its bytes are kept (re-hashed) and
   * `offset` says where to resume. One ingest per digest at a time. With
   * `hash: false` the writer does not hash (the caller measures the same
   * bytes already, partial ones included) and `commit` takes that digest.
   * While open, the partial file is held by a lease of the ingest's own, so
   * a prune that clears tmp/ leaves it alone.
   */
  async ingest(digest: string, size: number, opts: { hash?: boolean } = {}): Promise<BlobWriter> {
    const hashing = opts.hash ?? true;
    assertDigest(digest);
    if (!Number.isSafeInteger(size) || size < 0) throw new InvalidArgumentError(`blob ${digest}: invalid size ${size}`);
    if (this.open.has(digest)) throw new Error(`blob ${digest}: already being ingested`);
    this.open.add(digest);
    const tmp = path.join(this.layout.tmpDir, `${digestHex(digest)}.partial`);
    const lease = this.leases.create(`ingest of blob ${digest}`);
    const release = (): void => {
      this.open.delete(digest);
      lease.end();
    };
    try {
      await lease.add(this.layout.tmpResource(tmp));
      const hash = hashing ? createHash('sha256') : undefined;
      let offset = 0;
      try {
        const st = await fs.stat(tmp);
        if (st.size > 0 && st.size <= size) {
          if (hash) for await (const chunk of createReadStream(tmp)) hash.update(chunk as Buffer);
          offset = st.size;
        } else {
          await fs.rm(tmp, { force: true });
        }
      } catch {
        // no partial
      }
      const handle = await fs.open(tmp, offset > 0 ? 'a' : 'w', 0o600);
      return new BlobWriter(this.layout.blobPath(digest), release, digest, size, tmp, handle, hash, offset);
    } catch (err) {
      release();
      throw err;
    }
  }
}
