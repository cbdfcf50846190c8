/**
 * `capsa`: Docker's verbs and flags, as a thin client of the helper's protocol.
 * This file picks the verb (Docker's management forms included), prints the
 * help and runs the verb against a connection to the helper; the verbs live
 * in containers/, images.ts, network.ts and volumes.ts. Run with `--warm`
 * (by the helper), it is a warm CLI process instead (warm/process.ts).
 */
// first of all: a user's warm process becomes its user before any other module loads
import './warm/become';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { loadConfig } from '../config';
import { VersionRequest } from '../protocol';
import { parseFlags } from './args';
import { connect, watchHelper } from './client';
import { errorMessage, type Command } from './command';
import { errorLine, exitStatus } from './exit';
import { printable } from './format';
import { network, port } from './network';
import { volume } from './volumes';
import { imagePrune, images, load, pull, rmi, save, system } from './images';
import { commit, diff, history, tag } from './commit';
import { build, builder } from './build';
import { cp } from './cp';
import { runWarmEntry } from './warm/process';
import { login, logout, push } from './login';
import * as check from './validate';
import { runLike } from './containers/run';
import { exec } from './containers/exec';
import { attach, containerPrune, kill, restart, rm, start, stop, wait } from './containers/lifecycle';
import { logs, ps, top } from './containers/ps';
import { inspectCommand } from './inspect';
import { restoreTerminal } from './containers/streams';

/** Exit status for errors of Capsa itself, as Docker uses 125. */
const EXIT_CAPSA = 125;

const version: Command = async (argv, conn) => {
  check.noArguments('version', parseFlags(argv, [], { stopAtPositional: false, verb: 'version' }).positionals);
  const c = await conn();
  const v = await c.sendRequest(VersionRequest.type);
  process.stdout.write(`capsa helper ${v.version} (protocol ${v.protocol}), root ${v.root}, pid ${v.pid}\n`);
  return 0;
};

const COMMANDS: Record<string, [Command, string]> = {
  run: [runLike('run'), 'Create and run a new container from an image'],
  create: [runLike('create'), 'Create a new container'],
  start: [start, 'Start one or more stopped containers'],
  restart: [restart, 'Restart one or more containers'],
  attach: [attach, "Attach to a running container's streams"],
  top: [top, 'Display the running processes of a container'],
  'container-prune': [containerPrune, 'Remove all stopped containers'],
  exec: [exec, 'Run a command in a running container'],
  ps: [ps, 'List containers'],
  images: [images, 'List images'],
  pull: [pull, 'Download an image from a registry'],
  push: [push, 'Upload an image to a registry'],
  login: [login, 'Log in to a registry'],
  logout: [logout, 'Log out from a registry'],
  rmi: [rmi, 'Remove one or more images'],
  rm: [rm, 'Remove one or more containers'],
  stop: [stop, 'Stop one or more running containers'],
  kill: [kill, 'Kill one or more running containers'],
  logs: [logs, 'Fetch the logs of a container'],
  wait: [wait, 'Wait for containers to stop, then print their exit codes'],
  inspect: [inspectCommand(), 'Show details of containers or images'],
  'container-inspect': [inspectCommand('container'), 'Show details of containers (capsa container inspect)'],
  'image-inspect': [inspectCommand('image'), 'Show details of images (capsa image inspect)'],
  version: [version, 'Show the helper version'],
  network: [network, 'Manage networks'],
  volume: [volume, 'Manage volumes'],
  load: [load, 'Load images from a docker save or OCI archive'],
  save: [save, 'Save images to a docker save archive'],
  system: [system, 'Show disk usage (system df)'],
  'image-prune': [imagePrune, 'Remove unused images (capsa image prune)'],
  port: [port, 'List port mappings of a container'],
  commit: [commit, "Create a new image from a container's changes"],
  diff: [diff, "Inspect changes to files or directories on a container's filesystem"],
  history: [history, 'Show the history of an image'],
  tag: [tag, 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE'],
  cp: [cp, 'Copy files/folders between a container and the local filesystem'],
  build: [build, 'Build an image from a Dockerfile'],
  builder: [builder, 'Manage builds (builder prune)'],
};

const MANAGEMENT: Record<string, Record<string, string>> = {
  container: {
    ls: 'ps', list: 'ps', ps: 'ps', rm: 'rm', run: 'run', exec: 'exec', stop: 'stop', kill: 'kill', logs: 'logs', wait: 'wait', inspect: 'container-inspect',
    create: 'create', start: 'start', restart: 'restart', attach: 'attach', top: 'top', prune: 'container-prune', commit: 'commit', diff: 'diff', cp: 'cp',
  },
  image: { ls: 'images', list: 'images', rm: 'rmi', pull: 'pull', push: 'push', prune: 'image-prune', load: 'load', save: 'save', history: 'history', tag: 'tag', build: 'build', inspect: 'image-inspect' },
};

function help(): string {
  // `container-prune`, `image-prune` and the `-inspect`s are reached as `capsa container prune` / `capsa image prune`; help shows those forms.
  const listed = Object.entries(COMMANDS).filter(([k]) => !/-(prune|inspect)$/.test(k));
  const lines = [
    ...listed.map(([k, [, d]]) => `  ${k.padEnd(10)} ${d}`),
    `  ${'container'.padEnd(10)} Manage containers (ls, rm, prune, …)`,
    `  ${'image'.padEnd(10)} Manage images (ls, rm, pull, prune)`,
  ];
  return ['Usage: capsa COMMAND', '', 'Run code in reproducible Linux containers.', '', 'Commands:', ...lines, ''].join('\n');
}

/**
 * Runs one `capsa` command line. `connection`, when given, is an open
 * connection to the helper to use instead of connecting (a warm CLI process
 * opens it ahead of the call); it is disposed at the end either way.
 */
export async function main(argv: string[], opts: { connection?: MessageConnection } = {}): Promise<number> {
  const [verb, ...rest] = argv;
  if (!verb || verb === '--help' || verb === 'help') {
    process.stdout.write(help());
    return verb ? 0 : 1;
  }
  // Docker's management-command forms: `capsa container ls`, `capsa image rm`, …
  const sub = MANAGEMENT[verb];
  const name = sub ? sub[rest[0]] : verb;
  const args = sub ? rest.slice(1) : rest;
  const entry = name ? COMMANDS[name] : undefined;
  if (!entry) {
    process.stderr.write(`capsa: '${printable([verb, ...(sub ? [rest[0] ?? ''] : [])].join(' ').trim())}' is not a capsa command.\nSee 'capsa --help'\n`);
    return EXIT_CAPSA;
  }
  let connection: MessageConnection | undefined = opts.connection;
  // every verb ends when the helper goes away under it, with 125 and the reason (the catch below)
  const helper = watchHelper([verb, ...(sub ? [rest[0]] : [])].join(' '));
  let watched: MessageConnection | undefined;
  const conn = async (): Promise<MessageConnection> => {
    if (watched) return watched;
    const config = loadConfig();
    connection ??= await connect(config);
    helper.watch(connection, config.socket);
    return (watched = connection);
  };
  try {
    return await Promise.race([entry[0](args, conn), helper.lost]);
  } catch (err) {
    restoreTerminal();
    const failure = helper.lostError(err) ?? err;
    process.stderr.write(`capsa: error: ${errorLine(failure)}\n`);
    return exitStatus(failure);
  } finally {
    connection?.dispose();
  }
}

if (require.main === module && process.argv[2] === '--warm') {
  // started by the helper ahead of a call (server/warmclipool.ts)
  runWarmEntry(main);
} else if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      // Exit only once our own output is flushed: a pipe reader must see every byte.
      process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
    },
    (err: unknown) => {
      process.stderr.write(`capsa: error: ${errorMessage(err)}\n`);
      process.exit(EXIT_CAPSA);
    },
  );
}