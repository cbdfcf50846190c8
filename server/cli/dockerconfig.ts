/**
 * The calling user's Docker credentials, as Docker keeps them: the
 * `auths` of `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`,
 * `auth` = base64 `user:password`) or a credential helper named by
 * `credHelpers[host]` or `credsStore` (`docker-credential-NAME
 * store|get|erase`, JSON on stdin/stdout). The CLI runs as the user, so
 * the file it reads and writes, and the helper program it runs, are the
 * user's own: the helper (root) never reads a user's file. Writes are
 * atomic (a 0600 temporary file renamed over the old one), keep every
 * other key, and never print a secret.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InvalidArgumentError } from '../errors';
import type { RegistryAuth } from '../protocol';

/** The key Docker files Docker Hub's credentials under. */
export const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';
const HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);
/** A config.json larger than this is not one Docker wrote: refused rather than read whole. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
const HOST_RE = /^(?:[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$/;

export function configFile(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.DOCKER_CONFIG || path.join(env.HOME || os.userInfo().homedir, '.docker');
  return path.join(dir, 'config.json');
}

/**
 * A registry as a user names it (`localhost:5000`, `https://ghcr.io/v2/`,
 * `docker.io`) → its host (`docker.io` for Docker Hub). Refuses anything
 * that is not a host[:port].
 */
export function registryHost(input: string): string {
  const raw = input.trim();
  let host = raw.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/\/.*$/, '').toLowerCase();
  if (HUB_HOSTS.has(host)) return 'docker.io';
  if (host.length > 255 || !HOST_RE.test(host)) {
    throw new InvalidArgumentError(`invalid registry ${JSON.stringify(raw.slice(0, 100))}${raw.length > 100 ? '…' : ''}: expected a host[:port] such as registry.example.com:5000`);
  }
  const port = /:(\d+)$/.exec(host);
  if (port && (Number(port[1]) < 1 || Number(port[1]) > 65535)) throw new InvalidArgumentError(`invalid registry ${JSON.stringify(raw)}: port ${port[1]} is out of range`);
  host = host.replace(/\.$/, '');
  return host;
}

/** The registry host an image reference names, as Docker decides it: a first component with `.` or `:`, or `localhost`. */
export function referenceHost(reference: string): string {
  const slash = reference.indexOf('/');
  if (slash < 0) return 'docker.io';
  const first = reference.slice(0, slash);
  if (first.includes('.') || first.includes(':') || first === 'localhost') return HUB_HOSTS.has(first.toLowerCase()) ? 'docker.io' : first.toLowerCase();
  return 'docker.io';
}

/** The `auths` key for a host: Docker Hub's old index URL, else the host. */
export function authKey(host: string): string {
  return host === 'docker.io' ? DOCKER_HUB_KEY : host;
}

type DockerConfig = Record<string, unknown> & { auths?: Record<string, Record<string, unknown>>; credsStore?: string; credHelpers?: Record<string, string> };

/** The config file's JSON; `{}` when there is none. A file that is not a JSON object is an error naming it. */
export function readConfig(file = configFile()): DockerConfig {
  let text: string;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw new InvalidArgumentError(`docker config ${file} is not a regular file`);
    if (st.size > MAX_CONFIG_BYTES) throw new InvalidArgumentError(`docker config ${file} is ${st.size} bytes, more than ${MAX_CONFIG_BYTES}`);
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`docker config ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new InvalidArgumentError(`docker config ${file} is not a JSON object`);
  return parsed as DockerConfig;
}

/** Writes the config atomically: a 0600 file beside it, flushed, renamed over it. The directory is made 0700 when missing. */
export function writeConfig(config: DockerConfig, file = configFile()): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, `.config.json.${randomBytes(6).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(config, null, '\t') + '\n');
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** The credential helper for `host`, if the config names one. */
export function helperFor(config: DockerConfig, host: string): string | undefined {
  const named = config.credHelpers?.[authKey(host)] ?? config.credHelpers?.[host] ?? config.credsStore;
  if (named === undefined || named === '') return undefined;
  if (typeof named !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(named)) throw new InvalidArgumentError(`docker config names an invalid credential helper ${JSON.stringify(String(named)).slice(0, 80)}`);
  return named;
}

/** Runs `docker-credential-NAME verb` with `input` on stdin; its stdout, or an error with its first stderr line (never the input). */
export function runCredentialHelper(name: string, verb: 'store' | 'get' | 'erase', input: string): Promise<string> {
  const program = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = spawn(program, [verb], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out.length < 1 << 20 ? (out += d.toString()) : undefined));
    child.stderr.on('data', (d: Buffer) => (err.length < 4096 ? (err += d.toString()) : undefined));
    child.on('error', (e) => reject(new InvalidArgumentError(`credential helper ${program} could not be run: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    child.on('close', (code) => {
      if (code === 0) return resolve(out);
      // `get` of an unknown server answers "credentials not found in native keychain" on stdout
      const why = (err.trim() || out.trim()).split('\n')[0].slice(0, 200);
      const e = new InvalidArgumentError(`credential helper ${program} ${verb} failed (exit ${code})${why ? `: ${why}` : ''}`);
      reject(Object.assign(e, { notFound: /credentials not found/i.test(why) }));
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** Decodes an `auths` entry: base64 `auth`, or `username`/`password`. */
function entryCredentials(entry: Record<string, unknown> | undefined): RegistryAuth | undefined {
  if (!entry || typeof entry !== 'object') return undefined;
  if (typeof entry.auth === 'string' && entry.auth !== '') {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (typeof entry.username === 'string' && entry.username !== '' && typeof entry.password === 'string') return { username: entry.username, password: entry.password };
  return undefined;
}

/** The `auths` entry for `host`, found under its own key or a URL form of it (`https://host/v1/`). */
function authsEntry(config: DockerConfig, host: string): [string, Record<string, unknown>] | undefined {
  const auths = config.auths && typeof config.auths === 'object' ? config.auths : {};
  for (const [key, entry] of Object.entries(auths)) {
    let h: string;
    try {
      h = registryHost(key);
    } catch {
      continue;
    }
    if (h === host) return [key, entry];
  }
  return undefined;
}

/** The user's credentials for `host` (credential helper first, as Docker), or undefined. */
export async function lookupCredentials(host: string, file = configFile()): Promise<RegistryAuth | undefined> {
  const config = readConfig(file);
  const helper = helperFor(config, host);
  if (helper) {
    try {
      const out = JSON.parse(await runCredentialHelper(helper, 'get', authKey(host))) as { Username?: unknown; Secret?: unknown };
      if (typeof out.Username === 'string' && out.Username !== '' && typeof out.Secret === 'string') return { username: out.Username, password: out.Secret };
    } catch (err) {
      if (!(err as { notFound?: boolean }).notFound) throw err;
    }
  }
  return entryCredentials(authsEntry(config, host)?.[1]);
}

/** Stores credentials for `host` as Docker does; returns where (the file, or the helper's name). */
export async function storeCredentials(host: string, auth: RegistryAuth, file = configFile()): Promise<{ helper?: string; file: string }> {
  const config = readConfig(file);
  const helper = helperFor(config, host);
  const key = authKey(host);
  const auths = { ...(config.auths && typeof config.auths === 'object' ? config.auths : {}) };
  const old = authsEntry(config, host);
  if (old) delete auths[old[0]];
  if (helper) {
    await runCredentialHelper(helper, 'store', JSON.stringify({ ServerURL: key, Username: auth.username, Secret: auth.password }));
    auths[key] = {};
  } else {
    auths[key] = { auth: Buffer.from(`${auth.username}:${auth.password}`).toString('base64') };
  }
  writeConfig({ ...config, auths }, file);
  return { helper, file };
}

/** Forgets the credentials for `host`; false when there were none. */
export async function eraseCredentials(host: string, file = configFile()): Promise<boolean> {
  const config = readConfig(file);
  const helper = helperFor(config, host);
  let had = false;
  if (helper) {
    try {
      await runCredentialHelper(helper, 'erase', authKey(host));
      had = true;
    } catch (err) {
      if (!(err as { notFound?: boolean }).notFound) throw err;
    }
  }
  const old = authsEntry(config, host);
  if (old) {
    const auths = { ...config.auths };
    delete auths[old[0]];
    writeConfig({ ...config, auths }, file);
    had = true;
  }
  return had;
}
