#!/usr/bin/env node
/**
 * Fails when a TypeScript file imports across a forbidden layer boundary.
 * The layers and who may import whom are described in docs/ARCHITECTURE.md
 * ("Which folder may import which"); this script is that table, enforced.
 *
 * Usage: node scripts/check-layers.js [--no-exceptions] [root]
 * root defaults to this checkout; --no-exceptions checks a tree that is not
 * Capsa's (a test fixture) without the allow-list below.
 *
 * Imports are read with the TypeScript compiler's pre-processor
 * (ts.preProcessFile), which sees `import … from`, `import type`,
 * `export … from`, `require()` and `import()` without type-checking, so a
 * multi-line import counts like any other.
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const ts = require('typescript');

/** Folders scanned, relative to the root. */
const SCANNED = ['extension', 'server', 'test'];

/**
 * The layer a repository path (without extension) belongs to. Top-level
 * files of server/ are named one by one, so that a new one has to be placed
 * in a layer on purpose.
 */
function layerOf(rel) {
  if (rel.startsWith('extension/')) return 'extension';
  if (rel.startsWith('test/')) return 'test';
  if (!rel.startsWith('server/')) return undefined;
  const rest = rel.slice('server/'.length);
  const top = rest.includes('/') ? rest.slice(0, rest.indexOf('/')) : undefined;
  if (top === 'runtime' && rest.startsWith('runtime/network/')) return 'network';
  if (top) return FOLDERS.has(top) ? top : undefined;
  // `server/protocol` is protocol/index.ts.
  return FOLDERS.has(rest) ? rest : TOP_FILES[rest];
}

const FOLDERS = new Set(['protocol', 'client', 'cli', 'handlers', 'engine', 'views', 'services', 'image', 'runtime', 'build', 'util']);

/** server/*.ts, by layer. */
const TOP_FILES = {
  errors: 'base', // the error classes every layer throws
  limits: 'base', // the one table of size ceilings
  version: 'base',
  config: 'config', // the helper's settings, read once at start
  main: 'helper', // the composition root: wires handlers, listens
  connection: 'helper', // the JSON-RPC connection over a socket
  warmclipool: 'helper', // the helper's side of the warm CLI: its pool of processes
  warmusers: 'helper', // the warm CLI pools of users other than root
};

/**
 * Which layers each layer may import (its own is always allowed), bottom
 * up. `test` may import anything; nothing may import `test`.
 */
const ALLOWED = {
  base: [],
  util: ['base'],
  protocol: [],
  config: ['base', 'util'],
  image: ['base', 'util', 'config'],
  network: ['base', 'util', 'config'],
  runtime: ['network', 'image', 'base', 'util', 'config'],
  build: ['runtime', 'network', 'image', 'base', 'util', 'config'],
  services: ['build', 'runtime', 'network', 'image', 'base', 'util', 'config'],
  views: ['runtime', 'network', 'image', 'protocol', 'base', 'util', 'config'],
  handlers: ['views', 'services', 'build', 'runtime', 'network', 'image', 'protocol', 'base', 'util', 'config'],
  // the Engine API: a second front door beside handlers/, on the same services; it asks handlers/access.ts for the one policy
  engine: ['handlers', 'views', 'services', 'build', 'runtime', 'network', 'image', 'protocol', 'base', 'util', 'config'],
  helper: ['engine', 'handlers', 'views', 'services', 'build', 'runtime', 'network', 'image', 'protocol', 'base', 'util', 'config'],
  client: ['protocol'],
  cli: ['client', 'protocol'],
  extension: ['client', 'protocol'],
};

/** The rule, as it is reported. */
const RULES = {
  base: 'server/errors, limits and version import nothing of the helper',
  util: 'server/util/ imports nothing above it (only server/errors and limits)',
  protocol: 'server/protocol/ imports nothing of the helper',
  config: 'server/config imports only server/util/ and the base files',
  image: 'server/image/ must not import runtime/, services/, handlers/, protocol/ or cli/',
  network: 'server/runtime/network/ must not import the rest of runtime/, nor anything above it',
  runtime: 'server/runtime/ must not import services/, handlers/, protocol/ or cli/',
  build: 'server/build/ may import only runtime/, image/, config, util/ and the base files',
  services: 'server/services/ must not import handlers/, protocol/ or cli/',
  views: 'server/views/ may import only runtime/, image/, protocol/ and the layers below them',
  handlers: 'server/handlers/ must not import cli/ or the helper entry points',
  engine: 'server/engine/ must not import cli/ or the helper entry points',
  helper: 'the helper entry points must not import cli/',
  client: 'server/client/ (what the protocol\'s clients share, on the user\'s side) may import only server/protocol/',
  cli: 'server/cli/ may import only server/protocol/ and server/client/ (and cli/ itself)',
  extension: 'extension/ may import only server/protocol/ and server/client/ (and extension/ itself)',
};

/** npm modules that only some layers may load. */
const MODULE_RULES = [
  { module: 'vscode', layers: ['extension', 'test'], rule: 'only extension/ (and test/) may import vscode: the helper and the CLI run without VS Code' },
];

/**
 * Today's known violations, one per importing file and imported module, each
 * with why it is still there. The check passes over these and fails on any
 * other; remove an entry when its import goes.
 */
const EXCEPTIONS = [
  // The CLI reaches helper internals (issue: "the CLI imports helper
  // internals"); the warm CLI and the install layout are being re-homed,
  // after which these go through protocol/ or a shared layout module.
  { from: 'server/cli/args.ts', to: 'server/errors', reason: 'the CLI throws the helper\'s typed errors; a protocol-level error type is not split out yet' },
  { from: 'server/cli/detachkeys.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/images.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/login.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/dockerconfig.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/limits.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/network.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/validate.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/volumes.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/warm/wire.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/client.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/containers/exec.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/containers/lifecycle.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/containers/ps.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/containers/run.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/warm/process.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/commit.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/cp.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  { from: 'server/cli/build.ts', to: 'server/errors', reason: 'as args.ts: typed errors' },
  // A build's context is listed and packed on the user's side by the same
  // code the helper reads it back with; both clients (CLI and extension)
  // reach it through server/client/buildcontext.ts alone.
  { from: 'server/client/buildcontext.ts', to: 'server/build/context', reason: 'the context is listed on the user\'s side, with the user\'s rights (the helper never walks the user\'s tree)' },
  { from: 'server/client/buildcontext.ts', to: 'server/build/contextpack', reason: 'as context: the user\'s side packs the context tar the helper reads' },
  { from: 'server/client/buildcontext.ts', to: 'server/build/dockerignore', reason: 'as context: .dockerignore is read and applied where the tree is walked' },
  { from: 'server/cli/build.ts', to: 'server/build/stdincontext', reason: 'as context: `build -` reads standard input on the user\'s side and extracts an archive there, with the user\'s rights' },
  { from: 'server/cli/client.ts', to: 'server/config', reason: 'the CLI finds the helper\'s socket from the helper\'s config; one install-layout module is to own this' },
  { from: 'server/cli/main.ts', to: 'server/config', reason: 'as client.ts: socket and root from the helper\'s config' },
  { from: 'server/cli/warm/process.ts', to: 'server/config', reason: 'as client.ts: socket from the helper\'s config' },
  { from: 'server/cli/containers/run.ts', to: 'server/limits', reason: 'the CLI bounds what it reads (env files, labels) by the helper\'s ceilings table' },
  { from: 'server/cli/containers/run.ts', to: 'server/util/hostfile', reason: 'the CLI opens --env-file files non-blocking with the helper\'s bounded reader' },
  { from: 'server/cli/client.ts', to: 'server/util/trusteddir', reason: 'the CLI refuses a socket in a directory root does not own, with the helper\'s check' },
  { from: 'server/cli/format.ts', to: 'server/util/bytes', reason: 'sizes printed by the CLI use the helper\'s byte formatter' },
  { from: 'server/cli/warm/process.ts', to: 'server/util/seqpacket', reason: 'the warm CLI\'s socket (SOCK_SEQPACKET, SCM_RIGHTS, peer credentials) goes through the one koffi binding of it, util/seqpacket' },
  { from: 'server/cli/client.ts', to: 'server/util/layout', reason: 'the install layout is one leaf module (it imports only node:) that the CLI, the helper and the runtime all ask for where the helper and the shim are' },
  // protocol/ re-exports the text sanitisers so that clients reach them
  // through the protocol; util/text imports nothing, so no helper state
  // comes with it.
  { from: 'server/protocol/index.ts', to: 'server/util/text', reason: 're-exports printable/listed/clip for the clients; util/text is a pure leaf' },
  // The core layers use protocol types as their own (issue: "runtime/ imports
  // protocol types"); the fix is types owned by image/ and runtime/ with the
  // protocol mapping them at the edge.
  { from: 'server/image/platform.ts', to: 'server/protocol/platform', reason: 'the platform type and its parser are declared in the protocol' },
  { from: 'server/runtime/container/options.ts', to: 'server/protocol/types', reason: 'run and exec options are protocol types; this module is the container side\'s one door to them' },
  { from: 'server/runtime/idmap.ts', to: 'server/protocol/types', reason: 'the id-mapping option is a protocol type' },
  { from: 'server/runtime/runsetup.ts', to: 'server/protocol/types', reason: 'run options are protocol types' },
  { from: 'server/runtime/runsetup.ts', to: 'server/protocol/runoptions', reason: 'the --userns check is declared once with the run options, for the CLI and the helper' },
  { from: 'server/runtime/container/options.ts', to: 'server/protocol/runoptions', reason: 'the pull-policy check is declared once with the run options, for the CLI and the helper' },
  { from: 'server/runtime/hostdevices.ts', to: 'server/protocol/runoptions', reason: 'the --device syntax is declared once with the run options, for the CLI and the helper' },
  { from: 'server/runtime/security.ts', to: 'server/protocol/types', reason: 'security options are protocol types' },
  { from: 'server/runtime/network/manager.ts', to: 'server/protocol/types', reason: 'network settings and run options are protocol types' },
  { from: 'server/runtime/network/records.ts', to: 'server/protocol/types', reason: 'network summaries are protocol types' },
  { from: 'server/services/images.ts', to: 'server/protocol', reason: 'the image service returns protocol shapes (image summaries, pull results)' },
  { from: 'server/services/commit.ts', to: 'server/protocol', reason: 'as images.ts: commit, diff, history and tag return protocol shapes and image events' },
  { from: 'server/services/build.ts', to: 'server/protocol', reason: 'as images.ts: build and builder prune take and return protocol shapes and emit image events' },
];

function listTs(dir, out) {
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (err.code === 'ENOENT') return out;
    throw err;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules') listTs(p, out);
    } else if (e.isFile() && p.endsWith('.ts') && !p.endsWith('.d.ts')) {
      out.push(p);
    }
  }
  return out;
}

function toPosix(p) {
  return p.split(path.sep).join('/');
}

/** `server/x/index` and `server/x` name the same module. */
function moduleKey(rel) {
  return rel.replace(/\.(ts|js)$/, '').replace(/\/index$/, '');
}

/**
 * Checks every .ts file under root's scanned folders.
 * Returns the violations (file, line of the module specifier, spec, rule),
 * the exceptions that
 * matched, and those that matched nothing (stale).
 */
function checkLayers(root, exceptions = EXCEPTIONS) {
  const violations = [];
  const used = new Set();
  const excKeys = new Map(exceptions.map((e, i) => [`${e.from}\0${moduleKey(e.to)}`, i]));
  const files = [];
  for (const d of SCANNED) listTs(path.join(root, d), files);
  for (const abs of files.sort()) {
    const rel = toPosix(path.relative(root, abs));
    const from = layerOf(moduleKey(rel));
    const text = fs.readFileSync(abs, 'utf8');
    const lineOf = (pos) => text.slice(0, pos).split('\n').length;
    if (!from) {
      violations.push({ file: rel, line: 1, spec: '', rule: 'file is in no layer: place it in a folder of server/ or name it in TOP_FILES of scripts/check-layers.js' });
      continue;
    }
    const { importedFiles } = ts.preProcessFile(text, true, true);
    for (const imp of importedFiles) {
      const spec = imp.fileName;
      const line = lineOf(imp.pos);
      if (!spec.startsWith('.')) {
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
        for (const r of MODULE_RULES) {
          if (r.module === name && !r.layers.includes(from)) violations.push({ file: rel, line, spec, rule: r.rule });
        }
        continue;
      }
      const target = moduleKey(toPosix(path.relative(root, path.resolve(path.dirname(abs), spec))));
      const to = layerOf(target);
      if (to === 'test' && from !== 'test') {
        violations.push({ file: rel, line, spec, rule: 'product code must not import test/' });
        continue;
      }
      if (from === 'test' || to === from) continue;
      if (!to) {
        violations.push({ file: rel, line, spec, rule: `${target} is in no layer` });
        continue;
      }
      if (ALLOWED[from].includes(to)) continue;
      const exc = excKeys.get(`${rel}\0${target}`);
      if (exc !== undefined) {
        used.add(exc);
        continue;
      }
      violations.push({ file: rel, line, spec, rule: RULES[from] });
    }
  }
  return {
    files: files.length,
    violations,
    exceptions: exceptions.filter((_, i) => used.has(i)),
    stale: exceptions.filter((_, i) => !used.has(i)),
  };
}

function main() {
  const args = process.argv.slice(2);
  const bare = args.includes('--no-exceptions');
  const rest = args.filter((a) => a !== '--no-exceptions');
  const root = path.resolve(rest[0] ?? path.join(__dirname, '..'));
  const r = checkLayers(root, bare ? [] : EXCEPTIONS);
  for (const v of r.violations) {
    process.stderr.write(`${v.file}:${v.line}: imports ${JSON.stringify(v.spec)}: ${v.rule}\n`);
  }
  // A stale entry means an import was fixed: a reminder, not a failure, so
  // that the fix and the list's clean-up need not land in one commit.
  for (const e of r.stale) process.stderr.write(`stale exception (no such import any more, remove it): ${e.from} -> ${e.to}\n`);
  process.stdout.write(`layers: ${r.files} files, ${r.violations.length} violations, known exceptions: ${r.exceptions.length}\n`);
  process.exitCode = r.violations.length ? 1 : 0;
}

module.exports = { checkLayers, layerOf, ALLOWED, EXCEPTIONS };

if (require.main === module) main();
