/**
 * Pull progress as a terminal user knows it from Docker: one line per layer
 * (short digest, status, bytes), redrawn in place. Silent when stderr is not a TTY.
 * trackPull feeds it a pull's work-done progress.
 */
import { ProgressType, type MessageConnection } from 'vscode-jsonrpc/node';
import type { PullProgress } from '../protocol';
import { formatBytes } from './format';

const STATUS: Record<PullProgress['layers'][number]['status'], string> = {
  waiting: 'Waiting',
  downloading: 'Downloading',
  extracting: 'Extracting',
  done: 'Pull complete',
  exists: 'Already exists',
};

export class ProgressDisplay {
  private drawn = 0;
  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {}

  get enabled(): boolean {
    return !!this.out.isTTY;
  }

  update(p: PullProgress): void {
    if (!this.enabled) return;
    const lines = p.layers.map((l) => {
      const id = l.digest.replace(/^sha256:/, '').slice(0, 12);
      let line = `${id}: ${STATUS[l.status]}`;
      if (l.status === 'downloading' || l.status === 'extracting') {
        const width = 30;
        const frac = l.size > 0 ? Math.min(1, l.done / l.size) : 0;
        const filled = Math.round(frac * width);
        line += ` [${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? '>' : ''}${' '.repeat(width - filled)}] ${formatBytes(l.done)}/${formatBytes(l.size)}`;
      }
      return line;
    });
    let s = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
    for (const line of lines) s += `\x1b[2K${line}\n`;
    this.drawn = lines.length;
    this.out.write(s);
  }
}

/**
 * LSP's `$/progress` work-done values, as far as the CLI reads them. Declared
 * here rather than imported from vscode-languageserver-protocol, whose load
 * alone would add tens of milliseconds to every CLI command.
 */
const WorkDoneProgressType = new ProgressType<{ kind: 'begin' | 'report' | 'end'; layers?: PullProgress['layers'] }>();

export function trackPull(c: MessageConnection, token: string, out: NodeJS.WriteStream = process.stderr): ProgressDisplay {
  const display = new ProgressDisplay(out);
  c.onProgress(WorkDoneProgressType, token, (v) => {
    if (v.kind === 'report' && v.layers) display.update({ layers: v.layers });
  });
  return display;
}
