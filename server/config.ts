import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from './errors';

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
  registries: RegistrySettings;
  /** Concurrent layer downloads in one pull. Default 3. */
  maxConcurrentDownloads: number;
}

export const DEFAULT_ROOT = '/var/lib/capsa';
export const DEFAULT_SOCKET = '/run/capsa/capsa.sock';
export const DEFAULT_CONFIG_FILE = '/etc/capsa/config.json';

/**
 * Loads the configuration: defaults, then the JSON file (`CAPSA_CONFIG` or
 * /etc/capsa/config.json, if present), then environment variables:
 * `CAPSA_ROOT`, `CAPSA_SOCKET`, `CAPSA_REGISTRY_MIRROR` (`docker.io=http://127.0.0.1:5000,…`
 * or a bare URL, which mirrors docker.io), `CAPSA_INSECURE_REGISTRIES` (comma separated).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): CapsaConfig {
  const config: CapsaConfig = {
    root: DEFAULT_ROOT,
    socket: DEFAULT_SOCKET,
    registries: { mirrors: {}, insecure: [] },
    maxConcurrentDownloads: 3,
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

function str(file: string, key: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new InvalidArgumentError(`config ${file}: ${key} must be a non-empty string`);
  return v;
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
