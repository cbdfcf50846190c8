/**
 * `capsa cp`, docker cp's path rules: `CONTAINER:SRC DEST|-` and
 * `SRC|- CONTAINER:DEST`. The host side is done here, as the user running
 * the command (with that user's rights, nothing of the helper's); the
 * helper sends or takes a tar and resolves every container path inside the
 * container's root. Rules (docker cp's reference):
 *
 * - SRC a file: DEST a directory gets it under its name; DEST a file, or
 *   absent (its parent must exist), is written as DEST; an absent DEST
 *   ending in `/` is an error.
 * - SRC a directory: DEST absent is created with SRC's content; DEST a
 *   directory gets SRC in it, or with SRC ending in `/.` SRC's content;
 *   DEST a file is an error.
 * - `-` as DEST writes the tar to standard output; as SRC, extracts the tar
 *   read from standard input into the directory DEST.
 * - `-a` keeps uid/gid (into the container: as it sees ids; onto the host:
 *   when run as root), `-L` follows a symlink SRC.
 */
import { createReadStream, promises as fs, constants, type Stats } from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar-stream';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { InvalidArgumentError } from '../errors';
import {
  COPY_CHUNK,
  ContainerArchiveOpenReadRequest,
  ContainerArchiveOpenWriteRequest,
  ContainerArchiveReadRequest,
  ContainerArchiveWriteRequest,
  ContainerPathStatRequest,
  type ContainerPathStat,
} from '../protocol';
import { parseFlags, usage, type FlagSpec } from './args';
import type { Command } from './command';

const FLAGS: FlagSpec[] = [
  { name: 'archive', short: 'a', kind: 'bool', help: 'Archive mode (copy all uid/gid information)' },
  { name: 'follow-link', short: 'L', kind: 'bool', help: 'Always follow symbol link in SRC_PATH' },
  { name: 'help', kind: 'bool', help: 'Print usage' },
];

/** docker's splitCpArg: `CONTAINER:PATH`, unless the argument is an absolute path or starts with `.` before its colon. */
export function splitCpArg(arg: string): { container?: string; path: string } {
  if (arg.startsWith('/')) return { path: arg };
  const i = arg.indexOf(':');
  if (i < 0 || arg.slice(0, i).startsWith('.')) return { path: arg };
  return { container: arg.slice(0, i), path: arg.slice(i + 1) };
}

/** Where to put a copy: the directory to extract into and what the tar's top entry becomes there (`strip`: its content goes in directly). */
export interface Placement {
  dir: string;
  top: string | { strip: true };
}

/** docker cp's rules for SRC (a directory or not; `srcPath` as typed) onto DEST (`dest` as it exists, following symlinks). */
export function place(srcPath: string, srcIsDir: boolean, destPath: string, dest: 'directory' | 'file' | undefined): Placement {
  const contents = srcIsDir && /(^|\/)\.$/.test(srcPath);
  const srcName = path.posix.basename(path.posix.resolve('/', srcPath));
  if (dest === 'directory') return { dir: destPath, top: contents ? { strip: true } : srcName };
  if (dest === 'file') {
    if (srcIsDir) throw new InvalidArgumentError(`cannot copy a directory to a file: ${destPath}`);
    return { dir: path.posix.dirname(destPath), top: path.posix.basename(destPath) };
  }
  if (!srcIsDir && destPath.endsWith('/')) throw new InvalidArgumentError(`no such directory: ${destPath}`);
  return { dir: path.posix.dirname(destPath.replace(/\/+$/, '') || '/'), top: path.posix.basename(destPath.replace(/\/+$/, '')) };
}

/** An entry name of the tar placed as `p` says, or undefined for the top entry when it is stripped. */
export function placedName(name: string, top: Placement['top']): string | undefined {
  const parts = name.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.some((c) => c === '..')) throw new InvalidArgumentError(`refused tar entry ${JSON.stringify(name.slice(0, 200))}: it names a parent directory`);
  if (parts.length === 0) return undefined;
  if (typeof top !== 'string') return parts.length === 1 ? undefined : parts.slice(1).join('/');
  return [top, ...parts.slice(1)].join('/');
}

export const cp: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, FLAGS, { stopAtPositional: false, verb: 'cp' });
  if (flags.help) {
    process.stdout.write(usage('cp', '[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       capsa cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH', FLAGS) + '\n');
    return 0;
  }
  if (positionals.length !== 2) throw new InvalidArgumentError("'capsa cp' requires exactly 2 arguments: SRC DEST");
  const [src, dst] = positionals.map(splitCpArg);
  if (src.container !== undefined && dst.container !== undefined) throw new InvalidArgumentError('copying between containers is not supported');
  if (src.container === undefined && dst.container === undefined) throw new InvalidArgumentError('must specify at least one container source');
  const c = await conn();
  const opts = { archive: !!flags.archive, follow: !!flags['follow-link'] };
  if (src.container !== undefined) await fromContainer(c, src.container, src.path, dst.path, opts);
  else await toContainer(c, src.path, dst.container!, dst.path, opts);
  return 0;
};

async function fromContainer(c: MessageConnection, container: string, srcPath: string, destPath: string, o: { archive: boolean; follow: boolean }): Promise<void> {
  const { session, stat } = await c.sendRequest(ContainerArchiveOpenReadRequest.type, { container, path: absolute(srcPath), follow: o.follow });
  const chunks = async function* (): AsyncGenerator<Buffer> {
    for (;;) {
      const r = await c.sendRequest(ContainerArchiveReadRequest.type, { session });
      yield Buffer.from(r.data, 'base64');
      if (r.eof) return;
    }
  };
  if (destPath === '-') {
    for await (const chunk of chunks()) if (!process.stdout.write(chunk)) await new Promise((r) => process.stdout.once('drain', r));
    return;
  }
  const dest = await fs.stat(destPath).catch(() => undefined);
  const placement = place(srcPath, stat.type === 'directory', destPath, dest ? (dest.isDirectory() ? 'directory' : 'file') : undefined);
  await extractOnHost(chunks(), placement, o.archive);
}

/** Writes the tar's entries under `p.dir` as this process's user: no entry outside it, none through a symlink the tar made. */
async function extractOnHost(source: AsyncIterable<Buffer>, p: Placement, keepIds: boolean): Promise<void> {
  const links: string[] = [];
  const ex = tar.extract();
  // streamx's Writable, typed apart from Node's
  const input = ex as unknown as NodeJS.WritableStream;
  const feeding = (async () => {
    for await (const chunk of source) if (!input.write(chunk)) await new Promise((r) => input.once('drain', r));
    input.end();
  })();
  feeding.catch((err: unknown) => ex.destroy(err as Error));
  const chown = keepIds && process.getuid?.() === 0;
  for await (const entry of ex) {
    const h = entry.header;
    const rel = placedName(h.name, p.top);
    if (rel === undefined) {
      entry.resume();
      continue;
    }
    const target = path.join(p.dir, rel);
    if (links.some((l) => target.startsWith(l + path.sep))) throw new InvalidArgumentError(`refused tar entry ${JSON.stringify(h.name)}: it goes through a symlink the copy made`);
    const existing = await fs.lstat(target).catch(() => undefined);
    const mtime = h.mtime ?? new Date();
    if (h.type === 'directory') {
      if (existing && !existing.isDirectory()) await fs.unlink(target);
      if (!existing?.isDirectory()) await fs.mkdir(target);
      await fs.chmod(target, (h.mode ?? 0o755) & 0o7777);
      if (chown) await fs.lchown(target, h.uid ?? 0, h.gid ?? 0);
      entry.resume();
    } else if (h.type === 'file' || h.type === 'contiguous-file') {
      if (existing?.isDirectory()) throw new InvalidArgumentError(`cannot overwrite directory ${target} with a file`);
      if (existing?.isSymbolicLink()) await fs.unlink(target);
      const fh = await fs.open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, (h.mode ?? 0o644) & 0o777);
      try {
        for await (const chunk of entry as AsyncIterable<Buffer>) await fh.write(chunk);
        if (chown) await fh.chown(h.uid ?? 0, h.gid ?? 0);
        await fh.chmod((h.mode ?? 0o644) & 0o7777);
        await fh.utimes(mtime, mtime);
      } finally {
        await fh.close();
      }
    } else if (h.type === 'symlink') {
      if (existing) await fs.rm(target, { recursive: existing.isDirectory() });
      await fs.symlink(h.linkname ?? '', target);
      if (chown) await fs.lchown(target, h.uid ?? 0, h.gid ?? 0);
      links.push(target);
      entry.resume();
    } else if (h.type === 'link') {
      const from = placedName(h.linkname ?? '', p.top);
      if (from === undefined) throw new InvalidArgumentError(`refused hard link ${JSON.stringify(h.name)}`);
      if (existing) await fs.unlink(target);
      await fs.link(path.join(p.dir, from), target);
      entry.resume();
    } else {
      // devices, fifos: not made on the host by a copy
      entry.resume();
    }
  }
  await feeding;
}

async function toContainer(c: MessageConnection, srcPath: string, container: string, destPath: string, o: { archive: boolean; follow: boolean }): Promise<void> {
  const dest = absolute(destPath);
  if (srcPath === '-') {
    const { session } = await c.sendRequest(ContainerArchiveOpenWriteRequest.type, { container, path: dest, copyIds: o.archive });
    await send(c, session, process.stdin);
    return;
  }
  const st = o.follow ? await fs.stat(srcPath) : await fs.lstat(srcPath);
  const statIn = (p: string, follow: boolean): Promise<ContainerPathStat | undefined> =>
    c.sendRequest(ContainerPathStatRequest.type, { container, path: p, follow }).catch((err: { data?: { code?: string } }) => {
      if (err?.data?.code === 'E_CONTAINER_PATH_NOT_FOUND') return undefined;
      throw err;
    });
  // docker cp follows a symlink DEST to its target (relative to the link's directory), which the helper resolves in the container's root
  let target = dest;
  let dstStat = await statIn(dest, false);
  if (dstStat?.type === 'symlink' && dstStat.linkTarget !== undefined) {
    target = path.posix.resolve(path.posix.dirname(dest), dstStat.linkTarget);
    dstStat = await statIn(target, true);
  }
  const placement = place(srcPath, st.isDirectory(), target, dstStat ? (dstStat.type === 'directory' ? 'directory' : 'file') : undefined);
  const pack = tar.pack();
  const packing = packTree(pack, srcPath, st, placement.top, o).then(
    () => pack.finalize(),
    (err: unknown) => pack.destroy(err as Error),
  );
  const { session } = await c.sendRequest(ContainerArchiveOpenWriteRequest.type, { container, path: placement.dir, copyIds: o.archive });
  await send(c, session, pack as unknown as AsyncIterable<Buffer>);
  await packing;
}

/** The tar of the host path `src` (already stat'ed as `st`), its top entry named as `top` says. */
async function packTree(pack: tar.Pack, src: string, st: Stats, top: Placement['top'], o: { archive: boolean }): Promise<void> {
  const add = (name: string, s: Stats, extra: Pick<tar.Header, 'type'> & Partial<tar.Header>, body?: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const header = { name, mode: s.mode & 0o7777, mtime: s.mtime, uid: o.archive ? s.uid : 0, gid: o.archive ? s.gid : 0, ...extra, size: 0 } as tar.Header;
      if (body === undefined) {
        pack.entry(header, (err) => (err ? reject(err) : resolve()));
        return;
      }
      const w = pack.entry({ ...header, size: s.size }, (err) => (err ? reject(err) : resolve()));
      createReadStream(body, { end: s.size > 0 ? s.size - 1 : undefined, start: 0 }).on('error', reject).pipe(w);
    });
  const walk = async (abs: string, name: string | undefined, s: Stats): Promise<void> => {
    if (s.isDirectory()) {
      if (name !== undefined) await add(name, s, { type: 'directory' });
      for (const child of (await fs.readdir(abs)).sort()) {
        const cabs = path.join(abs, child);
        await walk(cabs, name === undefined ? child : `${name}/${child}`, await fs.lstat(cabs));
      }
    } else if (s.isSymbolicLink()) await add(name ?? path.basename(abs), s, { type: 'symlink', linkname: await fs.readlink(abs) });
    else if (s.isFile()) await add(name ?? path.basename(abs), s, { type: 'file' }, abs);
    // devices, fifos and sockets of the host are not copied
  };
  await walk(src, typeof top === 'string' ? top : undefined, st);
}

/** Sends `source` (a tar) in chunks of at most COPY_CHUNK bytes, one request at a time. */
async function send(c: MessageConnection, session: string, source: AsyncIterable<Buffer | string>): Promise<void> {
  let pending: Buffer[] = [];
  let size = 0;
  const flush = async (eof: boolean): Promise<void> => {
    const all = Buffer.concat(pending);
    for (let off = 0; off < all.length || (eof && off === 0); off += COPY_CHUNK) {
      const part = all.subarray(off, off + COPY_CHUNK);
      const last = eof && off + COPY_CHUNK >= all.length;
      await c.sendRequest(ContainerArchiveWriteRequest.type, { session, data: part.toString('base64'), ...(last ? { eof: true } : {}) });
      if (last) break;
    }
    pending = [];
    size = 0;
  };
  for await (const chunk of source) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    pending.push(b);
    size += b.length;
    if (size >= COPY_CHUNK) await flush(false);
  }
  await flush(true);
}

/** Container paths are absolute; a relative one is from `/`, as docker cp takes it. */
function absolute(p: string): string {
  if (p === '') throw new InvalidArgumentError('cp: a container path cannot be empty');
  return p.startsWith('/') ? p : `/${p}`;
}
