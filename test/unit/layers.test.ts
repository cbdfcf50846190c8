import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

// The checker is plain Node in scripts/, run from out/test/unit/.
const REPO = join(__dirname, '..', '..', '..');
const CHECKER = join(REPO, 'scripts', 'check-layers.js');

/** A fixture tree: path → source text. */
function tree(t: { after(fn: () => void): void }, files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'capsa-layers-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  }
  return root;
}

/** Runs the checker; a fixture is not Capsa's tree, so without its allow-list. */
function check(root: string, exceptions = false) {
  const args = exceptions ? [CHECKER, root] : [CHECKER, '--no-exceptions', root];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const CLEAN = {
  'server/errors.ts': 'export class CapsaError extends Error {}\n',
  'server/util/atomic.ts': "import { CapsaError } from '../errors';\nexport const x = CapsaError;\n",
  'server/protocol/index.ts': 'export type Id = string;\n',
  'server/image/store.ts': "import { x } from '../util/atomic';\nexport const store = x;\n",
  'server/runtime/containers.ts': "import { store } from '../image/store';\nexport const c = store;\n",
  'server/handlers/containers.ts': "import type { Id } from '../protocol';\nimport { c } from '../runtime/containers';\nexport const h = c;\n",
  'server/main.ts': "import { h } from './handlers/containers';\nexport const m = h;\n",
  'server/cli/main.ts': "import type { Id } from '../protocol';\nimport { spawn } from 'node:child_process';\n",
  'extension/main.ts': "import * as vscode from 'vscode';\nimport type { Id } from '../server/protocol';\n",
  'test/unit/a.test.ts': "import { c } from '../../server/runtime/containers';\nimport { h } from '../../server/handlers/containers';\n",
};

test('a tree whose imports follow the layers passes', (t) => {
  const r = check(tree(t, CLEAN));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /0 violations/);
});

test('an image module importing runtime fails, naming the file, line and rule', (t) => {
  const r = check(
    tree(t, {
      ...CLEAN,
      'server/image/store.ts': "import { x } from '../util/atomic';\n\nimport {\n  c,\n} from '../runtime/containers';\nexport const store = x;\n",
    }),
  );
  assert.equal(r.status, 1);
  // The line is the module specifier's, here the last of a multi-line import.
  assert.match(r.stderr, /^server\/image\/store\.ts:5: imports "\.\.\/runtime\/containers": server\/image\/ must not import runtime\//m);
  assert.match(r.stdout, /1 violations/);
});

test('the CLI importing a helper internal fails, and so does a require() of one', (t) => {
  const r = check(
    tree(t, {
      ...CLEAN,
      'server/cli/main.ts': "import type { Id } from '../protocol';\nconst s = require('../image/store');\n",
    }),
  );
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^server\/cli\/main\.ts:2: imports "\.\.\/image\/store": server\/cli\/ may import only server\/protocol\//m);
});

test('re-exporting across a boundary counts as importing', (t) => {
  const r = check(tree(t, { ...CLEAN, 'server/protocol/types.ts': "export { x } from '../util/atomic';\n" }));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^server\/protocol\/types\.ts:1: .*server\/protocol\/ imports nothing of the helper/m);
});

test('product code importing test/ or the helper importing vscode fails', (t) => {
  const r = check(
    tree(t, {
      ...CLEAN,
      'server/util/atomic.ts': "import { CapsaError } from '../errors';\nimport { r } from '../../test/helpers/oci';\nexport const x = CapsaError;\n",
      'server/handlers/containers.ts': "import * as vscode from 'vscode';\n",
    }),
  );
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^server\/util\/atomic\.ts:2: .*product code must not import test\//m);
  assert.match(r.stderr, /^server\/handlers\/containers\.ts:1: .*only extension\/ \(and test\/\) may import vscode/m);
});

test('a new top-level file of server/ must be placed in a layer', (t) => {
  const r = check(tree(t, { ...CLEAN, 'server/stray.ts': 'export const s = 1;\n' }));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^server\/stray\.ts:1: .*file is in no layer/m);
});

test("the repository's own tree passes, reporting its known exceptions", () => {
  const r = check(REPO, true);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /0 violations, known exceptions: \d+/);
});
