/**
 * The image store's staging directories under a Capsa root: what a build or
 * a commit writes while it works, which none may leave behind once it ended
 * (finished, failed or cancelled).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export function stagingDirs(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string, depth: number): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      if (/^stage-[0-9a-f]{16}$/.test(e.name) || /^from-/.test(e.name)) found.push(path.join(dir, e.name));
      else if (depth < 4) walk(path.join(dir, e.name), depth + 1);
    }
  };
  walk(root, 0);
  return found;
}
