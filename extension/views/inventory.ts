/**
 * What the helper has: images and containers, loaded once per connection and
 * then kept current from the helper's broadcast events (no polling).
 */
import * as vscode from 'vscode';
import { ContainerListRequest, ImageListRequest, printable, type ContainerSummary, type ImageSummary } from '../../server/protocol';
import type { HelperConnection } from '../client';
import { failureKind } from '../errors';

export class Inventory implements vscode.Disposable {
  private readonly _onDidChangeImages = new vscode.EventEmitter<void>();
  readonly onDidChangeImages = this._onDidChangeImages.event;
  private readonly _onDidChangeContainers = new vscode.EventEmitter<void>();
  readonly onDidChangeContainers = this._onDidChangeContainers.event;

  readonly images = new Map<string, ImageSummary>();
  readonly containers = new Map<string, ContainerSummary>();
  /** True once the first listing after connecting arrived. */
  loaded = false;
  private readonly disposables: vscode.Disposable[] = [];
  private pendingImageReload: NodeJS.Timeout | undefined;

  constructor(private readonly helper: HelperConnection) {
    this.disposables.push(
      helper.onDidChangeState((s) => {
        if (s === 'connected') void this.reload();
        else this.clear();
      }),
      helper.onContainerEvent((e) => {
        if (e.action === 'destroy') this.containers.delete(e.container.id);
        else this.containers.set(e.container.id, e.container);
        this._onDidChangeContainers.fire();
      }),
      helper.onImageEvent((e) => {
        if (e.action === 'delete') this.images.delete(e.id);
        else if (e.image) this.images.set(e.image.id, e.image);
        else this.reloadImagesSoon();
        // Untagging moves a name between images, and a removal's event may name the
        // reference rather than the image id: keep the list exact.
        if (e.action !== 'pull') this.reloadImagesSoon();
        this._onDidChangeImages.fire();
      }),
    );
    if (helper.state === 'connected') void this.reload();
  }

  private clear(): void {
    this.loaded = false;
    this.images.clear();
    this.containers.clear();
    this._onDidChangeImages.fire();
    this._onDidChangeContainers.fire();
  }

  /** Coalesces bursts of image events into one listing. */
  private reloadImagesSoon(): void {
    if (this.pendingImageReload) return;
    this.pendingImageReload = setTimeout(() => {
      this.pendingImageReload = undefined;
      void this.reloadImages().catch((err: unknown) => {
        // the helper going away is reported by its connection state, and the next (re)connection lists again
        if (failureKind(err) !== 'unreachable') this.helper.output.appendLine(`listing images failed: ${printable((err as Error).message)}`);
      });
    }, 100);
  }

  private async reloadImages(): Promise<void> {
    const images = await this.helper.connection.sendRequest(ImageListRequest.type);
    this.images.clear();
    for (const i of images) this.images.set(i.id, i);
    this._onDidChangeImages.fire();
  }

  /** Full listing; the Refresh button and each (re)connection use it. */
  async reload(): Promise<void> {
    if (this.helper.state !== 'connected') return;
    try {
      const [images, containers] = await Promise.all([
        this.helper.connection.sendRequest(ImageListRequest.type),
        this.helper.connection.sendRequest(ContainerListRequest.type, { all: true }),
      ]);
      this.images.clear();
      for (const i of images) this.images.set(i.id, i);
      this.containers.clear();
      for (const c of containers) this.containers.set(c.id, c);
      this.loaded = true;
    } catch (err) {
      this.helper.output.appendLine(`listing images and containers failed: ${printable((err as Error).message)}`);
    }
    void vscode.commands.executeCommand('setContext', 'capsa.hasImages', this.images.size > 0);
    void vscode.commands.executeCommand('setContext', 'capsa.hasContainers', this.containers.size > 0);
    this._onDidChangeImages.fire();
    this._onDidChangeContainers.fire();
  }

  dispose(): void {
    if (this.pendingImageReload) clearTimeout(this.pendingImageReload);
    for (const d of this.disposables) d.dispose();
    this._onDidChangeImages.dispose();
    this._onDidChangeContainers.dispose();
  }
}
