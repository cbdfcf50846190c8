#!/usr/bin/env node
'use strict';
// The Node CLI: what bin/capsa runs with `node`, and what the compiled client
// (native/build/capsa) runs when no warm CLI process answers.
// Which script is the CLI (dist/cli.js, the bundle, or out/server/cli/main.js)
// is the install layout's rule: server/util/layout.ts cliEntry, compiled to
// out/. Without out/ (only the bundle was built) the bundle is the CLI.
const path = require('node:path');
let cli;
try {
  cli = require('../out/server/util/layout.js').cliEntry();
} catch (err) {
  if (!err || err.code !== 'MODULE_NOT_FOUND') throw err;
  cli = path.join(__dirname, '..', 'dist', 'cli.js');
}
require(cli).main(process.argv.slice(2)).then(
  (code) => process.stdout.write('', () => process.stderr.write('', () => process.exit(code))),
  (err) => {
    process.stderr.write(`capsa: error: ${err && err.message ? err.message : err}\n`);
    process.exit(125);
  },
);
