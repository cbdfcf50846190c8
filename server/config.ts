import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from './errors';
import { formatSubnet, parseSubnet } from './util/subnet';

/** Where a registry host's requests really go, and how. */
export interface RegistrySettings {
  /**
   * Mirrors tried, in order, for a registry host before the host itself, as
   * base URLs (`http://127.0.0.1:5000`). Like Docker's `registry-mirrors`, a
   * mirror serves the same repository names as the registry it mirrors.
   */
  mirrors: Record<string, string[]>;
  /** Hosts (`host[:port]`) spoken to over plain HTTP. Loopback hosts always are. */
  insecure: string[];
}

export interface CapsaConfig {
  /** Root of all on-disk state. Default `/var/lib/capsa`; env `CAPSA_ROOT`. */
  root: string;
  /** Unix socket of the helper. Default `/run/capsa/capsa.sock`; env `CAPSA_SOCKET`. */
  socket: string;
  /**
   * Permission bits of the helper's socket. Default 0o666: every local user
   * reaches it, and each connection acts as the uid the kernel reports for
   * it (SO_PEERCRED, server/handlers/access.ts): root has the whole
   * protocol, any other user the methods of USER_METHODS, each scoped to
   * that user's own containers, volumes, networks and image names, with
   * files opened with that user's rights. 0o660 with socketGroup limits it
   * to a group's members, 0o600 to root. Env `CAPSA_SOCKET_MODE` (octal,
   * `0660`), in the file a number or an octal string. The warm CLI's sockets
   * are the helper's own business: root's is 0600, each user's is owned by
   * that user, 0600 (warmCliUsers). With socket activation the unit's
   * SocketMode applies instead. loadConfig always fills it.
   */
  socketMode?: number;
  /**
   * Group owning the helper's socket: a group name (of /etc/group) or a
   * numeric gid. Default `0` (root); env `CAPSA_SOCKET_GROUP`. With
   * socketMode 0o660 the group's members reach the socket, and no one else
   * but root. loadConfig always fills it.
   */
  socketGroup?: string;
  /**
   * Unix socket of the Docker Engine API (server/engine/), served with the
   * helper's socket's mode and group and the same per-caller reach. Default
   * `docker.sock` beside `socket` (engineSocketPath); env
   * `CAPSA_ENGINE_SOCKET`; `""` turns it off.
   */
  engineSocket?: string;
  registries: RegistrySettings;
  /** Concurrent layer downloads in one pull. Default 3. */
  maxConcurrentDownloads: number;
  /** Bytes per PATCH of a push's chunked blob upload (from 64 KiB). Default 16 MiB. */
  pushChunkSize?: number;
  /**
   * Registry credentials by host (`docker.io`, `ghcr.io`, `127.0.0.1:5000`),
   * tried before the helper user's ~/.docker/config.json. In the file each is
   * `{ "username": …, "password": … }` or Docker's `{ "auth": base64("user:password") }`.
   * Default none. Never logged.
   */
  credentials?: Record<string, { username: string; password: string }>;
  /** The default network; loadConfig always fills it. */
  network?: NetworkConfig;
  /**
   * Warm CLI processes the helper keeps started and idle, each ready to take
   * over one `capsa` call from the compiled client (native/client/client.c) so
   * that the call does not pay Node's start-up. Their socket is
   * `warmCliSocketPath(socket)`. 0 turns the feature off: no socket, no
   * processes, and every call runs the Node CLI. Default 1; env
   * `CAPSA_WARM_CLI`; at most 8. loadConfig always fills it.
   */
  warmCli?: number;
  /**
   * Users other than root with a warm CLI pool of their own at once: a user
   * gets one (one idle process running as that user, with its groups, on
   * `warmCliUserSocketPath(socket, uid)`) when it connects to the helper,
   * unless this many users have one already. 0: users' calls all run the
   * Node CLI. Default 16; env `CAPSA_WARM_CLI_USERS`; at most 256. Off
   * with warmCli 0. loadConfig always fills it.
   */
  warmCliUsers?: number;
  /**
   * Seconds a user's pool lives without a call before its processes end and
   * its socket goes (the user's next connection makes a new one). Default
   * 600; env `CAPSA_WARM_CLI_IDLE`; from 1 to 86400. loadConfig always fills it.
   */
  warmCliIdle?: number;
  /**
   * Ceilings for each user other than root (root has none): `containers`,
   * how many containers (in any state) one user may have at once; `memory`
   * (bytes) and `pidsLimit`, the most one container of theirs may have, and
   * what one that asks for none gets. In the file only; default none.
   */
  userLimits?: UserLimits;
}

/** The default `bridge` network. */
export interface NetworkConfig {
  /** Host bridge name. Default `capsa0`; env `CAPSA_BRIDGE`. At most 15 characters. */
  bridge: string;
  /** Its IPv4 subnet, `a.b.c.d/len` (len 8-30). Default `10.88.0.0/16`; env `CAPSA_BRIDGE_SUBNET`. */
  subnet: string;
}

export const DEFAULT_ROOT = '/var/lib/capsa';
export const DEFAULT_SOCKET = '/run/capsa/capsa.sock';
export const DEFAULT_CONFIG_FILE = '/etc/capsa/config.json';
export const DEFAULT_WARM_CLI = 1;
export const DEFAULT_WARM_CLI_USERS = 16;
export const DEFAULT_WARM_CLI_IDLE = 600;
export const DEFAULT_SOCKET_MODE = 0o666;
/** The mode the helper creates its socket with, before any client can connect; it is widened to socketMode once it listens. */
export const CREATED_SOCKET_MODE = 0o600;
const MAX_WARM_CLI = 8;
const MAX_WARM_CLI_USERS = 256;
const MAX_WARM_CLI_IDLE = 86400;

/** The Engine API's socket: the configured one, else `docker.sock` beside the helper's; undefined when turned off (`""`). */
export function engineSocketPath(config: Pick<CapsaConfig, 'socket' | 'engineSocket'>): string | undefined {
  if (config.engineSocket === '') return undefined;
  return config.engineSocket ?? `${config.socket.slice(0, config.socket.lastIndexOf('/') + 1)}docker.sock`;
}

/**
 * The warm CLI's socket, next to the helper's: `capsa.sock` → `capsa-cli.sock`,
 * any other name gets `.cli` appended. native/client/client.c derives it the
 * same way (keep the two in step).
 */
export function warmCliSocketPath(socket: string): string {
  return socket.endsWith('.sock') ? `${socket.slice(0, -'.sock'.length)}-cli.sock` : `${socket}.cli`;
}

/**
 * The directory of the users' warm CLI sockets, beside the helper's socket
 * (root's, 0755): `capsa.sock` → `capsa-cli.d`, any other name gets `.cli.d`.
 */
export function warmCliUserDir(socket: string): string {
  return socket.endsWith('.sock') ? `${socket.slice(0, -'.sock'.length)}-cli.d` : `${socket}.cli.d`;
}

/** User `uid`'s warm CLI socket: `capsa-cli.d/UID.sock`. native/client/client.c derives it the same way. */
export function warmCliUserSocketPath(socket: string, uid: number): string {
  return `${warmCliUserDir(socket)}/${uid}.sock`;
}

/**
 * Loads the configuration: defaults, then the JSON file (`CAPSA_CONFIG` or
 * /etc/capsa/config.json, if present), then environment variables:
 * `CAPSA_ROOT`, `CAPSA_SOCKET`, `CAPSA_BRIDGE`, `CAPSA_BRIDGE_SUBNET`, `CAPSA_REGISTRY_MIRROR` (`docker.io=http://127.0.0.1:5000,…`
 * or a bare URL, which mirrors docker.io), `CAPSA_INSECURE_REGISTRIES` (comma separated),
 * `CAPSA_WARM_CLI` (warm CLI processes, 0 to turn them off), `CAPSA_WARM_CLI_USERS`, `CAPSA_WARM_CLI_IDLE`, `CAPSA_SOCKET_MODE` (octal),
 * `CAPSA_SOCKET_GROUP` (a group name or gid).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): CapsaConfig {
  const config: CapsaConfig = {
    root: DEFAULT_ROOT,
    socket: DEFAULT_SOCKET,
    registries: { mirrors: {}, insecure: [] },
    maxConcurrentDownloads: 3,
    credentials: {},
    network: { bridge: 'capsa0', subnet: '10.88.0.0/16' },
    warmCli: DEFAULT_WARM_CLI,
    warmCliUsers: DEFAULT_WARM_CLI_USERS,
    warmCliIdle: DEFAULT_WARM_CLI_IDLE,
    socketMode: DEFAULT_SOCKET_MODE,
    socketGroup: '0',
  };
  const file = env.CAPSA_CONFIG ?? DEFAULT_CONFIG_FILE;
  let text: string | undefined;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || env.CAPSA_CONFIG) {
      throw new InvalidArgumentError(`cannot read config ${file}: ${(err as Error).message}`);
    }
  }
  if (text !== undefined) mergeFile(config, file, text);
  if (env.CAPSA_ROOT) config.root = env.CAPSA_ROOT;
  if (env.CAPSA_SOCKET) config.socket = env.CAPSA_SOCKET;
  if (env.CAPSA_ENGINE_SOCKET !== undefined) config.engineSocket = checkEngineSocket('CAPSA_ENGINE_SOCKET', env.CAPSA_ENGINE_SOCKET);
  if (env.CAPSA_SOCKET_MODE) config.socketMode = checkSocketMode('CAPSA_SOCKET_MODE', env.CAPSA_SOCKET_MODE);
  if (env.CAPSA_SOCKET_GROUP) config.socketGroup = checkGroup('CAPSA_SOCKET_GROUP', env.CAPSA_SOCKET_GROUP);
  if (env.CAPSA_BRIDGE) config.network!.bridge = checkBridge('CAPSA_BRIDGE', env.CAPSA_BRIDGE);
  if (env.CAPSA_WARM_CLI !== undefined && env.CAPSA_WARM_CLI !== '') {
    const text = env.CAPSA_WARM_CLI.trim();
    config.warmCli = checkWarmCli('CAPSA_WARM_CLI', /^\d+$/.test(text) ? Number(text) : env.CAPSA_WARM_CLI);
  }
  const whole = (text: string): unknown => (/^\d+$/.test(text.trim()) ? Number(text.trim()) : text);
  if (env.CAPSA_WARM_CLI_USERS) config.warmCliUsers = checkCount('CAPSA_WARM_CLI_USERS', whole(env.CAPSA_WARM_CLI_USERS), 0, MAX_WARM_CLI_USERS, 'users with a warm CLI pool');
  if (env.CAPSA_WARM_CLI_IDLE) config.warmCliIdle = checkCount('CAPSA_WARM_CLI_IDLE', whole(env.CAPSA_WARM_CLI_IDLE), 1, MAX_WARM_CLI_IDLE, 'seconds');
  if (env.CAPSA_BRIDGE_SUBNET) config.network!.subnet = checkSubnet('CAPSA_BRIDGE_SUBNET', env.CAPSA_BRIDGE_SUBNET);
  if (env.CAPSA_REGISTRY_MIRROR) {
    for (const item of env.CAPSA_REGISTRY_MIRROR.split(',').map((s) => s.trim()).filter(Boolean)) {
      const eq = item.indexOf('=');
      const host = eq > 0 && !item.slice(0, eq).includes('/') ? item.slice(0, eq) : 'docker.io';
      const url = eq > 0 && !item.slice(0, eq).includes('/') ? item.slice(eq + 1) : item;
      (config.registries.mirrors[host] ??= []).unshift(checkUrl('CAPSA_REGISTRY_MIRROR', url));
    }
  }
  if (env.CAPSA_INSECURE_REGISTRIES) {
    config.registries.insecure.push(...env.CAPSA_INSECURE_REGISTRIES.split(',').map((s) => s.trim()).filter(Boolean));
  }
  return config;
}

/** See {@link CapsaConfig.userLimits}. */
export interface UserLimits {
  containers?: number;
  memory?: number;
  pidsLimit?: number;
}

function parseUserLimits(file: string, v: unknown): UserLimits {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidArgumentError(`config ${file}: userLimits must be an object`);
  const out: UserLimits = {};
  for (const [k, n] of Object.entries(v as Record<string, unknown>)) {
    if (k !== 'containers' && k !== 'memory' && k !== 'pidsLimit') throw new InvalidArgumentError(`config ${file}: userLimits.${k} is not a known ceiling (containers, memory, pidsLimit)`);
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`config ${file}: userLimits.${k} must be a whole number of at least 1`);
    out[k] = n;
  }
  return out;
}

function mergeFile(config: CapsaConfig, file: string, text: string): void {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`config ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InvalidArgumentError(`config ${file} must be a JSON object`);
  }
  const o = raw as Record<string, unknown>;
  if (o.root !== undefined) config.root = str(file, 'root', o.root);
  if (o.socket !== undefined) config.socket = str(file, 'socket', o.socket);
  if (o.maxConcurrentDownloads !== undefined) {
    const n = o.maxConcurrentDownloads;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 32) {
      throw new InvalidArgumentError(`config ${file}: maxConcurrentDownloads must be an integer from 1 to 32`);
    }
    config.maxConcurrentDownloads = n;
  }
  if (o.pushChunkSize !== undefined) {
    const n = o.pushChunkSize;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 65536 || n > 1 << 30) {
      throw new InvalidArgumentError(`config ${file}: pushChunkSize must be a whole number of bytes from 65536 to 1073741824`);
    }
    config.pushChunkSize = n;
  }
  if (o.engineSocket !== undefined) config.engineSocket = checkEngineSocket(`config ${file}: engineSocket`, o.engineSocket);
  if (o.socketMode !== undefined) config.socketMode = checkSocketMode(`config ${file}: socketMode`, o.socketMode);
  if (o.socketGroup !== undefined) config.socketGroup = checkGroup(`config ${file}: socketGroup`, typeof o.socketGroup === 'number' ? String(o.socketGroup) : o.socketGroup);
  if (o.warmCli !== undefined) config.warmCli = checkWarmCli(`config ${file}: warmCli`, o.warmCli);
  if (o.warmCliUsers !== undefined) config.warmCliUsers = checkCount(`config ${file}: warmCliUsers`, o.warmCliUsers, 0, MAX_WARM_CLI_USERS, 'users with a warm CLI pool');
  if (o.warmCliIdle !== undefined) config.warmCliIdle = checkCount(`config ${file}: warmCliIdle`, o.warmCliIdle, 1, MAX_WARM_CLI_IDLE, 'seconds');
  if (o.credentials !== undefined) config.credentials = parseCredentials(file, o.credentials);
  if (o.userLimits !== undefined) config.userLimits = parseUserLimits(file, o.userLimits);
  if (o.network !== undefined) {
    const n = o.network as Record<string, unknown>;
    if (typeof n !== 'object' || n === null || Array.isArray(n)) throw new InvalidArgumentError(`config ${file}: network must be an object with bridge and/or subnet`);
    for (const k of Object.keys(n)) if (k !== 'bridge' && k !== 'subnet') throw new InvalidArgumentError(`config ${file}: unknown key network.${k}`);
    if (n.bridge !== undefined) config.network!.bridge = checkBridge(`config ${file}: network.bridge`, str(file, 'network.bridge', n.bridge));
    if (n.subnet !== undefined) config.network!.subnet = checkSubnet(`config ${file}: network.subnet`, str(file, 'network.subnet', n.subnet));
  }
  const reg = o.registries as Record<string, unknown> | undefined;
  if (reg !== undefined) {
    if (typeof reg !== 'object' || reg === null) throw new InvalidArgumentError(`config ${file}: registries must be an object`);
    const mirrors = reg.mirrors as Record<string, unknown> | undefined;
    if (mirrors !== undefined) {
      for (const [host, urls] of Object.entries(mirrors)) {
        if (!Array.isArray(urls)) throw new InvalidArgumentError(`config ${file}: registries.mirrors.${host} must be a list of URLs`);
        config.registries.mirrors[host] = urls.map((u) => checkUrl(`${file}: registries.mirrors.${host}`, str(file, 'mirror', u)));
      }
    }
    if (reg.insecure !== undefined) {
      if (!Array.isArray(reg.insecure)) throw new InvalidArgumentError(`config ${file}: registries.insecure must be a list of hosts`);
      config.registries.insecure = reg.insecure.map((h) => str(file, 'registries.insecure', h));
    }
  }
}

/** An absolute socket path, or `""` (off). */
function checkEngineSocket(where: string, v: unknown): string {
  if (typeof v !== 'string' || (v !== '' && (!v.startsWith('/') || v.length > 107 || v.includes('\0')))) {
    throw new InvalidArgumentError(`${where} must be an absolute socket path (at most 107 bytes), or "" to turn the Engine API off`);
  }
  return v;
}

/** docker.io's other names, as Docker's config.json keys them. */
const DOCKER_HUB_NAMES = ['index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com'];

/** Validates `credentials`; messages name the host and field, never a value. */
function parseCredentials(file: string, raw: unknown): NonNullable<CapsaConfig['credentials']> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InvalidArgumentError(`config ${file}: credentials must be an object keyed by registry host`);
  const out: NonNullable<CapsaConfig['credentials']> = {};
  for (const [key, entry] of Object.entries(raw as Record<string, unknown>)) {
    // `https://index.docker.io/v1/` → `index.docker.io`, as in Docker's config.json.
    let host = key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '').toLowerCase();
    if (DOCKER_HUB_NAMES.includes(host)) host = 'docker.io';
    if (!/^[a-z0-9.-]+(:[0-9]+)?$/.test(host) && !/^\[[0-9a-f:]+\](:[0-9]+)?$/.test(host)) {
      throw new InvalidArgumentError(`config ${file}: credentials key ${JSON.stringify(key)} is not a registry host`);
    }
    const where = `config ${file}: credentials.${key}`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new InvalidArgumentError(`${where} must be an object with username and password, or auth`);
    const e = entry as Record<string, unknown>;
    if (e.auth !== undefined) {
      if (typeof e.auth !== 'string') throw new InvalidArgumentError(`${where}.auth must be a base64 string`);
      const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (!/^[A-Za-z0-9+/=\s]+$/.test(e.auth) || colon <= 0) throw new InvalidArgumentError(`${where}.auth must be base64 of "username:password"`);
      out[host] = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    } else {
      if (typeof e.username !== 'string' || e.username === '') throw new InvalidArgumentError(`${where}.username must be a non-empty string`);
      if (typeof e.password !== 'string') throw new InvalidArgumentError(`${where}.password must be a string`);
      out[host] = { username: e.username, password: e.password };
    }
  }
  return out;
}

function str(file: string, key: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new InvalidArgumentError(`config ${file}: ${key} must be a non-empty string`);
  return v;
}

function checkWarmCli(where: string, n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_WARM_CLI) {
    throw new InvalidArgumentError(`${where}: expected a number of warm CLI processes from 0 to ${MAX_WARM_CLI}, got ${JSON.stringify(n)}`);
  }
  return n;
}

function checkCount(where: string, n: unknown, min: number, max: number, what: string): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(`${where}: expected a number of ${what} from ${min} to ${max}, got ${JSON.stringify(n)}`);
  }
  return n;
}

/** Permission bits from 0 to 0o777: a number, or octal digits (`0660`, `660`). */
function checkSocketMode(where: string, v: unknown): number {
  const n = typeof v === 'string' && /^[0-7]{1,4}$/.test(v.trim()) ? parseInt(v.trim(), 8) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 0o777) {
    throw new InvalidArgumentError(`${where}: expected permission bits from 0000 to 0777 (octal), got ${JSON.stringify(v)}`);
  }
  return n;
}

function checkGroup(where: string, v: unknown): string {
  if (typeof v !== 'string' || !/^([0-9]{1,10}|[a-z_][a-z0-9_.-]{0,31}\$?)$/i.test(v)) {
    throw new InvalidArgumentError(`${where}: expected a group name or a numeric gid, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** The gid of socketGroup: a number as it is, a name from /etc/group (`/etc/group` text passed in tests). */
export function socketGroupId(group: string, groupFile?: string): number {
  if (/^[0-9]+$/.test(group)) return Number(group);
  let text = groupFile;
  if (text === undefined) {
    try {
      text = readFileSync('/etc/group', 'utf8');
    } catch (err) {
      throw new InvalidArgumentError(`socketGroup ${JSON.stringify(group)}: cannot read /etc/group: ${(err as Error).message}`);
    }
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^[0-9]+$/.test(gid)) return Number(gid);
  }
  throw new InvalidArgumentError(`socketGroup ${JSON.stringify(group)}: no such group in /etc/group (give a numeric gid for a group of another directory service)`);
}

/** An interface name the kernel takes (IFNAMSIZ, no '/', ':' or spaces). */
function checkBridge(where: string, name: string): string {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$/.test(name)) throw new InvalidArgumentError(`${where}: invalid bridge name ${JSON.stringify(name)}: at most 15 letters, digits, '_', '.' or '-'`);
  return name;
}

function checkSubnet(where: string, text: string): string {
  try {
    return formatSubnet(parseSubnet(text));
  } catch (err) {
    throw new InvalidArgumentError(`${where}: ${(err as Error).message}`);
  }
}

function checkUrl(where: string, url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InvalidArgumentError(`${where}: ${JSON.stringify(url)} is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new InvalidArgumentError(`${where}: ${JSON.stringify(url)} must be an http or https URL`);
  }
  return url.replace(/\/+$/, '');
}
