/**
 * Run in Container: runs the active file (or a typed command line) in the
 * workspace's warm container, output in a terminal with a real pty.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { ContainerExecRequest, ContainerRunRequest, printable } from '../../server/protocol';
import type { HelperConnection } from '../client';
import { ContainerPty } from '../terminal/ContainerPty';
import { vscodeUser, type WorkspaceContainers } from '../workspaceContainer';
import { workspaceIdmap } from '../devcontainer';
import { commandFor, containerPathOf } from './languages';

interface RunRequest {
  folder: vscode.WorkspaceFolder;
  commandLine: string;
  /** Container path to run in. */
  workdir?: string;
  title: string;
}

export class RunInContainer {
  private lastTerminal: vscode.Terminal | undefined;

  constructor(
    private readonly helper: HelperConnection,
    private readonly workspaces: WorkspaceContainers,
  ) {}

  /** `capsa.runInContainer`: the file from the explorer/editor title, else the active editor's. */
  async runFile(uri?: vscode.Uri): Promise<void> {
    const editor = vscode.window.activeTextEditor ?? vscode.window.visibleTextEditors.find((e) => e.document.uri.scheme === 'file');
    const target = uri instanceof vscode.Uri ? uri : editor?.document.uri;
    this.helper.output.appendLine(`Run in Container: ${target ? target.toString() : 'no active file'}`);
    if (!target || target.scheme !== 'file') {
      await this.runCommand();
      return;
    }
    const folder = this.workspaces.folderFor(target);
    if (!folder) throw new Error('Capsa: the file is not in an open workspace folder, so it is not in the container');
    const doc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === target.toString()) ?? (await vscode.workspace.openTextDocument(target));
    if (doc.isDirty) await doc.save();
    const config = this.workspaces.config(folder);
    const containerPath = containerPathOf(target.fsPath, folder.uri.fsPath, config.workspaceFolder);
    if (!containerPath) throw new Error(`Capsa: ${target.fsPath} is outside ${folder.uri.fsPath}, which is what the container sees`);
    let firstLine: string | undefined;
    try {
      firstLine = readFileSync(target.fsPath, 'utf8').split('\n', 1)[0];
    } catch {
      firstLine = doc.lineCount > 0 ? doc.lineAt(0).text : undefined;
    }
    const user = vscode.workspace.getConfiguration('capsa', folder.uri).get<Record<string, string>>('runCommands') ?? {};
    let commandLine = commandFor({ languageId: doc.languageId, containerPath, firstLine }, user);
    if (!commandLine) {
      commandLine = await vscode.window.showInputBox({
        title: `Run ${path.basename(target.fsPath)} in the container`,
        prompt: `No command is known for ${doc.languageId} files (set capsa.runCommands); type the command line`,
        value: containerPath,
      });
      if (!commandLine) return;
    }
    this.start({ folder, commandLine, workdir: path.posix.dirname(containerPath), title: path.basename(target.fsPath) });
  }

  /** `capsa.runCommandInContainer`: a command line the user types. */
  async runCommand(): Promise<void> {
    const folder = this.workspaces.folderFor(vscode.window.activeTextEditor?.document.uri);
    if (!folder) throw new Error('Capsa: open a folder first; commands run in the workspace container');
    const commandLine = await vscode.window.showInputBox({ title: 'Run in Container', prompt: 'Command line to run in the workspace container' });
    if (!commandLine) return;
    this.start({ folder, commandLine, title: commandLine });
  }

  private start(req: RunRequest): void {
    const config = this.workspaces.config(req.folder);
    const reuse = vscode.workspace.getConfiguration('capsa', req.folder.uri).get<boolean>('reuseContainer', true);
    const workdir = req.workdir ?? config.workspaceFolder;
    const clickedAt = Date.now();
    let warm = true;
    const pty = new ContainerPty(this.helper, {
      tty: true,
      closeOnExit: false,
      start: async (attachId, size, progress) => {
        progress(`$ ${req.commandLine}`);
        const track = (line: string) => {
          warm = false;
          progress(line);
        };
        if (reuse) {
          const container = await this.workspaces.ensure(req.folder, track);
          await this.helper.connection.sendRequest(ContainerExecRequest.type, {
            container,
            cmd: ['sh', '-c', req.commandLine],
            workdir,
            env: ['TERM=xterm-256color', ...config.remoteEnv],
            user: config.remoteUser ?? config.containerUser,
            tty: true,
            interactive: true,
            size,
            attachId,
          });
        } else {
          const { image } = await this.workspaces.prepare(req.folder, track);
          warm = false;
          await this.helper.connection.sendRequest(ContainerRunRequest.type, {
            image,
            cmd: ['sh', '-c', req.commandLine],
            entrypoint: [],
            env: ['TERM=xterm-256color', ...config.containerEnv, ...config.remoteEnv],
            volumes: [config.workspaceMount, ...config.mounts],
            idmapMounts: workspaceIdmap(config, vscodeUser()),
            workdir,
            user: config.remoteUser ?? config.containerUser,
            tty: true,
            interactive: true,
            rm: true,
            size,
            attachId,
          });
        }
      },
      onFirstOutput: () => this.helper.output.appendLine(`Run in Container: first output ${Date.now() - clickedAt} ms after the command (${warm ? 'warm' : 'cold'} container)`),
      onExit: (exit, ms) => this.helper.output.appendLine(`Run in Container: \`${req.commandLine}\` exited with code ${exit.exitCode} after ${ms} ms${exit.error ? `: ${printable(exit.error)}` : ''}`),
    });
    // One run terminal at a time, like VS Code's own "Run" commands.
    this.lastTerminal?.dispose();
    const terminal = vscode.window.createTerminal({ name: `Capsa: ${req.title}`, pty, iconPath: new vscode.ThemeIcon('vm') });
    this.lastTerminal = terminal;
    terminal.show(true);
  }
}
