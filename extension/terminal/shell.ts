/** Shell terminals in containers: the terminal profile and the view's "Open Shell". */
import * as vscode from 'vscode';
import { ContainerExecRequest } from '../../server/protocol';
import type { HelperConnection } from '../client';
import type { WorkspaceContainers } from '../workspaceContainer';
import { ContainerPty } from './ContainerPty';

/** bash when the image has it, else sh. */
export const SHELL_CMD = ['sh', '-c', 'command -v bash >/dev/null && exec bash || exec sh'];

export interface ShellTarget {
  /** Resolves the container to exec in (may create it). */
  container(progress: (line: string) => void): Promise<string>;
  workdir?: string;
  env?: string[];
  user?: string;
}

export function shellPty(helper: HelperConnection, target: ShellTarget): ContainerPty {
  return new ContainerPty(helper, {
    tty: true,
    closeOnExit: true,
    start: async (attachId, size, progress) => {
      const container = await target.container(progress);
      await helper.connection.sendRequest(ContainerExecRequest.type, {
        container,
        cmd: SHELL_CMD,
        tty: true,
        interactive: true,
        size,
        workdir: target.workdir,
        env: ['TERM=xterm-256color', ...(target.env ?? [])],
        user: target.user,
        attachId,
      });
    },
  });
}

export const PROFILE_ID = 'capsa.containerShell';

/** "Capsa: container shell": a shell in the workspace's container. */
export function registerShellProfile(helper: HelperConnection, workspaces: WorkspaceContainers): vscode.Disposable {
  return vscode.window.registerTerminalProfileProvider(PROFILE_ID, {
    provideTerminalProfile(): vscode.ProviderResult<vscode.TerminalProfile> {
      const folder = workspaces.folderFor(vscode.window.activeTextEditor?.document.uri);
      if (!folder) throw new Error('Capsa: open a folder first; the container shell runs in the workspace container');
      const config = workspaces.config(folder);
      const pty = shellPty(helper, {
        container: (progress) => workspaces.ensure(folder, progress),
        workdir: config.workspaceFolder,
        env: config.remoteEnv,
        user: config.remoteUser ?? config.containerUser,
      });
      return new vscode.TerminalProfile({ name: `Capsa: ${folder.name}`, pty });
    },
  });
}
