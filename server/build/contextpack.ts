/**
 * The user's side of sending a context: the entries readContextDir listed,
 * packed as a tar stream for the helper (readContextTar), as Docker's client
 * sends its context. Files are opened with O_NOFOLLOW and must still be the
 * regular file of the listing; ids are written as 0 (COPY gives 0:0 unless
 * `--chown` says otherwise, so the user's uid is nobody's business), mtimes
 * as 0 (no key depends on them).
 */
import * as fs from 'node:fs';
import { constants } from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { BuildContextError } from './errors';
import type { ContextManifest } from './context';

/** A tar stream of `manifest`'s entries under `root`. Run it as the user, like the walk. */
export function packContext(root: string, manifest: ContextManifest): Readable {
  const pack = tar.pack();
  void (async () => {
    try {
      for (const e of manifest) {
        const header = { name: e.path, mode: e.mode, uid: 0, gid: 0, mtime: new Date(0) };
        if (e.type === 'dir') await entry(pack, { ...header, type: 'directory' });
        else if (e.type === 'symlink') await entry(pack, { ...header, type: 'symlink', linkname: e.linkTarget ?? '' });
        else {
          const abs = path.join(root, e.path);
          const fd = fs.openSync(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
          const st = fs.fstatSync(fd);
          if (!st.isFile() || st.size !== e.size) {
            fs.closeSync(fd);
            throw new BuildContextError(`build context: ${e.path} changed while the context was sent`, e.path);
          }
          await entry(pack, { ...header, type: 'file', size: st.size }, fs.createReadStream('', { fd, autoClose: true }));
        }
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
    }
  })();
  return pack as unknown as Readable;
}

function entry(pack: tar.Pack, header: Partial<tar.Header> & { name: string }, body?: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    if (!body) return;
    body.on('error', (err) => {
      sink.destroy(err);
      reject(err);
    });
    body.pipe(sink as unknown as NodeJS.WritableStream);
  });
}
