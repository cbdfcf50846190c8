/**
 * The byte side of unpacking a layer: the blob's chunks joined into large
 * pieces, hashed (digest), teed to the store's ingest, decompressed, and
 * hashed again (diff-id). What comes out is the tar stream.
 */
import { createHash } from 'node:crypto';
import { pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { InvalidLayerError } from './errors';
import type { Compression } from './types';

/**
 * Input pieces for hashing, the store and the decompressor, and the gzip
 * decompressor's output chunk. Each piece is a pool round trip and a pass
 * through every stage on the main thread, which the layers pulled side by
 * side share: 300 MB of incompressible layers took 1.96 s with 1 MiB pieces
 * and 1.75 s with 4 MiB (curl + tar -x 1.58 s; bench/run-pull.sh).
 */
const COALESCE_BYTES = 4 * 1024 * 1024;
const INFLATE_CHUNK = 4 * 1024 * 1024;

export interface LayerStreamOptions {
  compression: Compression;
  label: string;
  sink?: (chunk: Buffer) => Promise<void>;
  onProgress?: (bytes: number) => void;
  startOffset?: number;
  maxCompressedSize?: number;
}

/** The tar stream of a layer blob, and what was measured on the way. */
export interface LayerStream {
  /** The uncompressed tar bytes. */
  tar: Readable;
  /** Stops every stage. */
  destroy(): void;
  /** Call once `tar` has ended. */
  measured(): { digest: string; compressedSize: number; diffId: string; tarSize: number };
}

/** Builds the pipeline; `onError` hears the first failure of any stage. */
export function layerStream(source: Readable | AsyncIterable<Uint8Array>, opts: LayerStreamOptions, onError: (err: unknown) => void): LayerStream {
  const { label } = opts;
  const compressedHash = createHash('sha256');
  const diffHash = createHash('sha256');
  let compressedSize = 0;
  let uncompressedSize = 0;

  const tapCompressed = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      compressedSize += chunk.length;
      if (opts.maxCompressedSize !== undefined && compressedSize > opts.maxCompressedSize) {
        cb(new InvalidLayerError(`${label}: blob is larger than its descriptor's ${opts.maxCompressedSize} bytes`));
        return;
      }
      compressedHash.update(chunk);
      opts.onProgress?.((opts.startOffset ?? 0) + compressedSize);
      if (opts.sink) opts.sink(chunk).then(() => cb(null, chunk), cb);
      else cb(null, chunk);
    },
  });
  const tapUncompressed = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      uncompressedSize += chunk.length;
      diffHash.update(chunk);
      cb(null, chunk);
    },
  });
  const input = source instanceof Readable ? source : Readable.from(source, { objectMode: false });
  const stages: NodeJS.ReadWriteStream[] = [coalesce(COALESCE_BYTES), tapCompressed];
  // zlib inflates on the libuv pool; 16 KiB output chunks (its default) cost
  // one pool round trip and one trip through every stage below each.
  if (opts.compression === 'gzip') stages.push(zlib.createGunzip({ chunkSize: INFLATE_CHUNK }));
  else if (opts.compression === 'zstd') stages.push(zstdDecompressor());
  stages.push(tapUncompressed);
  const tar = pipeline([input, ...stages] as unknown as [Readable, ...NodeJS.ReadWriteStream[]], (err) => {
    if (err) onError(err);
  }) as unknown as Readable;
  return {
    tar,
    destroy() {
      input.destroy();
      for (const s of stages) (s as unknown as Readable).destroy();
    },
    measured: () => ({
      digest: 'sha256:' + compressedHash.digest('hex'),
      compressedSize,
      diffId: 'sha256:' + diffHash.digest('hex'),
      tarSize: uncompressedSize,
    }),
  };
}

/**
 * Joins the network's small chunks (16–64 KiB) into pieces of up to `limit`
 * bytes: every chunk costs a hash update, a store write and a zlib round
 * trip through the libuv pool, whatever its size. What arrived within one
 * turn of the event loop goes on together, so a slow registry's bytes are
 * never held back.
 */
export function coalesce(limit: number): Transform {
  let parts: Buffer[] = [];
  let size = 0;
  let scheduled = false;
  let out: Transform;
  const flush = (): void => {
    scheduled = false;
    if (size === 0) return;
    const chunk = parts.length === 1 ? parts[0] : Buffer.concat(parts, size);
    parts = [];
    size = 0;
    out.push(chunk);
  };
  out = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      parts.push(chunk);
      size += chunk.length;
      if (size >= limit) flush();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
      cb();
    },
    flush(cb: TransformCallback) {
      flush();
      cb();
    },
  });
  return out;
}

/** A node Transform around fzstd's streaming decompressor. */
export function zstdDecompressor(): Transform {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fzstd = require('fzstd') as typeof import('fzstd');
  let out: Transform;
  const d = new fzstd.Decompress((data) => {
    if (data.length) out.push(Buffer.from(data.buffer, data.byteOffset, data.length));
  });
  let seen = 0;
  out = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      try {
        // fzstd keeps a reference to the chunk; copy since streams reuse buffers.
        d.push(new Uint8Array(chunk));
        cb();
      } catch (err) {
        cb(new InvalidLayerError(`corrupt zstd data: ${(err as Error).message}`, { cause: err }));
      }
    },
    flush(cb) {
      try {
        if (seen === 0) throw new Error('empty stream');
        d.push(new Uint8Array(0), true);
        cb();
      } catch (err) {
        cb(new InvalidLayerError(`corrupt zstd data: ${(err as Error).message}`, { cause: err }));
      }
    },
  });
  return out;
}
