/**
 * Docker's detach keys: a key sequence typed into an attached terminal
 * (default Ctrl-P Ctrl-Q) detaches the CLI and leaves the container running.
 * The sequence is taken out of the input; a partial match is held back until
 * the next key shows whether it completes the sequence, and is sent on if
 * it does not.
 */
import { InvalidArgumentError } from '../errors';

export const DEFAULT_DETACH_KEYS = 'ctrl-p,ctrl-q';

/**
 * Parses Docker's `--detach-keys` format: comma-separated keys, each a single
 * character or `ctrl-X` with X one of a-z, @, [, \, ], ^, _.
 */
export function parseDetachKeys(spec: string): Buffer {
  if (spec === '') throw new InvalidArgumentError('--detach-keys must name at least one key');
  const bytes = spec.split(',').map((key) => {
    if (key.length === 1) return key.charCodeAt(0);
    const m = /^ctrl-(.)$/i.exec(key);
    if (m) {
      const c = m[1].toLowerCase();
      if (c >= 'a' && c <= 'z') return c.charCodeAt(0) - 0x60;
      const special = '@[\\]^_'.indexOf(c);
      if (special >= 0) return special === 0 ? 0 : 0x1b + special - 1;
    }
    throw new InvalidArgumentError(`invalid --detach-keys ${JSON.stringify(spec)}: ${JSON.stringify(key)} is not a character or ctrl-<a-z, @, [, \\, ], ^, _>`);
  });
  return Buffer.from(bytes);
}

/** Watches input for the detach sequence. */
export class DetachKeys {
  /** Input that may still be the start of the sequence. */
  private held: number[] = [];

  constructor(private readonly keys: Buffer) {}

  /**
   * What of `chunk` goes on to the container, and whether the sequence was
   * completed (everything after it is dropped, as the CLI detaches).
   */
  feed(chunk: Buffer): { forward: Buffer; detach: boolean } {
    const out: number[] = [];
    for (const b of chunk) {
      this.held.push(b);
      // the oldest held byte goes on until what is held starts the sequence again
      while (this.held.length && !this.held.every((x, i) => x === this.keys[i])) out.push(this.held.shift()!);
      if (this.held.length === this.keys.length) {
        this.held = [];
        return { forward: Buffer.from(out), detach: true };
      }
    }
    return { forward: Buffer.from(out), detach: false };
  }
}
