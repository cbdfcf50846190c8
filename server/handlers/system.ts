import type { Connection } from 'vscode-languageserver/node';
import { PROTOCOL_VERSION, VersionRequest } from '../protocol';
import { handled } from './errors';
import { VERSION } from '../version';

export function registerSystemHandlers(connection: Connection, root: string): void {
  connection.onRequest(VersionRequest.type, handled(() => ({ version: VERSION, protocol: PROTOCOL_VERSION, root, pid: process.pid })));
}
