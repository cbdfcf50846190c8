/** Tree nodes of the Containers and Images views. */
import * as vscode from 'vscode';
import { printable, printableLines, type ContainerSummary, type ImageSummary } from '../../server/protocol';
import type { ImageGroup, ImageTagRow, Row } from './model';

// Names, references and labels come from clients and images: what the tree shows has no control characters or bidi overrides.
function applyRow(item: vscode.TreeItem, row: Row): void {
  item.description = printable(row.description);
  item.tooltip = printableLines(row.tooltip);
  item.contextValue = row.contextValue;
  item.iconPath = new vscode.ThemeIcon(row.icon, row.color ? new vscode.ThemeColor(row.color) : undefined);
}

export class ContainerNode extends vscode.TreeItem {
  constructor(
    readonly container: ContainerSummary,
    row: Row,
  ) {
    super(printable(row.label), vscode.TreeItemCollapsibleState.None);
    // Stable ids keep selection and focus when the list is re-rendered after an event.
    this.id = `container:${container.id}`;
    applyRow(this, row);
  }
}

export class RepositoryNode extends vscode.TreeItem {
  constructor(readonly group: ImageGroup) {
    super(printable(group.repository), vscode.TreeItemCollapsibleState.Expanded);
    this.id = `repository:${group.repository}`;
    this.contextValue = 'repository';
    this.iconPath = new vscode.ThemeIcon('package');
    this.description = `${group.tags.length} tag${group.tags.length === 1 ? '' : 's'}`;
  }
}

export class ImageNode extends vscode.TreeItem {
  readonly image: ImageSummary;
  readonly reference: string;
  constructor(row: ImageTagRow, repository: string) {
    super(printable(row.label), vscode.TreeItemCollapsibleState.None);
    this.id = `image:${repository}:${row.label}:${row.image.id}`;
    this.image = row.image;
    this.reference = row.reference;
    applyRow(this, row);
  }
}
