/** Registers every command of the extension. */
import * as vscode from 'vscode';
import type { HelperConnection } from '../client';
import type { Inventory } from '../views/inventory';
import type { WorkspaceContainers } from '../workspaceContainer';
import { RunInContainer } from './runInContainer';
import { guarded, registerViewCommands } from './viewCommands';

export function registerCommands(helper: HelperConnection, inventory: Inventory, workspaces: WorkspaceContainers): vscode.Disposable[] {
  const run = new RunInContainer(helper, workspaces);
  const rebuild = async (noCache: boolean) => {
    const folder = workspaces.folderFor(vscode.window.activeTextEditor?.document.uri);
    if (!folder) throw new Error('Capsa: open a folder first; the workspace container belongs to a folder');
    const id = await workspaces.rebuild(folder, { noCache });
    if (id) void vscode.window.showInformationMessage(`Capsa: the workspace container of ${folder.name} was rebuilt`);
  };
  const own: Record<string, (...args: any[]) => unknown> = {
    'capsa.runInContainer': (uri?: vscode.Uri) => run.runFile(uri),
    'capsa.runCommandInContainer': () => run.runCommand(),
    'capsa.updateImagePin': async () => {
      const folder = workspaces.folderFor(vscode.window.activeTextEditor?.document.uri);
      if (!folder) throw new Error('Capsa: open a folder first');
      const changes = await workspaces.updatePins(folder);
      helper.output.appendLine(`image pins of ${folder.name}:\n  ${changes.join('\n  ')}`);
      void vscode.window.showInformationMessage(`Capsa image pins: ${changes.join('; ')}`);
    },
    'capsa.rebuildContainer': () => rebuild(false),
    'capsa.rebuildContainerNoCache': () => rebuild(true),
    'capsa.startHelper': () => helper.startWithElevation(),
    'capsa.showStartCommand': () => helper.showStartCommand(),
    'capsa.showHelperLog': () => helper.output.show(true),
    'capsa.reconnect': () => helper.restart(),
  };
  return [
    ...registerViewCommands(helper, inventory),
    ...Object.entries(own).map(([id, fn]) => vscode.commands.registerCommand(id, guarded(fn))),
  ];
}
