/**
 * Where everything lives under the store's root. One place names the paths,
 * so ingest, blobs, layers, names, GC and recovery agree on them:
 *
 *   blobs/sha256/<hex>              manifests, configs, compressed layers
 *   layers/sha256/<diff-id hex>/    unpacked layers (overlay lowerdirs)
 *   layers/sha256/<diff-id hex>.json  { diffId, digest, size } of that layer
 *   layers/tmp-XXXX/                layers being unpacked (tmp-del-* being deleted)
 *   tmp/                            blob ingests (`<hex>.partial` resumes), staging
 *   images.json                     tags → manifest digest, image records
 */
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError } from '../../errors';
import { digestHex } from '../reference';

export class StoreLayout {
  readonly root: string;

  constructor(root: string) {
    if (!path.isAbsolute(root)) throw new InvalidArgumentError(`store root must be an absolute path, got ${JSON.stringify(root)}`);
    this.root = root;
    for (const d of ['blobs/sha256', 'layers/sha256', 'tmp']) mkdirSync(path.join(root, d), { recursive: true, mode: 0o700 });
  }

  get blobDir(): string {
    return path.join(this.root, 'blobs', 'sha256');
  }

  blobPath(digest: string): string {
    return path.join(this.blobDir, digestHex(digest));
  }

  /** Parent of the unpacked layers and of their temporary directories. */
  get layersRoot(): string {
    return path.join(this.root, 'layers');
  }

  get layerDir(): string {
    return path.join(this.layersRoot, 'sha256');
  }

  layerPath(diffId: string): string {
    return path.join(this.layerDir, digestHex(diffId));
  }

  layerInfoPath(diffId: string): string {
    return this.layerPath(diffId) + '.json';
  }

  get tmpDir(): string {
    return path.join(this.root, 'tmp');
  }

  get indexPath(): string {
    return path.join(this.root, 'images.json');
  }

  /** `tmp:<path relative to the root>`: the lease resource naming a temporary file or directory. */
  tmpResource(p: string): string {
    return `tmp:${path.relative(this.root, p)}`;
  }
}
