/**
 * `docker push`: the caller's image, by the name it has in the caller's
 * namespace, to the registry and repository that name says. Each blob (the
 * config, then the layers) is skipped when the registry has it, mounted when
 * the image came from another repository of the same registry, else
 * uploaded; then the manifest goes, its stored bytes exactly, so the digest
 * the registry knows is the one the image was pulled as. A multi-platform
 * image pulled through an index is pushed as its single-platform manifest.
 */
import { LIMITS } from '../limits';
import { ImageNotFoundError, UnsupportedManifestError } from './errors';
import { formatReference, parseReference, repositoryName } from './reference';
import { endpointsFor, type RegistryClient } from './registry';
import { pushBlob, putManifest, type BlobOutcome } from './registry/upload';
import { ROOT_OWNER, type ImageStore, type Owner } from './store';
import type { CapsaConfig } from '../config';
import type { Descriptor } from './types';

export type PushLayerStatus = 'waiting' | 'pushing' | 'pushed' | 'exists' | 'mounted';

export interface PushProgress {
  layers: Array<{ digest: string; size: number; done: number; status: PushLayerStatus; from?: string }>;
}

export interface PushResult {
  /** Normalised reference pushed, e.g. `127.0.0.1:5000/team/app:1.0`. */
  reference: string;
  /** Tag pushed (`latest` when none was given). */
  tag: string;
  /** Digest of the manifest as pushed. */
  digest: string;
  /** Manifest size in bytes. */
  size: number;
  /** Per blob (config last), what happened to it. */
  layers: PushProgress['layers'];
}

export interface PushOptions {
  store: ImageStore;
  config: Pick<CapsaConfig, 'registries'>;
  client: RegistryClient;
  owner?: Owner;
  signal?: AbortSignal;
  onProgress?: (p: PushProgress) => void;
  /** Bytes per PATCH (default 16 MiB). */
  chunkSize?: number;
  concurrency?: number;
}

export async function pushImage(reference: string, opts: PushOptions): Promise<PushResult> {
  const parsed = parseReference(reference);
  if (parsed.digest) throw new ImageNotFoundError(`cannot push ${JSON.stringify(reference)}: push a tag (NAME[:TAG]), not a digest`);
  const name = formatReference(parsed);
  const owner = opts.owner ?? ROOT_OWNER;
  const { store, signal } = opts;
  const record = await store.resolve(name, owner);
  if (!record || !record.references.includes(name)) throw new ImageNotFoundError(`no image named ${JSON.stringify(name)} among your images: tag one with that name first`);
  return store.withLease(`push of ${name}`, async (lease) => {
    await lease.blob(record.manifestDigest);
    const bytes = await store.readBlob(record.manifestDigest, LIMITS.manifest);
    let manifest: { config?: Descriptor; layers?: Descriptor[] };
    try {
      manifest = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new UnsupportedManifestError(`stored manifest ${record.manifestDigest} of ${name} is not JSON`);
    }
    if (!manifest.config || !Array.isArray(manifest.layers)) throw new UnsupportedManifestError(`stored manifest ${record.manifestDigest} of ${name} has no config or layers`);
    const blobs = [...manifest.layers, manifest.config];
    for (const b of blobs) {
      await lease.blob(b.digest);
      if (!(await store.hasBlob(b.digest))) {
        throw new ImageNotFoundError(`blob ${b.digest} of ${name} is not in the store (it may have been unpacked and dropped): pull the image again to push it`);
      }
    }
    // Where the image came from, in this registry: its blobs may be mounted from there.
    const mountFrom = record.repoDigests
      .map((rd) => rd.split('@')[0])
      .filter((r) => r.startsWith(`${parsed.registry}/`))
      .map((r) => r.slice(parsed.registry.length + 1))
      .filter((r) => r !== parsed.repository);
    // A push goes to the registry itself, never to a pull mirror.
    const ep = endpointsFor(parsed.registry, opts.config).filter((e) => !e.mirror)[0];
    const layers: PushProgress['layers'] = blobs.map((d) => ({ digest: d.digest, size: d.size, done: 0, status: 'waiting' }));
    let last = 0;
    const report = (force: boolean): void => {
      const now = Date.now();
      if (!opts.onProgress || (!force && now - last < 100)) return;
      last = now;
      try {
        opts.onProgress({ layers: layers.map((l) => ({ ...l })) });
      } catch {
        // a progress consumer's failure must not break the push
      }
    };
    report(true);
    const pushOne = async (i: number): Promise<void> => {
      const d = blobs[i];
      layers[i].status = 'pushing';
      report(true);
      const outcome: BlobOutcome = await pushBlob(opts.client, ep, parsed, d, store.blobPath(d.digest), {
        signal,
        chunkSize: opts.chunkSize,
        mountFrom: [...new Set(mountFrom)],
        onBytes: (n) => {
          layers[i].done = n;
          report(false);
        },
      });
      layers[i].done = d.size;
      layers[i].status = outcome.kind;
      if (outcome.kind === 'mounted') layers[i].from = outcome.from;
      report(true);
    };
    // The layers a few at a time, then the config, as Docker sends it: a registry that sees the config has every layer.
    const layerCount = blobs.length - 1;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < layerCount) await pushOne(next++);
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 3, layerCount)) }, worker));
    await pushOne(layerCount);
    const tag = parsed.tag ?? 'latest';
    const digest = (await putManifest(opts.client, ep, parsed, tag, bytes, record.manifestMediaType, signal)) ?? record.manifestDigest;
    // as Docker after a push: the image is now known in that repository (RepoDigests), so a push to another
    // repository of the registry mounts its blobs from there instead of uploading them again
    await store.addRepoDigest(record.id, `${repositoryName(parsed)}@${digest}`, owner);
    return { reference: `${repositoryName(parsed)}:${tag}`, tag, digest, size: bytes.length, layers: layers.map((l) => ({ ...l })) };
  });
}
