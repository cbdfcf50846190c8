#!/usr/bin/env node
'use strict';
// The Node CLI: what bin/capsa runs with `node`, and what the compiled client
// (native/build/capsa) runs when no warm CLI process answers.
// The bundled CLI (dist/cli.js, one file) starts noticeably faster than the
// same code loaded module by module from out/. Both come from `npm run build`;
// after a bare `tsc` the bundle is older than out/ and is not used.
const path = require('node:path');
const fs = require('node:fs');
const bundle = path.join(__dirname, '..', 'dist', 'cli.js');
const compiled = path.join(__dirname, '..', 'out', 'server', 'cli', 'main.js');
const mtime = (f) => {
  try {
    return fs.statSync(f).mtimeMs;
  } catch {
    return -1;
  }
};
const cli = mtime(bundle) >= mtime(compiled) ? bundle : compiled;
require(cli).main(process.argv.slice(2)).then(
  (code) => process.stdout.write('', () => process.stderr.write('', () => process.exit(code))),
  (err) => {
    process.stderr.write(`capsa: error: ${err && err.message ? err.message : err}\n`);
    process.exit(125);
  },
);
