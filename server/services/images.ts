/**
 * The helper's image service: the store plus the puller, behind the
 * operations clients ask for, with change events for the editor's view.
 */
import { EventEmitter } from 'node:events';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { CapsaConfig } from '../config';
import type {
  ContainerSummary,
  ImageEvent,
  ImageLoadResult,
  ImagePruneResult,
  ImageRemoveResult,
  ImageSaveResult,
  ImageSummary,
  PullProgress,
  PullPolicy,
  PullResult,
  SystemDfResult,
} from '../protocol';
import { loadArchive, saveArchive } from '../image/archive';
import { ImageStore, type ImageRecord } from '../image/store';
import { pullImage } from '../image/pull';
import { familiarReference, normalizeReference } from '../image/reference';
import { ImageNotFoundError } from '../image/errors';
import type { ImageSource, ResolvedImage } from '../runtime/container';

export class ImageService extends EventEmitter implements ImageSource {
  readonly store: ImageStore;

  constructor(private readonly config: CapsaConfig) {
    super();
    this.store = new ImageStore(config.root);
  }

  /** Clears what a crash left half-done (temporary layer dirs, unfinished index writes); partial downloads stay to be resumed. */
  async init(): Promise<void> {
    await this.store.recover();
  }

  async pull(reference: string, opts: { platform?: string; signal?: AbortSignal; onProgress?: (p: PullProgress) => void }): Promise<PullResult> {
    const r = await pullImage(reference, { store: this.store, config: this.config, platform: opts.platform, signal: opts.signal, onProgress: opts.onProgress });
    this.emitEvent('pull', r.image);
    return { reference: r.reference, manifestDigest: r.manifestDigest, id: r.id, upToDate: r.upToDate };
  }

  async list(): Promise<ImageSummary[]> {
    return (await this.store.list()).map(summary);
  }

  async remove(image: string, force: boolean, inUse: Set<string>): Promise<ImageRemoveResult> {
    // Events carry the image id, as every other image event does, not the reference the user typed.
    const id = (await this.store.resolve(image))?.id ?? image;
    const r = await this.store.remove(image, { force, inUse: (x) => inUse.has(x) });
    this.emit('event', { action: r.deleted.length ? 'delete' : 'untag', id } satisfies ImageEvent);
    return r;
  }

  /** Loads the images of the archive at `file` (an absolute path the handler checked). */
  async load(file: string, opts: { signal?: AbortSignal; onProgress?: (read: number, total: number) => void } = {}): Promise<ImageLoadResult> {
    const loaded = await loadArchive(this.store, file, { ...opts, concurrency: 2 });
    for (const l of loaded) {
      const record = await this.store.resolve(l.id);
      // The protocol's image events have no 'load'; a loaded image is one that got its tags.
      if (record) this.emitEvent('tag', record);
    }
    return { images: loaded };
  }

  async save(images: string[], output: string, signal?: AbortSignal): Promise<ImageSaveResult> {
    return saveArchive(this.store, images, output, { signal });
  }

  async prune(all: boolean, inUse: Set<string>): Promise<ImagePruneResult> {
    const r = await this.store.prune({ all, inUse: (id) => inUse.has(id) });
    for (const id of r.deleted.filter((d) => d.startsWith('sha256:'))) this.emit('event', { action: 'delete', id } satisfies ImageEvent);
    return r;
  }

  /** `docker system df`: the store's usage plus the containers' upper directories. */
  async diskUsage(containers: ContainerSummary[], inUse: Set<string>): Promise<SystemDfResult> {
    const du = await this.store.diskUsage((id) => inUse.has(id));
    let size = 0;
    let reclaimable = 0;
    for (const c of containers) {
      const s = await treeSize(path.join(this.config.root, 'containers', c.id, 'upper'));
      size += s;
      if (c.state !== 'running') reclaimable += s;
    }
    return {
      ...du,
      containers: { count: containers.length, running: containers.filter((c) => c.state === 'running').length, size, reclaimable },
    };
  }

  /** Docker's `--pull` semantics: `missing` uses a local image without contacting any registry. */
  async resolveForRun(reference: string, options: { pull: PullPolicy; platform?: string; onProgress?: (p: PullProgress) => void; signal?: AbortSignal }): Promise<ResolvedImage> {
    let record: ImageRecord | undefined = options.pull === 'always' ? undefined : await this.store.resolve(reference);
    if (!record) {
      if (options.pull === 'never') {
        throw new ImageNotFoundError(`image ${JSON.stringify(reference)} is not present locally and the pull policy is "never"`);
      }
      const r = await pullImage(reference, { store: this.store, config: this.config, platform: options.platform, signal: options.signal, onProgress: options.onProgress });
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

  private emitEvent(action: ImageEvent['action'], image: ImageRecord): void {
    this.emit('event', { action, id: image.id, image: summary(image) } satisfies ImageEvent);
  }
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
