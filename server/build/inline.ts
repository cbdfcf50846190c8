/**
 * COPY/ADD heredocs (`COPY <<EOF /dest`): each inline document becomes a
 * file named by its heredoc, as BuildKit's dispatchCopy makes it
 * (`llb.Mkfile(name, 0644, data)` in a scratch state, then copied to the
 * destination with the step's --chmod and --chown): here it is written
 * into a directory of its own, which the step then copies from like any
 * source tree (copy.copyInto), so the destination rules are COPY's. The
 * mtime is the time of the build, as Mkfile without a timestamp gives.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { InlineSource } from './dockerfile/instructions';
import { walkTree } from './copy';
import type { ContextManifest } from './context';
import { BuildContextError, type SourceLocation } from './errors';

/** Writes `inline` into `dir` (empty), 0644 each, and lists them. */
export async function writeInlineSources(dir: string, inline: readonly InlineSource[], loc: SourceLocation): Promise<{ names: string[]; manifest: ContextManifest }> {
  const names: string[] = [];
  for (const doc of inline) {
    // a heredoc's name is a word (EOF, script.sh): a path in it would place the file elsewhere
    if (doc.name === '' || doc.name === '.' || doc.name === '..' || doc.name.includes('/') || doc.name.includes('\0')) {
      throw new BuildContextError(`${loc.file}:${loc.line}: heredoc name ${JSON.stringify(doc.name)} cannot name a file`);
    }
    if (names.includes(doc.name)) throw new BuildContextError(`${loc.file}:${loc.line}: heredoc ${JSON.stringify(doc.name)} is given twice`);
    const file = path.join(dir, doc.name);
    await fs.promises.writeFile(file, doc.data, { flag: 'wx', mode: 0o644 });
    await fs.promises.chmod(file, 0o644);
    names.push(doc.name);
  }
  return { names, manifest: await walkTree(dir) };
}
