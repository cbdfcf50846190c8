/**
 * What every verb module shares: the shape of a verb and the small helpers
 * its flags and output need.
 */
import { randomBytes } from 'node:crypto';
import { CancellationTokenSource, type CancellationToken, type MessageConnection } from 'vscode-jsonrpc/node';
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

/**
 * A long request Ctrl-C cancels in the helper (`$/cancelRequest`), which
 * stops cleanly and keeps what it verified; a second Ctrl-C leaves at once.
 * Resolves to `interrupted` (exit status 130, "WHAT cancelled" said) when
 * the request failed after a Ctrl-C, else to its result.
 */
export async function interruptible<T>(what: string, send: (token: CancellationToken) => Promise<T>): Promise<{ result: T } | { interrupted: 130 }> {
  const cancel = new CancellationTokenSource();
  let interrupted = false;
  const onSigint = (): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    cancel.cancel();
  };
  process.on('SIGINT', onSigint);
  try {
    return { result: await send(cancel.token) };
  } catch (err) {
    if (!interrupted) throw err;
    process.stderr.write(`capsa: ${what} cancelled\n`);
    return { interrupted: 130 };
  } finally {
    process.off('SIGINT', onSigint);
  }
}
