import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';

/**
 * Replaces a file atomically (temporary name, rename) without fsync: network
 * state is runtime state, like /run. It must survive a helper crash (the page
 * cache does) but not a reboot, after which no namespace, veth or forwarder
 * it describes exists any more; skipping two fsyncs saves milliseconds on
 * every container start.
 */
export async function replaceFile(file: string, data: string): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  await fs.writeFile(tmp, data, { mode: 0o600 });
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}
