/**
 * The helper: one long-lived process, as root, serving the Capsa protocol
 * over its unix socket (shared by editor windows and the CLI) and, with
 * `--stdio`, over stdin/stdout for the client that launched it.
 */
import * as net from 'node:net';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Connection } from 'vscode-languageserver/node';
import { describeError } from './errors';
import { DEFAULT_WARM_CLI, loadConfig, warmCliSocketPath, type CapsaConfig } from './config';
import { openConnection } from './connection';
import { ContainerEventNotification, ImageEventNotification } from './protocol';
import { ContainerService } from './runtime/containers';
import { ImageService } from './services/images';
import { registerContainerHandlers } from './handlers/containers';
import { registerImageHandlers } from './handlers/images';
import { registerSystemHandlers } from './handlers/system';
import { registerNetworkHandlers } from './handlers/networks';
import { registerVolumeHandlers } from './handlers/volumes';
import { validating } from './handlers/validated';
import { VolumeStore } from './runtime/volumes';
import { NetworkManager } from './runtime/network/manager';
import { VERSION } from './version';
import { printable } from './util/text';
import { WarmCliPool } from './warmclipool';
import { checkTrustedDirectory } from './util/trusteddir';

/** Root keeps its state only where no other user can change it (server/util/trusteddir.ts); other uids are tests' helpers. */
function checkOwnDirectory(dir: string, what: string): void {
  if (process.getuid?.() === 0) checkTrustedDirectory(dir, what);
}

interface Args {
  stdio: boolean;
  socket?: string;
  root?: string;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { stdio: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--stdio') args.stdio = true;
    else if (a === '--socket') args.socket = value();
    else if (a.startsWith('--socket=')) args.socket = a.slice(9);
    else if (a === '--root') args.root = value();
    else if (a.startsWith('--root=')) args.root = a.slice(7);
    else if (a.startsWith('--clientProcessId')) {
      if (!a.includes('=')) i++; // passed by vscode-languageclient; the helper outlives its clients
    } else throw new Error(`unknown argument ${a}`);
  }
  return args;
}

/** One line of the helper's log; what it quotes from clients, registries and images cannot forge lines or drive a terminal. */
export function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} capsa-helper[${process.pid}]: ${printable(message)}\n`);
}

export class Helper {
  private readonly connections = new Set<Connection>();
  readonly images: ImageService;
  readonly containers: ContainerService;
  readonly networks: NetworkManager;
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private warmCli?: WarmCliPool;

  /** `warmCliEntry`: the script warm CLI processes run (default: the Node CLI's); a test entry adds verbs this way. */
  constructor(
    readonly config: CapsaConfig,
    private readonly opts: { warmCliEntry?: string } = {},
  ) {
    this.images = new ImageService(config);
    this.networks = new NetworkManager(config.root, { bridgeName: config.network?.bridge, subnet: config.network?.subnet, log });
    this.containers = new ContainerService(config.root, this.images, this.networks);
    this.containers.on('event', (e) => this.broadcast((c) => c.sendNotification(ContainerEventNotification.type, e)));
    this.images.on('event', (e) => this.broadcast((c) => c.sendNotification(ImageEventNotification.type, e)));
  }

  async init(): Promise<void> {
    checkOwnDirectory(this.config.root, 'capsa root');
    await fs.mkdir(this.config.root, { recursive: true, mode: 0o700 });
    // again: a parent another user could change was refused, but the directory may have appeared between the check and mkdir
    checkOwnDirectory(this.config.root, 'capsa root');
    await this.images.init();
    await this.containers.load();
  }

  private broadcast(send: (c: Connection) => Promise<void>): void {
    for (const c of this.connections) {
      try {
        // a client that went away misses an event it no longer needs; the others still get it
        send(c).catch(() => undefined);
      } catch {
        // closed, and not yet out of the set: its close handler removes it
      }
    }
  }

  /** Serves one client on a pair of streams until it goes away. */
  serve(input: NodeJS.ReadableStream, output: NodeJS.WritableStream): Connection {
    const disposers: Array<() => void> = [];
    const connection = openConnection(input as never, output as never, () => {
      this.connections.delete(connection);
      for (const d of disposers) d();
    }, log);
    // every handler sees only params that fit its message's schema
    const checked = validating(connection);
    checked.onInitialize(() => ({ capabilities: {}, serverInfo: { name: 'capsa-helper', version: VERSION } }));
    registerSystemHandlers(checked, this.config.root);
    disposers.push(registerImageHandlers(checked, this.images, this.containers));
    disposers.push(registerContainerHandlers(checked, this.containers));
    registerNetworkHandlers(checked, this.networks);
    registerVolumeHandlers(checked, new VolumeStore(this.config.root), this.containers);
    this.connections.add(connection);
    connection.listen();
    return connection;
  }

  /** Listens on the unix socket, root-only, replacing a stale socket file but never a live helper's. */
  async listen(socketPath: string): Promise<void> {
    checkOwnDirectory(path.dirname(socketPath), 'socket directory');
    await fs.mkdir(path.dirname(socketPath), { recursive: true, mode: 0o755 });
    checkOwnDirectory(path.dirname(socketPath), 'socket directory');
    if (await socketAlive(socketPath)) throw new Error(`another helper is already listening on ${socketPath}`);
    await fs.rm(socketPath, { force: true });
    const server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      this.serve(socket, socket);
    });
    // the warm CLI's socket first: a client that finds this helper's socket finds that one too
    this.listenWarmCli(socketPath);
    // umask-independent: the socket is created 0600 before any client can connect.
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(socketPath, () => resolve());
      });
    } catch (err) {
      await this.warmCli?.close();
      this.warmCli = undefined;
      throw err;
    } finally {
      process.umask(oldMask);
    }
    this.server = server;
    // an accept that fails (EMFILE, say) costs that one client, not the helper
    server.on('error', (err) => log(`accepting a client on ${socketPath} failed: ${err.message}`));
    // its processes connect to this helper's socket, so they start once it listens
    this.warmCli?.start();
  }

  /** The warm CLI's socket beside the helper's (server/warmclipool.ts), unless configured off; without it every call runs the Node CLI. */
  private listenWarmCli(socketPath: string): void {
    const size = this.config.warmCli ?? DEFAULT_WARM_CLI;
    if (size === 0) return;
    const pool = new WarmCliPool({
      socket: warmCliSocketPath(socketPath),
      size,
      // the processes connect to this helper, and never start one
      env: { ...process.env, CAPSA_SOCKET: socketPath, CAPSA_ROOT: this.config.root, CAPSA_AUTOSTART: '0' },
      log,
      entry: this.opts.warmCliEntry,
    });
    try {
      pool.listen();
      this.warmCli = pool;
    } catch (err) {
      log(`warm CLI off: cannot listen on ${warmCliSocketPath(socketPath)}: ${describeError(err)}`);
    }
  }

  /** Stops listening and drops every client: `server.close()` alone would wait for clients that never hang up. */
  async close(): Promise<void> {
    const warmClosed = this.warmCli?.close();
    const closed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    for (const c of this.connections) c.dispose();
    for (const s of this.sockets) s.destroy();
    await closed;
    await warmClosed;
    await this.networks.close();
  }
}

function socketAlive(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** The helper's program. `opts` go to the Helper (a test entry point under test/ passes its own warm CLI entry). */
export async function main(opts: { warmCliEntry?: string } = {}): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const config = loadConfig();
  if (args.root) config.root = args.root;
  if (args.socket) config.socket = args.socket;
  if (process.getuid && process.getuid() !== 0) {
    throw new Error('the helper must run as root: it mounts filesystems and creates namespaces');
  }
  // both before anything is made in either
  checkOwnDirectory(config.root, 'capsa root');
  if (!args.stdio) checkOwnDirectory(path.dirname(config.socket), 'socket directory');
  const helper = new Helper(config, opts);
  await helper.init();
  if (args.stdio) {
    const c = helper.serve(process.stdin, process.stdout);
    c.onExit(() => process.exit(0));
    process.stdin.on('end', () => process.exit(0));
  } else {
    await helper.listen(config.socket);
    log(`version ${VERSION} listening on ${config.socket}, root ${config.root}`);
    const stop = (): void => {
      log('stopping');
      void helper.close().finally(() => fs.rm(config.socket, { force: true }).finally(() => process.exit(0)));
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  }
  // A broken client pipe must not end the helper that other clients share.
  process.on('SIGPIPE', () => undefined);
  // A rejection nobody handled is a bug of the helper's, but the promise that lost it belongs to
  // one request of one client: log it loudly (tests fail on this line) and keep serving the rest.
  // A thrown exception still ends the helper: its state is then unknown, and containers outlive it.
  process.on('unhandledRejection', (reason) => {
    log(`unhandled rejection (a bug): ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`);
  });
}

if (require.main === module) {
  main().catch((err: unknown) => {
    log(`fatal: ${describeError(err)}`);
    process.exit(1);
  });
}
