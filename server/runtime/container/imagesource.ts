/**
 * The image port of the container side: what creating a container needs
 * from images. Declared here, where it is used; implemented above runtime/
 * (services/images.ts, over image/), so runtime/ never imports the image
 * service.
 */
import type { ImageRunConfig } from '../spec';
import type { PullPolicy, PullProgress } from '../../image/pull';

export interface ImageSource {
  resolveForRun(
    reference: string,
    options: { pull: PullPolicy; platform?: string; onProgress?: (p: PullProgress) => void; signal?: AbortSignal },
  ): Promise<ResolvedImage>;
}

export interface ResolvedImage {
  /** Image id (config digest). */
  id: string;
  /** Normalised reference. */
  reference: string;
  config: ImageRunConfig;
  /** Unpacked layers, top-most first. */
  layerDirs: string[];
}
