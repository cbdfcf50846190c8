/** Pulls with per-layer progress in a cancellable notification. */
import { randomUUID } from 'node:crypto';
import * as vscode from 'vscode';
import { WorkDoneProgress, type WorkDoneProgressBegin, type WorkDoneProgressReport } from 'vscode-languageclient/node';
import { ImagePullRequest, type PullProgress, type PullResult } from '../server/protocol';
import type { HelperConnection } from './client';
import { formatSize } from './views/model';

export function pullWithProgress(helper: HelperConnection, reference: string): Promise<PullResult> {
  return Promise.resolve(
    vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Pulling ${reference}`, cancellable: true },
      async (progress, token) => {
        const client = helper.connection;
        const workDoneToken = `capsa-pull-${randomUUID()}`;
        let last = 0;
        const sub = client.onProgress(WorkDoneProgress.type, workDoneToken, (value) => {
          if (value.kind === 'end') return;
          const v = value as WorkDoneProgressBegin | WorkDoneProgressReport;
          const { message, increment } = describe(v.message, v.percentage);
          const inc = increment !== undefined ? Math.max(0, increment - last) : undefined;
          if (increment !== undefined) last = increment;
          progress.report({ message, increment: inc });
        });
        try {
          return await client.sendRequest(ImagePullRequest.type, { reference, workDoneToken }, token);
        } finally {
          sub.dispose();
        }
      },
    ),
  );
}

/** The report's message is a PullProgress as JSON when it parses; otherwise shown as is. */
function describe(message: string | undefined, percentage: number | undefined): { message?: string; increment?: number } {
  if (!message) return { increment: percentage };
  try {
    const p = JSON.parse(message) as PullProgress;
    if (Array.isArray(p.layers)) {
      const total = p.layers.reduce((n, l) => n + l.size, 0);
      const done = p.layers.reduce((n, l) => n + (l.status === 'done' || l.status === 'exists' ? l.size : l.done), 0);
      const finished = p.layers.filter((l) => l.status === 'done' || l.status === 'exists').length;
      const busy = p.layers.find((l) => l.status === 'downloading' || l.status === 'extracting');
      return {
        message: `${finished}/${p.layers.length} layers, ${formatSize(done)} of ${formatSize(total)}${busy ? ` — ${busy.status} ${busy.digest.slice(7, 19)}` : ''}`,
        increment: percentage ?? (total > 0 ? Math.floor((done / total) * 100) : undefined),
      };
    }
  } catch {
    // plain text
  }
  return { message, increment: percentage };
}
