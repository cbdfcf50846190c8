/**
 * The helper's image service: the store plus the puller, behind the
 * operations clients ask for, with change events for the editor's view.
 *
 * Every operation acts for a caller (the kernel's word on the connection),
 * in that caller's namespace of names (its uid): a tag one user pulls or
 * loads is theirs alone, and looking a name up (run, rmi, save) searches
 * only the caller's names, so nobody can make another uid run their bytes
 * under a trusted name. Blobs and layers are content-addressed and shared.
 * Root's namespace is the store's names from before there were several;
 * root's list and disk use show every namespace with its owner.
 */
import { EventEmitter } from 'node:events';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { CapsaConfig } from '../config';
import type {
  ContainerSummary,
  ImageEvent,
  ImageInspect,
  ImageLoadResult,
  ImagePruneResult,
  ImageRemoveResult,
  ImageSaveResult,
  ImageSummary,
  PullProgress,
  PullPolicy,
  PullResult,
  PushProgress,
  ImagePushResult,
  RegistryAuth,
  SystemDfResult,
} from '../protocol';
import { pushImage } from '../image/push';
import { RegistryClient as Client, endpointsFor } from '../image/registry';
import { checkLogin } from '../image/registry/upload';
import { parseReference } from '../image/reference';
import { loadArchive, saveArchive } from '../image/archive';
import { ImageStore, ROOT_OWNER, type ImageRecord, type Owner } from '../image/store';
import { anonymousClientFor, clientFor, pullImage } from '../image/pull';
import type { RegistryClient } from '../image/registry';
import type { Caller } from '../util/peercred';
import { familiarReference, normalizeReference } from '../image/reference';
import { ImageNotFoundError } from '../image/errors';
import { InvalidArgumentError } from '../errors';
import type { ImageSource, ResolvedImage } from '../runtime/container';

export class ImageService extends EventEmitter implements ImageSource {
  readonly store: ImageStore;

  constructor(private readonly config: CapsaConfig) {
    super();
    this.store = new ImageStore(config.root);
    // one listener per connection (handlers/images.ts), each passing on its caller's events
    this.setMaxListeners(0);
  }

  /** Clears what a crash left half-done (temporary layer dirs, unfinished index writes); partial downloads stay to be resumed. */
  async init(): Promise<void> {
    await this.store.recover();
  }

  async pull(
    reference: string,
    opts: { caller: Caller; platform?: string; signal?: AbortSignal; onProgress?: (p: PullProgress) => void; auth?: RegistryAuth },
  ): Promise<PullResult> {
    const owner = ownerOf(opts.caller);
    return this.withClient(owner, registryOf(reference), opts.auth, async (client) => {
      const r = await pullImage(reference, { store: this.store, config: this.config, owner, client, platform: opts.platform, signal: opts.signal, onProgress: opts.onProgress });
      this.emitEvent('pull', r.image);
      return { reference: r.reference, manifestDigest: r.manifestDigest, id: r.id, upToDate: r.upToDate };
    });
  }

  /** Pushes the caller's image named `reference` (see image/push.ts), with the request's credentials or, for root, the configured ones. */
  async push(reference: string, opts: { caller: Caller; signal?: AbortSignal; onProgress?: (p: PushProgress) => void; auth?: RegistryAuth; chunkSize?: number }): Promise<ImagePushResult> {
    const owner = ownerOf(opts.caller);
    return this.withClient(owner, registryOf(reference), opts.auth, (client) =>
      pushImage(reference, { store: this.store, config: this.config, client, owner, signal: opts.signal, onProgress: opts.onProgress, chunkSize: opts.chunkSize ?? this.config.pushChunkSize }),
    );
  }

  /** `capsa login`'s check: `/v2/` of `registry` with these credentials (Basic, or a Bearer token from its realm). Nothing is kept. */
  async login(registry: string, auth: RegistryAuth, signal?: AbortSignal): Promise<{ registry: string }> {
    let host: string;
    try {
      host = registryOf(`${registry}/capsa-login-check`);
    } catch {
      host = '';
    }
    if (host !== registry.toLowerCase() && !(host === 'docker.io' && registry === 'docker.io')) {
      throw new InvalidArgumentError(`invalid registry ${JSON.stringify(registry).slice(0, 200)}: give a host[:port] such as registry.example.com:5000`);
    }
    return this.withClient(ROOT_OWNER, host, auth, async (client) => {
      const ep = endpointsFor(host, this.config).filter((e) => !e.mirror)[0];
      await checkLogin(client, ep, signal);
      return { registry: host };
    });
  }

  /**
   * Runs `fn` with the registry client for this request. Credentials sent
   * with the request get a client of their own, closed after it: its token
   * cache dies with it, so no token is ever reused for another request, let
   * alone another user. Without them root uses the stored credentials and
   * anyone else none.
   */
  private async withClient<T>(owner: Owner, host: string, auth: RegistryAuth | undefined, fn: (client: RegistryClient) => Promise<T>): Promise<T> {
    if (!auth) return fn(this.client(owner));
    const client = new Client({ config: this.config, credentials: { [host]: { username: auth.username, password: auth.password } }, dockerConfig: false });
    try {
      return await fn(client);
    } finally {
      await client.close().catch(() => undefined);
    }
  }

  /** The caller's images; root's answer has every namespace's, each row with its owner. */
  async list(caller: Caller): Promise<ImageSummary[]> {
    const owner = ownerOf(caller);
    return (owner === ROOT_OWNER ? await this.store.listAll() : await this.store.list(owner)).map(summary);
  }

  /** `docker image inspect` of an image of the caller's namespace (another's is not found). */
  async inspect(caller: Caller, image: string): Promise<ImageInspect> {
    const record = await this.store.get(image, ownerOf(caller));
    const config = await this.store.config(record);
    const last = config.history?.[config.history.length - 1];
    return {
      Id: record.id,
      RepoTags: record.references.map((r) => familiarReference(r)),
      RepoDigests: record.repoDigests,
      Parent: record.parent ?? '',
      Comment: last?.comment ?? '',
      Created: config.created ?? '',
      Author: config.author ?? '',
      Config: { ...(config.config ?? {}) },
      Architecture: config.architecture,
      ...(config.variant ? { Variant: config.variant } : {}),
      Os: config.os,
      Size: record.size,
      RootFS: { Type: config.rootfs.type, Layers: [...config.rootfs.diff_ids] },
      Descriptor: { mediaType: record.manifestMediaType, digest: record.manifestDigest },
    };
  }

  /**
   * `rmi` in the caller's namespace. `inUse`: the images the caller's own
   * containers use (refused without force); `needed`: those any container
   * uses, whose content stays whoever's name goes.
   */
  async remove(caller: Caller, image: string, force: boolean, inUse: Set<string>, needed: Set<string> = inUse): Promise<ImageRemoveResult> {
    const owner = ownerOf(caller);
    // Events carry the image id, as every other image event does, not the reference the user typed.
    const id = (await this.store.resolve(image, owner))?.id ?? image;
    const r = await this.store.remove(image, { force, inUse: (x) => inUse.has(x), needed: (x) => needed.has(x) }, owner);
    this.emit('event', { action: r.deleted.length ? 'delete' : 'untag', id, owner } satisfies ImageEvent);
    return r;
  }

  /** Loads the images of the archive at `file` (an absolute path the handler checked), opened with the caller's rights; its tags become the caller's names. */
  async load(caller: Caller, file: string, opts: { signal?: AbortSignal; onProgress?: (read: number, total: number) => void } = {}): Promise<ImageLoadResult> {
    const owner = ownerOf(caller);
    const loaded = await loadArchive(this.store, file, { ...opts, concurrency: 2, owner, caller });
    for (const l of loaded) {
      const record = await this.store.resolve(l.id, owner);
      // The protocol's image events have no 'load'; a loaded image is one that got its tags.
      if (record) this.emitEvent('tag', record);
    }
    return { images: loaded };
  }

  /** The caller's own images, to `output` created and renamed with the caller's rights. */
  async save(caller: Caller, images: string[], output: string, signal?: AbortSignal): Promise<ImageSaveResult> {
    return saveArchive(this.store, images, output, { signal, owner: ownerOf(caller), caller });
  }

  /** `image prune` in the caller's namespace (`inUse`, `needed`: as for remove). */
  async prune(caller: Caller, all: boolean, inUse: Set<string>, needed: Set<string> = inUse): Promise<ImagePruneResult> {
    const owner = ownerOf(caller);
    const r = await this.store.prune({ all, inUse: (id) => inUse.has(id), needed: (id) => needed.has(id) }, owner);
    for (const id of r.deleted.filter((d) => d.startsWith('sha256:'))) this.emit('event', { action: 'delete', id, owner } satisfies ImageEvent);
    return r;
  }

  /**
   * `docker system df`: the store's usage plus the containers' upper
   * directories. Root's covers the whole store, with each namespace's share
   * in `owners`; a user's, only their images and what those reference.
   */
  async diskUsage(caller: Caller, containers: ContainerSummary[], inUse: Set<string>): Promise<SystemDfResult> {
    const owner = ownerOf(caller);
    const du = await this.store.diskUsage((id) => inUse.has(id), owner === ROOT_OWNER ? undefined : owner);
    let owners: SystemDfResult['owners'];
    if (owner === ROOT_OWNER) {
      const byOwner = new Map<number, { owner: number; images: number; layers: Map<string, number> }>();
      for (const r of await this.store.listAll()) {
        const o = byOwner.get(r.owner) ?? { owner: r.owner, images: 0, layers: new Map<string, number>() };
        byOwner.set(r.owner, o);
        o.images++;
        for (const d of r.diffIds) o.layers.set(d, (await this.store.layerInfo(d))?.size ?? 0);
      }
      owners = [...byOwner.values()]
        .sort((a, b) => a.owner - b.owner)
        .map((o) => ({ owner: o.owner, images: o.images, size: [...o.layers.values()].reduce((x, y) => x + y, 0) }));
    }
    let size = 0;
    let reclaimable = 0;
    for (const c of containers) {
      const s = await treeSize(path.join(this.config.root, 'containers', c.id, 'upper'));
      size += s;
      if (c.state !== 'running') reclaimable += s;
    }
    return {
      ...du,
      ...(owners ? { owners } : {}),
      containers: { count: containers.length, running: containers.filter((c) => c.state === 'running').length, size, reclaimable },
    };
  }

  /**
   * Docker's `--pull` semantics: `missing` uses a local image without
   * contacting any registry. The name is looked up, and a pull recorded, in
   * the caller's namespace (root's when no caller is given).
   */
  async resolveForRun(
    reference: string,
    options: { pull: PullPolicy; platform?: string; onProgress?: (p: PullProgress) => void; signal?: AbortSignal; caller?: Caller; auth?: RegistryAuth },
  ): Promise<ResolvedImage> {
    const owner = options.caller ? ownerOf(options.caller) : ROOT_OWNER;
    let record: ImageRecord | undefined = options.pull === 'always' ? undefined : await this.store.resolve(reference, owner);
    if (!record) {
      if (options.pull === 'never') {
        throw new ImageNotFoundError(`image ${JSON.stringify(reference)} is not present locally and the pull policy is "never"`);
      }
      // the request's own credentials for this pull alone, as an explicit pull takes them (withClient)
      const r = await this.withClient(owner, registryOf(reference), options.auth, (client) =>
        pullImage(reference, {
          store: this.store,
          config: this.config,
          owner,
          client,
          platform: options.platform,
          signal: options.signal,
          onProgress: options.onProgress,
        }),
      );
      this.emitEvent('pull', r.image);
      record = r.image;
    }
    const [config, layerDirs] = await Promise.all([this.store.config(record), this.store.layerDirs(record)]);
    return {
      id: record.id,
      reference: record.references[0] ?? safeNormalize(reference),
      config: config.config ?? {},
      layerDirs,
    };
  }

  /** Root's pulls use the stored credentials (root's); anyone else's are anonymous (see anonymousClientFor). */
  private client(owner: Owner): RegistryClient {
    return owner === ROOT_OWNER ? clientFor(this.config) : anonymousClientFor(this.config);
  }

  private emitEvent(action: ImageEvent['action'], image: ImageRecord): void {
    this.emit('event', { action, id: image.id, image: summary(image), owner: image.owner } satisfies ImageEvent);
  }
}

/** The namespace a caller's names live in: its uid, as the kernel gave it. */
function ownerOf(caller: Caller): Owner {
  return caller.uid;
}

/** The registry host a reference names (`docker.io` for Docker Hub); parse errors surface as the reference's own. */
function registryOf(reference: string): string {
  return parseReference(reference).registry;
}

function safeNormalize(reference: string): string {
  try {
    return normalizeReference(reference);
  } catch {
    return reference;
  }
}

export function summary(r: ImageRecord): ImageSummary {
  return {
    id: r.id,
    references: r.references,
    names: r.references.map((ref) => familiarReference(ref)),
    manifestDigest: r.manifestDigest,
    repoDigests: r.repoDigests,
    created: r.created,
    size: r.size,
    os: r.os,
    architecture: r.architecture,
    owner: r.owner,
    ...(r.parent ? { parent: r.parent } : {}),
  };
}

/** Sum of the sizes of the regular files under `dir` (0 if it does not exist); never follows symlinks. */
async function treeSize(dir: string): Promise<number> {
  let total = 0;
  const stack = [dir];
  while (stack.length) {
    const d = stack.pop()!;
    let entries: import('node:fs').Dirent[];
    try {
      entries = await fs.readdir(d, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      // A file the container deletes between readdir and lstat counts as nothing.
      else if (e.isFile()) total += (await fs.lstat(p).catch(() => undefined))?.size ?? 0;
    }
  }
  return total;
}
