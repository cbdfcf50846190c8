/**
 * Registry authentication: credentials (Docker's config.json `auths` and
 * Capsa's own), `WWW-Authenticate` challenges, and Bearer tokens cached per
 * realm/service/scope until they expire (distribution spec, "Token
 * Authentication Specification"). Credentials never appear in messages or
 * logs: errors name the registry and the user at most.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { LIMITS, LimitExceededError } from '../limits';
import { readRegularFile } from '../util/hostfile';

export interface Credentials {
  username: string;
  password: string;
}

/** A credentials source: registry host (`docker.io`, `127.0.0.1:5000`) → credentials. */
export type CredentialLookup = (host: string) => Credentials | undefined;

/** docker.io's credentials are stored under Docker's old index URL. */
const DOCKER_HUB_KEYS = ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];

/** `https://host:5000/v1/` → `host:5000`. */
function keyHost(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '').toLowerCase();
}

/**
 * Reads `auths` from a Docker config.json (default: `$DOCKER_CONFIG/config.json`
 * or `.docker/config.json` in the home directory of the process's user). Entries with a base64 `auth` (`user:password`)
 * or `username`/`password` are used; credential helpers are not run.
 * A missing, unreadable or non-regular file gives no credentials; one above
 * LIMITS.dockerConfig is refused. Read without blocking (see util/hostfile).
 */
export async function dockerConfigCredentials(file?: string): Promise<Map<string, Credentials>> {
  // The helper runs as root: its credentials are root's, from the password
  // database, not from a $HOME that a user's environment (sudo -E, the CLI
  // starting the helper) may have carried in.
  const where = file ?? path.join(process.env.DOCKER_CONFIG ?? path.join(os.userInfo().homedir, '.docker'), 'config.json');
  let text: string;
  try {
    text = (await readRegularFile(where, LIMITS.dockerConfig, `docker config ${where}`)).toString('utf8');
  } catch (err) {
    if (err instanceof LimitExceededError) throw err;
    return new Map();
  }
  return parseDockerConfig(text);
}

/** The credentials of a Docker config.json's text (see dockerConfigCredentials); malformed text gives none. */
export function parseDockerConfig(text: string): Map<string, Credentials> {
  const out = new Map<string, Credentials>();
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return out;
  }
  const auths = (raw as { auths?: Record<string, { auth?: string; username?: string; password?: string }> } | null)?.auths;
  if (!auths || typeof auths !== 'object') return out;
  for (const [key, entry] of Object.entries(auths)) {
    if (!entry || typeof entry !== 'object') continue;
    let creds: Credentials | undefined;
    if (typeof entry.auth === 'string' && entry.auth !== '') {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon > 0) creds = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    } else if (typeof entry.username === 'string' && typeof entry.password === 'string') {
      creds = { username: entry.username, password: entry.password };
    }
    if (!creds) continue;
    const host = keyHost(key);
    out.set(DOCKER_HUB_KEYS.includes(host) || DOCKER_HUB_KEYS.includes(key) ? 'docker.io' : host, creds);
  }
  return out;
}

/** Looks credentials up in `sources` in order (Capsa's own first, then Docker's). */
export function credentialLookup(...sources: Array<Map<string, Credentials> | Record<string, Credentials> | undefined>): CredentialLookup {
  return (host: string) => {
    const h = DOCKER_HUB_KEYS.includes(host.toLowerCase()) ? 'docker.io' : host.toLowerCase();
    for (const s of sources) {
      if (!s) continue;
      const c = s instanceof Map ? s.get(h) : s[h];
      if (c) return c;
    }
    return undefined;
  };
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `WWW-Authenticate` (RFC 7235 auth-params, quoted or token values). */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*([A-Za-z][A-Za-z0-9_-]*)\s*(.*)$/.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (const p of m[2].matchAll(re)) params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  return { scheme: m[1].toLowerCase(), params };
}

export function basicAuthorization(c: Credentials): string {
  return 'Basic ' + Buffer.from(`${c.username}:${c.password}`).toString('base64');
}

interface CachedToken {
  token: string;
  expires: number;
}

/** Bearer tokens per realm + service + scope + identity, dropped shortly before they expire. */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>();

  constructor(private readonly now: () => number = Date.now) {}

  static key(realm: string, service: string, scope: string, username: string | undefined): string {
    return JSON.stringify([realm, service, scope, username ?? '']);
  }

  get(key: string): string | undefined {
    const t = this.tokens.get(key);
    if (!t) return undefined;
    if (t.expires <= this.now()) {
      this.tokens.delete(key);
      return undefined;
    }
    return t.token;
  }

  /**
   * Stores a token. `expiresIn` seconds (default 60, as the token spec says),
   * counted from `issuedAt` when given; a 10% (at most 30 s) margin keeps a
   * token from expiring in flight.
   */
  set(key: string, token: string, expiresIn?: number, issuedAt?: string): void {
    const lifetime = (typeof expiresIn === 'number' && expiresIn > 0 ? expiresIn : 60) * 1000;
    let start = this.now();
    if (issuedAt) {
      const t = Date.parse(issuedAt);
      if (Number.isFinite(t) && t <= start) start = t;
    }
    const margin = Math.min(lifetime * 0.1, 30_000);
    this.tokens.set(key, { token, expires: start + lifetime - margin });
  }

  delete(key: string): void {
    this.tokens.delete(key);
  }
}
