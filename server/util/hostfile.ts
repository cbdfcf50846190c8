/**
 * Reading files of the host that someone else names (a client, a user, the
 * configuration) without ever stalling the process on them. A FIFO with no
 * writer blocks open(2) until one comes, and Node runs that open on one of
 * its four pool threads: a few such opens stop every file operation of the
 * helper. Opening with O_NONBLOCK returns at once whatever the file is, and
 * fstat then says what it is.
 */
import { constants as fsc, promises as fs, type Stats } from 'node:fs';
import { exceeded, readCapped, type Limit } from '../limits';
import { InvalidArgumentError } from '../errors';

/** "directory", "FIFO", "character device"…: what a non-regular file is, for messages. */
export function fileKind(st: Stats): string {
  if (st.isFile()) return 'regular file';
  if (st.isDirectory()) return 'directory';
  if (st.isFIFO()) return 'FIFO';
  if (st.isCharacterDevice()) return 'character device';
  if (st.isBlockDevice()) return 'block device';
  if (st.isSocket()) return 'socket';
  if (st.isSymbolicLink()) return 'symbolic link';
  return 'special file';
}

/**
 * Opens `file` for reading, refusing at once anything that is not a regular
 * file (FIFO, device, directory, socket) with an error that says what it is.
 * `nofollow` refuses a symbolic link as the last component (ELOOP).
 */
export async function openRegularFile(file: string, what: string, opts: { nofollow?: boolean } = {}): Promise<{ fh: fs.FileHandle; st: Stats }> {
  const flags = fsc.O_RDONLY | fsc.O_NONBLOCK | (opts.nofollow ? fsc.O_NOFOLLOW : 0);
  const fh = await fs.open(file, flags).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new InvalidArgumentError(`${what}: no such file`, { cause: err });
    if (err.code === 'ELOOP' && opts.nofollow) throw new InvalidArgumentError(`${what}: is a symbolic link; give the path of the file itself`, { cause: err });
    if (err.code === 'EACCES' || err.code === 'EPERM') throw new InvalidArgumentError(`${what}: permission denied`, { cause: err });
    throw err;
  });
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new InvalidArgumentError(`${what}: is a ${fileKind(st)}, not a regular file`);
    return { fh, st };
  } catch (err) {
    // the refusal is the error to report; a close failing on top of it adds nothing
    await fh.close().catch(() => undefined);
    throw err;
  }
}

/** A regular file's whole content, refused (before reading) above `limit`. */
export async function readRegularFile(file: string, limit: Limit, what: string, opts: { nofollow?: boolean } = {}): Promise<Buffer> {
  const { fh, st } = await openRegularFile(file, what, opts);
  try {
    if (st.size > limit.bytes) throw exceeded(limit, what, st.size);
    // The size may grow under us: the cap holds while reading too.
    return await readCapped(fh.createReadStream({ autoClose: false }), limit, what);
  } finally {
    // read-only: a failing close loses no data, and the read's own outcome stands
    await fh.close().catch(() => undefined);
  }
}

/**
 * A file a user names on the command line (`--env-file`, a seccomp
 * profile): a regular file, or a pipe such as bash's `<(…)`, or a device;
 * whatever it is, at most `limit` of it is read. A directory is refused.
 */
export async function readUserFile(file: string, limit: Limit, what: string): Promise<Buffer> {
  const fh = await fs.open(file, fsc.O_RDONLY);
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw Object.assign(new Error(`${what}: is a directory`), { code: 'EISDIR' });
    if (st.isFile() && st.size > limit.bytes) throw exceeded(limit, what, st.size);
    return await readCapped(fh.createReadStream({ autoClose: false }), limit, what);
  } finally {
    // read-only: a failing close loses no data, and the read's own outcome stands
    await fh.close().catch(() => undefined);
  }
}
