/** Commands of the Containers and Images views and their context menus. */
import * as vscode from 'vscode';
import {
  ContainerLogsRequest,
  ContainerRemoveRequest,
  ContainerRestartRequest,
  ContainerRunRequest,
  ContainerStartRequest,
  ContainerStopRequest,
  ImageRemoveRequest,
  printable,
  type ContainerSummary,
  type ImageSummary,
} from '../../server/protocol';
import type { HelperConnection } from '../client';
import { failureKind } from '../errors';
import { InspectDocuments } from '../inspect';
import { pullWithProgress } from '../progress';
import { ContainerPty } from '../terminal/ContainerPty';
import { shellPty } from '../terminal/shell';
import type { Inventory } from '../views/inventory';
import { shortId } from '../views/model';
import { ContainerNode, ImageNode } from '../views/nodes';

type Handler = (...args: any[]) => unknown;

/** Errors become one plain message instead of an unhandled rejection. */
export function guarded(fn: Handler): Handler {
  return async (...args: unknown[]) => {
    try {
      return await fn(...args);
    } catch (err) {
      void vscode.window.showErrorMessage(printable((err as Error).message));
      return undefined;
    }
  };
}

export function registerViewCommands(helper: HelperConnection, inventory: Inventory): vscode.Disposable[] {
  const pickContainer = async (node: unknown, filter: (c: ContainerSummary) => boolean = () => true): Promise<ContainerSummary | undefined> => {
    if (node instanceof ContainerNode) return node.container;
    const items = [...inventory.containers.values()].filter(filter).map((c) => ({ label: c.name, description: `${c.image} · ${c.state}`, c }));
    if (items.length === 0) throw new Error('Capsa: no matching container');
    return (await vscode.window.showQuickPick(items, { placeHolder: 'Container' }))?.c;
  };
  const pickImage = async (node: unknown): Promise<{ image: ImageSummary; reference: string } | undefined> => {
    if (node instanceof ImageNode) return { image: node.image, reference: node.reference };
    const items = [...inventory.images.values()].flatMap((image) => (image.names.length ? image.names : [image.id]).map((reference) => ({ label: reference, description: shortId(image.id), image, reference })));
    if (items.length === 0) throw new Error('Capsa: no images');
    return vscode.window.showQuickPick(items, { placeHolder: 'Image' });
  };
  const send = () => helper.connection;
  /** Removes a container; one that is gone already (removed from another window or the CLI) counts as removed. */
  const removeContainer = async (params: { container: string; force?: boolean }): Promise<void> => {
    try {
      await send().sendRequest(ContainerRemoveRequest.type, params);
    } catch (err) {
      if (failureKind(err) !== 'not-found') throw err;
    }
  };

  const commands: Record<string, Handler> = {
    'capsa.refresh': () => inventory.reload(),
    'capsa.pullImage': async () => {
      const reference = await vscode.window.showInputBox({ title: 'Pull Image', prompt: 'Image reference', placeHolder: 'busybox, debian:bookworm, ghcr.io/owner/repo:tag' });
      if (reference) await pullWithProgress(helper, reference.trim());
    },
    'capsa.prune': async () => {
      const stopped = [...inventory.containers.values()].filter((c) => c.state === 'exited' || c.state === 'created' || c.state === 'dead');
      const pick = await vscode.window.showWarningMessage(
        `Remove ${stopped.length} stopped container(s) and every image no container uses?`,
        { modal: true },
        'Prune',
      );
      if (pick !== 'Prune') return;
      for (const c of stopped) await removeContainer({ container: c.id });
      const used = new Set([...inventory.containers.values()].filter((c) => !stopped.includes(c)).map((c) => c.imageId));
      let removed = 0;
      for (const image of [...inventory.images.values()].filter((i) => !used.has(i.id))) {
        try {
          await send().sendRequest(ImageRemoveRequest.type, { image: image.id });
          removed++;
        } catch (err) {
          helper.output.appendLine(printable(`prune: kept ${image.names[0] ?? image.id}: ${(err as Error).message}`));
        }
      }
      void vscode.window.showInformationMessage(`Capsa: removed ${stopped.length} container(s) and ${removed} image(s)`);
    },

    'capsa.container.start': async (node?: unknown) => {
      const c = await pickContainer(node, (c) => c.state !== 'running');
      if (c) await send().sendRequest(ContainerStartRequest.type, { container: c.id });
    },
    'capsa.container.stop': async (node?: unknown) => {
      const c = await pickContainer(node, (c) => c.state === 'running');
      if (c) await send().sendRequest(ContainerStopRequest.type, { container: c.id });
    },
    'capsa.container.restart': async (node?: unknown) => {
      const c = await pickContainer(node);
      if (c) await send().sendRequest(ContainerRestartRequest.type, { container: c.id });
    },
    'capsa.container.remove': async (node?: unknown) => {
      const c = await pickContainer(node);
      if (!c) return;
      if (c.state === 'running') {
        const ok = await vscode.window.showWarningMessage(`${c.name} is running. Stop and remove it?`, { modal: true }, 'Remove');
        if (ok !== 'Remove') return;
      }
      await removeContainer({ container: c.id, force: c.state === 'running' });
    },
    'capsa.container.openShell': async (node?: unknown) => {
      const c = await pickContainer(node, (c) => c.state === 'running');
      if (!c) return;
      const pty = shellPty(helper, { container: async () => c.id });
      vscode.window.createTerminal({ name: `Capsa: ${c.name}`, pty, iconPath: new vscode.ThemeIcon('terminal') }).show();
    },
    'capsa.container.showLogs': async (node?: unknown) => {
      const c = await pickContainer(node);
      if (!c) return;
      const pty = new ContainerPty(helper, {
        tty: false,
        closeOnExit: false,
        input: false,
        start: async (attachId, _size, _progress, write) => {
          const follow = c.state === 'running';
          const { entries } = await send().sendRequest(ContainerLogsRequest.type, { container: c.id, followAttachId: follow ? attachId : undefined });
          for (const e of entries) write(Buffer.from(e.data, 'base64').toString('utf8'));
          if (!follow) write('\n[end of log: the container is not running]\n');
        },
      });
      vscode.window.createTerminal({ name: `Logs: ${c.name}`, pty, iconPath: new vscode.ThemeIcon('output') }).show();
    },
    'capsa.container.inspect': async (node?: unknown) => {
      const c = await pickContainer(node);
      if (!c) return;
      const doc = await vscode.workspace.openTextDocument(InspectDocuments.uriFor(c.id, c.name));
      await vscode.languages.setTextDocumentLanguage(doc, 'json');
      await vscode.window.showTextDocument(doc, { preview: true });
    },
    'capsa.container.copyId': async (node?: unknown) => {
      const c = await pickContainer(node);
      if (c) await vscode.env.clipboard.writeText(c.id);
    },

    'capsa.image.run': async (node?: unknown) => {
      const i = await pickImage(node);
      if (!i) return;
      const { name } = await send().sendRequest(ContainerRunRequest.type, { image: i.reference });
      void vscode.window.showInformationMessage(`Capsa: started ${name} from ${i.reference}`);
    },
    'capsa.image.runInteractive': async (node?: unknown) => {
      const i = await pickImage(node);
      if (!i) return;
      const pty = new ContainerPty(helper, {
        tty: true,
        closeOnExit: true,
        start: async (attachId, size) => {
          await send().sendRequest(ContainerRunRequest.type, { image: i.reference, tty: true, interactive: true, rm: true, size, env: ['TERM=xterm-256color'], attachId });
        },
      });
      vscode.window.createTerminal({ name: `Capsa: ${i.reference}`, pty, iconPath: new vscode.ThemeIcon('vm') }).show();
    },
    'capsa.image.pull': async (node?: unknown) => {
      const i = await pickImage(node);
      if (i) await pullWithProgress(helper, i.reference);
    },
    'capsa.image.remove': async (node?: unknown) => {
      const i = await pickImage(node);
      if (!i) return;
      const ok = await vscode.window.showWarningMessage(`Remove image ${i.reference}?`, { modal: true }, 'Remove');
      if (ok !== 'Remove') return;
      try {
        await send().sendRequest(ImageRemoveRequest.type, { image: i.reference });
      } catch (err) {
        const kind = failureKind(err);
        // removed meanwhile (another window, the CLI): what the user asked for is done
        if (kind === 'not-found') return;
        // only a conflict (the image is in use) is one that forcing resolves
        if (kind !== 'conflict') throw err;
        const force = await vscode.window.showWarningMessage(`${printable((err as Error).message)}. Remove it anyway?`, { modal: true }, 'Force Remove');
        if (force === 'Force Remove') await send().sendRequest(ImageRemoveRequest.type, { image: i.reference, force: true });
      }
    },
    'capsa.image.copyDigest': async (node?: unknown) => {
      const i = await pickImage(node);
      if (i) await vscode.env.clipboard.writeText(i.image.repoDigests[0] ?? i.image.manifestDigest);
    },
  };
  return Object.entries(commands).map(([id, fn]) => vscode.commands.registerCommand(id, guarded(fn)));
}
