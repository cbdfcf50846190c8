/**
 * A layer's gzip in pieces (server/image/layer/gzippieces.ts): one gzip
 * member any gunzip reads, the same bytes with or without the piece cache,
 * and a tar that changed in one place compressed again only there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as zlib from 'node:zlib';
import { gzipPieces, PieceCache, type TarChunk } from '../../server/image/layer/gzippieces';

/** A tar-like stream: `n` entries of a 512-byte "header" (named) and some compressible data each. */
function entries(n: number, change?: number): TarChunk[] {
  const out: TarChunk[] = [];
  let seed = 7;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < n; i++) {
    const name = `dir/file${i}`;
    out.push({ data: Buffer.alloc(512, name), entry: name });
    const words = Array.from({ length: 500 + Math.floor(rnd() * 3000) }, () => ['alpha', 'beta', 'gamma', 'delta'][Math.floor(rnd() * 4)]);
    if (i === change) words.push('changed');
    out.push({ data: Buffer.from(words.join(' ')) });
  }
  return out;
}

async function gzip(chunks: TarChunk[], cache: PieceCache): Promise<{ gz: Buffer; r: Awaited<ReturnType<typeof gzipPieces>> }> {
  const parts: Buffer[] = [];
  async function* src(): AsyncGenerator<TarChunk> {
    yield* chunks;
  }
  const r = await gzipPieces(src(), (b) => void parts.push(Buffer.from(b)), { cache });
  return { gz: Buffer.concat(parts), r };
}

class CountingCache extends PieceCache {
  hits = 0;
  misses = 0;
  override get(key: string): Buffer | undefined {
    const v = super.get(key);
    if (v) this.hits++;
    else this.misses++;
    return v;
  }
}

const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

test('the pieces make one gzip that zlib and gzip(1) read back to the tar, measured as written', async () => {
  const chunks = entries(400);
  const tar = Buffer.concat(chunks.map((c) => c.data));
  const { gz, r } = await gzip(chunks, new PieceCache(1 << 30));
  assert.ok(tar.length > 4 * 1024 * 1024, 'several pieces');
  assert.deepEqual(zlib.gunzipSync(gz), tar);
  assert.deepEqual(execFileSync('gzip', ['-dc'], { input: gz, maxBuffer: 1 << 30 }), tar);
  assert.equal(r.tarDigest, sha(tar));
  assert.equal(r.tarSize, tar.length);
  assert.equal(r.digest, sha(gz));
  assert.equal(r.size, gz.length);
  assert.ok(gz.length < tar.length / 3, `compressed as gzip -6 would (${gz.length} of ${tar.length})`);
});

test('the same tar gives the same gzip with an empty cache, a warm one, or one change reverted', async () => {
  const cache = new CountingCache(1 << 30);
  const a = await gzip(entries(300), cache);
  const pieces = cache.misses;
  const warm = await gzip(entries(300), cache);
  assert.equal(cache.hits, pieces, 'a warm cache compresses nothing again');
  const cold = await gzip(entries(300), new PieceCache(1 << 30));
  cache.hits = cache.misses = 0;
  const changed = await gzip(entries(300, 150), cache);
  assert.ok(cache.misses <= 3 && cache.hits >= pieces - 3, `one change compresses its piece and the next again (${cache.misses} of ${pieces})`);
  assert.deepEqual(warm.gz, a.gz);
  assert.deepEqual(cold.gz, a.gz);
  assert.notEqual(changed.r.tarDigest, a.r.tarDigest);
  assert.deepEqual(zlib.gunzipSync(changed.gz), Buffer.concat(entries(300, 150).map((c) => c.data)));
  // the change was compressed anew, the pieces before it were reused: the gzips share their start
  let same = 0;
  while (same < a.gz.length && a.gz[same] === changed.gz[same]) same++;
  assert.ok(same > a.gz.length / 3, `the unchanged start is shared (${same} of ${a.gz.length} bytes)`);
});

test('a cache too small for any piece keeps nothing and the output is unchanged', async () => {
  const tiny = new PieceCache(16);
  const big = new PieceCache(1 << 30);
  assert.deepEqual((await gzip(entries(100), tiny)).gz, (await gzip(entries(100), big)).gz);
});
