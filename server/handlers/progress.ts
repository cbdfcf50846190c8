import { WorkDoneProgress, type Connection } from 'vscode-languageserver/node';
import type { PullProgress } from '../protocol';
import { formatBytes } from '../util/bytes';

/**
 * sendProgress, for work that goes on whether or not anyone watches: a
 * client that went away makes sendProgress throw, which must not end the work.
 */
export function sendProgressSafely(connection: Connection, token: string | number, value: object): void {
  try {
    void (connection.sendProgress(WorkDoneProgress.type, token, value as never) as unknown as Promise<void>)?.catch?.(() => undefined);
  } catch {
    /* nobody to tell */
  }
}

/**
 * LSP work-done progress for a pull. VS Code renders `message`/`percentage`
 * natively; the CLI also reads `layers`, an extra field of the report that
 * other LSP clients ignore.
 */
export function pullProgress(connection: Connection, token: string | number | undefined, title: string) {
  if (token === undefined) return { report: (_: PullProgress) => undefined, end: () => undefined };
  let begun = false;
  let last = 0;
  const send = (value: object): void => sendProgressSafely(connection, token, value);
  const begin = () => {
    if (begun) return;
    begun = true;
    send({ kind: 'begin', title, cancellable: true, percentage: 0 });
  };
  return {
    report(p: PullProgress): void {
      begin();
      const now = Date.now();
      const total = p.layers.reduce((s, l) => s + l.size, 0);
      const done = p.layers.reduce((s, l) => s + (l.status === 'done' || l.status === 'exists' ? l.size : Math.min(l.done, l.size)), 0);
      const allDone = p.layers.every((l) => l.status === 'done' || l.status === 'exists');
      if (!allDone && now - last < 100) return;
      last = now;
      const finished = p.layers.filter((l) => l.status === 'done' || l.status === 'exists').length;
      const percentage = total > 0 ? Math.floor((done / total) * 100) : 0;
      send({
        kind: 'report',
        message: `${finished}/${p.layers.length} layers, ${formatBytes(done)} of ${formatBytes(total)}`,
        percentage,
        layers: p.layers,
      });
    },
    end(message?: string): void {
      begin();
      send({ kind: 'end', message });
    },
  };
}
