/**
 * Where a save writes: a temporary sibling of the output, put in place by a
 * rename only once complete, so a failed save leaves the output as it was.
 * For a client's path the file is created, and renamed, with the caller's
 * rights (capsa-open: O_EXCL in the directory they named, rename(2) as
 * them): the helper, root, only writes through the descriptor the caller's
 * own create gave, so no directory the caller could not write (nor a
 * symlink swapped in meanwhile) ever receives a file.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc, fstatSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError, PermissionDeniedError } from '../../errors';
import { fileKind } from '../../util/hostfile';
import { CallerOpenError, openAsCaller, renameAsCaller } from '../../util/opener';
import type { Caller } from '../../util/peercred';
import { closeFd } from '../../util/seqpacket';
import { ifMissing } from '../../util/missing';

export interface SaveOutput {
  fh: fs.FileHandle;
  /** Closes the file and renames it over the output. */
  commit(): Promise<void>;
  /** Closes and removes the temporary file (after a failure). */
  discard(): Promise<void>;
}

function tmpName(output: string): string {
  return path.join(path.dirname(output), `.${path.basename(output)}.${randomBytes(6).toString('hex')}.tmp`);
}

/** The helper's own writes: for a path it chose, or root's request. */
export async function helperOutput(output: string): Promise<SaveOutput> {
  // No output yet is the usual case; any other trouble with it shows at the open below.
  const st = await fs.lstat(output).catch(() => undefined);
  if (st && !st.isFile()) throw new InvalidArgumentError(`cannot write ${output}: it exists and is not a regular file`);
  const tmp = tmpName(output);
  const fh = await fs.open(tmp, 'wx', 0o600).catch((err: NodeJS.ErrnoException) => {
    throw new InvalidArgumentError(`cannot write ${output}: ${err.code === 'ENOENT' ? 'no such directory' : err.message}`);
  });
  return {
    fh,
    async commit() {
      await fh.close();
      await fs.rename(tmp, output);
    },
    async discard() {
      // the failure that led here is what to report; the close adds nothing
      await fh.close().catch(() => undefined);
      await fs.rm(tmp, { force: true });
    },
  };
}

function callerError(err: unknown, output: string, caller: Caller): unknown {
  if (!(err instanceof CallerOpenError) || (err.step !== 'open' && err.step !== 'rename')) return err;
  if (err.errno === 'EACCES' || err.errno === 'EPERM') return new PermissionDeniedError(`cannot write ${output}: permission denied for uid ${caller.uid}`);
  if (err.errno === 'ENOENT') return new InvalidArgumentError(`cannot write ${output}: no such directory`, { cause: err });
  return new InvalidArgumentError(`cannot write ${output}: ${err.message}`, { cause: err });
}

/** Writes as `caller`: the temporary file is theirs (created O_EXCL, 0600), and so is the rename. */
export async function callerOutput(caller: Caller, output: string): Promise<SaveOutput> {
  // what is there now, as the caller sees it (never root's view of a directory they cannot read)
  const existing = await openAsCaller(caller, output, { how: 'path', noFollow: true }).catch((err: unknown) => {
    if (err instanceof CallerOpenError && err.errno === 'ENOENT') return undefined;
    throw callerError(err, output, caller);
  });
  if (existing !== undefined) {
    const st = fstatSync(existing);
    closeFd(existing);
    if (!st.isFile()) throw new InvalidArgumentError(`cannot write ${output}: it exists and is a ${fileKind(st)}, not a regular file`);
  }
  const tmp = tmpName(output);
  const fd = await openAsCaller(caller, tmp, { how: 'create', mode: 0o600 }).catch((err: unknown) => {
    throw callerError(err, output, caller);
  });
  let fh: fs.FileHandle;
  const ino = fstatSync(fd).ino;
  try {
    // the same file, write-only: what the caller's own create allows
    fh = await fs.open(`/proc/self/fd/${fd}`, fsc.O_WRONLY);
  } finally {
    closeFd(fd);
  }
  return {
    fh,
    async commit() {
      await fh.close();
      await renameAsCaller(caller, tmp, output).catch((err: unknown) => {
        throw callerError(err, output, caller);
      });
    },
    async discard() {
      // the failure that led here is what to report; the close adds nothing
      await fh.close().catch(() => undefined);
      // removed by root only while it is still the file this save created
      // (an unlink as the caller would need capsa-open to learn unlinking)
      const st = await fs.lstat(tmp).catch(ifMissing(undefined));
      if (st?.ino === ino) await fs.rm(tmp, { force: true });
    },
  };
}
