/**
 * The helper's image service: the store plus the puller, behind the
 * operations clients ask for, with change events for the editor's view.
 */
import { EventEmitter } from 'node:events';
import type { CapsaConfig } from '../config';
import type { ImageEvent, ImageRemoveResult, ImageSummary, PullProgress, PullPolicy, PullResult } from '../protocol';
import { ImageStore, type ImageRecord } from '../image/store';
import { pullImage } from '../image/pull';
import { familiarReference, normalizeReference } from '../image/reference';
import { ImageNotFoundError } from '../image/errors';
import type { ImageSource, ResolvedImage } from '../runtime/containers';

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
    const r = await this.store.remove(image, { force, inUse: (id) => inUse.has(id) });
    this.emit('event', { action: r.deleted.length ? 'delete' : 'untag', id: image } satisfies ImageEvent);
    return r;
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
