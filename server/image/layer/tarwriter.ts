/**
 * Tar headers for layers Capsa writes (commit, and the builder after it):
 * POSIX ustar blocks, with a PAX extended header in front whenever a field
 * does not fit ustar (long or non-ASCII names and link targets, ids or sizes
 * past ustar's octal fields) or the entry carries xattrs (`SCHILY.xattr.*`,
 * the records Docker, containerd and GNU tar write and ./tar.ts reads).
 *
 * Output depends only on the header given: no user or group names, no
 * atime/ctime, whole-second mtimes, so the same changes give the same bytes.
 */

export type TarEntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo';

export interface TarWriteHeader {
  /** Relative, `/`-separated, no leading `./` or `/`; a directory's without the trailing slash. */
  name: string;
  type: TarEntryType;
  /** Permission and set-id bits (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Data bytes that follow (regular files only). */
  size: number;
  /** Whole seconds since the epoch. */
  mtime: number;
  /** Target of a symlink, or the entry name a hard link points at. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, name → value, written in name order. */
  xattrs?: ReadonlyArray<readonly [string, Buffer]>;
}

const TYPEFLAG: Record<TarEntryType, string> = { file: '0', link: '1', symlink: '2', char: '3', block: '4', directory: '5', fifo: '6' };

/** Largest value of an octal field of `len` bytes (one byte is the terminator). */
const maxOctal = (len: number): number => 8 ** (len - 1) - 1;

/** The 512-byte blocks that carry `h` (a PAX header first when needed), without its data. */
export function encodeHeader(h: TarWriteHeader): Buffer {
  const name = h.type === 'directory' ? `${h.name}/` : h.name;
  const pax: Array<[string, Buffer]> = [];
  const ascii = (s: string): boolean => /^[\x20-\x7e]*$/.test(s);
  let ustarName = name;
  let prefix = '';
  if (!ascii(name) || Buffer.byteLength(name) > 100) {
    const split = splitName(name);
    if (split && ascii(name)) [prefix, ustarName] = split;
    else {
      pax.push(['path', Buffer.from(name, 'utf8')]);
      ustarName = asciiStub(name, 100);
    }
  }
  let link = h.linkname ?? '';
  if (!ascii(link) || Buffer.byteLength(link) > 100) {
    pax.push(['linkpath', Buffer.from(link, 'utf8')]);
    link = asciiStub(link, 100);
  }
  for (const [field, value, len] of [['uid', h.uid, 8], ['gid', h.gid, 8], ['size', h.size, 12]] as const) {
    if (value > maxOctal(len)) pax.push([field, Buffer.from(String(value))]);
  }
  for (const [k, v] of [...(h.xattrs ?? [])].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) pax.push([`SCHILY.xattr.${k}`, v]);

  const main = ustarBlock({ ...h, name: ustarName, prefix, linkname: link });
  if (pax.length === 0) return main;
  const body = Buffer.concat(pax.map(([k, v]) => paxRecord(k, v)));
  const paxHeader = ustarBlock({ name: asciiStub(`PaxHeaders/${name}`, 100), prefix: '', type: 'pax', mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: h.mtime });
  return Buffer.concat([paxHeader, body, padding(body.length), main]);
}

/** Zero bytes that round `size` up to a whole block. */
export function padding(size: number): Buffer {
  return Buffer.alloc((512 - (size % 512)) % 512);
}

/** The end of an archive: two zero blocks. */
export const END_OF_ARCHIVE = Buffer.alloc(1024);

/** One PAX record: "LEN key=value\n", LEN counting itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.byteLength(` ${key}=`) + value.length + 1;
  let len = rest + String(rest).length;
  if (String(len).length !== String(rest).length) len = rest + String(len).length;
  return Buffer.concat([Buffer.from(`${len} ${key}=`), value, Buffer.from('\n')]);
}

/** ustar's prefix/name split at a slash, or undefined when it cannot hold `name`. */
function splitName(name: string): [string, string] | undefined {
  for (let i = name.indexOf('/'); i >= 0; i = name.indexOf('/', i + 1)) {
    if (i <= 155 && name.length - i - 1 <= 100 && name.length - i - 1 > 0) return [name.slice(0, i), name.slice(i + 1)];
  }
  return undefined;
}

/** A printable ASCII stand-in of at most `max` bytes for a field PAX carries in full. */
function asciiStub(s: string, max: number): string {
  return s.replace(/[^\x20-\x7e]/g, '_').slice(0, max);
}

function ustarBlock(h: { name: string; prefix: string; type: TarEntryType | 'pax'; mode: number; uid: number; gid: number; size: number; mtime: number; linkname?: string; devmajor?: number; devminor?: number }): Buffer {
  const b = Buffer.alloc(512);
  const octal = (value: number, off: number, len: number): void => {
    const v = value > maxOctal(len) ? 0 : value;
    b.write(v.toString(8).padStart(len - 1, '0') + '\0', off, len, 'ascii');
  };
  b.write(h.name, 0, 100, 'utf8');
  octal(h.mode & 0o7777, 100, 8);
  octal(h.uid, 108, 8);
  octal(h.gid, 116, 8);
  octal(h.size, 124, 12);
  octal(Math.max(0, Math.floor(h.mtime)), 136, 12);
  b.write(h.type === 'pax' ? 'x' : TYPEFLAG[h.type], 156, 1, 'ascii');
  if (h.linkname) b.write(h.linkname, 157, 100, 'utf8');
  b.write('ustar\0', 257, 6, 'ascii');
  b.write('00', 263, 2, 'ascii');
  octal(h.devmajor ?? 0, 329, 8);
  octal(h.devminor ?? 0, 337, 8);
  if (h.prefix) b.write(h.prefix, 345, 155, 'utf8');
  // checksum: the header's bytes summed with the checksum field as spaces
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return b;
}
