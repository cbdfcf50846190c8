#!/usr/bin/env node
// Bundles what the packaged extension runs into dist/: the extension, the
// helper it launches and the CLI. koffi (per-platform .node files) and
// tar-stream stay in node_modules; .vscodeignore ships exactly those.
// tar-stream now only reads and writes image archives (`capsa load` and
// `capsa save`, server/image/archive/): layers are unpacked by Capsa's own
// tar reader (server/image/tar.ts), which patches nothing, so tar-stream is
// external only because the package layout already ships it.
'use strict';
const path = require('node:path');
const esbuild = require('esbuild');

const root = path.resolve(__dirname, '..');
const common = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  minify: process.argv.includes('--minify'),
  sourcemap: false,
  logLevel: 'warning',
  absWorkingDir: root,
  external: ['koffi', 'tar-stream'],
};

Promise.all([
  // jsonc-parser's "main" is a UMD build whose relative requires esbuild cannot follow; its "module" build bundles
  esbuild.build({ ...common, entryPoints: ['extension/main.ts'], outfile: 'dist/extension.js', external: [...common.external, 'vscode'], mainFields: ['module', 'main'] }),
  esbuild.build({ ...common, entryPoints: ['server/main.ts'], outfile: 'dist/server.js' }),
  esbuild.build({ ...common, entryPoints: ['server/cli/main.ts'], outfile: 'dist/cli.js' }),
]).catch(() => process.exit(1));
