/**
 * Streams a layer blob into a directory in one pass:
 *
 *   blob bytes → sha256 (digest) + tee to the store's ingest
 *              → gunzip | zstd | plain → sha256 (diff-id)   layerstream.ts
 *              → tar headers and data                        tar.ts
 *              → files, checked and placed                   applier.ts
 */
import type { Readable } from 'node:stream';
import { CancelledError, InvalidLayerError, UnsafeLayerError } from './errors';
import { Applier } from './applier';
import { layerStream } from './layerstream';
import { TarReader } from './tar';
import type { Compression } from './types';

export { cleanEntryName } from './applier';
export { coalesce, zstdDecompressor } from './layerstream';

export interface UnpackOptions {
  compression: Compression;
  /** Names the layer in errors, e.g. its digest. */
  label?: string;
  /** Receives every compressed chunk, in order, before it is decompressed (the store's ingest). */
  sink?: (chunk: Buffer) => Promise<void>;
  /** Called with the number of compressed bytes consumed so far. */
  onProgress?: (bytes: number) => void;
  /** Compressed bytes that precede `source` (a resumed ingest's), counted for progress only. */
  startOffset?: number;
  /** Refuse more compressed bytes than this (the descriptor's size). */
  maxCompressedSize?: number;
  /** Refuse entries larger than this; default 64 GiB. */
  maxEntrySize?: number;
  signal?: AbortSignal;
}

export interface UnpackResult {
  /** sha256 of the compressed bytes that went through. */
  digest: string;
  compressedSize: number;
  /** sha256 of the uncompressed tar stream. */
  diffId: string;
  /** Length of the uncompressed tar stream. */
  tarSize: number;
  /** Sum of regular file sizes. */
  size: number;
  entries: number;
}

const DEFAULT_MAX_ENTRY = 64 * 1024 ** 3;

/**
 * Unpacks `source` (the layer blob's bytes) into `dest`, an empty directory.
 * Verifies nothing itself: it measures digest, diff-id and sizes and returns
 * them, and the caller compares them with what the manifest and config say
 * before making the directory visible.
 */
export async function unpackLayer(source: Readable | AsyncIterable<Uint8Array>, dest: string, opts: UnpackOptions): Promise<UnpackResult> {
  const label = opts.label ?? 'layer';
  const maxEntry = opts.maxEntrySize ?? DEFAULT_MAX_ENTRY;
  if (opts.signal?.aborted) throw new CancelledError(label);
  let failure: unknown;
  const stream = layerStream(source, { ...opts, label }, (err) => fail(err));
  const fail = (err: unknown): void => {
    failure ??= err;
    stream.destroy();
  };
  const onAbort = (): void => fail(new CancelledError(label));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const applier = new Applier(dest, label, maxEntry);
  try {
    for await (const entry of new TarReader(stream.tar)) {
      if (failure) break;
      await applier.apply(entry);
    }
    if (failure) throw failure;
    await applier.finish();
  } catch (err) {
    const first = failure;
    fail(err);
    // No write may still land in the directory the caller is about to remove.
    await applier.drain().catch(() => undefined);
    await new Promise((r) => setImmediate(r));
    throw describeFailure(first ?? err, label);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  return { ...stream.measured(), size: applier.fileBytes, entries: applier.entries };
}

/**
 * Names the layer in every failure. The tar reader's errors are typed and
 * say where in the archive they were.
 */
function describeFailure(err: unknown, label: string): unknown {
  if (err instanceof UnsafeLayerError) {
    return err.message.startsWith(label) ? err : new UnsafeLayerError(`${label}: ${err.message}`, err.entry, { cause: err });
  }
  if (err instanceof CancelledError) return err;
  if (err instanceof InvalidLayerError) {
    return err.message.startsWith(label) ? err : new InvalidLayerError(`${label}: ${err.message}`, { cause: err });
  }
  if (!(err instanceof Error) || 'code' in err === false || typeof (err as { code: unknown }).code !== 'string') {
    const msg = err instanceof Error ? err.message : String(err);
    return new InvalidLayerError(`${label}: ${msg}`, { cause: err });
  }
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code.startsWith('Z_')) return new InvalidLayerError(`${label}: corrupt compressed data: ${err.message}`, { cause: err });
  return err;
}

