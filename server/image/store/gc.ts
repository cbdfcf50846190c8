/**
 * Garbage collection: deletes the blobs and layers no image record uses
 * (records are shared by every namespace of names) and no lease holds, and
 * (with `tmp`) the temporary files no lease holds. It never skips because a
 * pull or a load runs: their work in progress is
 * leased (./leases), so collection deletes exactly what nobody needs and
 * reports what it kept only because a lease held it.
 *
 * Marking and the renames that unpublish content happen under the index's
 * lock, so an image cannot be recorded (and its lease end) between the
 * moment collection reads the records and the moment it deletes: the new
 * record would be missed and its content taken. The slow part, removing the
 * unpublished layer trees, happens after the lock is released.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { StoreLayout } from './layout';
import { blobResource, layerResource, type Leases } from './leases';
import type { Names } from './names';
import { removeTree } from './layers';

export interface GcResult {
  /** Blob and layer digests deleted. */
  deleted: string[];
  /** Unreferenced blob and layer digests kept because a lease in progress holds them. */
  leased: string[];
  /** Temporary files and directories (relative to the store root) kept because a lease holds them; only with `tmp`. */
  leasedTmp: string[];
}

export async function collectGarbage(layout: StoreLayout, names: Names, leases: Leases, opts: { tmp?: boolean } = {}): Promise<GcResult> {
  const result: GcResult = { deleted: [], leased: [], leasedTmp: [] };
  const doomed = await names.exclusive(async (index) => {
    const keepBlobs = new Set<string>();
    const keepLayers = new Set<string>();
    // the roots are every shared record, whichever namespaces hold it: content is shared, names are not
    for (const r of Object.values(index.images)) {
      keepBlobs.add(r.id);
      for (const m of r.manifestDigests) keepBlobs.add(m);
      for (const l of r.layers) keepBlobs.add(l.digest);
      for (const d of r.diffIds) keepLayers.add(d);
    }
    for (const ns of Object.values(index.namespaces)) {
      for (const held of Object.values(ns.images)) for (const d of held.repoDigests) keepBlobs.add(d.slice(d.lastIndexOf('@') + 1));
    }
    for (const hex of await fs.readdir(layout.blobDir)) {
      const digest = `sha256:${hex}`;
      if (keepBlobs.has(digest)) continue;
      const gone = await leases.deleteUnlessHeld(blobResource(digest), () => fs.rm(path.join(layout.blobDir, hex), { force: true }));
      (gone ? result.deleted : result.leased).push(digest);
    }
    const trees: string[] = [];
    for (const name of await fs.readdir(layout.layerDir)) {
      const json = name.endsWith('.json');
      const hex = json ? name.slice(0, -5) : name;
      const diffId = `sha256:${hex}`;
      if (!/^[0-9a-f]{64}$/.test(hex) || keepLayers.has(diffId)) continue;
      if (json) {
        // The record goes with its layer; a layer being unpacked writes its record first, under its lease.
        if (!leases.held(layerResource(diffId))) await fs.rm(path.join(layout.layerDir, name), { force: true });
        continue;
      }
      // Rename first so a half-deleted layer is never visible under its diff-id.
      const tree = path.join(layout.layersRoot, `tmp-del-${randomBytes(6).toString('hex')}`);
      const gone = await leases.deleteUnlessHeld(layerResource(diffId), () => fs.rename(path.join(layout.layerDir, name), tree));
      if (gone) trees.push(tree);
      (gone ? result.deleted : result.leased).push(diffId);
    }
    return trees;
  });
  for (const tree of doomed) await removeTree(tree);
  if (opts.tmp) {
    for (const name of await fs.readdir(layout.layersRoot)) {
      if (!name.startsWith('tmp-')) continue;
      const p = path.join(layout.layersRoot, name);
      if (!(await leases.deleteUnlessHeld(layout.tmpResource(p), () => removeTree(p)))) result.leasedTmp.push(path.relative(layout.root, p));
    }
    for (const name of await fs.readdir(layout.tmpDir)) {
      const p = path.join(layout.tmpDir, name);
      if (!(await leases.deleteUnlessHeld(layout.tmpResource(p), () => fs.rm(p, { force: true, recursive: true })))) result.leasedTmp.push(path.relative(layout.root, p));
    }
  }
  return result;
}

/**
 * Removes what a crash can leave behind: half-unpacked layer directories,
 * half-written small blobs and index files. Partial blob downloads
 * (`tmp/<hex>.partial`) are kept: the next pull resumes them. Meant for
 * helper start, before any pull; anything a lease holds is left alone all
 * the same.
 */
export async function recover(layout: StoreLayout, leases: Leases): Promise<void> {
  for (const name of await fs.readdir(layout.layersRoot)) {
    const p = path.join(layout.layersRoot, name);
    if (name.startsWith('tmp-')) await leases.deleteUnlessHeld(layout.tmpResource(p), () => removeTree(p));
  }
  for (const name of await fs.readdir(layout.tmpDir)) {
    const p = path.join(layout.tmpDir, name);
    if (!/^[0-9a-f]{64}\.partial$/.test(name)) await leases.deleteUnlessHeld(layout.tmpResource(p), () => fs.rm(p, { recursive: true, force: true }));
  }
  for (const name of await fs.readdir(layout.root)) {
    if (name.startsWith('.images.json.') && name.endsWith('.tmp')) await fs.rm(path.join(layout.root, name), { force: true });
  }
}
