/**
 * Content-addressed blobs: blobs/sha256/<hex>, each one proven to be its
 * digest before it got that name (by an ingest's commit, by `putBlob`'s
 * hash, or by a caller that measured the file it hands over to `adoptBlob`).
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { checkSize, LIMITS, readCapped, type Limit } from '../../limits';
import { DigestMismatchError, ImageNotFoundError } from '../errors';
import { assertDigest } from '../reference';
import type { StoreLayout } from './layout';
import type { Leases } from './leases';

export class Blobs {
  constructor(
    private readonly layout: StoreLayout,
    private readonly leases: Leases,
  ) {}

  /** True when a verified blob with this digest is present. */
  async has(digest: string): Promise<boolean> {
    try {
      return (await fs.stat(this.layout.blobPath(digest))).isFile();
    } catch {
      return false;
    }
  }

  /**
   * A small blob (a config, a manifest) whole. `limit` bounds it: a manifest
   * may name a large layer's digest as its config, and that blob may be here.
   */
  async read(digest: string, limit: Limit = LIMITS.config): Promise<Buffer> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(this.layout.blobPath(digest), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ImageNotFoundError(`blob ${digest} is not in the store`);
      throw err;
    }
    try {
      checkSize(limit, `${limit.name} blob ${digest}`, (await fh.stat()).size);
      return await readCapped(fh.createReadStream({ autoClose: false }), limit, `${limit.name} blob ${digest}`);
    } finally {
      // A read-only descriptor: closing it cannot lose data, and the read's own result or error is what matters.
      await fh.close().catch(() => undefined);
    }
  }

  /** Stores small content (a manifest, a config) after checking it against `expectedDigest`. */
  async put(bytes: Uint8Array, expectedDigest?: string): Promise<string> {
    const digest = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
    if (expectedDigest !== undefined && digest !== expectedDigest) {
      throw new DigestMismatchError(`blob ${expectedDigest}`, expectedDigest, digest);
    }
    if (await this.has(digest)) return digest;
    const tmp = path.join(this.layout.tmpDir, `put-${randomBytes(8).toString('hex')}`);
    await this.leases.with(`put of blob ${digest}`, async (lease) => {
      await lease.add(this.layout.tmpResource(tmp));
      try {
        const fh = await fs.open(tmp, 'wx', 0o600);
        try {
          await fh.writeFile(bytes);
          await fh.sync();
        } finally {
          await fh.close();
        }
        await fs.rename(tmp, this.layout.blobPath(digest));
      } catch (err) {
        await fs.rm(tmp, { force: true });
        throw err;
      }
    });
    return digest;
  }

  /**
   * Publishes `file` (under tmp/, on the store's filesystem) as the blob
   * `digest`. The caller must have measured that digest over exactly the
   * file's bytes while writing it; the file is moved, not copied.
   */
  async adopt(file: string, digest: string): Promise<void> {
    assertDigest(digest);
    if (await this.has(digest)) {
      await fs.rm(file, { force: true });
      return;
    }
    const fh = await fs.open(file, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(file, this.layout.blobPath(digest));
  }

  /** Deletes blob `digest` after its bytes were found not to be that digest (a blob torn by a power loss), so the next pull fetches it again. */
  async dropCorrupt(digest: string): Promise<void> {
    assertDigest(digest);
    await fs.rm(this.layout.blobPath(digest), { force: true });
  }
}
