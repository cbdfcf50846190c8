/**
 * `npm run package`: the .vsix holds the bundles, the native shim and the
 * few node_modules files they load, nothing else; and an unpacked copy,
 * away from the repository's node_modules, really runs: the helper answers
 * over stdio, the packaged CLI starts the packaged helper and runs a
 * container with the packaged shim, and the packaged `capsa` client hands
 * its call to the helper's warm CLI (or, with none, runs the bundled CLI).
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import { VersionRequest } from '../../server/protocol';
import { REPO_ROOT, connectProtocol } from '../helpers/capsa';
import { seedBusybox } from '../helpers/oci';
import { startRegistry } from '../helpers/registry';
import { readZip } from '../helpers/zip';

const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };

test('npm run package builds a .vsix with only what runs, and the unpacked extension starts its helper and runs a container', { timeout: 300_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-package-'));
  // node:test runs after-hooks in the order they were added: undo in reverse, the folder last
  const cleanups: (() => Promise<unknown> | unknown)[] = [() => rmSync(dir, { recursive: true, force: true })];
  t.after(async () => {
    for (const undo of cleanups.reverse()) await undo();
  });
  const vsix = path.join(dir, 'capsa.vsix');
  await run('npm', ['run', 'package', '--', '-o', vsix], { cwd: REPO_ROOT, timeout: 240_000, maxBuffer: 16 << 20 });

  const entries = readZip(vsix);
  const names = entries.map((e) => e.name);
  t.diagnostic(`${path.basename(vsix)}: ${readFileSync(vsix).length} bytes, ${names.length} entries`);
  for (const required of [
    'extension/package.json',
    'extension/dist/extension.js',
    'extension/dist/server.js',
    'extension/dist/cli.js',
    'extension/native/build/capsa-shim',
    'extension/native/build/capsa',
    'extension/node_modules/koffi/index.js',
    'extension/node_modules/koffi/build/koffi/linux_x64/koffi.node',
    'extension/node_modules/tar-stream/extract.js',
    'extension/node_modules/tar-stream/headers.js',
    'extension/media/capsa.svg',
  ]) {
    assert.ok(names.includes(required), `${required} is in the package`);
  }
  for (const name of ['capsa-shim', 'capsa']) {
    const bin = entries.find((e) => e.name === `extension/native/build/${name}`)!;
    assert.ok(bin.mode & 0o111, `${name} is executable (mode ${bin.mode.toString(8)})`);
  }
  const unwanted = names.filter(
    (n) =>
      /\.(ts|map|c|h|tsbuildinfo)$/.test(n) ||
      /^extension\/(out|test|bench|server|scripts|native\/src|\.cache|test-results)\//.test(n) ||
      /^extension\/node_modules\/(vscode-|undici|fzstd|jsonc-parser|typescript|@types|esbuild|playwright)/.test(n) ||
      /^extension\/node_modules\/koffi\/(src|vendor|doc|lib)\//.test(n) ||
      /^extension\/node_modules\/koffi\/build\/koffi\/(?!linux_(x64|arm64)\/)/.test(n),
  );
  assert.deepEqual(unwanted, [], 'no sources, tests, benchmarks, bundled-in modules or other platforms');

  // Unpack somewhere the repository's node_modules cannot be reached from.
  const unpacked = path.join(dir, 'unpacked');
  for (const e of entries) {
    const to = path.join(unpacked, e.name);
    mkdirSync(path.dirname(to), { recursive: true });
    writeFileSync(to, e.data());
    if (e.mode) chmodSync(to, e.mode & 0o7777);
  }
  const ext = path.join(unpacked, 'extension');

  // The extension bundle loads (every module it bundles resolves) with a stand-in for the vscode API.
  const loader = [
    "const Module = require('node:module');",
    "const resolve = Module._resolveFilename;",
    "Module._resolveFilename = function (req, ...rest) { return req === 'vscode' ? 'vscode' : resolve.call(this, req, ...rest); };",
    "require.cache.vscode = { id: 'vscode', filename: 'vscode', loaded: true, exports: Object.create(new Proxy({}, { get: () => class {} })) };",
    `const ext = require(${JSON.stringify(path.join(ext, 'dist', 'extension.js'))});`,
    "process.stdout.write(typeof ext.activate + ' ' + typeof ext.deactivate);",
  ].join('\n');
  const loaded = await run(process.execPath, ['-e', loader], { cwd: dir });
  assert.equal(loaded.stdout, 'function function');

  if (process.getuid?.() !== 0) {
    t.diagnostic('not root: the packaged helper is not started');
    return;
  }
  const registry = await startRegistry();
  cleanups.push(() => registry.stop());
  await seedBusybox(registry);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CAPSA_ROOT: path.join(dir, 'root'),
    CAPSA_SOCKET: path.join(dir, 'capsa.sock'),
    CAPSA_CONFIG: path.join(dir, 'config.json'),
    CAPSA_REGISTRY_MIRROR: `docker.io=${registry.url}`,
  };
  writeFileSync(env.CAPSA_CONFIG!, '{}');

  // The way the extension launches it when VS Code runs as root: --stdio.
  const child = spawn(process.execPath, [path.join(ext, 'dist', 'server.js'), '--stdio'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const conn = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  conn.listen();
  const version = await conn.sendRequest(VersionRequest.type).catch((err: Error) => assert.fail(`${err.message}\n${stderr}`));
  assert.equal(version.version, pkg.version, 'the bundle reads the packaged package.json');
  conn.dispose();
  child.stdin.end();
  await new Promise((r) => child.once('exit', r));

  // The packaged CLI finds no socket, starts the packaged helper (dist/server.js) and runs a container through the packaged shim.
  const cli = (args: string[]) => run(process.execPath, [path.join(ext, 'dist', 'cli.js'), ...args], { env, timeout: 60_000 });
  cleanups.push(async () => {
    await cli(['rm', '-f', 'packaged']).catch(() => undefined);
    const pid = await helperPid(env.CAPSA_SOCKET!).catch(() => undefined);
    if (pid) process.kill(pid, 'SIGTERM');
  });
  const out = await cli(['run', '--name', 'packaged', 'busybox', 'sh', '-c', 'echo from $(cat /proc/1/comm 2>/dev/null || echo pid1) in the packaged shim']);
  assert.match(out.stdout, /in the packaged shim/);
  const log = readFileSync(path.join(env.CAPSA_ROOT!, 'helper.log'), 'utf8');
  assert.match(log, new RegExp(`version ${pkg.version.replace(/\./g, '\\.')} listening`), log);
  const pid = await helperPid(env.CAPSA_SOCKET!);
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  assert.equal(cmdline[1], path.join(ext, 'dist', 'server.js'), 'the CLI started the packaged helper');

  // The packaged client: its call goes to a warm CLI of the packaged helper (loaded from dist/cli.js) ...
  const client = path.join(ext, 'native', 'build', 'capsa');
  const warm = await runClient(client, ['run', '--rm', 'busybox', 'echo', 'through the warm CLI'], env);
  assert.equal(warm.code, 0, warm.stderr);
  assert.equal(warm.stdout, 'through the warm CLI\n');
  assert.match(readFileSync(path.join(env.CAPSA_ROOT!, 'helper.log'), 'utf8'), new RegExp(`warm CLI \\d+ took a call from pid ${warm.pid}\n`));
  // ... and with no helper to reach, it runs the packaged bundle, which says so
  const alone = await runClient(client, ['ps'], { ...env, CAPSA_SOCKET: path.join(dir, 'nobody.sock'), CAPSA_AUTOSTART: '0' });
  assert.equal(alone.code, 125, alone.stderr);
  assert.match(alone.stderr, /cannot reach the capsa helper/);
});

function runClient(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ pid: number; code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ pid: child.pid!, code, stdout, stderr });
    });
  });
}

async function helperPid(socket: string): Promise<number> {
  const conn = await connectProtocol(socket);
  try {
    return (await conn.sendRequest(VersionRequest.type)).pid;
  } finally {
    conn.dispose();
  }
}
