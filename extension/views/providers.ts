/** Tree data providers of the Containers and Images views. */
import * as vscode from 'vscode';
import type { Inventory } from './inventory';
import { containerRow, groupImages, sortContainers } from './model';
import { ContainerNode, ImageNode, RepositoryNode } from './nodes';

export class ContainersTreeProvider implements vscode.TreeDataProvider<ContainerNode>, vscode.Disposable {
  private readonly _onDidChangeTreeData = new vscode.EventEmitter<ContainerNode | undefined | void>();
  readonly onDidChangeTreeData = this._onDidChangeTreeData.event;
  private readonly subscription: vscode.Disposable;

  constructor(private readonly inventory: Inventory) {
    this.subscription = inventory.onDidChangeContainers(() => this._onDidChangeTreeData.fire());
  }

  getTreeItem(node: ContainerNode): vscode.TreeItem {
    return node;
  }

  getChildren(node?: ContainerNode): ContainerNode[] {
    if (node) return [];
    const now = Date.now();
    void vscode.commands.executeCommand('setContext', 'capsa.hasContainers', this.inventory.containers.size > 0);
    return sortContainers([...this.inventory.containers.values()]).map((c) => new ContainerNode(c, containerRow(c, now)));
  }

  dispose(): void {
    this.subscription.dispose();
    this._onDidChangeTreeData.dispose();
  }
}

type ImageTreeNode = RepositoryNode | ImageNode;

export class ImagesTreeProvider implements vscode.TreeDataProvider<ImageTreeNode>, vscode.Disposable {
  private readonly _onDidChangeTreeData = new vscode.EventEmitter<ImageTreeNode | undefined | void>();
  readonly onDidChangeTreeData = this._onDidChangeTreeData.event;
  private readonly subscription: vscode.Disposable;

  constructor(private readonly inventory: Inventory) {
    this.subscription = inventory.onDidChangeImages(() => this._onDidChangeTreeData.fire());
  }

  getTreeItem(node: ImageTreeNode): vscode.TreeItem {
    return node;
  }

  getChildren(node?: ImageTreeNode): ImageTreeNode[] {
    if (node instanceof RepositoryNode) return node.group.tags.map((row) => new ImageNode(row, node.group.repository));
    if (node) return [];
    void vscode.commands.executeCommand('setContext', 'capsa.hasImages', this.inventory.images.size > 0);
    return groupImages([...this.inventory.images.values()], Date.now()).map((g) => new RepositoryNode(g));
  }

  dispose(): void {
    this.subscription.dispose();
    this._onDidChangeTreeData.dispose();
  }
}
