/**
 * The workspace's container: created from the workspace's configuration
 * (devcontainer.json or settings), kept warm and reused by Run in Container
 * and the container shell, with its image pinned to a digest in the lock file.
 */
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  ContainerExecRequest,
  ContainerListRequest,
  ContainerRemoveRequest,
  ContainerRunRequest,
  type ContainerSummary,
  type ExecOptions,
  type PullResult,
} from '../server/protocol';
import type { HelperConnection } from './client';
import { isIdmapUnsupported } from './errors';
import { DevcontainerError, loadDevcontainer, workspaceIdmap, type DevcontainerConfig } from './devcontainer';
import { describeChanges, isDigestReference, lockPathFor, pinnedReference, readLock, writeLock, type LockFile } from './lockfile';
import { pullWithProgress } from './progress';

export const WORKSPACE_LABEL = 'capsa.workspace';

/** Keeps PID 1 alive and ends at once on SIGTERM, so stop is quick. */
const KEEP_ALIVE = ['/bin/sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done'];

export interface Prepared {
  config: DevcontainerConfig;
  /** The image to run: the pinned digest reference, or the configured one. */
  image: string;
}

export class WorkspaceContainers {
  private readonly reported = new Set<string>();
  /** One creation at a time per folder, so two quick runs share a container. */
  private readonly ensuring = new Map<string, Promise<string>>();

  constructor(private readonly helper: HelperConnection) {}

  folderFor(uri?: vscode.Uri): vscode.WorkspaceFolder | undefined {
    return (uri && vscode.workspace.getWorkspaceFolder(uri)) ?? vscode.workspace.workspaceFolders?.[0];
  }

  config(folder: vscode.WorkspaceFolder): DevcontainerConfig {
    const defaultImage = vscode.workspace.getConfiguration('capsa', folder.uri).get<string>('defaultImage') || 'debian:bookworm-slim';
    const config = loadDevcontainer({ folder: folder.uri.fsPath, defaultImage });
    const fresh = config.unsupported.filter((k) => !this.reported.has(`${config.file}:${k}`));
    if (fresh.length > 0) {
      for (const k of fresh) this.reported.add(`${config.file}:${k}`);
      const msg = `Capsa ignores these settings of ${path.relative(folder.uri.fsPath, config.file ?? '')}: ${fresh.join(', ')}`;
      this.helper.output.appendLine(msg);
      void vscode.window.showWarningMessage(msg);
    }
    return config;
  }

  /** Configuration plus the pinned image; the first use pulls and writes the pin. */
  async prepare(folder: vscode.WorkspaceFolder, progress: (line: string) => void): Promise<Prepared> {
    const config = this.config(folder);
    if (isDigestReference(config.image) || !vscode.workspace.getConfiguration('capsa', folder.uri).get<boolean>('pinImages', true)) {
      return { config, image: config.image };
    }
    const lockFile = lockPathFor(config.file, folder.uri.fsPath);
    const lock = readLock(lockFile);
    const entry = lock.images[config.image];
    if (entry) return { config, image: pinnedReference(entry.resolved, entry.digest) };
    progress(`Resolving ${config.image}…`);
    const pulled = await pullWithProgress(this.helper, config.image);
    lock.images[config.image] = { resolved: pulled.reference, digest: pulled.manifestDigest, pinnedAt: new Date().toISOString() };
    writeLock(lockFile, lock);
    progress(`Pinned ${config.image} to ${pulled.manifestDigest} in ${path.relative(folder.uri.fsPath, lockFile)}`);
    return { config, image: pinnedReference(pulled.reference, pulled.manifestDigest) };
  }

  /** Re-resolves the pinned tags and shows what changed. */
  async updatePins(folder: vscode.WorkspaceFolder): Promise<string[]> {
    const config = this.config(folder);
    const lockFile = lockPathFor(config.file, folder.uri.fsPath);
    const before = readLock(lockFile);
    const after: LockFile = { version: before.version, images: { ...before.images } };
    const images = new Set([...Object.keys(before.images), config.image].filter((i) => !isDigestReference(i)));
    for (const image of images) {
      const pulled: PullResult = await pullWithProgress(this.helper, image);
      after.images[image] = { resolved: pulled.reference, digest: pulled.manifestDigest, pinnedAt: new Date().toISOString() };
    }
    writeLock(lockFile, after);
    return describeChanges(before, after);
  }

  async find(folder: vscode.WorkspaceFolder): Promise<ContainerSummary | undefined> {
    const all = await this.helper.connection.sendRequest(ContainerListRequest.type, { all: true });
    return all.find((c) => c.labels?.[WORKSPACE_LABEL] === folder.uri.fsPath && c.state === 'running') ?? all.find((c) => c.labels?.[WORKSPACE_LABEL] === folder.uri.fsPath);
  }

  /** The id of the workspace's running container, creating it when needed. */
  ensure(folder: vscode.WorkspaceFolder, progress: (line: string) => void): Promise<string> {
    const key = folder.uri.fsPath;
    let p = this.ensuring.get(key);
    if (!p) {
      p = this.doEnsure(folder, progress).finally(() => this.ensuring.delete(key));
      this.ensuring.set(key, p);
    }
    return p;
  }

  private async doEnsure(folder: vscode.WorkspaceFolder, progress: (line: string) => void): Promise<string> {
    const existing = await this.find(folder);
    if (existing?.state === 'running') return existing.id;
    if (existing) {
      // No restart in place: a stopped workspace container is recreated from the (pinned) config.
      await this.helper.connection.sendRequest(ContainerRemoveRequest.type, { container: existing.id, force: true });
    }
    const { config, image } = await this.prepare(folder, progress);
    progress(`Creating the workspace container from ${image}…`);
    const idmapMounts = workspaceIdmap(config, vscodeUser());
    const run = (idmap: typeof idmapMounts) => this.helper.connection.sendRequest(ContainerRunRequest.type, {
      image,
      idmapMounts: idmap,
      name: containerName(folder),
      entrypoint: [],
      cmd: KEEP_ALIVE,
      env: config.containerEnv,
      volumes: [config.workspaceMount, ...config.mounts],
      workdir: config.workspaceFolder,
      user: config.containerUser,
      publish: config.publish.length > 0 ? config.publish : undefined,
      network: config.network,
      hostname: config.hostname,
      labels: { ...config.labels, [WORKSPACE_LABEL]: folder.uri.fsPath, ...(config.file ? { 'capsa.config': config.file } : {}) },
    });
    const { id } = await run(idmapMounts).catch((err: Error) => {
      // a workspace on a filesystem without idmapped mounts still runs, with root-owned new files
      if (!idmapMounts || !isIdmapUnsupported(err)) throw err;
      this.helper.output.appendLine(`the workspace cannot be idmapped (${err.message}); files the container creates there will belong to root`);
      return run(undefined);
    });
    for (const [what, cmds] of [
      ['postCreateCommand', config.postCreateCommand],
      ['postStartCommand', config.postStartCommand],
    ] as const) {
      for (const cmd of cmds) {
        progress(`Running ${what}: ${cmd.join(' ')}`);
        const code = await this.execAndWait({ container: id, cmd, env: config.remoteEnv, workdir: config.workspaceFolder, user: config.remoteUser ?? config.containerUser }, (line) =>
          progress(line),
        );
        if (code !== 0) throw new Error(`${what} exited with code ${code}: ${cmd.join(' ')}`);
      }
    }
    return id;
  }

  /** Runs a command without a terminal; output goes line by line to `onLine`. */
  execAndWait(options: ExecOptions, onLine: (line: string) => void): Promise<number> {
    const attachId = `vscode-${randomUUID()}`;
    let pending = '';
    const decoder = new TextDecoder();
    return new Promise<number>((resolve, reject) => {
      const attachment = this.helper.attach(attachId, {
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
      this.helper.connection.sendRequest(ContainerExecRequest.type, { ...options, attachId }).then(undefined, (err: Error) => {
        attachment.dispose();
        reject(err);
      });
    });
  }
}

/** `capsa-<folder>-<short hash>`: readable, and unique per workspace path. */
export function containerName(folder: vscode.WorkspaceFolder): string {
  const base = path.basename(folder.uri.fsPath).replace(/[^a-zA-Z0-9_.-]/g, '-').replace(/^[^a-zA-Z0-9]+/, '') || 'workspace';
  let h = 0;
  for (const ch of folder.uri.fsPath) h = (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0;
  return `capsa-${base}-${h.toString(16).padStart(8, '0').slice(0, 6)}`;
}

export { DevcontainerError };

/** This VS Code's own uid/gid: the host owner of what containers write in the workspace. */
export function vscodeUser(): { uid: number; gid: number } | undefined {
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  return uid === undefined || gid === undefined ? undefined : { uid, gid };
}
