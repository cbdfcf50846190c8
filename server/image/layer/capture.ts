/**
 * A layer from an overlay upper directory: the tar of exactly what the
 * container changed (changes.ts walks it), gzip-compressed, measured on the
 * way to a file (digest of the blob, diff-id of the tar), then published in
 * the store as a blob and as an unpacked layer (the existing unpacker reads
 * the blob back, so a layer Capsa made is checked like one it pulled).
 *
 * The tar follows the OCI layer format (image-spec layer.md): a deletion is
 * an empty `.wh.NAME`, an opaque directory is followed by its
 * `.wh..wh..opq`, hard links stay hard links (the first name in the walk's
 * order carries the data), xattrs travel as `SCHILY.xattr.*` without
 * overlayfs's own, sockets are left out (Docker leaves them out too).
 *
 * Reproducible: entries in byte order of their names, headers that depend
 * only on mode, ids, size, mtime and xattrs, mtimes clamped to
 * SOURCE_DATE_EPOCH when given, gzip with a zero timestamp, made of pieces
 * whose cuts depend on the tar alone (gzippieces.ts): the same changes give
 * the same digest.
 */
import { closeSync, constants, createReadStream, fstatSync, openSync, promises as fs, readSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import type { ImageStore, Lease } from '../store';
import { MediaType, type Descriptor } from '../types';
import { unpackLayer } from '../unpack';
import { collectUpper, LayerCaptureError, openUpper, type UpperEntry, type UpperView } from './changes';
import { gzipPieces, type PiecewiseGzip, type TarChunk } from './gzippieces';
import { openBeneath } from '../../util/openat2';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarWriteHeader } from './tarwriter';

/**
 * Where the ids on disk are a user namespace's block: host id `uid + N` is
 * the container's `N`. The layer records the container's ids, as the image's
 * own layers do; an id outside the block (none the container can write) is
 * recorded as the overflow id 65534.
 */
export interface IdShift {
  uid: number;
  gid: number;
  size: number;
}

export interface CaptureOptions {
  /** The lower layers and the runtime's mount points, which are not changes (changes.ts); without it, all of `upper`. */
  view?: UpperView;
  idShift?: IdShift;
  /** Seconds since the epoch: no entry's mtime is later (SOURCE_DATE_EPOCH, reproducible-builds.org). */
  sourceDateEpoch?: number;
  signal?: AbortSignal;
  /**
   * commitLayer only: `upper` is a directory of the caller's own that it
   * gives up (the builder's staging directory of a COPY or WORKDIR, no
   * view, no id shift), so its entries are moved into the new layer
   * instead of unpacked again from the blob. The tar was read from these
   * very inodes, so the layer is what the blob holds; it halves the files a
   * COPY creates.
   */
  adopt?: boolean;
}

export interface CapturedLayer {
  /** The gzip blob, under the store's staging directory. */
  file: string;
  /** sha256 of the gzip bytes. */
  digest: string;
  size: number;
  /** sha256 of the tar. */
  diffId: string;
  tarSize: number;
  entries: number;
  /** Sum of its regular files' sizes (a hard link's once). */
  fileBytes: number;
}

const OVERFLOW_ID = 65534;

function shifted(id: number, start: number | undefined, size: number | undefined): number {
  if (start === undefined || size === undefined) return id;
  return id >= start && id < start + size ? id - start : OVERFLOW_ID;
}

/** Linux's dev_t split (glibc's gnu_dev_major/minor). */
export function devParts(rdev: bigint): { major: number; minor: number } {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { major, minor };
}

/** The header blocks layerTar yields, by the entry's name: where a gzip piece may start (gzippieces.ts). */
const ENTRY_NAMES = new WeakMap<Buffer, string>();

function header(h: TarWriteHeader): Buffer {
  const b = encodeHeader(h);
  ENTRY_NAMES.set(b, h.name);
  return b;
}

/** The tar stream of the changes in `upper`, block by block; a file's data read as the walk reaches it (bounded memory). */
export async function* layerTar(upper: string, opts: CaptureOptions = {}, count?: { fileBytes: number }): AsyncGenerator<Buffer> {
  const links = new Map<string, string>();
  const clamp = (st: UpperEntry['stat']): number => {
    const t = Number(st.mtimeNs / 1_000_000_000n);
    return opts.sourceDateEpoch !== undefined ? Math.min(t, opts.sourceDateEpoch) : t;
  };
  const upperFd = openUpper(upper);
  try {
    for (const e of await collectUpper(upper, opts.view ?? { lowers: [] })) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      const st = e.stat;
      const base: Omit<TarWriteHeader, 'type'> = {
        name: e.rel,
        mode: Number(st.mode & 0o7777n),
        uid: shifted(Number(st.uid), opts.idShift?.uid, opts.idShift?.size),
        gid: shifted(Number(st.gid), opts.idShift?.gid, opts.idShift?.size),
        size: 0,
        mtime: clamp(st),
        xattrs: e.xattrs,
      };
      if (e.whiteout) {
        const slash = e.rel.lastIndexOf('/');
        const name = slash < 0 ? `.wh.${e.rel}` : `${e.rel.slice(0, slash)}/.wh.${e.rel.slice(slash + 1)}`;
        yield header({ name, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime: base.mtime });
      } else if (st.isDirectory()) {
        yield header({ ...base, type: 'directory' });
        if (e.opaque) yield header({ name: `${e.rel}/.wh..wh..opq`, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime: base.mtime });
      } else if (st.isSymbolicLink()) {
        yield header({ ...base, type: 'symlink', linkname: e.linkTarget ?? '' });
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1n ? links.get(key) : undefined;
        if (first !== undefined) {
          yield header({ ...base, type: 'link', linkname: first });
          continue;
        }
        if (st.nlink > 1n) links.set(key, e.rel);
        const size = Number(st.size);
        yield header({ ...base, type: 'file', size });
        if (count) count.fileBytes += size;
        yield* fileData(upperFd, e, size);
        yield padding(size);
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const { major, minor } = devParts(st.rdev);
        yield header({ ...base, type: st.isCharacterDevice() ? 'char' : 'block', devmajor: major, devminor: minor });
      } else if (st.isFIFO()) {
        yield header({ ...base, type: 'fifo' });
      }
      // sockets: a running program's, meaningless in an image
    }
  } finally {
    closeSync(upperFd);
  }
  yield END_OF_ARCHIVE;
}

/** Files up to this size are read in one synchronous call. */
const SMALL_FILE = 1024 * 1024;

/**
 * Exactly `size` bytes of `file`: a running container may grow or shrink it
 * after the header was written, and the tar must stay well formed (cut, or
 * padded with zeros; pausing the container while capturing avoids both).
 */
async function* fileData(upperFd: number, e: UpperEntry, size: number): AsyncGenerator<Buffer> {
  // beneath the upper directory with no symlink on the way, non-blocking (a FIFO swapped in does not hold the read), and the file the walk saw
  const fd = openBeneath(upperFd, e.rel, constants.O_RDONLY | constants.O_NONBLOCK);
  let sent = 0;
  try {
    const st = fstatSync(fd, { bigint: true });
    if (!st.isFile() || st.ino !== e.stat.ino) throw new LayerCaptureError(`cannot capture ${JSON.stringify('/' + e.rel)}: it was replaced while the layer was written (commit with the container paused)`);
    if (size > 0 && size <= SMALL_FILE) {
      // a small file in one synchronous read: a stream per file costs several event-loop turns and thread-pool hops
      const buf = Buffer.allocUnsafe(size);
      for (let n = -1; sent < size && n !== 0; sent += n) n = readSync(fd, buf, sent, size - sent, sent);
      yield sent === size ? buf : buf.subarray(0, sent);
    } else if (size > 0) {
      for await (const chunk of createReadStream('', { fd, autoClose: false, start: 0, end: size - 1, highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>) {
        sent += chunk.length;
        yield chunk;
      }
    }
  } finally {
    closeSync(fd);
  }
  if (sent < size) yield Buffer.alloc(size - sent);
}

/** Writes the gzip layer of `upper`'s changes to `file`, measured (gzip in pieces: gzippieces.ts). */
export async function captureLayer(upper: string, file: string, opts: CaptureOptions = {}): Promise<CapturedLayer> {
  let entries = 0;
  const count = { fileBytes: 0 };
  const chunks = async function* (): AsyncGenerator<TarChunk> {
    for await (const b of layerTar(upper, opts, count)) {
      entries++;
      yield { data: b, entry: ENTRY_NAMES.get(b) };
    }
  };
  const fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  let gz: PiecewiseGzip;
  try {
    gz = await gzipPieces(chunks(), (b) => {
      for (let off = 0; off < b.length; ) off += writeSync(fd, b, off, b.length - off);
    }, { level: 6, signal: opts.signal });
  } finally {
    closeSync(fd);
  }
  return { file, digest: gz.digest, size: gz.size, diffId: gz.tarDigest, tarSize: gz.tarSize, entries, fileBytes: count.fileBytes };
}

/**
 * Captures `upper`'s changes and publishes them in `store` under `lease`
 * (which the caller keeps until the image that uses the layer is recorded):
 * the blob by its measured digest, and the unpacked layer by its diff-id,
 * unpacked from the blob by the one unpacker and proven against the diff-id.
 */
export async function commitLayer(store: ImageStore, lease: Lease, upper: string, opts: CaptureOptions = {}): Promise<{ descriptor: Descriptor; diffId: string; tarSize: number }> {
  const dir = await store.stagingDir(lease);
  let captured: CapturedLayer;
  try {
    captured = await captureLayer(upper, path.join(dir, 'layer.tar.gz'), opts);
    await lease.blob(captured.digest);
    await store.adoptBlob(captured.file, captured.digest);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
  if (!(await store.hasLayer(captured.diffId))) {
    const adopt = opts.adopt === true && !opts.view && !opts.idShift && opts.sourceDateEpoch === undefined;
    await store.createLayer(
      captured.diffId,
      async (into) => {
        if (adopt) {
          for (const name of await fs.readdir(upper)) await fs.rename(path.join(upper, name), path.join(into, name));
          return { diffId: captured.diffId, digest: captured.digest, size: captured.fileBytes, tarSize: captured.tarSize };
        }
        const r = await unpackLayer(createReadStream(store.blobPath(captured.digest)), into, { compression: 'gzip', label: `layer ${captured.digest}`, signal: opts.signal });
        return { diffId: r.diffId, digest: r.digest, size: r.size, tarSize: r.tarSize };
      },
      { lease },
    );
  }
  return { descriptor: { mediaType: MediaType.OciLayerGzip, digest: captured.digest, size: captured.size }, diffId: captured.diffId, tarSize: captured.tarSize };
}
