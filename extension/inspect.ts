/** Read-only JSON documents of `inspect`, served from the helper on demand. */
import * as vscode from 'vscode';
import { ContainerInspectRequest } from '../server/protocol';
import type { HelperConnection } from './client';

export const INSPECT_SCHEME = 'capsa-inspect';

export class InspectDocuments implements vscode.TextDocumentContentProvider {
  constructor(private readonly helper: HelperConnection) {}

  static uriFor(id: string, name: string): vscode.Uri {
    return vscode.Uri.from({ scheme: INSPECT_SCHEME, path: `/${name}.json`, query: id });
  }

  async provideTextDocumentContent(uri: vscode.Uri): Promise<string> {
    const info = await this.helper.connection.sendRequest(ContainerInspectRequest.type, { container: uri.query });
    return JSON.stringify(info, null, 2) + '\n';
  }
}
