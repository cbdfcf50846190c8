import { readFileSync } from 'node:fs';
import * as path from 'node:path';

/** The package version, read once from package.json (above dist/ in the bundle, two levels above out/server/ otherwise). */
export const VERSION: string = (() => {
  for (const rel of ['../package.json', '../../package.json', '../../../package.json']) {
    try {
      return (JSON.parse(readFileSync(path.join(__dirname, rel), 'utf8')) as { version: string }).version;
    } catch {
      // try the next layout
    }
  }
  return '0.0.0';
})();
