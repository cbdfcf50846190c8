/**
 * A layer's gzip made of pieces, as pigz makes it: the tar is cut into
 * pieces, each compressed on its own (raw deflate, the previous piece's last
 * 32 KiB as its dictionary, ended by a sync flush so the next starts on a
 * byte), and the pieces joined into one ordinary gzip member (RFC 1952:
 * header, one deflate stream, CRC-32 and size of the whole tar). Any gunzip
 * reads it.
 *
 * Why: a rebuild re-captures layers that are mostly what an earlier build
 * captured (a `COPY --from` of a stage where one file changed), and gzip
 * was most of such a step. A piece's compressed bytes depend only on its
 * bytes and its dictionary, so they are kept (in memory, bounded) under the
 * sha256 of both and reused: only the pieces that changed, and the one after
 * each, are compressed again. The output is the same with or without the
 * cache: the same tar always gives the same gzip.
 *
 * Where a piece ends depends on the tar's content, not on the offsets (as
 * content-defined chunking): at an entry's header once the piece holds
 * MIN_PIECE bytes and the entry's name hashes to a cut, or at MAX_PIECE. A
 * file that grows moves the cuts only up to the next name cut.
 */
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';

const deflateRaw = promisify(zlib.deflateRaw) as (buf: Buffer, opts: zlib.ZlibOptions) => Promise<Buffer>;

const MIN_PIECE = 64 * 1024;
const MAX_PIECE = 1024 * 1024;
const WINDOW = 32 * 1024;
/** Pieces compressed side by side at most (the thread pool's). */
const IN_FLIGHT = 2;
/** gzip's header as Node's zlib writes it: no name, mtime 0, Unix. */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03]);
/** An empty final block (fixed Huffman codes, end of block): the deflate stream's end. */
const FINAL_BLOCK = Buffer.from([0x03, 0x00]);

/** Compressed pieces by the sha256 of their dictionary, level and bytes; the least recently used go past `maxBytes`. */
export class PieceCache {
  private readonly map = new Map<string, Buffer>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(key: string): Buffer | undefined {
    const v = this.map.get(key);
    if (v) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: string, v: Buffer): void {
    if (v.length > this.maxBytes || this.map.has(key)) return;
    this.map.set(key, v);
    this.bytes += v.length;
    for (const [k, old] of this.map) {
      if (this.bytes <= this.maxBytes) break;
      this.map.delete(k);
      this.bytes -= old.length;
    }
  }
}

/** The helper's pieces, shared by every capture (keyed by content: a hit is the bytes a compression would give). */
export const PIECES = new PieceCache(32 * 1024 * 1024);

/** One chunk of the tar; `entry` names the entry whose header starts it. */
export interface TarChunk {
  data: Buffer;
  entry?: string;
}

export interface PiecewiseGzip {
  /** sha256 of the tar (the diff-id) and of the gzip (the blob). */
  tarDigest: string;
  tarSize: number;
  digest: string;
  size: number;
}

/** The last WINDOW bytes of `data` (`bytes` in all), copied: the next piece's dictionary. */
function tail(data: Buffer[], bytes: number): Buffer {
  const want = Math.min(WINDOW, bytes);
  const out = Buffer.allocUnsafe(want);
  let at = want;
  for (let i = data.length - 1; i >= 0 && at > 0; i--) {
    const d = data[i];
    const n = Math.min(d.length, at);
    d.copy(out, at - n, d.length - n);
    at -= n;
  }
  return out;
}

/** FNV-1a of a name: whether a piece may end before its entry (one in four names). */
function cutAt(name: string): boolean {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return (h >>> 0) % 4 === 0;
}

/**
 * Compresses the tar `source` into gzip pieces, handing the gzip's bytes to `write` in order;
 * measures both.
 */
export async function gzipPieces(source: AsyncIterable<TarChunk>, write: (b: Buffer) => Promise<void> | void, o: { level?: number; cache?: PieceCache; signal?: AbortSignal } = {}): Promise<PiecewiseGzip> {
  const level = o.level ?? 6;
  const cache = o.cache ?? PIECES;
  const tarHash = createHash('sha256');
  const gzHash = createHash('sha256');
  let tarSize = 0;
  let size = 0;
  let crc = 0;
  let dict: Buffer = Buffer.alloc(0);
  const out = async (b: Buffer): Promise<void> => {
    gzHash.update(b);
    size += b.length;
    await write(b);
  };
  const pending: Promise<Buffer>[] = [];
  const flush = async (max: number): Promise<void> => {
    while (pending.length > max) await out(await (pending.shift() as Promise<Buffer>));
  };
  // a piece is its parts until it is compressed: a hit needs its hashes only, never one joined buffer
  const piece = async (data: Buffer[], bytes: number): Promise<void> => {
    if (o.signal?.aborted) throw o.signal.reason;
    const keyHash = createHash('sha256').update(`${level}:${dict.length}:`).update(dict);
    for (const d of data) {
      tarHash.update(d);
      keyHash.update(d);
      crc = zlib.crc32(d, crc);
    }
    tarSize += bytes;
    const key = keyHash.digest('hex');
    const hit = cache.get(key);
    const opts: zlib.ZlibOptions = { level, finishFlush: zlib.constants.Z_SYNC_FLUSH, ...(dict.length > 0 ? { dictionary: dict } : {}) };
    pending.push(hit ? Promise.resolve(hit) : deflateRaw(data.length === 1 ? data[0] : Buffer.concat(data, bytes), opts).then((z) => (cache.set(key, z), z)));
    dict = tail(data, bytes);
    await flush(IN_FLIGHT);
  };
  await out(GZIP_HEADER);
  let parts: Buffer[] = [];
  let held = 0;
  const cut = async (): Promise<void> => {
    if (held === 0) return;
    const data = parts;
    const bytes = held;
    parts = [];
    held = 0;
    await piece(data, bytes);
  };
  try {
    for await (const c of source) {
      if (c.entry !== undefined && held >= MIN_PIECE && cutAt(c.entry)) await cut();
      let d = c.data;
      while (held + d.length >= MAX_PIECE) {
        const take = MAX_PIECE - held;
        parts.push(d.subarray(0, take));
        held += take;
        d = d.subarray(take);
        await cut();
      }
      if (d.length > 0) {
        parts.push(d);
        held += d.length;
      }
    }
    await cut();
    await flush(0);
  } finally {
    // a failed capture still waits for the compressions it started (their buffers)
    await Promise.allSettled(pending);
  }
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(tarSize % 2 ** 32, 4);
  await out(FINAL_BLOCK);
  await out(trailer);
  return { tarDigest: `sha256:${tarHash.digest('hex')}`, tarSize, digest: `sha256:${gzHash.digest('hex')}`, size };
}
