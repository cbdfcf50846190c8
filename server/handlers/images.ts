import { WorkDoneProgressCancelNotification, type Connection, type WorkDoneProgressReport } from 'vscode-languageserver/node';
import {
  ImageListRequest,
  ImageLoadRequest,
  ImagePruneRequest,
  ImagePullRequest,
  ImageRemoveRequest,
  ImageSaveRequest,
  SystemDfRequest,
  type ImageLoadParams,
  type ImagePruneParams,
  type ImagePullParams,
  type ImageRemoveParams,
  type ImageSaveParams,
} from '../protocol';
import { checkClientPath } from '../image/archive';
import { formatBytes } from '../util/bytes';
import type { ImageService } from '../services/images';
import type { ContainerService } from '../runtime/container';
import { containerSummary } from '../views/containers';
import { handled } from './errors';
import { pullProgress, sendProgressSafely } from './progress';

export function registerImageHandlers(connection: Connection, images: ImageService, containers: ContainerService): () => void {
  // A pull is cancelled by `$/cancelRequest` (the request's token) or by the
  // client cancelling its work-done progress (VS Code's notification button).
  const byProgressToken = new Map<string | number, AbortController>();
  // Every pull and load in flight on this connection: a client that goes away cancels them.
  const running = new Set<AbortController>();
  /** Set once the connection is gone: a request read before the close but handled after starts no work. */
  let gone = false;
  const track = (abort: AbortController): void => {
    if (gone) abort.abort();
    running.add(abort);
  };
  connection.onNotification(WorkDoneProgressCancelNotification.type, (p) => byProgressToken.get(p.token)?.abort());

  connection.onRequest(ImagePullRequest.type, async (params: ImagePullParams, token) => {
    return handled(async () => {
      const abort = new AbortController();
      const sub = token.onCancellationRequested(() => abort.abort());
      track(abort);
      if (params.workDoneToken !== undefined) byProgressToken.set(params.workDoneToken, abort);
      const progress = pullProgress(connection, params.workDoneToken, `Pulling ${params.reference}`);
      try {
        return await images.pull(params.reference, { platform: params.platform, signal: abort.signal, onProgress: (p) => progress.report(p) });
      } finally {
        sub.dispose();
        running.delete(abort);
        if (params.workDoneToken !== undefined) byProgressToken.delete(params.workDoneToken);
        progress.end();
      }
    })(undefined);
  });

  connection.onRequest(ImageListRequest.type, handled(() => images.list()));
  connection.onRequest(
    ImageRemoveRequest.type,
    handled(async (params: ImageRemoveParams) => {
      return images.remove(params.image, !!params.force, containers.imagesInUse());
    }),
  );
  connection.onRequest(ImageLoadRequest.type, async (params: ImageLoadParams, token) => {
    return handled(async () => {
      const input = checkClientPath(params.input, 'input');
      const abort = new AbortController();
      const sub = token.onCancellationRequested(() => abort.abort());
      track(abort);
      const wd = params.workDoneToken;
      if (wd !== undefined) {
        byProgressToken.set(wd, abort);
        sendProgressSafely(connection, wd, { kind: 'begin', title: `Loading ${input}`, cancellable: true, percentage: 0 });
      }
      let last = 0;
      const onProgress = (read: number, total: number): void => {
        const now = Date.now();
        if (wd === undefined || now - last < 100) return;
        last = now;
        const report: WorkDoneProgressReport = { kind: 'report', message: `${formatBytes(read)} of ${formatBytes(total)}`, percentage: total ? Math.floor((read / total) * 100) : 0 };
        sendProgressSafely(connection, wd, report);
      };
      try {
        return await images.load(input, { signal: abort.signal, onProgress });
      } finally {
        sub.dispose();
        running.delete(abort);
        if (wd !== undefined) {
          byProgressToken.delete(wd);
          sendProgressSafely(connection, wd, { kind: 'end' });
        }
      }
    })(undefined);
  });

  connection.onRequest(ImageSaveRequest.type, async (params: ImageSaveParams, token) => {
    return handled(async () => {
      const output = checkClientPath(params.output, 'output');
      const abort = new AbortController();
      const sub = token.onCancellationRequested(() => abort.abort());
      track(abort);
      try {
        return await images.save(params.images, output, abort.signal);
      } finally {
        sub.dispose();
        running.delete(abort);
      }
    })(undefined);
  });

  connection.onRequest(
    ImagePruneRequest.type,
    handled(async (raw: ImagePruneParams | undefined) => {
      const params = raw ?? {};
      return images.prune(!!params.all, containers.imagesInUse());
    }),
  );

  connection.onRequest(
    SystemDfRequest.type,
    handled(() => images.diskUsage(containers.list(true).map(containerSummary), containers.imagesInUse())),
  );

  return () => {
    gone = true;
    for (const a of running) a.abort();
  };
}
