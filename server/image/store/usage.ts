/** Disk use of the store, as `docker system df` reports it for images. */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { StoreLayout } from './layout';
import type { Layers } from './layers';
import type { ImageRecord } from './names';

export interface DiskUsage {
  images: { count: number; active: number; size: number; reclaimable: number };
  layers: { count: number; size: number };
  blobs: { count: number; size: number };
}

/**
 * With `onlyReferenced`, the layers and blobs counted are those `images`
 * reference (one namespace's share of the store, which tells nothing of the
 * others'); without, every layer and blob in the store.
 */
export async function diskUsage(
  layout: StoreLayout,
  layers: Layers,
  images: ImageRecord[],
  inUse: (id: string) => boolean,
  opts: { onlyReferenced?: boolean } = {},
): Promise<DiskUsage> {
  const refLayers = new Set(images.flatMap((r) => r.diffIds));
  const refBlobs = new Set(images.flatMap((r) => [r.id, ...r.manifestDigests, ...r.layers.map((l) => l.digest), ...r.repoDigests.map((d) => d.slice(d.lastIndexOf('@') + 1))]));
  const layerSizes = new Map<string, number>();
  for (const name of await fs.readdir(layout.layerDir)) {
    if (!/^[0-9a-f]{64}$/.test(name)) continue;
    if (opts.onlyReferenced && !refLayers.has(`sha256:${name}`)) continue;
    const info = await layers.info(`sha256:${name}`);
    layerSizes.set(`sha256:${name}`, info?.size ?? 0);
  }
  let blobCount = 0;
  let blobSize = 0;
  for (const hex of await fs.readdir(layout.blobDir)) {
    if (opts.onlyReferenced && !refBlobs.has(`sha256:${hex}`)) continue;
    // A blob collected between readdir and stat is simply not counted.
    const st = await fs.stat(path.join(layout.blobDir, hex)).catch(() => undefined);
    if (!st) continue;
    blobCount++;
    blobSize += st.size;
  }
  const usedByActive = new Set<string>();
  for (const r of images) if (inUse(r.id)) r.diffIds.forEach((d) => usedByActive.add(d));
  let reclaimable = 0;
  for (const [d, s] of layerSizes) if (!usedByActive.has(d)) reclaimable += s;
  let total = 0;
  for (const s of layerSizes.values()) total += s;
  return {
    images: { count: images.length, active: images.filter((r) => inUse(r.id)).length, size: total, reclaimable },
    layers: { count: layerSizes.size, size: total },
    blobs: { count: blobCount, size: blobSize },
  };
}
