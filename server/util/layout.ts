/**
 * Where Capsa's programs are, in the three layouts it runs from. The one
 * module that knows them: the CLI (starting a helper), the helper (starting
 * warm CLI processes and the shim) and bin/capsa.js ask it.
 *
 *   source checkout   <root>/out/server/…            compiled by tsc (this file: out/server/util/)
 *                     <root>/dist/{server,cli}.js    the esbuild bundle, after `npm run bundle`
 *                     <root>/native/build/capsa-shim, <root>/native/build/capsa
 *                     <root>/bin/capsa, bin/capsa.js
 *   packaged (vsix)   <ext>/dist/{extension,server,cli}.js   (this file is bundled into them)
 *                     <ext>/native/build/capsa-shim, <ext>/native/build/capsa
 *                     no out/, no bin/ (.vscodeignore)
 *
 * <root> is the nearest directory above the running code that holds
 * package.json. Code running from a bundle (a directory holding server.js)
 * starts the bundle's programs; code running from out/ starts out/'s, except
 * the Node CLI: the bundle starts noticeably faster than the same code loaded
 * module by module, so it is taken unless out/ is newer (after a bare tsc).
 *
 * The compiled client (native/client/client.c `run_node_cli`) cannot ask
 * this module: it mirrors the part it needs in C, finding the Node CLI from
 * its own path: `capsa.js` beside it (a copy in bin/), else from
 * native/build/ `../../bin/capsa.js` (a checkout), else `../../dist/cli.js`
 * (packaged). A change here must be made there too.
 */
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';

export interface Layout {
  /** The package root: package.json, native/, and dist/ or out/. */
  root: string;
  /** The running code is an esbuild bundle in <root>/dist. */
  bundled: boolean;
  /** The directory of the running build's helper entry: <root>/dist, or out/server (server/ under ts-node). */
  serverDir: string;
}

/**
 * The layout around `dir`, the directory of the running code: this module's
 * own by default, which is dist/ in a bundle and out/server/util once compiled.
 */
export function layoutOf(dir = __dirname): Layout {
  if (existsSync(path.join(dir, 'server.js'))) return { root: path.dirname(dir), bundled: true, serverDir: dir };
  // out/server/util (or server/util under ts-node): the helper's entry is one up
  const serverDir = path.basename(dir) === 'util' ? path.dirname(dir) : dir;
  return { root: packageRoot(dir), bundled: false, serverDir };
}

/** The nearest directory at or above `dir` that holds package.json; else three up from it, where a checkout's would be. */
export function packageRoot(dir: string): string {
  for (let d = dir; ; ) {
    if (existsSync(path.join(d, 'package.json'))) return d;
    const parent = path.dirname(d);
    if (parent === d) break;
    d = parent;
  }
  return path.resolve(dir, '..', '..', '..');
}

/** The shim: `<root>/native/build/capsa-shim`. */
export function shimPath(layout = layoutOf()): string {
  return path.join(layout.root, 'native', 'build', 'capsa-shim');
}

/** The compiled `capsa` client: `<root>/native/build/capsa`. */
export function clientPath(layout = layoutOf()): string {
  return path.join(layout.root, 'native', 'build', 'capsa');
}

/** The helper's entry of the running build: dist/server.js from a bundle, out/server/main.js from out/. */
export function helperEntry(layout = layoutOf()): string {
  return path.join(layout.serverDir, layout.bundled ? 'server.js' : 'main.js');
}

/**
 * The Node CLI script (run as the CLI, and with `--warm` as a warm CLI
 * process): the bundle's dist/cli.js from a bundle; from out/, dist/cli.js
 * unless out/server/cli/main.js is newer (or the only one there).
 */
export function cliEntry(layout = layoutOf()): string {
  const bundle = path.join(layout.root, 'dist', 'cli.js');
  if (layout.bundled) return path.join(layout.serverDir, 'cli.js');
  const compiled = path.join(layout.serverDir, 'cli', 'main.js');
  return mtime(bundle) >= mtime(compiled) ? bundle : compiled;
}

function mtime(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}
