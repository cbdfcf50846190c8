/**
 * The workspace's container in VS Code: created from the workspace's
 * configuration (devcontainer.json or settings), kept and reused by Run in
 * Container and the container shell, its image pinned to a digest in the
 * lock file or built from the configuration's Dockerfile (the build output
 * in the "Capsa Build" output channel). The life of the container itself is
 * workspaceLifecycle.ts; this module adds the editor: settings, warnings,
 * progress, the rebuild offer and the confirmations.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { type ContainerSummary, type PullResult } from '../server/protocol';
import type { HelperConnection } from './client';
import { DevcontainerError, loadDevcontainer, type DevcontainerConfig } from './devcontainer';
import { describeChanges, isDigestReference, lockPathFor, readLock, writeLock, type LockFile } from './lockfile';
import { pullWithProgress } from './progress';
import { WorkspaceLifecycle, containerName as containerNameOf, type Resolved, type Workspace } from './workspaceLifecycle';

export { WORKSPACE_LABEL } from './workspaceLifecycle';

export interface Prepared {
  config: DevcontainerConfig;
  /** The image to run: the pinned digest reference, the configured one or the built tag. */
  image: string;
}

export class WorkspaceContainers implements vscode.Disposable {
  private readonly reported = new Set<string>();
  private readonly lifecycle: WorkspaceLifecycle;
  private buildChannel: vscode.OutputChannel | undefined;

  constructor(private readonly helper: HelperConnection) {
    this.lifecycle = new WorkspaceLifecycle({
      get connection() {
        return helper.connection;
      },
      attach: (id, sink) => helper.attach(id, sink),
      pull: (reference) => pullWithProgress(helper, reference),
      buildOutput: (text) => this.buildOutput().append(text),
      offerRebuild: async (folder, why) => {
        const choice = await vscode.window.showInformationMessage(
          `Capsa: ${why} (${path.basename(folder)}). Rebuild it now? Rebuilding removes the container and what was installed or changed in it outside the workspace folder and mounts.`,
          'Rebuild',
          'Keep Using It',
        );
        return choice === 'Rebuild';
      },
      log: (line) => helper.output.appendLine(line),
    });
  }

  dispose(): void {
    this.buildChannel?.dispose();
  }

  /** The build output, shown as a build starts. */
  private buildOutput(): vscode.OutputChannel {
    if (!this.buildChannel) {
      this.buildChannel = vscode.window.createOutputChannel('Capsa Build');
    }
    return this.buildChannel;
  }

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

  private workspace(folder: vscode.WorkspaceFolder): Workspace {
    return {
      folder: folder.uri.fsPath,
      config: this.config(folder),
      pinImages: vscode.workspace.getConfiguration('capsa', folder.uri).get<boolean>('pinImages', true),
      owner: vscodeUser(),
    };
  }

  /** Configuration plus the image to run; the first use pulls and writes the pin, a build config builds. */
  async prepare(folder: vscode.WorkspaceFolder, progress: (line: string) => void): Promise<Prepared> {
    const ws = this.workspace(folder);
    if (ws.config.build) this.buildOutput().show(true);
    const r: Resolved = await this.lifecycle.resolve(ws, progress);
    return { config: ws.config, image: r.image };
  }

  /** Re-resolves the pinned tags and shows what changed. */
  async updatePins(folder: vscode.WorkspaceFolder): Promise<string[]> {
    const config = this.config(folder);
    const lockFile = lockPathFor(config.file, folder.uri.fsPath);
    const before = readLock(lockFile);
    const after: LockFile = { version: before.version, images: { ...before.images } };
    const images = new Set([...Object.keys(before.images), ...(config.build ? [] : [config.image])].filter((i) => !isDigestReference(i)));
    for (const image of images) {
      const pulled: PullResult = await pullWithProgress(this.helper, image);
      after.images[image] = { resolved: pulled.reference, digest: pulled.manifestDigest, pinnedAt: new Date().toISOString() };
    }
    writeLock(lockFile, after);
    return describeChanges(before, after);
  }

  find(folder: vscode.WorkspaceFolder): Promise<ContainerSummary | undefined> {
    return this.lifecycle.find(folder.uri.fsPath);
  }

  /** The id of the workspace's running container: started again when stopped, created when there is none. */
  async ensure(folder: vscode.WorkspaceFolder, progress: (line: string) => void): Promise<string> {
    const ws = this.workspace(folder);
    if (ws.config.build && !(await this.lifecycle.find(ws.folder))) this.buildOutput().show(true);
    const { id, outcome } = await this.lifecycle.ensure(ws, progress);
    if (outcome !== 'running') this.helper.output.appendLine(`workspace container of ${folder.name}: ${outcome}`);
    return id;
  }

  /**
   * Rebuild Container / Rebuild Without Cache: after a modal confirmation
   * that says what is lost, the container is removed and created again.
   */
  async rebuild(folder: vscode.WorkspaceFolder, opts: { noCache: boolean }): Promise<string | undefined> {
    const ws = this.workspace(folder);
    const existing = await this.lifecycle.find(ws.folder);
    const what = ws.config.build ? `the image is built again${opts.noCache ? ' without the build cache' : ''} from ${path.relative(ws.folder, ws.config.build.dockerfile)}` : `the image is ${ws.config.image}`;
    const detail = existing
      ? `The container ${existing.name} is removed and created again from the configuration (${what}). Whatever was installed or changed inside it outside ${ws.config.workspaceFolder} and the configured mounts is lost; postCreateCommand runs again.`
      : `There is no workspace container yet: it is created from the configuration (${what}).`;
    const go = opts.noCache ? 'Rebuild Without Cache' : 'Rebuild';
    const choice = await vscode.window.showWarningMessage(`Rebuild the workspace container of ${folder.name}?`, { modal: true, detail }, go);
    if (choice !== go) return undefined;
    if (ws.config.build) this.buildOutput().show(true);
    return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Rebuilding the container of ${folder.name}` }, (p) =>
      this.lifecycle.rebuild(ws, (line) => p.report({ message: line }), opts),
    );
  }
}

/** `capsa-<folder>-<short hash>`: readable, and unique per workspace path. */
export function containerName(folder: vscode.WorkspaceFolder): string {
  return containerNameOf(folder.uri.fsPath);
}

export { DevcontainerError };

/** This VS Code's own uid/gid: the host owner of what containers write in the workspace. */
export function vscodeUser(): { uid: number; gid: number } | undefined {
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  return uid === undefined || gid === undefined ? undefined : { uid, gid };
}
