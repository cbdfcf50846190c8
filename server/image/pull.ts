/**
 * Pulling an image: resolve the manifest (an index to the platform's
 * manifest), fetch and verify the config, then for each layer not yet
 * unpacked download, verify and unpack it in one streaming pass, and finally
 * record the image. The store is consistent at every step: layers and blobs
 * appear only once proven, and the tag moves last.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { CapsaConfig } from '../config';
import { checkSize, checkStringMap, LimitExceededError, LIMITS } from '../limits';
import type { PullPolicy, PullProgress, PullResult } from '../protocol/types';
import {
  CancelledError,
  DiffIdMismatchError,
  DigestMismatchError,
  ImageNotFoundError,
  InvalidLayerError,
  SizeMismatchError,
  TooManyLayersError,
  UnsafeLayerError,
  UnsupportedManifestError,
} from './errors';
import { formatPlatform, hostPlatform, normalizePlatform, parsePlatform, selectManifest, type PlatformSpec } from './platform';
import { clip, printable } from '../util/text';
import { formatReference, parseReference, type ImageReference } from './reference';
import { RegistryClient, type Endpoint } from './registry';
import { ImageStore, type ImageRecord } from './store';
import { CONFIG_MEDIA_TYPES, MAX_IMAGE_LAYERS, isIndexMediaType, layerCompression, type Descriptor, type ImageConfig, type Index, type Manifest } from './types';
import { unpackLayer } from './unpack';

export interface PullOptions {
  store: ImageStore;
  config: CapsaConfig;
  /** `os/arch[/variant]`; default the host's. */
  platform?: string;
  signal?: AbortSignal;
  /** Per-layer progress, at most every `progressIntervalMs` (and once at the end). */
  onProgress?: (p: PullProgress) => void;
  progressIntervalMs?: number;
  /** Client to use; default one shared per config (keep-alive connections and tokens reused). */
  client?: RegistryClient;
}

export type PullOutcome = PullResult & { image: ImageRecord };

const clients = new WeakMap<object, RegistryClient>();

/** The registry client shared by pulls with the same config object. */
export function clientFor(config: CapsaConfig): RegistryClient {
  let c = clients.get(config);
  if (!c) {
    c = new RegistryClient({ config, credentials: config.credentials });
    clients.set(config, c);
  }
  return c;
}

type LayerState = PullProgress['layers'][number];

/** Throttled progress reporting: at most one callback per interval, plus a final one. */
class Progress {
  readonly layers: LayerState[];
  private last = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    descs: Descriptor[],
    private readonly cb: ((p: PullProgress) => void) | undefined,
    private readonly interval: number,
  ) {
    this.layers = descs.map((d) => ({ digest: d.digest, size: d.size, done: 0, status: 'waiting' }));
  }

  update(i: number, patch: Partial<LayerState>): void {
    Object.assign(this.layers[i], patch);
    if (!this.cb) return;
    const now = Date.now();
    if (now - this.last >= this.interval) {
      this.emit();
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.emit(), this.interval - (now - this.last));
      this.timer.unref?.();
    }
  }

  emit(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.last = Date.now();
    try {
      this.cb?.({ layers: this.layers.map((l) => ({ ...l })) });
    } catch {
      // A progress consumer's failure must not break the pull.
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** Runs `tasks` with at most `limit` at a time; rejects with the first failure after all settled. */
export async function runLimited(limit: number, tasks: Array<() => Promise<void>>): Promise<void> {
  let next = 0;
  let firstError: unknown;
  let failed = false;
  const worker = async () => {
    while (next < tasks.length && !failed) {
      const t = tasks[next++];
      try {
        await t();
      } catch (err) {
        if (!failed) firstError = err;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, tasks.length)) }, worker));
  if (failed) throw firstError;
}

/**
 * Pulls `ref` into `opts.store`. Returns the record and whether anything had
 * to be fetched. Errors: ImageNotFoundError, RegistryAuthError,
 * DigestMismatchError, UnsupportedManifestError, PlatformNotFoundError,
 * UnsafeLayerError, CancelledError… each naming the image or blob.
 */
export async function pullImage(ref: string, opts: PullOptions): Promise<PullOutcome> {
  const parsed = parseReference(ref);
  const platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
  const { store, signal } = opts;
  const client = opts.client ?? clientFor(opts.config);
  const name = formatReference(parsed);
  return store.hold(async () => {
    // 1. Manifest (through an index when there is one).
    const top = await client.getManifest(parsed, undefined, signal);
    let endpoint: Endpoint = top.endpoint;
    let manifestDigest = top.digest;
    let manifestMediaType = top.mediaType;
    let manifestBytes = top.bytes;
    let manifest: Manifest;
    if (isIndexMediaType(top.mediaType)) {
      const chosen = selectManifest(top.parsed as Index, platform, name);
      if (isIndexMediaType(chosen.mediaType)) {
        throw new UnsupportedManifestError(`${name}: nested index ${chosen.digest} for ${formatPlatform(platform)} is not supported`, chosen.mediaType);
      }
      checkSize(LIMITS.manifest, `manifest ${chosen.digest} of ${name}`, chosen.size);
      const m = await client.getManifest(parsed, chosen.digest, signal);
      if (m.bytes.length !== chosen.size) throw new SizeMismatchError(`manifest ${chosen.digest} of ${name}`, chosen.size, m.bytes.length);
      if (isIndexMediaType(m.mediaType)) throw new UnsupportedManifestError(`${name}: manifest ${chosen.digest} is itself an index`, m.mediaType);
      endpoint = m.endpoint;
      manifestDigest = m.digest;
      manifestMediaType = m.mediaType;
      manifestBytes = m.bytes;
      manifest = m.parsed as Manifest;
    } else {
      manifest = top.parsed as Manifest;
    }
    checkImageManifest(manifest, name);

    // 2. Config, verified. Its declared size is checked before any byte is read, from the store or the network.
    checkSize(LIMITS.config, `config ${manifest.config.digest} of ${name}`, manifest.config.size);
    let configBytes: Buffer;
    if (await store.hasBlob(manifest.config.digest)) {
      configBytes = await store.readBlob(manifest.config.digest);
    } else {
      configBytes = await client.getBlob(parsed, manifest.config, signal, endpoint);
    }
    const config = parseConfig(configBytes, name);
    checkPlatform(config, platform, name, opts.platform !== undefined);
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== manifest.layers.length) {
      throw new UnsupportedManifestError(
        `${name}: manifest lists ${manifest.layers.length} layers but its config lists ${diffIds.length} diff-ids`,
      );
    }

    // 3. Layers: download + verify + unpack, bounded concurrency.
    const progress = new Progress(manifest.layers, opts.onProgress, opts.progressIntervalMs ?? 100);
    let fetched = false;
    try {
      const tasks = manifest.layers.map((desc, i) => async () => {
        const diffId = diffIds[i];
        if (await store.hasLayer(diffId)) {
          progress.update(i, { status: 'exists', done: desc.size });
          return;
        }
        const did = await store.once(`layer:${diffId}`, () =>
          fetchLayer({ store, client, ref: parsed, desc, diffId, endpoint, signal, progress, index: i }),
        );
        if (did) fetched = true;
        progress.update(i, { status: 'done', done: desc.size });
      });
      await runLimited(opts.config.maxConcurrentDownloads || 3, tasks);
    } finally {
      progress.emit();
      progress.stop();
    }
    if (signal?.aborted) throw new CancelledError(`pull of ${name}`);

    // 4. Record: manifest and config blobs, then the image and its tag.
    const alreadyRecorded = await store.resolve(parsed.digest ? name : formatReference({ ...parsed, digest: undefined }));
    await store.putBlob(manifestBytes, manifestDigest);
    if (top.digest !== manifestDigest) await store.putBlob(top.bytes, top.digest);
    await store.putBlob(configBytes, manifest.config.digest);
    const image = await store.addImage({
      reference: parsed.tag !== undefined ? parsed : undefined,
      repository: parsed,
      repoDigest: top.digest,
      manifestDigest,
      manifestMediaType,
      configDigest: manifest.config.digest,
      config,
      layers: manifest.layers,
    });
    const upToDate = !fetched && alreadyRecorded?.id === image.id && alreadyRecorded.manifestDigest === manifestDigest;
    return { reference: name, manifestDigest, id: image.id, upToDate, image };
  });
}

interface LayerJob {
  store: ImageStore;
  client: RegistryClient;
  ref: ImageReference;
  desc: Descriptor;
  diffId: string;
  endpoint: Endpoint;
  signal?: AbortSignal;
  progress: Progress;
  index: number;
}

/**
 * Makes layer `diffId` present. Returns true if it had to download anything.
 * A blob in the store that turns out corrupt (torn by a power loss: blobs are
 * not fsynced) is dropped and downloaded again in the same pull.
 */
async function fetchLayer(job: LayerJob): Promise<boolean> {
  try {
    return await fetchLayerOnce(job);
  } catch (err) {
    if (!(err instanceof LocalBlobCorruptError)) throw err;
    return fetchLayerOnce(job);
  }
}

/** A blob read back from the store did not match its digest or was not a layer; it is gone now. */
class LocalBlobCorruptError extends Error {}

async function fetchLayerOnce(job: LayerJob): Promise<boolean> {
  const { store, desc, diffId, progress, index } = job;
  if (await store.hasLayer(diffId)) return false;
  const compression = layerCompression(desc.mediaType)!;
  const label = `layer ${desc.digest}`;
  let downloaded = false;
  await store.createLayer(diffId, async (dir) => {
    // A blob already in the store (a layer deleted by hand, an earlier pull
    // that failed at diff-id) is unpacked from disk without the network.
    if (await store.hasBlob(desc.digest)) {
      progress.update(index, { status: 'extracting' });
      try {
        const r = await unpackLayer(createReadStream(store.blobPath(desc.digest)), dir, {
          compression,
          label,
          maxCompressedSize: desc.size,
          signal: job.signal,
          onProgress: (n) => progress.update(index, { done: n }),
        });
        verifyBlob(desc, r.digest, r.compressedSize);
        return { diffId: r.diffId, size: r.size, digest: desc.digest, tarSize: r.tarSize };
      } catch (err) {
        // Blobs are not fsynced (see BlobWriter.commit): one torn by a power
        // loss goes, and the next pull downloads it again.
        if (err instanceof DigestMismatchError || err instanceof SizeMismatchError || err instanceof InvalidLayerError) {
          await store.dropCorruptBlob(desc.digest);
          throw new LocalBlobCorruptError(`blob ${desc.digest} in the store is corrupt: ${(err as Error).message}`, { cause: err });
        }
        throw err;
      }
    }
    downloaded = true;
    const ingest = await store.ingest(desc.digest, desc.size, { hash: false });
    const resumeFrom = ingest.offset;
    let seen = 0;
    progress.update(index, { status: 'downloading', done: resumeFrom });
    const partial = ingest.partial();
    const network = job.client.blobStream(job.ref, desc, { offset: resumeFrom, signal: job.signal, prefer: job.endpoint });
    const source = partial ? concatStreams(partial, network) : network;
    try {
      const r = await unpackLayer(source, dir, {
        compression,
        label,
        maxCompressedSize: desc.size,
        signal: job.signal,
        onProgress: (n) => progress.update(index, { done: n, status: n >= desc.size ? 'extracting' : 'downloading' }),
        // Replayed bytes of a resumed ingest are in the file already.
        sink: async (chunk) => {
          const start = seen;
          seen += chunk.length;
          if (seen <= resumeFrom) return;
          await ingest.write(start >= resumeFrom ? chunk : chunk.subarray(resumeFrom - start));
        },
      });
      verifyBlob(desc, r.digest, r.compressedSize);
      // The unpacker hashed exactly the bytes written (and replayed).
      await ingest.commit(r.digest);
      return { diffId: r.diffId, size: r.size, digest: desc.digest, tarSize: r.tarSize };
    } catch (err) {
      // Keep a partial download only if its bytes may still be right (a cut
      // connection, a cancel); never after a content error.
      const contentError =
        err instanceof DigestMismatchError ||
        err instanceof SizeMismatchError ||
        err instanceof InvalidLayerError ||
        err instanceof UnsafeLayerError;
      await ingest.abort(!contentError);
      network.destroy();
      partial?.destroy();
      throw err;
    }
  }).catch((err: unknown) => {
    if (err instanceof DigestMismatchError && err.message.includes('diff-id')) {
      throw new DiffIdMismatchError(desc.digest, diffId, err.actual);
    }
    throw err;
  });
  return downloaded;
}

function verifyBlob(desc: Descriptor, digest: string, size: number): void {
  if (size !== desc.size) throw new SizeMismatchError(`blob ${desc.digest}`, desc.size, size);
  if (digest !== desc.digest) throw new DigestMismatchError(`blob ${desc.digest}`, desc.digest, digest);
}

function concatStreams(...streams: Readable[]): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    for (const s of streams) for await (const c of s) yield c as Buffer;
  }
  return Readable.from(gen(), { objectMode: false });
}

function checkImageManifest(m: Manifest, name: string): void {
  // before the config or any layer is fetched: a manifest of thousands of entries costs only its own bytes
  if (m.layers.length > MAX_IMAGE_LAYERS) throw new TooManyLayersError(`image ${name}`, m.layers.length, MAX_IMAGE_LAYERS);
  if (!CONFIG_MEDIA_TYPES.includes(m.config.mediaType)) {
    throw new UnsupportedManifestError(`${name} is not a container image: its config has media type ${m.config.mediaType}`, m.config.mediaType);
  }
  for (const l of m.layers) {
    if (layerCompression(l.mediaType) === undefined) {
      throw new UnsupportedManifestError(`${name}: layer ${l.digest} has unsupported media type ${l.mediaType}`, l.mediaType);
    }
    if (l.urls?.length) {
      // Foreign layers live outside the registry; Capsa pulls only what the registry serves.
      throw new UnsupportedManifestError(`${name}: layer ${l.digest} is a foreign layer (urls), which is not supported`, l.mediaType);
    }
  }
}

function parseConfig(bytes: Buffer, name: string): ImageConfig {
  let c: ImageConfig;
  try {
    c = JSON.parse(bytes.toString('utf8')) as ImageConfig;
  } catch {
    throw new UnsupportedManifestError(`${name}: image config is not valid JSON`);
  }
  if (!c || typeof c !== 'object' || !c.rootfs || !Array.isArray(c.rootfs.diff_ids)) {
    throw new UnsupportedManifestError(`${name}: image config has no rootfs.diff_ids`);
  }
  for (const d of c.rootfs.diff_ids) {
    if (typeof d !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(d)) {
      throw new UnsupportedManifestError(`${name}: image config has a malformed diff-id ${JSON.stringify(d).slice(0, 100)}`);
    }
  }
  checkConfigLabels(c, `${name}: image config`);
  return c;
}

/** Labels of an image config within LIMITS.labels; a malformed map is a malformed config. */
export function checkConfigLabels(c: ImageConfig, what: string): void {
  try {
    checkStringMap(LIMITS.labels, `labels of ${what}`, c.config?.Labels);
  } catch (err) {
    if (err instanceof LimitExceededError) throw err;
    throw new UnsupportedManifestError(`${what} has malformed labels: ${(err as Error).message}`);
  }
}

/** A single-platform image for another platform is refused when a platform was asked for explicitly, like Docker. */
function checkPlatform(config: ImageConfig, want: PlatformSpec, name: string, explicit: boolean): void {
  if (!explicit || !config.os || !config.architecture) return;
  // the image's own words, not a user's flag: normalised, not held to the --platform vocabulary
  const got = normalizePlatform({ os: String(config.os), architecture: String(config.architecture), variant: config.variant === undefined ? undefined : String(config.variant) });
  if (got.os !== want.os || got.architecture !== want.architecture) {
    throw new ImageNotFoundError(`image ${name} is for ${printable(clip(formatPlatform(got), 80))}, not the requested ${formatPlatform(want)}`);
  }
}

/**
 * Docker's `--pull` policies: `missing` uses a local image if there is one
 * (without contacting any registry) and pulls otherwise; `always` pulls;
 * `never` uses the local image or fails.
 */
export async function resolveOrPull(
  ref: string,
  policy: PullPolicy,
  opts: PullOptions,
): Promise<{ image: ImageRecord; pulled?: PullResult }> {
  if (policy !== 'always') {
    const local = await opts.store.resolve(ref);
    if (local) return { image: local };
    if (policy === 'never') {
      throw new ImageNotFoundError(`image ${JSON.stringify(ref)} is not present locally and the pull policy is "never"`);
    }
  }
  const r = await pullImage(ref, opts);
  const { image, ...pulled } = r;
  return { image, pulled };
}
