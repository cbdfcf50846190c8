/** Capsa for VS Code: composes the services and registers their disposables. */
import * as vscode from 'vscode';
import { HelperConnection } from './client';
import { registerCommands } from './commands';
import { INSPECT_SCHEME, InspectDocuments } from './inspect';
import { registerShellProfile } from './terminal/shell';
import { Inventory } from './views/inventory';
import { ContainersTreeProvider, ImagesTreeProvider } from './views/providers';
import { WorkspaceContainers } from './workspaceContainer';

let helper: HelperConnection | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const output = vscode.window.createOutputChannel('Capsa');
  helper = new HelperConnection(context.extensionPath, output);
  const inventory = new Inventory(helper);
  const workspaces = new WorkspaceContainers(helper);
  const containers = new ContainersTreeProvider(inventory);
  const images = new ImagesTreeProvider(inventory);
  context.subscriptions.push(
    output,
    helper,
    inventory,
    containers,
    images,
    workspaces,
    vscode.window.createTreeView('capsa.containers', { treeDataProvider: containers, showCollapseAll: false }),
    vscode.window.createTreeView('capsa.images', { treeDataProvider: images, showCollapseAll: true }),
    vscode.workspace.registerTextDocumentContentProvider(INSPECT_SCHEME, new InspectDocuments(helper)),
    registerShellProfile(helper, workspaces),
    ...registerCommands(helper, inventory, workspaces),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('capsa.socketPath')) void helper?.restart();
    }),
  );
  void helper.start();
}

export function deactivate(): Promise<void> | undefined {
  return helper?.stop();
}
