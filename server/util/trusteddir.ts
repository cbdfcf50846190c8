/**
 * A root helper keeps its state and its socket only where no other user can
 * change them: otherwise that user could swap a directory or plant a link
 * (`helper.log -> /etc/shadow`) for root to follow. The rule is sshd's
 * StrictModes: the directory and every parent up to `/` is owned by root
 * and not writable by group or others, except that a parent may be a
 * sticky directory (/tmp), in which others cannot rename or remove what
 * root made.
 */
import { lstatSync, realpathSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { CapsaError } from '../errors';

/** A state or socket directory, or a parent of it, that a user other than root can change. */
export class UntrustedDirectoryError extends CapsaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_UNTRUSTED_DIRECTORY', message, options);
  }
}

const S_ISVTX = 0o1000;

/**
 * Checks `dir` (which need not exist yet: what is missing of it root
 * creates) and each parent. Both the path as given and the one its
 * symlinks resolve to are checked: a link in a directory another user
 * controls could be pointed elsewhere later. `what` names the directory
 * in the error (`capsa root`, `socket directory`). Synchronous: it runs
 * once, at start-up, before anything listens.
 */
export function checkTrustedDirectory(dir: string, what: string): void {
  const absolute = path.resolve(dir);
  checkChain(absolute, absolute, what);
  const real = resolveExisting(absolute);
  if (real !== absolute) checkChain(real, absolute, what);
}

function checkChain(target: string, given: string, what: string): void {
  const shown = target === given ? given : `${given} (resolved to ${target})`;
  for (let p = target, leaf = true; ; leaf = false) {
    let st: Stats | undefined;
    try {
      st = lstatSync(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new UntrustedDirectoryError(`cannot check ${what} ${shown}: ${p}: ${(err as Error).message}`, { cause: err });
    }
    if (st) {
      const where = p === target ? `${what} ${shown}` : `${what} ${shown}: its parent ${p}`;
      const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
      if (st.uid !== 0) throw new UntrustedDirectoryError(`refusing the ${where}: it is owned by uid ${st.uid}, not root, so that user could redirect what the root helper writes there`);
      if (!st.isSymbolicLink()) {
        if (!st.isDirectory()) throw new UntrustedDirectoryError(`refusing the ${where}: it is not a directory`);
        // a sticky parent (/tmp) keeps others from renaming what root made in it; the directory itself must be root's alone
        const sticky = !leaf && (st.mode & S_ISVTX) !== 0;
        if ((st.mode & 0o022) !== 0 && !sticky) {
          throw new UntrustedDirectoryError(`refusing the ${where}: it is writable by ${st.mode & 0o002 ? 'others' : 'its group'} (mode ${mode})${leaf ? '' : ' and not sticky'}, so another user could replace what the root helper keeps there`);
        }
      }
    }
    const parent = path.dirname(p);
    if (parent === p) return;
    p = parent;
  }
}

/** `p` with the symlinks of its existing part resolved; the missing rest appended as given. */
function resolveExisting(p: string): string {
  const missing: string[] = [];
  for (let at = p; ; at = path.dirname(at)) {
    try {
      return path.join(realpathSync(at), ...missing.reverse());
    } catch {
      // not there (yet): resolve the nearest ancestor that is, and keep the rest as written
      if (path.dirname(at) === at) return p;
      missing.push(path.basename(at));
    }
  }
}
