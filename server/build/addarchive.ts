/**
 * ADD of a local archive: a source file that is a tar (plain, gzip, bzip2,
 * xz or zstd, told by its content as Docker's DecompressStream tells it, and
 * then by a valid first tar header, as BuildKit's isArchivePath) is
 * extracted into the destination directory instead of copied; any other file
 * is copied as it is.
 *
 * Extraction is the image unpacker's (image/applier.ts, the layer code's
 * rules): each name cleaned, absolute names and `..` escapes refused, every
 * parent resolved inside the extraction root without following a symlink
 * (so a symlink pointing out followed by a file through it is refused),
 * hard links scoped the same way; owners, modes, times, xattrs (not
 * `trusted.*`) and hard links kept. `.wh.` names are plain files here, as
 * BuildKit extracts ADD archives with whiteout conversion off. With
 * --chown every entry gets that owner (BuildKit maps the archive's owners
 * to it); without, the archive's own owners stay.
 *
 * The archive is extracted into an empty directory of its own, then merged
 * into the step's layer directory under the destination: a directory over a
 * directory merges (the archive's metadata wins, as Docker's Untar applies
 * it), anything else replaces what was there. Nothing is ever written
 * outside the destination.
 *
 * Node's zlib reads gzip and the project's fzstd reads zstd; bzip2 and xz
 * go through Debian's `bzip2 -dc` and `xz -dc`, and a missing program is
 * an error saying which one to install.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { Applier } from '../image/applier';
import { UnsafeLayerError } from '../image/errors';
import { lgetxattr, llistxattr, lsetxattr } from '../image/libc';
import { zstdDecompressor } from '../image/layerstream';
import { TarReader } from '../image/tar';
import { BuildContextError, type SourceLocation } from './errors';
import type { Owner } from './owners';

export type ArchiveCompression = 'none' | 'gzip' | 'bzip2' | 'xz' | 'zstd';

/** Programs for the formats Node cannot read itself, and their Debian packages. */
export const DECOMPRESSORS: Record<'bzip2' | 'xz', { command: string; pkg: string }> = {
  bzip2: { command: 'bzip2', pkg: 'bzip2' },
  xz: { command: 'xz', pkg: 'xz-utils' },
};

/** The compression the first bytes show (Docker's DetectCompression); 'none' for anything else. */
export function sniffCompression(head: Buffer): ArchiveCompression {
  const starts = (...b: number[]): boolean => head.length >= b.length && b.every((x, i) => head[i] === x);
  if (starts(0x1f, 0x8b, 0x08)) return 'gzip';
  if (starts(0x42, 0x5a, 0x68)) return 'bzip2';
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'xz';
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'zstd';
  return 'none';
}

/** Whether `block` is a tar header: 512 bytes, not all zero, whose checksum holds (what Go's tar.Reader.Next accepts first). */
export function isTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  const field = block.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  const stored = parseInt(field, 8);
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  let zero = true;
  for (let i = 0; i < 512; i++) {
    if (block[i] !== 0) zero = false;
    if (i >= 148 && i < 156) continue;
    unsigned += block[i];
    signed += block[i] > 127 ? block[i] - 256 : block[i];
  }
  return !zero && (stored === unsigned || stored === signed);
}

interface Decompressed {
  stream: Readable;
  /** Resolves when the decompressor ended well; rejects with why it did not. */
  done: Promise<void>;
  stop(): void;
}

/** `file`'s bytes, decompressed. */
function decompress(file: string, kind: ArchiveCompression, what: string, tools = DECOMPRESSORS): Decompressed {
  const input = fs.createReadStream(file);
  if (kind === 'none' || kind === 'gzip' || kind === 'zstd') {
    if (kind === 'none') return { stream: input, done: Promise.resolve(), stop: () => input.destroy() };
    const d = kind === 'gzip' ? zlib.createGunzip() : zstdDecompressor();
    const done = new Promise<void>((resolve, reject) => {
      d.on('error', (err) => reject(new BuildContextError(`${what}: corrupt ${kind} data: ${err.message}`)));
      input.on('error', reject);
      d.on('end', resolve);
    });
    done.catch(() => undefined);
    input.pipe(d);
    return { stream: d, done, stop: () => (input.destroy(), d.destroy()) };
  }
  const tool = tools[kind];
  const child = spawn(tool.command, ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    if (stderr.length < 4096) stderr += b.toString('utf8');
  });
  child.stdin.on('error', () => undefined);
  input.on('error', () => child.kill('SIGKILL'));
  input.pipe(child.stdin);
  let stopped = false;
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code;
      reject(new BuildContextError(code === 'ENOENT' ? `${what}: extracting a ${kind} archive needs the ${tool.command} program (Debian package ${tool.pkg}), which is not installed` : `${what}: cannot run ${tool.command}: ${err.message}`));
      child.stdout.destroy();
    });
    child.on('close', (code, signal) => {
      if (code === 0 || stopped) resolve();
      else reject(new BuildContextError(`${what}: ${tool.command} -dc failed (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').pop() ?? ''}`));
    });
  });
  done.catch(() => undefined);
  return {
    stream: child.stdout,
    done,
    stop: () => {
      stopped = true;
      input.destroy();
      child.kill('SIGKILL');
    },
  };
}

/** Reads the first `n` bytes of a stream (fewer at its end) and stops it. */
async function head(d: Decompressed, n: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  try {
    for await (const c of d.stream) {
      parts.push(c as Buffer);
      got += (c as Buffer).length;
      if (got >= n) break;
    }
  } catch {
    /* a stream that fails before n bytes is no archive */
  } finally {
    d.stop();
  }
  return Buffer.concat(parts).subarray(0, n);
}

/**
 * The compression of `file` if it is an archive ADD extracts, else undefined.
 * A missing decompressor is an error (the file may well be an archive).
 */
export async function archiveKind(file: string, what: string, tools = DECOMPRESSORS): Promise<ArchiveCompression | undefined> {
  const st = await fs.promises.lstat(file);
  if (!st.isFile() || st.size < 4) return undefined;
  const fh = await fs.promises.open(file, 'r');
  let magic: Buffer;
  try {
    magic = Buffer.alloc(8);
    const { bytesRead } = await fh.read(magic, 0, 8, 0);
    magic = magic.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  const kind = sniffCompression(magic);
  const d = decompress(file, kind, what, tools);
  const block = await head(d, 512);
  if (kind === 'bzip2' || kind === 'xz') {
    // a missing program shows only as its spawn's error
    const err = await d.done.then(() => undefined, (e: unknown) => e);
    if (err instanceof BuildContextError && /needs the/.test(err.message)) throw err;
  }
  return isTarHeader(block) ? kind : undefined;
}

export interface ExtractOptions {
  /** Names the archive in errors: `Dockerfile:3: ADD files.tar`. */
  what: string;
  /** --chown: every entry's owner. */
  owner?: Owner;
  signal: AbortSignal;
  tools?: typeof DECOMPRESSORS;
  /** Most bytes of file content extracted (default 64 GiB). */
  maxBytes?: number;
}

/** Extracts `file` (of compression `kind`) into `dir`, an empty directory. Returns the entries applied. */
export async function extractArchive(file: string, kind: ArchiveCompression, dir: string, o: ExtractOptions): Promise<number> {
  const d = decompress(file, kind, o.what, o.tools);
  const applier = new Applier(dir, o.what, o.maxBytes ?? 64 * 1024 ** 3, false);
  try {
    for await (const entry of new TarReader(d.stream)) {
      if (o.signal.aborted) throw new BuildContextError(`${o.what}: the build was cancelled`);
      if (o.owner) {
        entry.header.uid = o.owner.uid;
        entry.header.gid = o.owner.gid;
      }
      await applier.apply(entry);
    }
    await applier.finish();
    await d.done;
  } catch (err) {
    d.stop();
    await applier.drain().catch(() => undefined);
    if (err instanceof BuildContextError) throw err;
    if (err instanceof UnsafeLayerError) throw new BuildContextError(`${o.what}: the archive is refused: ${err.message.replace(o.what + ': ', '')}`);
    // the decompressor's own failure says more than the truncated tar it leaves
    const first = await d.done.then(() => undefined, (e: unknown) => e);
    if (first instanceof BuildContextError) throw first;
    throw new BuildContextError(`${o.what}: cannot extract the archive: ${(err as Error).message}`);
  }
  return applier.entries;
}

/**
 * Moves the tree under `src` into `dst` (an existing real directory): a
 * directory over a directory merges and takes the source's owner, mode,
 * xattrs and times; anything else replaces what `dst` had. Never follows a
 * symlink: both sides are lstat'ed, and only real directories are entered.
 */
export async function mergeTree(src: string, dst: string): Promise<void> {
  for (const name of await fs.promises.readdir(src)) {
    const s = path.join(src, name);
    const d = path.join(dst, name);
    const sst = await fs.promises.lstat(s);
    const dst_ = await fs.promises.lstat(d).catch(() => undefined);
    if (sst.isDirectory() && dst_?.isDirectory()) {
      await mergeTree(s, d);
      await fs.promises.lchown(d, sst.uid, sst.gid);
      await fs.promises.chmod(d, sst.mode & 0o7777);
      for (const x of llistxattr(s)) {
        const v = lgetxattr(s, x);
        if (v) lsetxattr(d, x, v);
      }
      await fs.promises.utimes(d, sst.atime, sst.mtime);
      continue;
    }
    if (dst_) await fs.promises.rm(d, { recursive: true, force: true });
    await fs.promises.rename(s, d);
  }
}

/** `where`: `Dockerfile:3: ADD files.tar`. */
export function archiveWhat(loc: SourceLocation, source: string): string {
  return `${loc.file}:${loc.line}: ADD ${source}`;
}
