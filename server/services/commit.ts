/**
 * Images from containers, and what images and containers tell of their
 * making: `commit` (a container's changes as a new layer on its image, with
 * the config it ran with and any `-c` changes), `diff`, `history` and `tag`.
 *
 * Every operation acts for a caller: the container is one the caller may
 * see (its own; root: anyone's, ContainerService.idOf), the names are the
 * caller's namespace (services/images.ts), so a user's commit or tag lands
 * among that user's names and never moves root's.
 */
import type { ContainerCommitParams, ContainerCommitResult, ContainerDiffResult, ImageEvent, ImageHistoryEntry, ImageTagResult } from '../protocol';
import { applyChanges } from '../image/commit/instructions';
import { writeImage } from '../image/commit/assemble';
import { changesOf } from '../image/layer/changes';
import { commitLayer } from '../image/layer/capture';
import { ImageNotFoundError } from '../image/errors';
import { normalizeReference } from '../image/reference';
import type { ImageRecord } from '../image/store';
import type { ContainerConfig, ImageConfig } from '../image/types';
import type { ContainerFilesystem, ContainerService } from '../runtime/container';
import { resolveArgs } from '../runtime/spec';
import type { Caller } from '../util/peercred';
import { summary, type ImageService } from './images';

export class CommitService {
  constructor(
    private readonly images: ImageService,
    private readonly containers: ContainerService,
  ) {}

  private container(caller: Caller, ref: string): ContainerFilesystem {
    return this.containers.filesystem(this.containers.idOf(ref, caller.uid));
  }

  /** `docker diff`: the container's changes over its image. */
  async diff(caller: Caller, ref: string): Promise<ContainerDiffResult> {
    const fs = this.container(caller, ref);
    return { changes: await changesOf(fs.upper, { lowers: fs.lowers, mountPoints: fs.mountPoints }) };
  }

  /**
   * `docker commit`: the container's changes as one layer on its image, the
   * config it was created with (Cmd, Entrypoint, Env, WorkingDir, User,
   * Labels as run) with `changes` applied, a history entry, named
   * `reference` in the caller's namespace. Paused (cgroup freezer) while the
   * upper directory is read, unless `pause` is false.
   */
  async commit(caller: Caller, p: ContainerCommitParams, signal?: AbortSignal): Promise<ContainerCommitResult> {
    const fs = this.container(caller, p.container);
    const store = this.images.store;
    const parent = await this.parentOf(fs);
    const parentConfig = JSON.parse((await store.readBlob(parent.id)).toString('utf8')) as ImageConfig;
    const ran = runConfig(parentConfig.config ?? {}, fs);
    const config = applyChanges(ran, p.changes ?? []);
    if (p.reference !== undefined) normalizeReference(p.reference); // a bad name fails before the capture, not after
    const created = new Date(p.sourceDateEpoch !== undefined ? p.sourceDateEpoch * 1000 : Date.now()).toISOString();
    const record = await store.withLease(`commit of container ${fs.id}`, async (lease) => {
      const thaw = p.pause === false ? async () => undefined : await fs.pause();
      let layer: Awaited<ReturnType<typeof commitLayer>>;
      try {
        layer = await commitLayer(store, lease, fs.upper, { view: { lowers: fs.lowers, mountPoints: fs.mountPoints }, idShift: fs.idShift, sourceDateEpoch: p.sourceDateEpoch, signal });
      } finally {
        await thaw();
      }
      return writeImage(
        store,
        lease,
        {
          parent: { record: parent, config: parentConfig },
          layers: [layer],
          config,
          history: [{ created, created_by: resolveArgs(ran, fs.options.cmd, fs.options.entrypoint).join(' '), ...(p.author ? { author: p.author } : {}), ...(p.message ? { comment: p.message } : {}) }],
          created,
          author: p.author,
        },
        caller.uid,
        p.reference,
      );
    });
    this.images.emit('event', { action: 'tag', id: record.id, image: summary(record), owner: record.owner } satisfies ImageEvent);
    return { id: record.id, diffId: record.diffIds[record.diffIds.length - 1] };
  }

  /** `docker history`: newest first; the top entry carries the id and tags, the others `<missing>`. */
  async history(caller: Caller, image: string): Promise<ImageHistoryEntry[]> {
    const store = this.images.store;
    const record = await store.get(image, caller.uid);
    const config = JSON.parse((await store.readBlob(record.id)).toString('utf8')) as ImageConfig;
    const history = config.history?.length ? config.history : record.diffIds.map(() => ({}) as NonNullable<ImageConfig['history']>[number]);
    const entries: ImageHistoryEntry[] = [];
    let layer = 0;
    for (const h of history) {
      const empty = !!h.empty_layer;
      const diffId = empty ? undefined : record.diffIds[layer++];
      const size = diffId ? ((await store.layerInfo(diffId))?.size ?? 0) : 0;
      entries.push({ id: '<missing>', ...(h.created ? { created: h.created } : {}), createdBy: h.created_by ?? '', size, comment: h.comment ?? '', emptyLayer: empty, tags: [] });
    }
    entries.reverse();
    if (entries.length) Object.assign(entries[0], { id: record.id, tags: record.references });
    return entries;
  }

  /** `docker tag`, in the caller's namespace. */
  async tag(caller: Caller, source: string, target: string): Promise<ImageTagResult> {
    const record = await this.images.store.tag(source, target, caller.uid);
    this.images.emit('event', { action: 'tag', id: record.id, image: summary(record), owner: record.owner } satisfies ImageEvent);
    return { id: record.id, reference: normalizeReference(target) };
  }

  /**
   * The container's image record: in its owner's namespace when still
   * named there, else any namespace's (a record a container keeps stays
   * after its names went, names.ts).
   */
  private async parentOf(fs: ContainerFilesystem): Promise<ImageRecord> {
    const store = this.images.store;
    const own = await store.resolve(fs.imageId, fs.owner);
    if (own) return own;
    const any = (await store.listAll()).find((r) => r.id === fs.imageId);
    if (any) return any;
    throw new ImageNotFoundError(`cannot commit container ${fs.name}: its image ${fs.imageId} is no longer in the store`);
  }
}

/** The config a container ran with: its image's, with the run's command, entrypoint, env, workdir, user and labels over it (Docker's container config). */
export function runConfig(image: ContainerConfig, fs: Pick<ContainerFilesystem, 'options'>): ContainerConfig {
  const o = fs.options;
  const c: ContainerConfig = { ...image };
  if (o.entrypoint !== undefined) {
    c.Entrypoint = o.entrypoint.length ? o.entrypoint : null;
    c.Cmd = o.cmd?.length ? o.cmd : null;
  } else if (o.cmd?.length) c.Cmd = o.cmd;
  if (o.env?.length) {
    const env = [...(image.Env ?? [])];
    for (const e of o.env) {
      const k = e.split('=')[0];
      const i = env.findIndex((x) => x.split('=')[0] === k);
      if (i >= 0) env[i] = e;
      else env.push(e);
    }
    c.Env = env;
  }
  if (o.workdir) c.WorkingDir = o.workdir;
  if (o.user) c.User = o.user;
  if (o.labels && Object.keys(o.labels).length) c.Labels = { ...(image.Labels ?? {}), ...o.labels };
  return c;
}
