/**
 * The life of a workspace's container, without the vscode module (so tests
 * drive it against a real helper): its image resolved (pinned, or built from
 * the devcontainer.json's Dockerfile), the container created once and kept,
 * a stopped one started again with what the user put in it, a changed
 * configuration met with an offer to rebuild, and a rebuild on request.
 *
 * The container records the hash of the configuration it was made from (a
 * label): the resolved devcontainer.json, the image pin and, for a build, the
 * Dockerfile's text. The build context's files are not hashed: a rebuild
 * takes them from the builder's cache when they did not change.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  ContainerExecRequest,
  ContainerListRequest,
  ContainerRemoveRequest,
  ContainerRunRequest,
  ContainerStartRequest,
  type ContainerSummary,
  type ExecOptions,
  type PullResult,
  type StreamExitParams,
  type StreamOutputParams,
} from '../server/protocol';
import { workspaceIdmap, type DevcontainerConfig } from './devcontainer';
import { isIdmapUnsupported } from './errors';
import { isDigestReference, lockPathFor, pinnedReference, readLock, writeLock } from './lockfile';
import { buildWorkspaceImage, WorkspaceBuildError, type HelperRequests } from './workspaceBuild';

export const WORKSPACE_LABEL = 'capsa.workspace';
/** The hash of the configuration the container was created from. */
export const CONFIG_HASH_LABEL = 'capsa.configHash';

/** Keeps PID 1 alive and ends at once on SIGTERM, so stop is quick. */
const KEEP_ALIVE = ['/bin/sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done'];

/** What the lifecycle needs of the helper and of the editor around it. */
export interface WorkspaceHost {
  /** The helper's connection, read at each use (it may reconnect). */
  readonly connection: HelperRequests;
  /** Routes a session's stream notifications (output, exit) to `sink` until disposed. */
  attach(attachId: string, sink: { output(p: StreamOutputParams): void; exit(p: StreamExitParams): void }): { dispose(): void };
  /** Pulls an image (with the editor's progress). */
  pull(reference: string): Promise<PullResult>;
  /** The build's output, as it comes (text with line breaks). */
  buildOutput(text: string): void;
  /** The configuration changed since the container was made: true to rebuild it now. */
  offerRebuild(folder: string, why: string): Promise<boolean>;
  /** A line for the extension's log. */
  log(line: string): void;
}

export interface Workspace {
  /** Absolute host path of the workspace folder. */
  folder: string;
  config: DevcontainerConfig;
  /** Pin image tags to digests in the lock file (`capsa.pinImages`). */
  pinImages: boolean;
  /** The owner of what the container writes in the workspace (VS Code's user). */
  owner?: { uid: number; gid: number };
}

export interface Resolved {
  /** The image to run: the pinned digest reference, the configured one, or the built tag. */
  image: string;
  /** The configuration's hash, as recorded on the container. */
  hash: string;
}

/** What `ensure` did, for the log and for tests. */
export type EnsureOutcome = 'running' | 'started' | 'created';

export class WorkspaceLifecycle {
  /** One creation at a time per folder, so two quick runs share a container. */
  private readonly ensuring = new Map<string, Promise<{ id: string; outcome: EnsureOutcome }>>();
  /** A rebuild the user declined, by folder: the hash not to ask about again in this window. */
  private readonly declined = new Map<string, string>();

  constructor(private readonly host: WorkspaceHost) {}

  /** The hash of the configuration as it is now, without pulling or building. */
  configHash(ws: Workspace): string {
    const { config } = ws;
    const h = createHash('sha256');
    const { unsupported: _u, ...rest } = config;
    h.update(JSON.stringify(rest));
    h.update('\0');
    h.update(this.pinnedImage(ws) ?? config.image);
    if (config.build) {
      h.update('\0');
      try {
        h.update(readFileSync(config.build.dockerfile));
      } catch (err) {
        throw new WorkspaceBuildError(`cannot read the Dockerfile ${config.build.dockerfile}: ${(err as Error).message}`);
      }
    }
    return h.digest('hex');
  }

  /** The pinned reference the lock holds for the configured image, if any. */
  private pinnedImage(ws: Workspace): string | undefined {
    const { config } = ws;
    if (config.build || isDigestReference(config.image) || !ws.pinImages) return undefined;
    const entry = readLock(lockPathFor(config.file, ws.folder)).images[config.image];
    return entry ? pinnedReference(entry.resolved, entry.digest) : undefined;
  }

  /** The image to run: built, or the pinned reference (the first use pulls and writes the pin). */
  async resolve(ws: Workspace, progress: (line: string) => void, opts: { noCache?: boolean } = {}): Promise<Resolved> {
    const { config } = ws;
    if (config.build) {
      progress(`Building the workspace image ${config.image}…`);
      const r = await buildWorkspaceImage(this.host.connection, config.build, config.image, opts, (t) => this.host.buildOutput(t));
      this.host.log(`built ${config.image}: ${r.ran} steps run, ${r.cached} cached, ${r.ms} ms`);
      return { image: config.image, hash: this.configHash(ws) };
    }
    const pinned = this.pinnedImage(ws);
    if (pinned || isDigestReference(config.image) || !ws.pinImages) return { image: pinned ?? config.image, hash: this.configHash(ws) };
    const lockFile = lockPathFor(config.file, ws.folder);
    progress(`Resolving ${config.image}…`);
    const pulled = await this.host.pull(config.image);
    const lock = readLock(lockFile);
    lock.images[config.image] = { resolved: pulled.reference, digest: pulled.manifestDigest, pinnedAt: new Date().toISOString() };
    writeLock(lockFile, lock);
    progress(`Pinned ${config.image} to ${pulled.manifestDigest} in ${path.relative(ws.folder, lockFile)}`);
    return { image: pinnedReference(pulled.reference, pulled.manifestDigest), hash: this.configHash(ws) };
  }

  /** The workspace's container: the running one first, else any. */
  async find(folder: string): Promise<ContainerSummary | undefined> {
    const all = await this.host.connection.sendRequest(ContainerListRequest.type, { all: true });
    const mine = all.filter((c) => c.labels?.[WORKSPACE_LABEL] === folder);
    return mine.find((c) => c.state === 'running') ?? mine[0];
  }

  /**
   * The id of the workspace's running container: the running one; a stopped
   * one started again (postStartCommand runs, postCreateCommand does not);
   * else a new one. A container of another configuration is offered a
   * rebuild first; declined, it is used as it is.
   */
  ensure(ws: Workspace, progress: (line: string) => void): Promise<{ id: string; outcome: EnsureOutcome }> {
    let p = this.ensuring.get(ws.folder);
    if (!p) {
      p = this.doEnsure(ws, progress).finally(() => this.ensuring.delete(ws.folder));
      this.ensuring.set(ws.folder, p);
    }
    return p;
  }

  private async doEnsure(ws: Workspace, progress: (line: string) => void): Promise<{ id: string; outcome: EnsureOutcome }> {
    const existing = await this.find(ws.folder);
    if (!existing) return { id: await this.create(ws, progress), outcome: 'created' };
    const hash = this.configHash(ws);
    if (existing.labels?.[CONFIG_HASH_LABEL] !== hash && this.declined.get(ws.folder) !== hash) {
      progress(`The configuration changed since ${existing.name} was created: rebuild it, or keep using it?`);
      if (await this.host.offerRebuild(ws.folder, 'the configuration changed since the workspace container was created')) {
        return { id: await this.rebuild(ws, progress), outcome: 'created' };
      }
      this.declined.set(ws.folder, hash);
    }
    if (existing.state === 'running') return { id: existing.id, outcome: 'running' };
    progress(`Starting the workspace container ${existing.name}…`);
    await this.host.connection.sendRequest(ContainerStartRequest.type, { container: existing.id });
    await this.lifecycleCommands(ws.config, existing.id, ['postStartCommand'], progress);
    return { id: existing.id, outcome: 'started' };
  }

  /**
   * Removes the workspace's container and creates it again from the
   * configuration, the image built again (from the builder's cache unless
   * `noCache`). Returns the new container's id.
   */
  async rebuild(ws: Workspace, progress: (line: string) => void, opts: { noCache?: boolean } = {}): Promise<string> {
    const resolved = await this.resolve(ws, progress, opts);
    const existing = await this.find(ws.folder);
    if (existing) {
      progress(`Removing the workspace container ${existing.name}…`);
      await this.host.connection.sendRequest(ContainerRemoveRequest.type, { container: existing.id, force: true });
    }
    this.declined.delete(ws.folder);
    return this.createFrom(ws, resolved, progress);
  }

  private async create(ws: Workspace, progress: (line: string) => void): Promise<string> {
    return this.createFrom(ws, await this.resolve(ws, progress), progress);
  }

  private async createFrom(ws: Workspace, { image, hash }: Resolved, progress: (line: string) => void): Promise<string> {
    const { config } = ws;
    progress(`Creating the workspace container from ${image}…`);
    const idmapMounts = workspaceIdmap(config, ws.owner);
    const run = (idmap: typeof idmapMounts) =>
      this.host.connection.sendRequest(ContainerRunRequest.type, {
        image,
        idmapMounts: idmap,
        name: containerName(ws.folder),
        entrypoint: [],
        cmd: KEEP_ALIVE,
        env: config.containerEnv,
        volumes: [config.workspaceMount, ...config.mounts],
        workdir: config.workspaceFolder,
        user: config.containerUser,
        publish: config.publish.length > 0 ? config.publish : undefined,
        network: config.network,
        hostname: config.hostname,
        labels: { ...config.labels, [WORKSPACE_LABEL]: ws.folder, [CONFIG_HASH_LABEL]: hash, ...(config.file ? { 'capsa.config': config.file } : {}) },
      });
    const { id } = await run(idmapMounts).catch((err: Error) => {
      // a workspace on a filesystem without idmapped mounts still runs, with root-owned new files
      if (!idmapMounts || !isIdmapUnsupported(err)) throw err;
      this.host.log(`the workspace cannot be idmapped (${err.message}); files the container creates there will belong to root`);
      return run(undefined);
    });
    await this.lifecycleCommands(config, id, ['postCreateCommand', 'postStartCommand'], progress);
    return id;
  }

  private async lifecycleCommands(config: DevcontainerConfig, id: string, which: Array<'postCreateCommand' | 'postStartCommand'>, progress: (line: string) => void): Promise<void> {
    for (const what of which) {
      for (const cmd of config[what]) {
        progress(`Running ${what}: ${cmd.join(' ')}`);
        const code = await this.execAndWait({ container: id, cmd, env: config.remoteEnv, workdir: config.workspaceFolder, user: config.remoteUser ?? config.containerUser }, progress);
        if (code !== 0) throw new Error(`${what} exited with code ${code}: ${cmd.join(' ')}`);
      }
    }
  }

  /** Runs a command without a terminal; output goes line by line to `onLine`. */
  execAndWait(options: ExecOptions, onLine: (line: string) => void): Promise<number> {
    const attachId = `vscode-${randomUUID()}`;
    let pending = '';
    const decoder = new TextDecoder();
    return new Promise<number>((resolve, reject) => {
      const attachment = this.host.attach(attachId, {
        output: (p) => {
          pending += decoder.decode(Buffer.from(p.data, 'base64'), { stream: true });
          const lines = pending.split('\n');
          pending = lines.pop() ?? '';
          for (const l of lines) onLine(l.replace(/\r$/, ''));
        },
        exit: (p) => {
          attachment.dispose();
          if (pending) onLine(pending);
          if (p.error) reject(new Error(p.error));
          else resolve(p.exitCode);
        },
      });
      this.host.connection.sendRequest(ContainerExecRequest.type, { ...options, attachId }).then(undefined, (err: Error) => {
        attachment.dispose();
        reject(err);
      });
    });
  }
}

/** `capsa-<folder>-<short hash>`: readable, and unique per workspace path. */
export function containerName(folder: string): string {
  const base = path.basename(folder).replace(/[^a-zA-Z0-9_.-]/g, '-').replace(/^[^a-zA-Z0-9]+/, '') || 'workspace';
  let h = 0;
  for (const ch of folder) h = (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0;
  return `capsa-${base}-${h.toString(16).padStart(8, '0').slice(0, 6)}`;
}
