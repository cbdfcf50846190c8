/**
 * Reading an archive: one pass, front to back. Every file entry is hashed
 * while it is staged in the store's tmp/ (small ones in memory), since the
 * documents that say what the entries are (manifest.json, index.json) may
 * come last. Entry names are never used as file system paths: they only key
 * the staged content. Names that are absolute or escape with `..`, links
 * that point outside the archive, entries larger than the archive and
 * truncated archives are refused.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { checkSize, readCapped, type Limit } from '../../limits';
import { CancelledError, InvalidArchiveError } from '../errors';
import { MediaType, type Compression } from '../types';
import { cleanEntryName } from '../unpack';

/** Entries up to this size are kept in memory (JSON documents, small layers). */
const IN_MEMORY_MAX = 1024 * 1024;
/** At most this much in memory in total; the rest is staged on disk. */
const IN_MEMORY_TOTAL = 64 * 1024 * 1024;

/** What reading needs of the load's options. */
export interface StageOptions {
  signal?: AbortSignal;
  onProgress?: (read: number, total: number) => void;
}

/** An archive entry, hashed while it was staged (in memory or in a file of the staging directory). */
export interface Staged {
  name: string;
  size: number;
  digest: string;
  /** First bytes, to recognise the compression of a docker-save layer. */
  magic: Buffer;
  data?: Buffer;
  file?: string;
}

export class Archive {
  readonly files = new Map<string, Staged>();
  /** Symbolic and hard links: name → target name (both cleaned, archive-relative). */
  readonly links = new Map<string, string>();

  constructor(readonly label: string) {}

  /** The file an archive name designates, following links inside the archive. */
  find(name: string): Staged | undefined {
    let n = name;
    for (let hops = 0; hops < 16; hops++) {
      const f = this.files.get(n);
      if (f) return f;
      const next = this.links.get(n);
      if (next === undefined) return undefined;
      n = next;
    }
    throw new InvalidArchiveError(`${this.label}: too many levels of links at ${JSON.stringify(name)}`);
  }

  /** Like find, but the entry is required: `what` says who names it. */
  need(name: string, what: string): Staged {
    let clean: string;
    try {
      clean = cleanEntryName(name);
    } catch {
      throw new InvalidArchiveError(`${this.label}: ${what} names ${JSON.stringify(name)}, which is outside the archive`);
    }
    const f = this.find(clean);
    if (!f) throw new InvalidArchiveError(`${this.label}: ${what} names ${JSON.stringify(name)}, which is not in the archive`);
    return f;
  }

  async document(name: string, what: string, limit: Limit): Promise<unknown> {
    const f = this.need(name, what);
    return parseJson(await contents(f, limit, `${this.label}: ${name}`), `${this.label}: ${name}`);
  }
}

export async function stage(fh: fs.FileHandle, total: number, dir: string, label: string, opts: StageOptions): Promise<Archive> {
  const archive = new Archive(label);
  const extract = tar.extract();
  const input = fh.createReadStream({ start: 0, autoClose: false });
  let read = 0;
  input.on('data', (c: Buffer | string) => {
    read += c.length;
    opts.onProgress?.(read, total);
  });
  let failure: unknown;
  const fail = (err: unknown): void => {
    failure ??= err;
    input.destroy();
    extract.destroy(err as Error);
  };
  input.on('error', fail);
  extract.on('error', (err: unknown) => {
    failure ??= err;
  });
  const onAbort = (): void => fail(new CancelledError(`load of ${label}`));
  if (opts.signal?.aborted) throw new CancelledError(`load of ${label}`);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  input.pipe(extract as unknown as NodeJS.WritableStream);
  let inMemory = 0;
  let n = 0;
  let current = '';
  try {
    for await (const e of extract) {
      const entry = e as unknown as AsyncIterable<Buffer> & { header: tar.Header; resume(): void };
      const h = entry.header;
      current = h.name;
      try {
        let name: string;
        try {
          name = cleanEntryName(h.name);
        } catch (err) {
          throw new InvalidArchiveError(`${label}: entry ${JSON.stringify(h.name)}: ${(err as Error).message.replace(/^entry "[^"]*": /, '')}`);
        }
        const size = h.size ?? 0;
        if (!Number.isSafeInteger(size) || size < 0 || size > total) {
          throw new InvalidArchiveError(`${label}: entry ${JSON.stringify(h.name)} claims ${String(h.size)} bytes, more than the whole archive (${total})`);
        }
        switch (h.type) {
          case 'file':
          case 'contiguous-file': {
            const keep = size <= IN_MEMORY_MAX && inMemory + size <= IN_MEMORY_TOTAL;
            const staged = await stageFile(entry, name, size, keep ? undefined : path.join(dir, String(n++)), label);
            if (staged.data) inMemory += staged.size;
            archive.files.set(name, staged);
            archive.links.delete(name);
            break;
          }
          case 'symlink':
          case 'link': {
            const target = h.linkname ?? '';
            // A symlink is relative to its directory, a hard link to the archive root.
            const joined = h.type === 'symlink' && !target.startsWith('/') ? path.posix.join(path.posix.dirname(name), target) : target;
            let clean: string;
            try {
              clean = cleanEntryName(joined);
            } catch {
              throw new InvalidArchiveError(`${label}: entry ${JSON.stringify(h.name)} links to ${JSON.stringify(target)}, outside the archive`);
            }
            archive.links.set(name, clean);
            archive.files.delete(name);
            break;
          }
          case 'directory':
            break;
          default:
            throw new InvalidArchiveError(`${label}: entry ${JSON.stringify(h.name)} has unexpected type ${String(h.type)}`);
        }
      } finally {
        entry.resume();
      }
    }
    if (failure) throw failure;
  } catch (err) {
    const first = failure ?? err;
    fail(err);
    if (first instanceof CancelledError || first instanceof InvalidArchiveError) throw first;
    const msg = first instanceof Error ? first.message : String(first);
    // tar-stream's errors carry no code: its wording is the only sign of an archive that ends early.
    if (/Unexpected end of data/i.test(msg)) throw new InvalidArchiveError(`${label}: truncated archive (in or after entry ${JSON.stringify(current)})`, { cause: first });
    throw new InvalidArchiveError(`${label}: not a readable tar archive: ${msg.toLowerCase().replace(/\.$/, '')}`, { cause: first });
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  return archive;
}

async function stageFile(entry: AsyncIterable<Buffer>, name: string, size: number, file: string | undefined, label: string): Promise<Staged> {
  const hash = createHash('sha256');
  const chunks: Buffer[] = [];
  let magic = Buffer.alloc(0);
  let got = 0;
  const out = file ? await fs.open(file, 'wx', 0o600) : undefined;
  try {
    for await (const chunk of entry) {
      hash.update(chunk);
      got += chunk.length;
      if (magic.length < 4) magic = Buffer.concat([magic, chunk.subarray(0, 4 - magic.length)]);
      if (out) {
        let off = 0;
        while (off < chunk.length) off += (await out.write(chunk, off, chunk.length - off)).bytesWritten;
      } else {
        chunks.push(Buffer.from(chunk));
      }
    }
  } finally {
    await out?.close();
  }
  if (got !== size) throw new InvalidArchiveError(`${label}: truncated archive in entry ${JSON.stringify(name)}`);
  return { name, size, digest: 'sha256:' + hash.digest('hex'), magic, ...(file ? { file } : { data: Buffer.concat(chunks) }) };
}

/** A staged document's bytes, refused above `limit` before they are read. */
export async function contents(f: Staged, limit: Limit, what: string): Promise<Buffer> {
  checkSize(limit, what, f.size);
  if (f.data) return f.data;
  return readCapped(createReadStream(f.file!), limit, what);
}

/** The staged bytes of `f` from `offset` on. */
export function open(f: Staged, offset = 0): Readable {
  return f.data ? Readable.from([f.data.subarray(offset)]) : createReadStream(f.file!, { start: offset });
}

export function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new InvalidArchiveError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

export function sniffCompression(magic: Buffer): Compression {
  if (magic[0] === 0x1f && magic[1] === 0x8b) return 'gzip';
  if (magic.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

export const LAYER_TYPE: Record<Compression, string> = { none: MediaType.OciLayer, gzip: MediaType.OciLayerGzip, zstd: MediaType.OciLayerZstd };
