/**
 * A container's streams on our terminal: output to stdout/stderr, stdin and
 * the terminal's size to the helper, raw mode for -t, the detach keys, and a
 * pull's progress. Shared by run, exec, start -a, attach and logs -f.
 */
import { spawnSync } from 'node:child_process';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { StreamExitNotification, StreamInputNotification, StreamOutputNotification, StreamResizeNotification, type StreamOutputParams } from '../../protocol';
import type { FlagSpec } from '../args';
import { DEFAULT_DETACH_KEYS, DetachKeys, parseDetachKeys } from '../detachkeys';
import { printableLines } from '../format';

export const DETACH_KEYS_FLAG: FlagSpec = { name: 'detach-keys', kind: 'value', help: `Key sequence that detaches from a terminal (default ${DEFAULT_DETACH_KEYS})` };

/** The detach sequence from --detach-keys, checked before anything starts. */
export function detachKeysOf(flags: Record<string, unknown>): Buffer {
  return parseDetachKeys(typeof flags['detach-keys'] === 'string' ? flags['detach-keys'] : DEFAULT_DETACH_KEYS);
}


/** Our terminal's size, when stdout is a terminal that knows it. */
export function terminalSize(): { rows: number; cols: number } | undefined {
  const { rows, columns } = process.stdout;
  return process.stdout.isTTY && rows > 0 && columns > 0 ? { rows, cols: columns } : undefined;
}

/**
 * Follows one attach session: output to our stdout/stderr, our stdin and
 * size to the helper; `done` resolves with the exit code. Nothing is shown
 * before `start()`, which every caller makes once the session's request is
 * answered (and, for logs, its logged part written).
 */
export function attachStreams(
  c: MessageConnection,
  attachId: string,
  opts: { tty: boolean; interactive: boolean; timestamps?: boolean; detachKeys?: Buffer },
): { done: Promise<number>; start: () => void } {
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  // Output that comes before start() (the request's reply) waits for it: a
  // terminal is only written once it is ours, in raw mode, and a background
  // job is stopped by the terminal before the container shows anything.
  let early: StreamOutputParams[] | undefined = [];
  const show = (p: StreamOutputParams): void => {
    const out = p.stream === 'stderr' ? process.stderr : process.stdout;
    if (opts.timestamps && p.time) out.write(`${p.time} `);
    out.write(Buffer.from(p.data, 'base64'));
  };
  c.onNotification(StreamOutputNotification.type, (p) => {
    if (p.attachId !== attachId) return;
    if (early) early.push(p);
    else show(p);
  });
  c.onNotification(StreamExitNotification.type, (p) => {
    if (p.attachId !== attachId) return;
    if (p.error) process.stderr.write(`capsa: ${printableLines(p.error)}\n`);
    resolveDone(p.exitCode);
  });
  const start = (): void => {
    if (opts.tty && process.stdin.isTTY) enterRawMode();
    for (const p of early ?? []) show(p);
    early = undefined;
    if (opts.tty && process.stdout.isTTY) {
      process.stdout.on('resize', () => {
        const size = terminalSize();
        if (size) void c.sendNotification(StreamResizeNotification.type, { attachId, ...size });
      });
    }
    if (opts.interactive) {
      const send = (d: Buffer): void => void c.sendNotification(StreamInputNotification.type, { attachId, data: d.toString('base64') });
      // as Docker: the detach keys work on a terminal; the container goes on running
      const keys = opts.tty && opts.detachKeys ? new DetachKeys(opts.detachKeys) : undefined;
      process.stdin.on('data', (d: Buffer) => {
        if (!keys) return send(d);
        const { forward, detach } = keys.feed(d);
        if (forward.length) send(forward);
        if (detach) {
          process.stdin.removeAllListeners('data').removeAllListeners('end').pause();
          resolveDone(0);
        }
      });
      process.stdin.on('end', () => void c.sendNotification(StreamInputNotification.type, { attachId, data: '', eof: true }));
      process.stdin.resume();
    }
  };
  return { done, start };
}

/**
 * Raw mode as Docker's CLI sets it (cfmakeraw). Node's raw mode keeps output
 * processing (ONLCR) on, so the container's own pty and ours would both turn
 * "\n" into "\r\n", and programs that move the cursor with a bare "\n"
 * would land in column 0; `stty -opost` turns ours off. Node restores the
 * whole original termios when raw mode ends.
 */
function enterRawMode(): void {
  process.stdin.setRawMode(true);
  spawnSync('stty', ['-opost'], { stdio: [process.stdin, 'ignore', 'ignore'] });
}

export function restoreTerminal(): void {
  if (process.stdin.isTTY && process.stdin.isRaw) process.stdin.setRawMode(false);
  process.stdin.pause();
}
