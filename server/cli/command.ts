/**
 * What every verb module shares: the shape of a verb and the small helpers
 * its flags and output need.
 */
import { randomBytes } from 'node:crypto';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { printableLines } from './format';

/** One verb: its arguments after the verb, and the helper's connection, made on first use. */
export type Command = (argv: string[], conn: () => Promise<MessageConnection>) => Promise<number>;

export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** A fresh id for an attach session or a pull's progress token. */
export function newId(prefix: string): string {
  return `${prefix}-${randomBytes(8).toString('hex')}`;
}

/** An error as the CLI prints it: its text may quote a registry, an image or a request, so controls are escaped. */
export function errorMessage(err: unknown): string {
  return printableLines(err instanceof Error ? err.message : String(err));
}
