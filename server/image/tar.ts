/**
 * A streaming tar reader for layer blobs: ustar, GNU and PAX headers, read
 * from an async iterable of chunks in one pass.
 *
 * Owned here rather than taken from a library because layers carry binary
 * PAX records (SCHILY.xattr.security.capability is a struct of raw bytes):
 * every PAX value is kept as the Buffer it was in the archive, and only the
 * records POSIX defines as text (path, linkpath, uname, gname) and the
 * numeric ones are decoded.
 *
 * Entry data is handed on as subarrays of the chunks it arrived in, never
 * copied; only a header that straddles two chunks is copied (512 bytes).
 *
 * Formats: POSIX.1-2001 pax (`x`, `g`), ustar (prefix + name), GNU (`L`/`K`
 * long names and links, base-256 numeric fields). Sparse entries (GNU `S`,
 * PAX GNU.sparse.*) are refused: their data is a map, not the file.
 */
import { InvalidLayerError } from './errors';

const BLOCK = 512;
/** PAX and GNU long-name headers held in memory at most (the same ceiling tar-stream had). */
export const MAX_META_HEADER = 4 * 1024 * 1024;

/** Entry types by typeflag, named as tar-stream named them (the applier's vocabulary). */
const TYPES: Record<string, string> = {
  '0': 'file',
  '\0': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'character-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
  '7': 'contiguous-file',
  x: 'pax-header',
  g: 'pax-global-header',
  L: 'gnu-long-path',
  K: 'gnu-long-link-path',
  S: 'gnu-sparse',
  D: 'gnu-dumpdir',
  M: 'gnu-multivol',
  N: 'gnu-old-long-names',
  V: 'gnu-volume-header',
};

export interface TarHeader {
  /** The entry's name: PAX `path`, else a GNU long name, else ustar prefix + name. */
  name: string;
  /** Link target: PAX `linkpath`, else a GNU long link, else the header's; undefined if none. */
  linkname: string | undefined;
  /** 'file', 'directory', 'symlink', … or `unknown-<flag>`. */
  type: string;
  mode: number;
  /** Owner ids: PAX `uid`/`gid` when present (NaN if not a number), else the header's. */
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch, fractional when PAX gives them so. */
  mtime: number;
  /** PAX `atime`, if any. */
  atime: number | undefined;
  devmajor: number;
  devminor: number;
  /** PAX records that apply to this entry (global ones first, overridden by the entry's own), raw. */
  pax: ReadonlyMap<string, Buffer>;
  /** SCHILY.xattr.* records, name → raw value bytes. */
  xattrs: ReadonlyArray<readonly [string, Buffer]>;
  /** Byte offset of the entry's header block in the tar stream. */
  offset: number;
}

export interface TarEntry {
  header: TarHeader;
  /**
   * The entry's data, as subarrays of the input's chunks. Read it at most
   * once, before asking for the next entry; what is not read is skipped.
   */
  body(): AsyncIterable<Buffer>;
}

function malformed(what: string, offset: number, after: string | undefined): InvalidLayerError {
  const where = after !== undefined ? ` (in or after entry ${JSON.stringify(after)})` : '';
  return new InvalidLayerError(`malformed tar header at offset ${offset}${where}: ${what}`);
}

function truncated(after: string | undefined, inEntry: boolean): InvalidLayerError {
  if (after === undefined) return new InvalidLayerError('truncated tar archive');
  return new InvalidLayerError(`truncated tar archive ${inEntry ? 'in' : 'after'} entry ${JSON.stringify(after)}`);
}

/** Reads tar entries from `source`. Iterate it, reading or skipping each entry's body in turn. */
export class TarReader implements AsyncIterable<TarEntry> {
  private readonly it: AsyncIterator<Uint8Array>;
  private chunk: Buffer = Buffer.alloc(0);
  private pos = 0;
  private ended = false;
  /** Bytes consumed from the stream so far. */
  private offset = 0;
  /** Data (and padding) of the current entry not yet consumed. */
  private remaining = 0;
  private padding = 0;
  private global = new Map<string, Buffer>();
  private last: string | undefined;
  private bodyTaken = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TarEntry> {
    for (;;) {
      const entry = await this.next();
      if (!entry) return;
      yield entry;
    }
  }

  /** The next entry, or undefined at the end of the stream. */
  async next(): Promise<TarEntry | undefined> {
    await this.skip(this.remaining + this.padding, true);
    this.remaining = this.padding = 0;
    let local: Map<string, Buffer> | undefined;
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const at = this.offset;
      const block = await this.read(BLOCK);
      if (block === undefined) {
        if (local || longName !== undefined || longLink !== undefined) throw truncated(this.last, false);
        return undefined;
      }
      if (block.length < BLOCK) throw truncated(this.last, false);
      // Zero blocks end the archive; like tar -i, read on through any that follow.
      if (isZero(block)) continue;
      const raw = parseBlock(block, at, this.last);
      // A size past 2^53 is passed on as read: the consumer refuses it (it has the entry's name to say so).
      if (raw.size < 0) throw malformed(`negative size ${raw.size}`, at, this.last);
      const pad = (BLOCK - (raw.size % BLOCK)) % BLOCK;
      switch (raw.type) {
        case 'pax-header':
        case 'pax-global-header':
        case 'gnu-long-path':
        case 'gnu-long-link-path': {
          if (raw.size > MAX_META_HEADER) throw malformed(`${raw.type} of ${raw.size} bytes exceeds the ${MAX_META_HEADER}-byte limit`, at, this.last);
          const data = await this.read(raw.size);
          if (data === undefined || data.length < raw.size) throw truncated(this.last, false);
          await this.skip(pad, false);
          if (raw.type === 'pax-header') local = parsePax(data, local ?? new Map(), at, this.last);
          else if (raw.type === 'pax-global-header') this.global = parsePax(data, new Map(this.global), at, this.last);
          else if (raw.type === 'gnu-long-path') longName = cString(data);
          else longLink = cString(data);
          continue;
        }
      }
      const pax = local ? mergePax(this.global, local) : this.global;
      const h = applyPax(raw, pax, longName, longLink, at, this.last);
      if (h.type === 'gnu-sparse' || pax.has('GNU.sparse.major') || pax.has('GNU.sparse.map') || pax.has('GNU.sparse.size') || pax.has('GNU.sparse.numblocks')) {
        const real = pax.get('GNU.sparse.realname') ?? pax.get('GNU.sparse.name');
        const name = real ? real.toString('utf8') : h.name;
        throw new InvalidLayerError(`entry ${JSON.stringify(name)}: sparse files are not supported (write the layer without --sparse)`);
      }
      this.last = h.name;
      // The data of a directory entry, if any, is skipped like any unread body.
      this.remaining = h.size;
      this.padding = (BLOCK - (h.size % BLOCK)) % BLOCK;
      this.bodyTaken = false;
      return { header: h, body: () => this.body(h.name) };
    }
  }

  private async *body(name: string): AsyncGenerator<Buffer> {
    if (this.bodyTaken) throw new Error(`tar entry ${JSON.stringify(name)}: body read twice`);
    this.bodyTaken = true;
    while (this.remaining > 0) {
      if (this.pos >= this.chunk.length && !(await this.fill())) throw truncated(name, true);
      const n = Math.min(this.remaining, this.chunk.length - this.pos);
      const piece = this.chunk.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.offset += n;
      this.remaining -= n;
      yield piece;
    }
  }

  /** Loads the next non-empty chunk; false at the end of the stream. */
  private async fill(): Promise<boolean> {
    while (!this.ended) {
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        break;
      }
      const c = r.value;
      if (c.length === 0) continue;
      this.chunk = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.length);
      this.pos = 0;
      return true;
    }
    return false;
  }

  /**
   * `n` bytes: a subarray when they lie in one chunk, else a copy. Shorter at
   * the end of the stream; undefined if nothing at all was left.
   */
  private async read(n: number): Promise<Buffer | undefined> {
    if (this.pos >= this.chunk.length && !(await this.fill())) return n === 0 ? Buffer.alloc(0) : undefined;
    if (this.chunk.length - this.pos >= n) {
      const b = this.chunk.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.offset += n;
      return b;
    }
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      if (this.pos >= this.chunk.length && !(await this.fill())) break;
      const k = Math.min(n - got, this.chunk.length - this.pos);
      this.chunk.copy(out, got, this.pos, this.pos + k);
      this.pos += k;
      got += k;
    }
    this.offset += got;
    return got === n ? out : out.subarray(0, got);
  }

  /** Consumes `n` bytes; fails as truncated if the stream ends first. */
  private async skip(n: number, inEntry: boolean): Promise<void> {
    while (n > 0) {
      if (this.pos >= this.chunk.length && !(await this.fill())) throw truncated(this.last, inEntry);
      const k = Math.min(n, this.chunk.length - this.pos);
      this.pos += k;
      this.offset += k;
      n -= k;
    }
  }
}

/** Reads the entries of a tar stream. */
export function readTar(source: AsyncIterable<Uint8Array>): TarReader {
  return new TarReader(source);
}

/** What one header block says, before PAX and GNU long names apply. */
type RawHeader = Pick<TarHeader, 'name' | 'linkname' | 'type' | 'mode' | 'uid' | 'gid' | 'size' | 'mtime' | 'devmajor' | 'devminor'>;

function isZero(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** Decodes one 512-byte header block after checking its checksum and magic. */
export function parseBlock(b: Buffer, at: number, after?: string): RawHeader {
  const stored = number(b, 148, 8, 'chksum', at, after);
  // The checksum treats its own field as eight spaces (POSIX ustar); some
  // old tars summed signed bytes, which GNU tar still accepts.
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    unsigned += b[i];
    signed += b[i] > 127 ? b[i] - 256 : b[i];
  }
  if (stored !== unsigned && stored !== signed) throw malformed(`checksum mismatch (header says ${stored}, block sums to ${unsigned})`, at, after);
  const ustar = b.toString('latin1', 257, 263) === 'ustar\0';
  const gnu = b.toString('latin1', 257, 265) === 'ustar  \0';
  if (!ustar && !gnu) throw malformed('unknown format (no ustar magic)', at, after);
  let name = str(b, 0, 100);
  // GNU headers put atime and ctime where ustar has its prefix.
  if (ustar && b[345] !== 0) name = `${str(b, 345, 155)}/${name}`;
  const flag = String.fromCharCode(b[156]);
  let type = TYPES[flag] ?? `unknown-${JSON.stringify(flag)}`;
  // Pre-POSIX tars mark directories with a trailing slash on a regular entry.
  if (type === 'file' && name.endsWith('/')) type = 'directory';
  return {
    name,
    linkname: b[157] === 0 ? undefined : str(b, 157, 100),
    type,
    mode: number(b, 100, 8, 'mode', at, after),
    uid: number(b, 108, 8, 'uid', at, after),
    gid: number(b, 116, 8, 'gid', at, after),
    size: number(b, 124, 12, 'size', at, after),
    mtime: number(b, 136, 12, 'mtime', at, after),
    devmajor: number(b, 329, 8, 'devmajor', at, after),
    devminor: number(b, 337, 8, 'devminor', at, after),
  };
}

/** A NUL-terminated UTF-8 field. */
function str(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.toString('utf8', 0, end < 0 ? b.length : end);
}

/**
 * A numeric field: octal digits (leading spaces or NULs, ended by a space or
 * NUL), or GNU base-256 when the high bit of the first byte is set
 * (0x80 positive, 0xff two's complement negative).
 */
export function number(b: Buffer, off: number, len: number, field: string, at: number, after?: string): number {
  const first = b[off];
  if (first & 0x80) {
    const negative = first === 0xff;
    let v = negative ? 0 : first & 0x7f;
    for (let i = off + 1; i < off + len; i++) v = v * 256 + (negative ? 0xff - b[i] : b[i]);
    if (negative) v = -(v + 1);
    return v;
  }
  let i = off;
  const end = off + len;
  while (i < end && (b[i] === 0x20 || b[i] === 0)) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i];
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw malformed(`${field} field is not octal`, at, after);
    v = v * 8 + (c - 0x30);
    digits++;
  }
  return digits === 0 ? 0 : v;
}

/** Parses PAX records (`<len> <key>=<value>\n`) into `into`, values kept as raw bytes. */
export function parsePax(data: Buffer, into: Map<string, Buffer>, at: number, after?: string): Map<string, Buffer> {
  let p = 0;
  while (p < data.length) {
    // GNU tar pads the last block of a pax header with NULs.
    if (data[p] === 0) break;
    const sp = data.indexOf(0x20, p);
    if (sp < 0 || sp - p > 20) throw malformed('pax record without a length', at, after);
    const lenText = data.toString('latin1', p, sp);
    if (!/^[0-9]+$/.test(lenText)) throw malformed(`pax record length ${JSON.stringify(lenText)} is not a number`, at, after);
    const len = Number(lenText);
    const end = p + len;
    if (len <= sp - p + 1 || end > data.length || data[end - 1] !== 0x0a) throw malformed(`pax record of length ${len} does not fit its header`, at, after);
    const eq = data.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= end - 1) throw malformed('pax record without "="', at, after);
    const key = data.toString('utf8', sp + 1, eq);
    // A record with an empty value deletes the key (POSIX pax "keyword=").
    const value = data.subarray(eq + 1, end - 1);
    if (value.length === 0) into.delete(key);
    else into.set(key, Buffer.from(value));
    p = end;
  }
  return into;
}

function mergePax(global: Map<string, Buffer>, local: Map<string, Buffer>): Map<string, Buffer> {
  if (global.size === 0) return local;
  const m = new Map(global);
  for (const [k, v] of local) m.set(k, v);
  return m;
}

function paxNumber(v: Buffer | undefined): number | undefined {
  if (v === undefined) return undefined;
  const t = v.toString('latin1');
  return /^-?[0-9]+(\.[0-9]*)?$/.test(t) ? Number(t) : NaN;
}

function applyPax(raw: RawHeader, pax: Map<string, Buffer>, longName: string | undefined, longLink: string | undefined, at: number, after: string | undefined): TarHeader {
  const path = pax.get('path');
  const linkpath = pax.get('linkpath');
  const size = paxNumber(pax.get('size'));
  if (size !== undefined && !(Number.isSafeInteger(size) && size >= 0)) throw malformed(`pax size ${JSON.stringify(pax.get('size')?.toString('latin1'))} is not a size`, at, after);
  const uid = paxNumber(pax.get('uid'));
  const gid = paxNumber(pax.get('gid'));
  const mtime = paxNumber(pax.get('mtime'));
  const atime = paxNumber(pax.get('atime'));
  const xattrs: Array<readonly [string, Buffer]> = [];
  for (const [k, v] of pax) if (k.startsWith('SCHILY.xattr.')) xattrs.push([k.slice('SCHILY.xattr.'.length), v]);
  return {
    name: path !== undefined ? path.toString('utf8') : (longName ?? raw.name),
    linkname: linkpath !== undefined ? linkpath.toString('utf8') : (longLink ?? raw.linkname),
    type: raw.type,
    mode: raw.mode,
    uid: uid ?? raw.uid,
    gid: gid ?? raw.gid,
    size: size ?? raw.size,
    mtime: mtime !== undefined && Number.isFinite(mtime) ? mtime : raw.mtime,
    atime: atime !== undefined && Number.isFinite(atime) ? atime : undefined,
    devmajor: raw.devmajor,
    devminor: raw.devminor,
    pax,
    xattrs,
    offset: at,
  };
}
