/**
 * The image port of the container side: what creating a container needs
 * from images. Declared here, where it is used; implemented above runtime/
 * (services/images.ts, over image/), so runtime/ never imports the image
 * service.
 */
import type { ImageRunConfig } from '../spec';
import type { PullPolicy, PullProgress } from '../../image/pull';
import type { Caller } from '../../util/peercred';

export interface ImageSource {
  /**
   * The image `reference` names for `caller` (root when absent): looked up,
   * and pulled when the policy says so, in that caller's namespace of names
   * alone, so a container runs only what its owner's names point at.
   */
  resolveForRun(
    reference: string,
    options: { pull: PullPolicy; platform?: string; onProgress?: (p: PullProgress) => void; signal?: AbortSignal; caller?: Caller; auth?: PullCredentials },
  ): Promise<ResolvedImage>;
}

/** Credentials a request brought for its implicit pull: that pull's alone, never kept or recorded with the container. */
export interface PullCredentials {
  username: string;
  password: string;
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
