/**
 * How a failed command ends: the exit status its error's code gives (the
 * protocol's catalogue, Docker's statuses: 125 for an error of Capsa's, 126
 * and 127 for a container command that cannot run or was not found), and the
 * line printed for it.
 */
import { capsaErrorData, EXIT_CAPSA, errorCode, errorCodeInfo, printable, printableLines, type CapsaErrorCause } from '../protocol';

/**
 * The exit status for an error: its code's, when the catalogue lists the
 * code; else the status a helper put in the data (`exitCode`, sent by helpers
 * whose codes this CLI does not know yet); else 125.
 */
export function exitStatus(err: unknown): number {
  const info = errorCodeInfo(errorCode(err));
  if (info) return info.exit;
  const status = capsaErrorData(err)?.exitCode;
  if (typeof status === 'number' && Number.isInteger(status) && status >= 0 && status <= 255) return status;
  return EXIT_CAPSA;
}

/**
 * The message for an error, as the CLI prints it after `capsa: error: `:
 * its text (controls escaped: it may quote a registry, an image or a
 * request), then, on the same line, each cause of Capsa's own (one with an
 * `E_…` code) that the text does not already quote. A system error's cause
 * (`ENOENT: …`) is left out: the wrapper's message already says it for users.
 */
export function errorLine(err: unknown): string {
  let text = printableLines(err instanceof Error ? err.message : String(err));
  for (const c of causesOf(err)) {
    if (!c.code?.startsWith('E_') || c.message === '') continue;
    const shown = printable(c.message);
    if (!text.includes(shown)) text += `: ${shown}`;
  }
  return text;
}

/** The causes an error carries: the helper's (`data.causes`) or a local error's `cause` chain. */
function causesOf(err: unknown): CapsaErrorCause[] {
  const sent = capsaErrorData(err)?.causes;
  if (Array.isArray(sent)) return sent.filter((c): c is CapsaErrorCause => typeof c?.message === 'string');
  const out: CapsaErrorCause[] = [];
  const seen = new Set<unknown>([err]);
  for (let c = err instanceof Error ? err.cause : undefined; c instanceof Error && !seen.has(c) && out.length < 8; c = c.cause) {
    seen.add(c);
    const code = (c as { code?: unknown }).code;
    out.push({ ...(typeof code === 'string' ? { code } : {}), message: c.message });
  }
  return out;
}
