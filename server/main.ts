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
import { CREATED_SOCKET_MODE, DEFAULT_SOCKET_MODE, DEFAULT_WARM_CLI, DEFAULT_WARM_CLI_IDLE, DEFAULT_WARM_CLI_USERS, engineSocketPath, loadConfig, socketGroupId, warmCliSocketPath, warmCliUserDir, type CapsaConfig } from './config';
import { openConnection } from './connection';
import { ContainerEventNotification, formatTimings } from './protocol';
import { ContainerService, type ContainerChange } from './runtime/container';
import { containerEvent } from './views/containers';
import { ImageService } from './services/images';
import { registerContainerHandlers } from './handlers/containers';
import { registerImageHandlers } from './handlers/images';
import { registerCommitHandlers } from './handlers/commit';
import { registerBuildHandlers } from './handlers/build';
import { BuildService } from './services/build';
import { registerCopyHandlers } from './handlers/copy';
import { CommitService } from './services/commit';
import { registerSystemHandlers } from './handlers/system';
import { registerNetworkHandlers } from './handlers/networks';
import { registerVolumeHandlers } from './handlers/volumes';
import { validating } from './handlers/validated';
import { VolumeStore } from './runtime/volumes';
import { NetworkManager } from './runtime/network/manager';
import { VERSION } from './version';
import { printable } from './util/text';
import { WarmCliPool } from './warmclipool';
import { WarmCliUsers } from './warmusers';
import { checkTrustedDirectory } from './util/trusteddir';
import { describeCaller, ownCaller, peerCaller, socketFd, type Caller } from './util/peercred';
import { forCaller, hasFullAccess } from './handlers/access';
import { activationSocket, boundPath } from './util/activation';
import { createEngine, type EngineServer } from './engine';

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
  /** Each open connection, and its caller's uid: root sees every event, another caller only its own containers'. */
  private readonly connections = new Map<Connection, number>();
  readonly images: ImageService;
  readonly containers: ContainerService;
  readonly networks: NetworkManager;
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private warmCli?: WarmCliPool;
  private warmUsers?: WarmCliUsers;
  /** The Docker Engine API (server/engine/), on its own socket beside this one. */
  private engine?: { server: EngineServer; socket: string };

  /** `warmCliEntry`: the script warm CLI processes run (default: the Node CLI's); a test entry adds verbs this way. */
  constructor(
    readonly config: CapsaConfig,
    private readonly opts: { warmCliEntry?: string } = {},
  ) {
    this.images = new ImageService(config);
    this.networks = new NetworkManager(config.root, { bridgeName: config.network?.bridge, subnet: config.network?.subnet, log });
    this.containers = new ContainerService(config.root, this.images, this.networks);
    this.containers.userCeilings = config.userLimits ?? {};
    // a container's events reach root and its owner only
    this.containers.on('event', (e: ContainerChange) =>
      this.broadcast((c) => c.sendNotification(ContainerEventNotification.type, containerEvent(e)), e.container.record.owner),
    );
    // CAPSA_TRACE=1: every run's phases (server/runtime/trace.ts)
    this.containers.on('trace', (t: { id: string; phases: Array<{ phase: string; ms: number }> }) =>
      formatTimings(t.phases).trimEnd().split('\n').forEach((line) => log(`run ${t.id.slice(0, 12)}: ${line}`)),
    );
    // image events go to their owner's connections and root's: handlers/images.ts
  }

  async init(): Promise<void> {
    checkOwnDirectory(this.config.root, 'capsa root');
    await fs.mkdir(this.config.root, { recursive: true, mode: 0o700 });
    // again: a parent another user could change was refused, but the directory may have appeared between the check and mkdir
    checkOwnDirectory(this.config.root, 'capsa root');
    await this.images.init();
    await this.containers.load();
  }

  /** Sends to root's connections, and to `owner`'s when an event is of an object of that uid's. */
  private broadcast(send: (c: Connection) => Promise<void>, owner?: number): void {
    for (const [c, uid] of this.connections) {
      if (uid !== 0 && uid !== owner) continue;
      try {
        // a client that went away misses an event it no longer needs; the others still get it
        send(c).catch(() => undefined);
      } catch {
        // closed, and not yet out of the set: its close handler removes it
      }
    }
  }

  /** Serves one client on a pair of streams until it goes away, acting as `caller` (what the kernel says of it, never what it says). */
  serve(input: NodeJS.ReadableStream, output: NodeJS.WritableStream, caller: Caller): Connection {
    const disposers: Array<() => void> = [];
    const connection = openConnection(input as never, output as never, () => {
      this.connections.delete(connection);
      for (const d of disposers) d();
    }, log);
    // every handler sees only params that fit its message's schema, and only messages its caller may send (handlers/access.ts)
    const checked = validating(forCaller(connection, caller));
    checked.onInitialize(() => ({ capabilities: {}, serverInfo: { name: 'capsa-helper', version: VERSION } }));
    registerSystemHandlers(checked, this.config.root);
    disposers.push(registerImageHandlers(checked, this.images, this.containers));
    disposers.push(registerContainerHandlers(checked, this.containers));
    disposers.push(registerCommitHandlers(checked, new CommitService(this.images, this.containers)));
    disposers.push(registerCopyHandlers(checked, this.containers));
    disposers.push(registerBuildHandlers(checked, new BuildService(this.images, this.containers, this.config.root)));
    registerNetworkHandlers(checked, this.networks);
    registerVolumeHandlers(checked, new VolumeStore(this.config.root), this.containers);
    this.connections.set(connection, caller.uid);
    connection.listen();
    return connection;
  }

  /**
   * Listens on the unix socket, replacing a stale socket file but never a
   * live helper's. It is created 0600 and then given the configured group
   * and mode (every local user by default: see socketMode in server/config.ts).
   */
  async listen(socketPath: string): Promise<void> {
    checkOwnDirectory(path.dirname(socketPath), 'socket directory');
    await fs.mkdir(path.dirname(socketPath), { recursive: true, mode: 0o755 });
    checkOwnDirectory(path.dirname(socketPath), 'socket directory');
    if (await socketAlive(socketPath)) throw new Error(`another helper is already listening on ${socketPath}`);
    await fs.rm(socketPath, { force: true });
    await this.serveOn(socketPath, socketPath);
    try {
      await this.applySocketAccess(socketPath);
    } catch (err) {
      await this.close();
      throw err;
    }
    await this.listenEngine(socketPath);
  }

  /**
   * The Engine API's socket (engineSocketPath), made as this helper's is:
   * 0600 until it listens, then the configured group and mode. The helper
   * serves its own protocol without it when it cannot listen (another
   * engine holds the path, say): that is logged, not fatal.
   */
  private async listenEngine(helperSocket: string): Promise<void> {
    const socketPath = engineSocketPath({ socket: helperSocket, engineSocket: this.config.engineSocket });
    if (!socketPath) return;
    try {
      checkOwnDirectory(path.dirname(socketPath), 'Engine API socket directory');
      if (await socketAlive(socketPath)) throw new Error(`something already listens on ${socketPath}`);
      await fs.rm(socketPath, { force: true });
      const server = createEngine({ containers: this.containers, images: this.images, commit: new CommitService(this.images, this.containers), root: this.config.root }, log);
      await server.listen(socketPath);
      this.engine = { server, socket: socketPath };
      await this.applySocketAccess(socketPath);
      log(`Docker Engine API listening on ${socketPath} (DOCKER_HOST=unix://${socketPath})`);
    } catch (err) {
      log(`Docker Engine API off: cannot listen on ${socketPath}: ${describeError(err)}`);
      await this.engine?.server.close();
      this.engine = undefined;
    }
  }

  /**
   * Serves on a listening socket that systemd passed (server/util/activation.ts):
   * the unit owns its path and mode. Returns its path, which the warm CLI's
   * socket and processes follow.
   */
  async listenActivated(fd: number): Promise<string> {
    const socketPath = boundPath(fd);
    if (!socketPath) throw new Error(`the socket passed by systemd (fd ${fd}) has no path: the unit needs ListenStream=/run/capsa/capsa.sock`);
    checkOwnDirectory(path.dirname(socketPath), 'socket directory');
    await this.serveOn({ fd }, socketPath);
    await this.listenEngine(socketPath);
    if ((this.config.socketMode ?? DEFAULT_SOCKET_MODE) !== DEFAULT_SOCKET_MODE || (this.config.socketGroup ?? '0') !== '0') {
      log(`socketMode and socketGroup do not apply to ${socketPath}: systemd made it, with the unit's SocketMode and SocketGroup`);
    }
    return socketPath;
  }

  /** A server on `where` (a path to create, or a listening fd), the warm CLI's socket beside `socketPath`. */
  private async serveOn(where: string | { fd: number }, socketPath: string): Promise<void> {
    const server = net.createServer((socket) => this.accept(socket));
    // the warm CLI's socket first: a client that finds this helper's socket finds that one too
    this.listenWarmCli(socketPath);
    try {
      // umask-independent: a socket made here is created 0600 before any client can connect, and widened only after
      const oldMask = process.umask(0o177);
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          // two calls for listen's two overloads (a path, or { fd })
          if (typeof where === 'string') server.listen(where, () => resolve());
          else server.listen(where, () => resolve());
        });
      } finally {
        process.umask(oldMask);
      }
    } catch (err) {
      await this.warmCli?.close();
      this.warmCli = undefined;
      await this.warmUsers?.close();
      this.warmUsers = undefined;
      throw err;
    }
    this.server = server;
    // an accept that fails (EMFILE, say) costs that one client, not the helper
    server.on('error', (err) => log(`accepting a client on ${socketPath} failed: ${err.message}`));
    // its processes connect to this helper's socket, so they start once it listens
    this.warmCli?.start();
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    // identified at accept, by the kernel: what the peer was at connect(2)
    let caller: Caller;
    try {
      caller = peerCaller(socketFd(socket));
    } catch (err) {
      log(`client refused: ${err instanceof Error ? err.message : String(err)}`);
      socket.destroy();
      return;
    }
    log(`client connected: ${describeCaller(caller)}${hasFullAccess(caller) ? '' : ' (a user: its own containers, the handshake, nothing else)'}`);
    // a user of the helper gets warm CLI processes of its own (none of root's serves it)
    this.warmUsers?.use(caller.uid, caller.pid);
    this.serve(socket, socket, caller);
  }

  /**
   * The configured group and mode (default: every local user, each acting as
   * itself), set only once the socket listens: it was created 0600, so no
   * client could connect before its group was right.
   */
  private async applySocketAccess(socketPath: string): Promise<void> {
    const mode = this.config.socketMode ?? DEFAULT_SOCKET_MODE;
    const gid = socketGroupId(this.config.socketGroup ?? '0');
    if (gid !== process.getgid?.()) await fs.chown(socketPath, process.getuid?.() ?? 0, gid);
    if (mode !== CREATED_SOCKET_MODE) await fs.chmod(socketPath, mode);
    log(`socket ${socketPath} is mode ${mode.toString(8).padStart(4, '0')}, group ${gid}: root has the whole protocol, every other caller its own objects (handlers/access.ts)`);
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
    const maxUsers = this.config.warmCliUsers ?? DEFAULT_WARM_CLI_USERS;
    if (maxUsers === 0) return;
    const users = new WarmCliUsers({
      dir: warmCliUserDir(socketPath),
      helperSocket: socketPath,
      maxUsers,
      idleMs: (this.config.warmCliIdle ?? DEFAULT_WARM_CLI_IDLE) * 1000,
      log,
      entry: this.opts.warmCliEntry,
    });
    try {
      users.init();
      this.warmUsers = users;
    } catch (err) {
      log(`warm CLI off for users other than root: cannot make ${warmCliUserDir(socketPath)}: ${describeError(err)}`);
    }
  }

  /** Stops listening and drops every client: `server.close()` alone would wait for clients that never hang up. */
  async close(): Promise<void> {
    const warmClosed = Promise.all([this.warmCli?.close(), this.warmUsers?.close()]);
    const closed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    const engine = this.engine;
    this.engine = undefined;
    const engineClosed = engine ? engine.server.close().then(() => fs.rm(engine.socket, { force: true })) : Promise.resolve();
    for (const c of this.connections.keys()) c.dispose();
    for (const s of this.sockets) s.destroy();
    await closed;
    await engineClosed;
    await warmClosed;
    // the removals of --rm containers whose exits were already reported (their netns pins, veths, directories)
    await this.containers.drain();
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
  // passed by systemd (packaging/systemd/capsa.socket) instead of made here
  const activated = args.stdio ? undefined : activationSocket();
  // both before anything is made in either
  checkOwnDirectory(config.root, 'capsa root');
  if (!args.stdio && activated === undefined) checkOwnDirectory(path.dirname(config.socket), 'socket directory');
  const helper = new Helper(config, opts);
  await helper.init();
  if (args.stdio) {
    // the client that started this root helper on its stdio could do so as root: it acts as the helper itself
    const c = helper.serve(process.stdin, process.stdout, ownCaller());
    c.onExit(() => process.exit(0));
    process.stdin.on('end', () => process.exit(0));
  } else {
    if (activated !== undefined) config.socket = await helper.listenActivated(activated);
    else await helper.listen(config.socket);
    log(`version ${VERSION} listening on ${config.socket}${activated !== undefined ? ' (passed by systemd)' : ''}, root ${config.root}`);
    const stop = (): void => {
      log('stopping');
      // a socket systemd passed stays: it is the unit's, and the next connection starts a helper again
      void helper.close().finally(() => (activated !== undefined ? Promise.resolve() : fs.rm(config.socket, { force: true })).finally(() => process.exit(0)));
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
