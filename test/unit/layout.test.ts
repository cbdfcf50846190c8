/**
 * The install layout (server/util/layout.ts): where the shim, the client,
 * the helper and the Node CLI are, from a checkout's out/, from its bundle
 * and from the packaged extension; and bin/capsa.js following the same rule.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { cliEntry, clientPath, helperEntry, layoutOf, shimPath } from '../../server/util/layout';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

function tree(t: { after(fn: () => void): void }, files: string[]): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of files) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    writeFileSync(path.join(dir, f), f.endsWith('package.json') ? '{}' : '');
  }
  return dir;
}

test('from out/server/util of a checkout: the root holds package.json, the helper is out/server/main.js, the shim and client are in native/build', (t) => {
  const root = tree(t, ['package.json', 'out/server/util/layout.js', 'out/server/main.js', 'out/server/cli/main.js']);
  const layout = layoutOf(path.join(root, 'out', 'server', 'util'));
  assert.deepEqual(layout, { root, bundled: false, serverDir: path.join(root, 'out', 'server') });
  assert.equal(helperEntry(layout), path.join(root, 'out', 'server', 'main.js'));
  assert.equal(shimPath(layout), path.join(root, 'native', 'build', 'capsa-shim'));
  assert.equal(clientPath(layout), path.join(root, 'native', 'build', 'capsa'));
});

test('from out/, the Node CLI is dist/cli.js when it is as new as out/server/cli/main.js, else out/', (t) => {
  const root = tree(t, ['package.json', 'out/server/cli/main.js']);
  const layout = layoutOf(path.join(root, 'out', 'server', 'util'));
  const compiled = path.join(root, 'out', 'server', 'cli', 'main.js');
  const bundle = path.join(root, 'dist', 'cli.js');
  assert.equal(cliEntry(layout), compiled, 'no bundle: out/');
  mkdirSync(path.dirname(bundle));
  writeFileSync(bundle, '');
  utimesSync(compiled, 1000, 1000);
  utimesSync(bundle, 1000, 1000);
  assert.equal(cliEntry(layout), bundle, 'a bundle as new as out/');
  utimesSync(compiled, 2000, 2000);
  assert.equal(cliEntry(layout), compiled, 'out/ newer (a bare tsc after the bundle)');
});

test('from a bundle (dist/ holding server.js): the helper and the CLI are the bundle\'s, the shim is beside dist/', (t) => {
  const root = tree(t, ['package.json', 'dist/server.js', 'dist/cli.js', 'out/server/cli/main.js']);
  const layout = layoutOf(path.join(root, 'dist'));
  assert.deepEqual(layout, { root, bundled: true, serverDir: path.join(root, 'dist') });
  assert.equal(helperEntry(layout), path.join(root, 'dist', 'server.js'));
  assert.equal(cliEntry(layout), path.join(root, 'dist', 'cli.js'), 'even with a newer out/: the bundle runs its own CLI');
  assert.equal(shimPath(layout), path.join(root, 'native', 'build', 'capsa-shim'));
});

test('the compiled module in this checkout finds this checkout', () => {
  const layout = layoutOf();
  assert.equal(layout.root, REPO_ROOT);
  assert.equal(layout.bundled, false);
  assert.equal(helperEntry(), path.join(REPO_ROOT, 'out', 'server', 'main.js'));
});

test('bin/capsa.js runs the CLI the layout names, and dist/cli.js where there is no out/ (the layout the compiled client falls back to)', (t) => {
  const root = tree(t, ['package.json']);
  mkdirSync(path.join(root, 'bin'));
  copyFileSync(path.join(REPO_ROOT, 'bin', 'capsa.js'), path.join(root, 'bin', 'capsa.js'));
  mkdirSync(path.join(root, 'dist'));
  writeFileSync(path.join(root, 'dist', 'cli.js'), "exports.main = async (argv) => { process.stdout.write('bundle ' + argv.join(' ')); return 7; };\n");
  const bundleOnly = spawnSync(process.execPath, [path.join(root, 'bin', 'capsa.js'), 'ps', '-a'], { encoding: 'utf8' });
  assert.equal(bundleOnly.stdout, 'bundle ps -a');
  assert.equal(bundleOnly.status, 7);
  // with out/: the compiled layout module decides (here: out/ is newer than the bundle)
  mkdirSync(path.join(root, 'out', 'server', 'util'), { recursive: true });
  mkdirSync(path.join(root, 'out', 'server', 'cli'), { recursive: true });
  copyFileSync(path.join(REPO_ROOT, 'out', 'server', 'util', 'layout.js'), path.join(root, 'out', 'server', 'util', 'layout.js'));
  writeFileSync(path.join(root, 'out', 'server', 'cli', 'main.js'), "exports.main = async () => { process.stdout.write('compiled'); return 3; };\n");
  utimesSync(path.join(root, 'dist', 'cli.js'), 1000, 1000);
  const withOut = spawnSync(process.execPath, [path.join(root, 'bin', 'capsa.js')], { encoding: 'utf8' });
  assert.equal(withOut.stdout, 'compiled');
  assert.equal(withOut.status, 3);
});
