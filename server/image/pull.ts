/**
 * Pulling an image: a registry source (./registrysource) driven by the
 * importer (./importer): resolve the manifest (an index to the platform's
 * manifest), fetch and verify the config, then for each layer not yet
 * unpacked download, verify and unpack it in one streaming pass, and finally
 * record the image. The store is consistent at every step: layers and blobs
 * appear only once proven, the pull's lease keeps them from garbage
 * collection until the record names them, and the tag moves last.
 */
import type { CapsaConfig } from '../config';
import { DiffIdMismatchError, ImageNotFoundError, LayerDiffIdMismatchError } from './errors';
import { fetchImage, recordImage, type FetchedImage, type LayerStatus } from './importer';
import { hostPlatform, parsePlatform } from './platform';
import { formatReference, parseReference } from './reference';
import { RegistryClient } from './registry';
import { RegistrySource } from './registrysource';
import { ROOT_OWNER, type ImageRecord, type ImageStore, type Owner } from './store';
import type { Descriptor } from './types';

// The image side's own words for a pull: the protocol declares the same
// shapes for clients, and the edge (services/, handlers/) passes these on.

/** Docker's `--pull`: `missing` uses a local image, `always` pulls, `never` never does. */
export type PullPolicy = 'always' | 'missing' | 'never';

/** What a pull did. */
export interface PullResult {
  /** Normalised reference, e.g. `docker.io/library/busybox:latest`. */
  reference: string;
  /** Digest of the manifest that was selected for the platform. */
  manifestDigest: string;
  /** Image id: the digest of the image config. */
  id: string;
  /** True when nothing had to be fetched. */
  upToDate: boolean;
}

/** A pull's progress: per layer, keyed by compressed digest. */
export interface PullProgress {
  layers: Array<{ digest: string; size: number; done: number; status: LayerStatus }>;
}

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
  /** The namespace the pulled name lands in (default root's); content is shared whoever pulls. */
  owner?: Owner;
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

const anonymousClients = new WeakMap<object, RegistryClient>();

/**
 * The registry client shared by pulls made for callers other than root: it
 * sends no stored credentials. The config's `credentials` and the Docker
 * config.json the helper reads are root's, and a user's pull must not
 * borrow them; a registry that needs a login answers such a pull 401.
 */
export function anonymousClientFor(config: CapsaConfig): RegistryClient {
  let c = anonymousClients.get(config);
  if (!c) {
    c = new RegistryClient({ config, dockerConfig: false });
    anonymousClients.set(config, c);
  }
  return c;
}

type LayerState = PullProgress['layers'][number];

/** Throttled progress reporting: at most one callback per interval, plus a final one. */
class Progress {
  readonly layers: LayerState[];
  /** Set once the layers are known: only then is there progress to report. */
  started = false;
  private last = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly cb: ((p: PullProgress) => void) | undefined,
    private readonly interval: number,
  ) {
    this.layers = [];
  }

  /** The layers to report on, once the manifest names them. */
  start(descs: Descriptor[]): void {
    this.started = true;
    this.layers.splice(0, this.layers.length, ...descs.map((d): LayerState => ({ digest: d.digest, size: d.size, done: 0, status: 'waiting' })));
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

/**
 * Pulls `ref` into `opts.store`. Returns the record and whether anything had
 * to be fetched. Errors: ImageNotFoundError, RegistryAuthError,
 * DigestMismatchError, DiffIdMismatchError, UnsupportedManifestError,
 * PlatformNotFoundError, UnsafeLayerError, CancelledError… each naming the
 * image or blob.
 */
export async function pullImage(ref: string, opts: PullOptions): Promise<PullOutcome> {
  const parsed = parseReference(ref);
  const platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
  const { store, signal } = opts;
  const client = opts.client ?? clientFor(opts.config);
  const name = formatReference(parsed);
  const source = new RegistrySource(parsed, {
    client,
    platform,
    explicitPlatform: opts.platform !== undefined,
    signal,
    local: async (digest) => ((await store.hasBlob(digest)) ? store.readBlob(digest) : undefined),
  });
  return store.withLease(`pull of ${name}`, async (lease) => {
    const progress = new Progress(opts.onProgress, opts.progressIntervalMs ?? 100);
    let fetched: FetchedImage;
    try {
      fetched = await fetchImage(store, source, {
        lease,
        concurrency: opts.config.maxConcurrentDownloads || 3,
        signal,
        operation: `pull of ${name}`,
        onLayer: (i, patch) => progress.update(i, patch),
        onLayers: (descs) => progress.start(descs),
      });
    } catch (err) {
      // The store proves a layer against the diff-id it is stored under; a pull tells it as the config's diff-id.
      if (err instanceof LayerDiffIdMismatchError) throw new DiffIdMismatchError(err.layer, err.expected, err.actual);
      throw err;
    } finally {
      if (progress.started) progress.emit();
      progress.stop();
    }
    const owner = opts.owner ?? ROOT_OWNER;
    const alreadyRecorded = await store.resolve(parsed.digest ? name : formatReference({ ...parsed, digest: undefined }), owner);
    const image = await recordImage(store, fetched, owner);
    const manifestDigest = fetched.manifest.digest;
    const upToDate = !fetched.fetched && alreadyRecorded?.id === image.id && alreadyRecorded.manifestDigest === manifestDigest;
    return { reference: name, manifestDigest, id: image.id, upToDate, image };
  });
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
    const local = await opts.store.resolve(ref, opts.owner ?? ROOT_OWNER);
    if (local) return { image: local };
    if (policy === 'never') {
      throw new ImageNotFoundError(`image ${JSON.stringify(ref)} is not present locally and the pull policy is "never"`);
    }
  }
  const r = await pullImage(ref, opts);
  const { image, ...pulled } = r;
  return { image, pulled };
}
