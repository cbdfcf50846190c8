/**
 * The user's side of a build's context, shared by the two clients that send
 * `capsa/image/build` (the `capsa build` command and the editor's workspace
 * build): list the context with its .dockerignore applied and pack it as a
 * tar, with the user's own rights, into a temporary file of the user's (a
 * 0700 directory). The helper opens that one file with the caller's rights
 * and never walks the user's tree; a context the user cannot read fails
 * here, naming the file, before the helper is asked anything.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { readContextDir } from '../build/context';
import { packContext } from '../build/contextpack';
import { ignoreFileFor, readDockerignore } from '../build/dockerignore';

export interface PackedContext {
  /** Absolute path of the context tar: `ImageBuildParams.context`. */
  tarFile: string;
  /** Removes the tar and its directory. */
  dispose(): void;
}

/**
 * Packs the context at `root` for a build of the Dockerfile at
 * `dockerfilePath` (which picks the ignore file: `NAME.dockerignore` beside
 * it, else the context's `.dockerignore`, as BuildKit does).
 */
export async function packBuildContext(root: string, dockerfilePath: string): Promise<PackedContext> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-build-'));
  const dispose = () => fs.rmSync(dir, { recursive: true, force: true });
  try {
    const tarFile = path.join(dir, 'context.tar');
    await writeBuildContext(root, dockerfilePath, tarFile);
    return { tarFile, dispose };
  } catch (err) {
    dispose();
    throw err;
  }
}

/** As {@link packBuildContext}, into `tarFile` (created 0600) in a directory of the caller's. */
export async function writeBuildContext(root: string, dockerfilePath: string, tarFile: string): Promise<void> {
  const ignoreFile = ignoreFileFor(dockerfilePath, root, (p) => fs.existsSync(p));
  const ignore = ignoreFile ? readDockerignore(readAsUser(ignoreFile), path.basename(ignoreFile)) : [];
  const manifest = await readContextDir(root, { ignore, hash: false });
  await pipeline(packContext(root, manifest), fs.createWriteStream(tarFile, { mode: 0o600 }));
}

/** A file the user named, read with the user's own rights: a failure names the path, the errno and the uid, not a stack. */
function readAsUser(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!code) throw err;
    throw new Error(`${file}: ${code === 'EACCES' || code === 'EPERM' ? `permission denied for uid ${process.getuid?.() ?? '?'}` : code === 'ENOENT' ? 'no such file or directory' : code}`);
  }
}
