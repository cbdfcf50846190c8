/**
 * A real registry for tests: Debian's docker-registry (CNCF distribution 2.8)
 * on 127.0.0.1, with optional htpasswd or token auth, and a fault-injecting
 * proxy to put in front of it.
 */
import { spawn, execFile, ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const REGISTRY_BIN = '/usr/bin/docker-registry';

export interface TestRegistry {
  /** "127.0.0.1:PORT", as used in image references. */
  host: string;
  /** "http://127.0.0.1:PORT". */
  url: string;
  /** The registry's own temporary directory (config, storage, log). */
  dir: string;
  stop(): Promise<void>;
}

export interface Credentials {
  user: string;
  password: string;
}

export interface TokenAuthOptions {
  /**
   * When set, only these users get the scopes they ask for; anonymous callers
   * get a token with no access (as Docker Hub does for private repositories)
   * and wrong credentials get 401. When unset, anyone gets any scope.
   */
  users?: Credentials[];
  /** Signing algorithm; default ES256. */
  algorithm?: 'ES256' | 'RS256';
  /** Token lifetime in seconds; default 300. */
  expiresIn?: number;
}

export interface TokenIssuer {
  /** The realm URL the registry's Bearer challenge points to. */
  realm: string;
  service: string;
  issuer: string;
  /** Number of tokens requested so far, successful or not. */
  requests: number;
  /** Query strings of every token request, in order. */
  log: URLSearchParams[];
}

export interface TokenRegistry extends TestRegistry {
  token: TokenIssuer;
}

export interface StartRegistryOptions {
  htpasswd?: Credentials;
  token?: TokenAuthOptions;
}

const live = new Set<ChildProcess>();
function killAllLive(): void {
  for (const child of live) {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
// Last resort for a test that forgot stop() or was killed by the runner's
// timeout: never leave a registry behind. The signal is raised again once the
// one-shot handler is gone, so the default action (exit) still happens.
process.once('exit', killAllLive);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killAllLive();
    process.kill(process.pid, sig);
  });
}

/** A port free on 127.0.0.1 right now (the caller retries if it is taken meanwhile). */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function startRegistry(opts: StartRegistryOptions & { token: TokenAuthOptions }): Promise<TokenRegistry>;
export async function startRegistry(opts?: StartRegistryOptions): Promise<TestRegistry>;
export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  if (opts.htpasswd && opts.token) throw new Error('startRegistry: choose htpasswd or token auth, not both');
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'capsa-registry-'));
  let issuer: RunningIssuer | undefined;
  try {
    let auth = '';
    if (opts.htpasswd) {
      const { stdout } = await execFileP('htpasswd', ['-Bbn', opts.htpasswd.user, opts.htpasswd.password]);
      await fsp.writeFile(path.join(dir, 'htpasswd'), stdout.trim() + '\n', { mode: 0o600 });
      auth = ['auth:', '  htpasswd:', '    realm: capsa-test', `    path: ${path.join(dir, 'htpasswd')}`].join('\n');
    } else if (opts.token) {
      issuer = await startTokenIssuer(dir, opts.token);
      auth = [
        'auth:',
        '  token:',
        `    realm: ${issuer.info.realm}`,
        `    service: ${issuer.info.service}`,
        `    issuer: ${issuer.info.issuer}`,
        `    rootcertbundle: ${issuer.certPath}`,
      ].join('\n');
    }

    // A port can be taken between freePort() and the registry's bind: retry.
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort();
      const host = `127.0.0.1:${port}`;
      const config = [
        'version: 0.1',
        'log:',
        '  level: warn',
        '  accesslog:',
        '    disabled: true',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${path.join(dir, 'data')}`,
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: ${host}`,
        `  secret: ${crypto.randomBytes(16).toString('hex')}`,
        auth,
        '',
      ].join('\n');
      const configPath = path.join(dir, 'config.yml');
      await fsp.writeFile(configPath, config);
      const logFd = fs.openSync(path.join(dir, 'registry.log'), 'a');
      const child = spawn(REGISTRY_BIN, ['serve', configPath], {
        detached: true, // its own process group, so stop() reaches everything it starts
        stdio: ['ignore', logFd, logFd],
      });
      fs.closeSync(logFd);
      live.add(child);
      child.unref();
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.once('exit', () => live.delete(child));
      try {
        await waitReady(`http://${host}`, child, exited);
      } catch (err) {
        lastError = err;
        await killGroup(child, exited);
        continue;
      }
      const url = `http://${host}`;
      const base: TestRegistry = {
        host,
        url,
        dir,
        async stop() {
          await killGroup(child, exited);
          await issuer?.close();
          await fsp.rm(dir, { recursive: true, force: true });
        },
      };
      if (issuer) return { ...base, token: issuer.info } as TokenRegistry;
      return base;
    }
    const log = await fsp.readFile(path.join(dir, 'registry.log'), 'utf8').catch(() => '');
    throw new Error(`docker-registry did not start: ${String(lastError)}\n${log}`);
  } catch (err) {
    await issuer?.close();
    await fsp.rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function waitReady(url: string, child: ChildProcess, exited: Promise<void>): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (gone) throw new Error(`docker-registry exited early (code ${child.exitCode})`);
    const status = await new Promise<number>((resolve) => {
      const req = http.get(`${url}/v2/`, { agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(0));
      req.setTimeout(1000, () => req.destroy());
    });
    // 401 means it answers but wants credentials: ready too.
    if (status === 200 || status === 401) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not answer GET ${url}/v2/ within 15 s`);
}

async function killGroup(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const pid = child.pid;
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      /* already gone */
    }
  };
  signal('SIGTERM');
  const timer = setTimeout(() => signal('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------
// Token issuer (the Docker Hub flow)

interface RunningIssuer {
  info: TokenIssuer;
  certPath: string;
  close(): Promise<void>;
}

/**
 * A token server as distribution 2.8 expects one (registry/auth/token): a JWT
 * signed by a key whose self-signed certificate is the registry's
 * rootcertbundle, the certificate carried in the `x5c` header so the registry
 * can check the chain, a single-string `aud` equal to the service, and
 * `access` claims listing the granted actions per repository.
 */
async function startTokenIssuer(dir: string, opts: TokenAuthOptions): Promise<RunningIssuer> {
  const algorithm = opts.algorithm ?? 'ES256';
  const keyPath = path.join(dir, 'token-key.pem');
  const certPath = path.join(dir, 'token-cert.pem');
  const keyArgs = algorithm === 'ES256' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'] : ['-newkey', 'rsa:2048'];
  await execFileP('openssl', [
    'req', '-x509', ...keyArgs, '-nodes', '-keyout', keyPath, '-out', certPath,
    '-days', '2', '-subj', '/CN=capsa-test-token-issuer',
  ]);
  const key = crypto.createPrivateKey(await fsp.readFile(keyPath));
  const certPem = await fsp.readFile(certPath, 'utf8');
  const certDer = certPem.replace(/-----(BEGIN|END) CERTIFICATE-----|\s+/g, '');

  const info: TokenIssuer = { realm: '', service: 'capsa-test-registry', issuer: 'capsa-test-issuer', requests: 0, log: [] };
  const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

  const sign = (subject: string, access: Array<{ type: string; name: string; actions: string[] }>) => {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: algorithm, x5c: [certDer] };
    const claims = {
      iss: info.issuer,
      sub: subject,
      aud: info.service,
      exp: now + (opts.expiresIn ?? 300),
      nbf: now - 10,
      iat: now,
      jti: crypto.randomBytes(12).toString('hex'),
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    // JWS ES256 wants the raw r||s signature, not DER.
    const sig = crypto.sign('sha256', Buffer.from(input), algorithm === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key);
    return `${input}.${b64url(sig)}`;
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    info.requests++;
    info.log.push(url.searchParams);
    if (url.pathname !== '/token') {
      res.writeHead(404).end();
      return;
    }
    let subject = '';
    const authz = req.headers.authorization;
    if (authz?.startsWith('Basic ')) {
      const decoded = Buffer.from(authz.slice(6), 'base64').toString();
      const colon = decoded.indexOf(':');
      const user = decoded.slice(0, colon);
      const password = decoded.slice(colon + 1);
      const known = opts.users?.some((u) => u.user === user && u.password === password) ?? true;
      if (!known) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ details: 'incorrect username or password' }));
        return;
      }
      subject = user;
    }
    const granted = !opts.users || subject !== '';
    const access = url.searchParams.getAll('scope').flatMap((scope) => {
      // type:name:actions, where only the name may contain ':' (a registry port).
      const first = scope.indexOf(':');
      const last = scope.lastIndexOf(':');
      if (first < 0 || last <= first) return [];
      return [{
        type: scope.slice(0, first),
        name: scope.slice(first + 1, last),
        actions: granted ? scope.slice(last + 1).split(',').filter(Boolean) : [],
      }];
    });
    const token = sign(subject, access);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: opts.expiresIn ?? 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.unref();
  info.realm = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/token`;
  return {
    info,
    certPath,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------
// Fault proxy

/**
 * Faults injected into responses whose path matches `match`. "The first K
 * times" counts per path, so each blob is cut (or refused) K times and then
 * served: the behaviour of a flaky network, not of a broken registry.
 */
export interface Fault {
  /** Which request paths the faults apply to; default blob GETs (`/v2/…/blobs/sha256:…`). */
  match?: RegExp;
  /** Destroy the connection after this many body bytes of a matching response. */
  cutAfterBytes?: number;
  /** Cut only the first K matching responses per path; default every time. */
  cutTimes?: number;
  /** XOR 0xff into the body byte at this offset (the last byte if the body is shorter). */
  flipByteAt?: number;
  /** Tamper only the first K matching responses per path; default every time. */
  flipTimes?: number;
  /** Answer 429 Too Many Requests to the first K matching requests per path. */
  tooManyRequests?: number;
  /** The Retry-After value (seconds) sent with those 429s; default 1. */
  retryAfter?: number;
  /** Throttle matching response bodies to about this many bytes per second. */
  bytesPerSecond?: number;
  /**
   * Cut the connection after this many request body bytes of a blob upload
   * PATCH (`/v2/…/blobs/uploads/…`), both ways: a push whose connection drops.
   * 0 drops the request before any of it reaches the registry.
   */
  cutUploadAfterBytes?: number;
  /** Cut only the first K such PATCHes (in all); default 1. */
  cutUploadTimes?: number;
  /** Let this many upload PATCHes through before cutting (default 0): a cut mid-upload, after chunks the registry acknowledged. */
  cutUploadSkip?: number;
}

export interface FaultProxy extends TestRegistry {
  /** Requests seen, keyed "METHOD /path" (no query string). */
  requests: Map<string, number>;
  /** Number of requests whose "METHOD /path" key matches (a string must be equal). */
  count(key: string | RegExp): number;
  /** Total response body bytes sent to clients for matching keys. */
  bytesSent: Map<string, number>;
  /** Change the faults for later requests. */
  setFault(fault: Fault): void;
  /** Upload PATCHes cut so far (cutUploadAfterBytes). */
  readonly uploadsCut: number;
}

const BLOB_PATH = /^\/v2\/.+\/blobs\/sha256:[0-9a-f]{64}$/;
const UPLOAD_PATH = /^\/v2\/.+\/blobs\/uploads\/[^/]+$/;

/** An HTTP proxy on 127.0.0.1 in front of `target`; stop() stops only the proxy. */
export async function startFaultProxy(target: { url: string; dir?: string }, fault: Fault = {}): Promise<FaultProxy> {
  const upstream = new URL(target.url);
  let current = fault;
  const requests = new Map<string, number>();
  const bytesSent = new Map<string, number>();
  const seen = new Map<string, number>();
  const seenUploads = new Map<string, number>();
  let uploadsCut = 0;

  const server = http.createServer((req, res) => {
    const pathname = (req.url ?? '/').split('?')[0];
    const key = `${req.method} ${pathname}`;
    requests.set(key, (requests.get(key) ?? 0) + 1);
    const f = current;
    const matches = (f.match ?? BLOB_PATH).test(pathname) && (f.match !== undefined || req.method === 'GET');
    const nth = matches ? (seen.get(pathname) ?? 0) + 1 : 0;
    if (matches) seen.set(pathname, nth);

    if (matches && f.tooManyRequests !== undefined && nth <= f.tooManyRequests) {
      req.resume();
      res.writeHead(429, { 'retry-after': String(f.retryAfter ?? 1), 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'injected by the fault proxy' }] }));
      return;
    }

    const uploadCut =
      f.cutUploadAfterBytes !== undefined && req.method === 'PATCH' && UPLOAD_PATH.test(pathname)
        ? (() => {
            const n = (seenUploads.get('') ?? 0) + 1;
            seenUploads.set('', n);
            const skip = f.cutUploadSkip ?? 0;
            return n > skip && n <= skip + (f.cutUploadTimes ?? 1) ? f.cutUploadAfterBytes : undefined;
          })()
        : undefined;
    // Host is passed through unchanged so the registry's Location headers point back at the proxy.
    const up = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent: false },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, upRes.headers);
        const ok = (upRes.statusCode ?? 0) >= 200 && (upRes.statusCode ?? 0) < 300;
        const cut = ok && matches && f.cutAfterBytes !== undefined && nth <= (f.cutTimes ?? Infinity) ? f.cutAfterBytes : undefined;
        const flip = ok && matches && f.flipByteAt !== undefined && nth <= (f.flipTimes ?? Infinity) ? f.flipByteAt : undefined;
        const rate = matches ? f.bytesPerSecond : undefined;
        const length = Number(upRes.headers['content-length'] ?? NaN);
        const flipAt = flip === undefined ? undefined : Number.isFinite(length) ? Math.min(flip, length - 1) : flip;
        void pump(upRes, res, key, cut, flipAt, rate);
      },
    );
    up.on('error', () => res.destroy());
    if (uploadCut === undefined) {
      req.pipe(up);
      return;
    }
    if (uploadCut === 0) {
      // dropped before the registry saw anything of it
      uploadsCut++;
      up.destroy();
      req.socket.destroy();
      return;
    }
    let forwarded = 0;
    req.on('data', (chunk: Buffer) => {
      if (forwarded >= uploadCut) return;
      const part = chunk.subarray(0, uploadCut - forwarded);
      forwarded += part.length;
      up.write(part);
      if (forwarded >= uploadCut) {
        uploadsCut++;
        // Let the bytes reach the registry before both connections drop.
        setTimeout(() => {
          up.destroy();
          req.socket.destroy();
        }, 50);
      }
    });
    req.on('end', () => {
      if (forwarded < uploadCut) up.end();
    });
  });

  async function pump(src: http.IncomingMessage, dst: http.ServerResponse, key: string, cut?: number, flipAt?: number, rate?: number) {
    let sent = 0;
    const write = (chunk: Buffer) =>
      new Promise<void>((resolve) => {
        sent += chunk.length;
        bytesSent.set(key, (bytesSent.get(key) ?? 0) + chunk.length);
        if (!dst.write(chunk)) dst.once('drain', resolve);
        else resolve();
      });
    try {
      for await (const raw of src) {
        let chunk = raw as Buffer;
        if (flipAt !== undefined && flipAt >= sent && flipAt < sent + chunk.length) {
          chunk = Buffer.from(chunk);
          chunk[flipAt - sent] ^= 0xff;
        }
        if (cut !== undefined && sent + chunk.length >= cut) {
          await write(chunk.subarray(0, cut - sent));
          // Let the bytes leave before the connection is reset.
          await new Promise((r) => setTimeout(r, 20));
          src.destroy();
          dst.destroy();
          return;
        }
        if (rate !== undefined) {
          const slice = Math.max(1, Math.floor(rate / 10));
          for (let off = 0; off < chunk.length; off += slice) {
            if (dst.destroyed) return;
            await write(chunk.subarray(off, off + slice));
            await new Promise((r) => setTimeout(r, 100));
          }
        } else {
          await write(chunk);
        }
      }
      dst.end();
    } catch {
      dst.destroy();
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.unref();
  const port = (server.address() as net.AddressInfo).port;
  const host = `127.0.0.1:${port}`;
  return {
    host,
    url: `http://${host}`,
    dir: target.dir ?? '',
    requests,
    bytesSent,
    count(k) {
      let n = 0;
      for (const [key, v] of requests) if (typeof k === 'string' ? key === k : k.test(key)) n += v;
      return n;
    },
    setFault(next) {
      current = next;
      seen.clear();
      seenUploads.clear();
    },
    get uploadsCut() {
      return uploadsCut;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
