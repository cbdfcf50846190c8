/**
 * `capsa build -`, as `docker build -` reads standard input: an archive
 * (a tar, plain or compressed with gzip, bzip2, xz or zstd, told by its
 * content) is the whole build context, its Dockerfile inside it; anything
 * else is the Dockerfile itself, with an empty context.
 *
 * Runs on the user's side (the CLI), with the user's rights: the input is
 * saved to the user's own temporary directory and an archive is extracted
 * there by the ADD extractor (addarchive.ts: names cleaned, escapes
 * refused, no symlink followed), every entry owned by the user, who cannot
 * chown. A context's owners never reach an image anyway (COPY gives 0:0
 * unless --chown), so nothing is lost. The directory is then an ordinary
 * context: .dockerignore applies and the context is packed as for a
 * directory.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform, type Readable } from 'node:stream';
import { LIMITS } from '../limits';
import { archiveKind, extractArchive } from './addarchive';
import { BuildContextError } from './errors';

/**
 * Bytes read from standard input, and bytes extracted from it, at most: a
 * context larger than this is not one anybody pipes, and a tar bomb stops
 * here rather than filling the user's disk.
 */
export const STDIN_CONTEXT_BYTES = 16 * 1024 ** 3;

export type StdinContext = { kind: 'archive'; root: string } | { kind: 'dockerfile'; dockerfile: string; root: string };

/** Reads `input` into `tmp` (the caller's own 0700 directory) and returns the context it makes. */
export async function contextFromStdin(input: Readable, tmp: string, signal: AbortSignal = new AbortController().signal): Promise<StdinContext> {
  const saved = path.join(tmp, 'stdin');
  let total = 0;
  const bounded = new Transform({
    transform(chunk: Buffer, _enc, done) {
      total += chunk.length;
      if (total > STDIN_CONTEXT_BYTES) done(new BuildContextError(`the build context on standard input is larger than ${STDIN_CONTEXT_BYTES / 1024 ** 3} GiB`));
      else done(null, chunk);
    },
  });
  await pipeline(input, bounded, fs.createWriteStream(saved, { mode: 0o600, flags: 'wx' }));
  const root = path.join(tmp, 'context');
  fs.mkdirSync(root, { mode: 0o700 });
  const what = 'the build context on standard input';
  const kind = await archiveKind(saved, what);
  if (kind === undefined) {
    if (total > LIMITS.dockerfile.bytes) throw new BuildContextError(`${what} is no archive, so it is the Dockerfile, and it is larger than the ${LIMITS.dockerfile.name} limit of ${LIMITS.dockerfile.bytes / 1024 ** 2} MiB`);
    const dockerfile = fs.readFileSync(saved, 'utf8');
    fs.rmSync(saved);
    return { kind: 'dockerfile', dockerfile, root };
  }
  const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  await extractArchive(saved, kind, root, { what, owner: me, signal, maxBytes: STDIN_CONTEXT_BYTES });
  fs.rmSync(saved);
  return { kind: 'archive', root };
}
