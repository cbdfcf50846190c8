/**
 * Builds test images (tar layers, configs, manifests, indexes) and pushes
 * them with the registry's own HTTP API (distribution spec: POST/PUT blob
 * uploads, PUT manifests). Same inputs give the same digests, so images that
 * share a layer really share its blob.
 */
import { execFile, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as zlib from 'node:zlib';
import { promisify } from 'node:util';
import * as tar from 'tar-stream';

const execFileP = promisify(execFile);

export const MediaTypes = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerZstd: 'application/vnd.docker.image.rootfs.diff.tar.zstd',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
} as const;

/** Fixed default mtime, so layers are byte-for-byte reproducible. */
export const FIXED_MTIME = new Date('2024-01-01T00:00:00Z');

export function sha256(data: Buffer | string): string {
  return 'sha256:' + crypto.createHash('sha256').update(data).digest('hex');
}

// ---------------------------------------------------------------------------
// Tar layers

interface EntryCommon {
  /** Name inside the archive, e.g. "etc/passwd" (written as given: hostile names allowed). */
  path: string;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  mtime?: Date;
  /** Extended attributes, written as PAX `SCHILY.xattr.NAME` records. */
  xattrs?: Record<string, string>;
  /** Extra PAX records (forces a PAX header). */
  pax?: Record<string, string>;
  /**
   * How a name (or link target) longer than 100 bytes is written: 'pax'
   * (default, tar-stream's PAX `path`/`linkpath`) or 'gnu' (`././@LongLink`
   * entries of type L and K, as GNU tar writes them).
   */
  longNames?: 'pax' | 'gnu';
}

export type TarEntrySpec =
  | (EntryCommon & { type: 'file'; content?: string | Buffer })
  | (EntryCommon & { type: 'dir' })
  | (EntryCommon & { type: 'symlink'; target: string })
  | (EntryCommon & { type: 'hardlink'; target: string })
  | (EntryCommon & { type: 'fifo' })
  | (EntryCommon & { type: 'char' | 'block'; major: number; minor: number })
  /** Bytes copied into the archive as they are (hand-made headers for hostile layers). */
  | { type: 'raw'; data: Buffer };

const tarTypes = {
  file: 'file',
  dir: 'directory',
  symlink: 'symlink',
  hardlink: 'link',
  fifo: 'fifo',
  char: 'character-device',
  block: 'block-device',
} as const;

const defaultModes = { file: 0o644, dir: 0o755, symlink: 0o777, hardlink: 0o644, fifo: 0o644, char: 0o666, block: 0o660 };

/**
 * One 512-byte tar header (GNU magic), for hand-made entries. Numeric fields
 * are octal; `size` may be given as a raw 12-byte field to forge hostile sizes.
 */
export function tarHeader(h: {
  name: string;
  typeflag: string;
  size?: number | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
}): Buffer {
  const block = Buffer.alloc(512);
  const str = (s: string, off: number, len: number) => Buffer.from(s).copy(block, off, 0, len);
  const oct = (n: number, off: number, len: number) => str(n.toString(8).padStart(len - 1, '0') + '\0', off, len);
  str(h.name, 0, 100);
  oct(h.mode ?? 0o644, 100, 8);
  oct(h.uid ?? 0, 108, 8);
  oct(h.gid ?? 0, 116, 8);
  if (Buffer.isBuffer(h.size)) h.size.copy(block, 124, 0, 12);
  else oct(h.size ?? 0, 124, 12);
  oct(Math.floor((h.mtime ?? FIXED_MTIME).getTime() / 1000), 136, 12);
  str(h.typeflag, 156, 1);
  str(h.linkname ?? '', 157, 100);
  str('ustar  \0', 257, 8);
  oct(h.devmajor ?? 0, 329, 8);
  oct(h.devminor ?? 0, 337, 8);
  block.fill(' ', 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  str(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8);
  return block;
}

/** The GNU `././@LongLink` entry (type L for names, K for link targets) that precedes a long-named entry. */
export function gnuLongLink(kind: 'L' | 'K', value: string): Buffer {
  const data = Buffer.from(value + '\0');
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([tarHeader({ name: '././@LongLink', typeflag: kind, size: data.length, mode: 0 }), data, pad]);
}

const END_OF_ARCHIVE = 1024;

async function packSegment(entries: Exclude<TarEntrySpec, { type: 'raw' }>[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', () => resolve(Buffer.concat(chunks)));
    pack.on('error', reject);
  });
  for (const e of entries) {
    const pax: Record<string, string> = { ...(e.pax ?? {}) };
    for (const [k, v] of Object.entries(e.xattrs ?? {})) pax[`SCHILY.xattr.${k}`] = v;
    const header: Partial<tar.Header> & { name: string } = {
      name: e.path,
      type: tarTypes[e.type],
      mode: e.mode ?? defaultModes[e.type],
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      uname: e.uname ?? '',
      gname: e.gname ?? '',
      mtime: e.mtime ?? FIXED_MTIME,
    };
    if (Object.keys(pax).length > 0) header.pax = pax;
    if (e.type === 'symlink' || e.type === 'hardlink') header.linkname = e.target;
    if (e.type === 'char' || e.type === 'block') {
      header.devmajor = e.major;
      header.devminor = e.minor;
    }
    const content = e.type === 'file' ? Buffer.from(e.content ?? '') : Buffer.alloc(0);
    header.size = content.length;
    await new Promise<void>((resolve, reject) => pack.entry(header, content, (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  return await done;
}

/**
 * An uncompressed tar layer with exactly these entries, in this order.
 * Entries are written by tar-stream's pack; `longNames: 'gnu'` and `raw`
 * entries are spliced in between pack's segments.
 */
export async function tarLayer(entries: TarEntrySpec[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  let pending: Exclude<TarEntrySpec, { type: 'raw' }>[] = [];
  const flush = async () => {
    if (pending.length === 0) return;
    const seg = await packSegment(pending);
    parts.push(seg.subarray(0, seg.length - END_OF_ARCHIVE));
    pending = [];
  };
  for (const e of entries) {
    if (e.type === 'raw') {
      await flush();
      parts.push(e.data);
      continue;
    }
    const target = e.type === 'symlink' || e.type === 'hardlink' ? e.target : '';
    if (e.longNames === 'gnu' && (Buffer.byteLength(e.path) > 100 || Buffer.byteLength(target) > 100)) {
      await flush();
      if (Buffer.byteLength(target) > 100) parts.push(gnuLongLink('K', target));
      if (Buffer.byteLength(e.path) > 100) parts.push(gnuLongLink('L', e.path));
      const short = {
        ...e,
        path: Buffer.from(e.path).subarray(0, 100).toString(),
        ...(target ? { target: Buffer.from(target).subarray(0, 100).toString() } : {}),
      } as Exclude<TarEntrySpec, { type: 'raw' }>;
      const seg = await packSegment([short]);
      parts.push(seg.subarray(0, seg.length - END_OF_ARCHIVE));
      continue;
    }
    pending.push(e);
  }
  await flush();
  parts.push(Buffer.alloc(END_OF_ARCHIVE));
  return Buffer.concat(parts);
}

let busyboxCache: Promise<Buffer> | undefined;

/**
 * A busybox root filesystem as one uncompressed tar: Debian's static
 * /bin/busybox, a symlink in bin/ per applet, /etc/passwd and /etc/group with
 * root and user 1000, /tmp 1777, /root, /home/user and the usual mount points.
 */
export function busyboxLayer(): Promise<Buffer> {
  busyboxCache ??= (async () => {
    const binary = await fsp.readFile('/bin/busybox');
    const { stdout } = await execFileP('/bin/busybox', ['--list']);
    const applets = [...new Set(stdout.split('\n').map((s) => s.trim()))]
      .filter((a) => a && a !== 'busybox' && !a.includes('/'))
      .sort();
    const entries: TarEntrySpec[] = [
      { type: 'dir', path: 'bin/' },
      { type: 'file', path: 'bin/busybox', content: binary, mode: 0o755 },
      ...applets.map((a): TarEntrySpec => ({ type: 'symlink', path: `bin/${a}`, target: 'busybox' })),
      { type: 'dir', path: 'dev/' },
      { type: 'dir', path: 'etc/' },
      {
        type: 'file',
        path: 'etc/passwd',
        content: 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
      },
      { type: 'file', path: 'etc/group', content: 'root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n' },
      { type: 'dir', path: 'home/' },
      { type: 'dir', path: 'home/user/', uid: 1000, gid: 1000 },
      { type: 'dir', path: 'proc/' },
      { type: 'dir', path: 'root/', mode: 0o700 },
      { type: 'dir', path: 'sys/' },
      { type: 'dir', path: 'tmp/', mode: 0o1777 },
      { type: 'dir', path: 'usr/' },
      { type: 'dir', path: 'var/' },
    ];
    return await tarLayer(entries);
  })();
  return busyboxCache;
}

// ---------------------------------------------------------------------------
// Compression

export type Compression = 'gzip' | 'zstd' | 'none';

export function gzip(data: Buffer): Buffer {
  return zlib.gzipSync(data);
}

/** zstd through Debian's `zstd` CLI (fine for fixtures: Node 20's zlib has no zstd). */
export function zstd(data: Buffer, level = 3): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('zstd', ['-q', '-c', `-${level}`], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`zstd exited ${code}: ${Buffer.concat(err).toString()}`)),
    );
    child.stdin.end(data);
  });
}

export async function compress(data: Buffer, compression: Compression): Promise<Buffer> {
  switch (compression) {
    case 'gzip':
      return gzip(data);
    case 'zstd':
      return await zstd(data);
    case 'none':
      return data;
  }
}

// ---------------------------------------------------------------------------
// Registry HTTP API (with Basic and Bearer auth)

export interface RegistryTarget {
  url: string;
  auth?: { user: string; password: string };
}

const tokenCache = new Map<string, string>();

function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const space = header.indexOf(' ');
  const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase();
  const params: Record<string, string> = {};
  for (const m of header.slice(space + 1).matchAll(/([a-zA-Z_]+)="([^"]*)"/g)) params[m[1].toLowerCase()] = m[2];
  return { scheme, params };
}

function basic(auth: { user: string; password: string }): string {
  return 'Basic ' + Buffer.from(`${auth.user}:${auth.password}`).toString('base64');
}

/**
 * fetch against the registry, answering a 401 challenge once: Basic with the
 * target's credentials, or Bearer with a token for `repository:REPO:pull,push`
 * from the challenge's realm.
 */
export async function registryFetch(target: RegistryTarget, repo: string, pathOrUrl: string, init: RequestInit = {}): Promise<Response> {
  const url = new URL(pathOrUrl, target.url).toString();
  const cacheKey = `${target.url} ${repo} ${target.auth?.user ?? ''}`;
  const withAuth = (authz?: string): RequestInit => ({
    ...init,
    headers: { ...(init.headers as Record<string, string> | undefined), ...(authz ? { authorization: authz } : {}) },
  });
  const cached = tokenCache.get(cacheKey);
  let res = await fetch(url, withAuth(cached));
  if (res.status !== 401) return res;
  await res.arrayBuffer();
  const challenge = res.headers.get('www-authenticate');
  if (!challenge) throw new Error(`registry answered 401 without a challenge for ${url}`);
  const { scheme, params } = parseChallenge(challenge);
  let authz: string;
  if (scheme === 'basic') {
    if (!target.auth) throw new Error(`registry wants basic auth for ${url} and no credentials were given`);
    authz = basic(target.auth);
  } else if (scheme === 'bearer') {
    const realm = new URL(params.realm);
    if (params.service) realm.searchParams.set('service', params.service);
    realm.searchParams.set('scope', `repository:${repo}:pull,push`);
    const tokenRes = await fetch(realm, { headers: target.auth ? { authorization: basic(target.auth) } : {} });
    if (!tokenRes.ok) throw new Error(`token request to ${realm.origin}${realm.pathname} failed: ${tokenRes.status}`);
    const body = (await tokenRes.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw new Error(`token response from ${realm.origin}${realm.pathname} has no token`);
    authz = `Bearer ${token}`;
    tokenCache.set(cacheKey, authz);
  } else {
    throw new Error(`unsupported auth scheme ${scheme} for ${url}`);
  }
  // Bodies given as Buffers can be sent again.
  res = await fetch(url, withAuth(authz));
  return res;
}

async function expectStatus(res: Response, ok: number[], what: string): Promise<void> {
  if (ok.includes(res.status)) return;
  const body = await res.text().catch(() => '');
  throw new Error(`${what}: registry answered ${res.status} ${body.slice(0, 500)}`);
}

/** Uploads a blob (skipped when the registry already has it); returns its digest. */
export async function pushBlob(target: RegistryTarget, repo: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const head = await registryFetch(target, repo, `/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
  if (head.status === 200) return digest;
  const start = await registryFetch(target, repo, `/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  await expectStatus(start, [202], `starting upload of ${digest} to ${repo}`);
  await start.arrayBuffer();
  const location = start.headers.get('location');
  if (!location) throw new Error(`upload of ${digest} to ${repo}: no Location header`);
  const put = new URL(location, target.url);
  put.searchParams.set('digest', digest);
  const done = await registryFetch(target, repo, put.toString(), {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(data.length) },
    body: data,
  });
  await expectStatus(done, [201], `finishing upload of ${digest} to ${repo}`);
  await done.arrayBuffer();
  return digest;
}

/** PUTs a manifest (or index) under `reference` (a tag or its digest); returns its digest. */
export async function pushManifest(target: RegistryTarget, repo: string, reference: string, body: Buffer, mediaType: string): Promise<string> {
  const res = await registryFetch(target, repo, `/v2/${repo}/manifests/${reference}`, {
    method: 'PUT',
    headers: { 'content-type': mediaType },
    body,
  });
  await expectStatus(res, [201], `putting manifest ${repo}:${reference}`);
  await res.arrayBuffer();
  return sha256(body);
}

// ---------------------------------------------------------------------------
// Images

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** The host's platform in OCI terms (amd64, arm64, …). */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch, ...(process.arch === 'arm64' ? { variant: 'v8' } : {}) };
}

/** The image config's `config` object (Docker's names, as in the image spec). */
export interface ContainerConfig {
  Cmd?: string[];
  Entrypoint?: string[];
  Env?: string[];
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, object>;
  Volumes?: Record<string, object>;
  StopSignal?: string;
}

export interface ImageConfigJson {
  created: string;
  architecture: string;
  os: string;
  variant?: string;
  config: ContainerConfig;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history: Array<{ created: string; created_by: string; empty_layer?: boolean }>;
  [extra: string]: unknown;
}

export interface LayerSpec {
  /** The uncompressed tar. */
  tar: Buffer;
  /** Overrides the image's compression for this layer. */
  compression?: Compression;
  /** Overrides the media type written in the manifest. */
  mediaType?: string;
}

export interface ImageSpec {
  /** Uncompressed tars, base first. */
  layers: Array<Buffer | LayerSpec>;
  /** Default 'gzip'. */
  compression?: Compression;
  /** Default 'docker' (schema2), or 'oci' when any layer is zstd. */
  format?: 'docker' | 'oci';
  config?: ContainerConfig;
  /** Default: the host's. */
  architecture?: string;
  os?: string;
  variant?: string;
  /** Default 2024-01-01T00:00:00Z, for reproducible digests. */
  created?: string;
  /** Last word on the config before it is pushed (e.g. to break diff_ids on purpose). */
  mutateConfig?: (config: ImageConfigJson) => void;
  /** Also PUT the manifest by its digest; default true (always true when tag is undefined). */
  putByDigest?: boolean;
}

export interface PushedLayer {
  /** Digest of the blob as stored (compressed). */
  digest: string;
  /** Digest of the uncompressed tar (rootfs.diff_ids). */
  diffId: string;
  /** Size of the blob as stored. */
  size: number;
  mediaType: string;
  compression: Compression;
  blob: Buffer;
}

export interface PushedImage {
  repo: string;
  tag?: string;
  manifestDigest: string;
  manifest: Buffer;
  manifestMediaType: string;
  configDigest: string;
  config: Buffer;
  layers: PushedLayer[];
  platform: Platform;
}

function layerMediaType(format: 'docker' | 'oci', compression: Compression): string {
  if (format === 'oci') return { gzip: MediaTypes.ociLayerGzip, zstd: MediaTypes.ociLayerZstd, none: MediaTypes.ociLayer }[compression];
  return { gzip: MediaTypes.dockerLayerGzip, zstd: MediaTypes.dockerLayerZstd, none: MediaTypes.dockerLayer }[compression];
}

/** Builds an image and pushes its blobs and manifest; nothing but the registry's HTTP API. */
export async function pushImage(registry: RegistryTarget, repo: string, tag: string | undefined, image: ImageSpec): Promise<PushedImage> {
  const specs = image.layers.map((l): LayerSpec => (Buffer.isBuffer(l) ? { tar: l } : l));
  const defaultCompression = image.compression ?? 'gzip';
  const format = image.format ?? (specs.some((l) => (l.compression ?? defaultCompression) === 'zstd') ? 'oci' : 'docker');
  const created = image.created ?? FIXED_MTIME.toISOString();
  const host = hostPlatform();
  const variant = image.variant ?? (image.architecture ? undefined : host.variant);
  const platform: Platform = {
    os: image.os ?? 'linux',
    architecture: image.architecture ?? host.architecture,
    ...(variant ? { variant } : {}),
  };

  const layers: PushedLayer[] = [];
  for (const spec of specs) {
    const compression = spec.compression ?? defaultCompression;
    const blob = await compress(spec.tar, compression);
    layers.push({
      digest: sha256(blob),
      diffId: sha256(spec.tar),
      size: blob.length,
      mediaType: spec.mediaType ?? layerMediaType(format, compression),
      compression,
      blob,
    });
  }

  const configJson: ImageConfigJson = {
    created,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: image.config ?? {},
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((_, i) => ({ created, created_by: `capsa test layer ${i}` })),
  };
  image.mutateConfig?.(configJson);
  const config = Buffer.from(JSON.stringify(configJson));
  const configMediaType = format === 'oci' ? MediaTypes.ociConfig : MediaTypes.dockerConfig;
  const manifestMediaType = format === 'oci' ? MediaTypes.ociManifest : MediaTypes.dockerManifest;

  const configDigest = await pushBlob(registry, repo, config);
  for (const l of layers) await pushBlob(registry, repo, l.blob);

  const manifest = Buffer.from(
    JSON.stringify(
      {
        schemaVersion: 2,
        mediaType: manifestMediaType,
        config: { mediaType: configMediaType, digest: configDigest, size: config.length },
        layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
      },
      null,
      3,
    ),
  );
  const manifestDigest = sha256(manifest);
  if (tag !== undefined) await pushManifest(registry, repo, tag, manifest, manifestMediaType);
  if (tag === undefined || image.putByDigest !== false) await pushManifest(registry, repo, manifestDigest, manifest, manifestMediaType);
  return { repo, tag, manifestDigest, manifest, manifestMediaType, configDigest, config, layers, platform };
}

export interface PushedIndex {
  digest: string;
  manifest: Buffer;
  mediaType: string;
}

/**
 * Pushes a Docker manifest list or OCI index over images already in `repo`
 * (pushImage with tag undefined puts them by digest only).
 */
export async function pushIndex(
  registry: RegistryTarget,
  repo: string,
  tag: string | undefined,
  entries: Array<{ image: PushedImage; platform: Platform }>,
  format: 'docker' | 'oci',
): Promise<PushedIndex> {
  const mediaType = format === 'oci' ? MediaTypes.ociIndex : MediaTypes.dockerManifestList;
  const manifest = Buffer.from(
    JSON.stringify(
      {
        schemaVersion: 2,
        mediaType,
        manifests: entries.map((e) => ({
          mediaType: e.image.manifestMediaType,
          digest: e.image.manifestDigest,
          size: e.image.manifest.length,
          platform: { architecture: e.platform.architecture, os: e.platform.os, ...(e.platform.variant ? { variant: e.platform.variant } : {}) },
        })),
      },
      null,
      3,
    ),
  );
  const digest = sha256(manifest);
  if (tag !== undefined) await pushManifest(registry, repo, tag, manifest, mediaType);
  await pushManifest(registry, repo, digest, manifest, mediaType);
  return { digest, manifest, mediaType };
}

/** Pushes the busybox image (schema2, gzip, Cmd ["sh"]), as `docker pull busybox` would find it. */
export async function seedBusybox(registry: RegistryTarget, repo = 'library/busybox', tag = 'latest'): Promise<PushedImage> {
  return await pushImage(registry, repo, tag, {
    layers: [await busyboxLayer()],
    compression: 'gzip',
    format: 'docker',
    config: { Cmd: ['sh'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
  });
}
