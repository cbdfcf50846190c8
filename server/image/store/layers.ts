/**
 * Unpacked layers: layers/sha256/<diff-id hex>/ (an overlay lowerdir) and
 * its record layers/sha256/<diff-id hex>.json. A layer is unpacked into a
 * fresh layers/tmp-* directory and renamed to its diff-id only once the
 * uncompressed stream's sha256 matched.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../../util/atomic';
import { LayerDiffIdMismatchError } from '../errors';
import { assertDigest } from '../reference';
import type { StoreLayout } from './layout';
import type { Lease, Leases } from './leases';

export interface LayerInfo {
  diffId: string;
  /** Compressed digest it was unpacked from. */
  digest?: string;
  /** Sum of the sizes of its regular files. */
  size: number;
  /** Length of its uncompressed tar stream (recorded since archives need it up front). */
  tarSize?: number;
}

/** What an unpacker measured while filling a layer directory. */
export interface LayerFill {
  diffId: string;
  size: number;
  digest?: string;
  tarSize?: number;
}

export class Layers {
  constructor(
    private readonly layout: StoreLayout,
    private readonly leases: Leases,
  ) {}

  async has(diffId: string): Promise<boolean> {
    try {
      return (await fs.lstat(this.layout.layerPath(diffId))).isDirectory();
    } catch {
      return false;
    }
  }

  async info(diffId: string): Promise<LayerInfo | undefined> {
    try {
      return JSON.parse(await fs.readFile(this.layout.layerInfoPath(diffId), 'utf8')) as LayerInfo;
    } catch {
      return (await this.has(diffId)) ? { diffId, size: 0 } : undefined;
    }
  }

  /**
   * Creates the layer `expectedDiffId`: `fill` unpacks into a fresh
   * temporary directory and returns the diff-id and size it measured; only
   * if the diff-id matches is the directory renamed into place (else
   * LayerDiffIdMismatchError). On any error the temporary directory is
   * removed. The temporary directory is leased while it fills; with `lease`
   * the finished layer is held by it too, until the caller records it.
   */
  async create(expectedDiffId: string, fill: (dir: string) => Promise<LayerFill>, opts: { lease?: Lease } = {}): Promise<LayerInfo> {
    assertDigest(expectedDiffId);
    await opts.lease?.layer(expectedDiffId);
    return this.leases.with(`unpack of layer ${expectedDiffId}`, async (own) => {
      // Its record is written before the rename: held from the start, so a collection meanwhile keeps it.
      await own.layer(expectedDiffId);
      // Named and leased before it exists, so no collection of temporary files can take it.
      const tmp = path.join(this.layout.layersRoot, `tmp-${randomBytes(8).toString('hex')}`);
      await own.add(this.layout.tmpResource(tmp));
      await fs.mkdir(tmp, { mode: 0o700 });
      try {
        // The layer root is the container's `/`: 0755 like every rootfs.
        await fs.chmod(tmp, 0o755);
        const result = await fill(tmp);
        if (result.diffId !== expectedDiffId) throw new LayerDiffIdMismatchError(result.digest ?? expectedDiffId, expectedDiffId, result.diffId);
        const info: LayerInfo = { diffId: expectedDiffId, digest: result.digest, size: result.size, tarSize: result.tarSize };
        await writeFileAtomic(this.layout.layerInfoPath(expectedDiffId), JSON.stringify(info), 0o600);
        try {
          await fs.rename(tmp, this.layout.layerPath(expectedDiffId));
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          // Another process made the same layer meanwhile: theirs is as good as ours.
          if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
          await removeTree(tmp);
        }
        return info;
      } catch (err) {
        await removeTree(tmp);
        throw err;
      }
    });
  }
}

/**
 * Removes a directory tree that may contain read-only directories and files
 * with immutable-looking modes (layers do): fs.rm handles modes as root.
 */
export async function removeTree(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true, maxRetries: 2 });
}
