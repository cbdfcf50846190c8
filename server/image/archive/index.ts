/**
 * Image archives, for moving images without a registry:
 *
 * - `loadArchive` reads a `docker save` archive (manifest.json naming a
 *   config and layer tars per image, also in Docker 25's flavour where those
 *   live under blobs/sha256/) or an OCI image layout archive (oci-layout,
 *   index.json, blobs/sha256/…). The archive is read once, front to back,
 *   staging every entry (./read); its documents are checked against what was
 *   measured (./source); then each image goes through the importer
 *   (../importer), the same one a pull drives, so the diff-ids are proven
 *   the same way. Nothing is recorded until all of an image's content is in
 *   place; the staging directory goes in every case.
 * - `saveArchive` (./save) writes the classic `docker save` layout.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError } from '../../errors';
import { openRegularFile, openRegularFileAs } from '../../util/hostfile';
import type { Caller } from '../../util/peercred';
import { InvalidArchiveError } from '../errors';
import { fetchImage, recordImage } from '../importer';
import { formatReference } from '../reference';
import { ROOT_OWNER, type ImageStore, type Owner } from '../store';
import { stage } from './read';
import { archiveSources } from './source';

export { saveArchive, type SaveOptions, type SaveResult } from './save';

export interface LoadOptions {
  signal?: AbortSignal;
  /** Layers unpacked at once; default 2. */
  concurrency?: number;
  /** Bytes of the archive read so far, and its size. */
  onProgress?: (read: number, total: number) => void;
  /** Whose rights the archive is opened with; absent: the helper's own (a file it chose itself). */
  caller?: Caller;
  /** The namespace the archive's tags land in (default root's): whatever names an archive claims, they are its loader's. */
  owner?: Owner;
}

export interface LoadedImage {
  id: string;
  /** Normalised tag references the archive gave the image (may be empty). */
  references: string[];
}

/** Checks a path a client sent: absolute, lexically clean, no NUL. */
export function checkClientPath(p: unknown, what: string): string {
  if (typeof p !== 'string' || p === '') throw new InvalidArgumentError(`${what} must be a non-empty path`);
  if (p.includes('\0')) throw new InvalidArgumentError(`${what} ${JSON.stringify(p)} contains a NUL byte`);
  if (!path.isAbsolute(p)) throw new InvalidArgumentError(`${what} ${JSON.stringify(p)} must be an absolute path`);
  if (path.normalize(p) !== p.replace(/\/+$/, '') || p.split('/').includes('..')) {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(p)} must be a normalised path (no "..", ".", or "//")`);
  }
  return p;
}

/**
 * Loads every image of the archive at `file` into `store`. Errors:
 * InvalidArchiveError (malformed, incomplete or hostile archive),
 * DigestMismatchError / SizeMismatchError (content that is not what the
 * archive's documents say), UnsafeLayerError (a hostile layer),
 * CancelledError.
 */
export async function loadArchive(store: ImageStore, file: string, opts: LoadOptions = {}): Promise<LoadedImage[]> {
  const label = `archive ${file}`;
  // Never a blocking open: a FIFO, a device or a directory is refused at once
  // (a FIFO without a writer would hold a pool thread, and with it every
  // other client's file operations, for as long as nobody writes).
  const { fh, st } = opts.caller ? await openRegularFileAs(opts.caller, file, label, { nofollow: true }) : await openRegularFile(file, label, { nofollow: true });
  try {
    return await store.withLease(`load of ${label}`, async (lease) => {
      const staging = await store.stagingDir(lease);
      try {
        const entries = await stage(fh, st.size, staging, label, opts);
        const sources = await archiveSources(entries, label);
        if (sources.length === 0) throw new InvalidArchiveError(`${label}: contains no image`);
        const loaded: LoadedImage[] = [];
        for (const source of sources) {
          const fetched = await fetchImage(store, source, { lease, concurrency: opts.concurrency ?? 2, signal: opts.signal, operation: `load of ${source.name}` });
          const image = await recordImage(store, fetched, opts.owner ?? ROOT_OWNER);
          loaded.push({ id: image.id, references: source.tags.map((t) => formatReference(t)) });
        }
        return loaded;
      } finally {
        await fs.rm(staging, { recursive: true, force: true });
      }
    });
  } finally {
    // The archive was only read: closing it cannot lose data, and the load's own outcome is what the caller hears.
    await fh.close().catch(() => undefined);
  }
}
