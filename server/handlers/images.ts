/**
 * The image requests, each acting for the connection's caller (its uid's
 * namespace of names: services/images.ts), and the image events, each sent
 * only to its owner's connections and root's.
 */
import { WorkDoneProgressCancelNotification, type CancellationToken, type WorkDoneProgressReport } from 'vscode-languageserver/node';
import {
  ImageEventNotification,
  ImageListRequest,
  ImageLoadRequest,
  ImagePruneRequest,
  ImageInspectRequest,
  ImagePullRequest,
  ImagePushRequest,
  ImageLoginRequest,
  ImageRemoveRequest,
  ImageSaveRequest,
  SystemDfRequest,
  type ImageLoadParams,
  type ImagePruneParams,
  type ImagePullParams,
  type ImagePushParams,
  type ImageLoginParams,
  type ImageRemoveParams,
  type ImageEvent,
  type ImageSaveParams,
} from '../protocol';
import { checkClientPath } from '../image/archive';
import { formatBytes } from '../util/bytes';
import type { ImageService } from '../services/images';
import type { ContainerService } from '../runtime/container';
import type { Caller } from '../util/peercred';
import { containerSummary } from '../views/containers';
import { hasFullAccess, type ClientConnection } from './access';
import { handled } from './errors';
import { pullProgress, sendProgressSafely } from './progress';

/**
 * The images the caller's own containers use (root's: every container's), so
 * that a user's rmi or prune is refused, or told anything, only because of
 * its own containers; `needed` (every container's images) still keeps the
 * content any container runs on.
 */
function ownImagesInUse(caller: Caller, containers: ContainerService): Set<string> {
  return hasFullAccess(caller) ? containers.imagesInUse() : containers.imagesInUse(caller.uid);
}

export function registerImageHandlers(connection: ClientConnection, images: ImageService, containers: ContainerService): () => void {
  const { caller } = connection;
  const full = hasFullAccess(caller);
  // the caller's own image events (root: everyone's); a client that went away misses one it no longer needs
  const onEvent = (e: ImageEvent): void => {
    if (!full && e.owner !== caller.uid) return;
    try {
      connection.sendNotification(ImageEventNotification.type, e).catch(() => undefined);
    } catch {
      // closed, and its dispose below not yet run
    }
  };
  images.on('event', onEvent);
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

  /**
   * Runs `work` with a signal that `$/cancelRequest` (the request's token),
   * the client cancelling progress `wd` (when given), and the connection
   * going away all abort; a work-done progress titled `title` is begun for
   * `wd` and ended whatever happens.
   */
  const cancellable = async <T>(token: CancellationToken, wd: string | number | undefined, title: string | undefined, work: (signal: AbortSignal) => Promise<T>): Promise<T> => {
    const abort = new AbortController();
    const sub = token.onCancellationRequested(() => abort.abort());
    track(abort);
    if (wd !== undefined) {
      byProgressToken.set(wd, abort);
      if (title !== undefined) sendProgressSafely(connection, wd, { kind: 'begin', title, cancellable: true, percentage: 0 });
    }
    try {
      return await work(abort.signal);
    } finally {
      sub.dispose();
      running.delete(abort);
      if (wd !== undefined) {
        byProgressToken.delete(wd);
        if (title !== undefined) sendProgressSafely(connection, wd, { kind: 'end' });
      }
    }
  };

  connection.onRequest(ImagePullRequest.type, async (params: ImagePullParams, token) => {
    return handled(async () => {
      const progress = pullProgress(connection, params.workDoneToken, `Pulling ${params.reference}`);
      try {
        return await cancellable(token, params.workDoneToken, undefined, (signal) =>
          images.pull(params.reference, { caller, platform: params.platform, signal, onProgress: (p) => progress.report(p), auth: params.auth }),
        );
      } finally {
        progress.end();
      }
    })(undefined);
  });

  // A push, like a pull, is cancelled by $/cancelRequest, its progress token, or the client going away.
  connection.onRequest(ImagePushRequest.type, async (params: ImagePushParams, token) => {
    return handled(async () => {
      const wd = params.workDoneToken;
      return cancellable(token, wd, `Pushing ${params.reference}`, (signal) =>
        images.push(params.reference, {
          caller,
          signal,
          auth: params.auth,
          // the layers ride along the LSP report, as a pull's do (cli/login.ts prints them)
          onProgress: (p) => {
            if (wd !== undefined) sendProgressSafely(connection, wd, { kind: 'report', ...p });
          },
        }),
      );
    })(undefined);
  });

  connection.onRequest(ImageLoginRequest.type, async (params: ImageLoginParams, token) => {
    return handled(() => cancellable(token, undefined, undefined, (signal) => images.login(params.registry, params.auth, signal)))(undefined);
  });

  connection.onRequest(ImageListRequest.type, handled(() => images.list(caller)));
  connection.onRequest(ImageInspectRequest.type, handled((p: { image: string }) => images.inspect(caller, p.image)));
  connection.onRequest(
    ImageRemoveRequest.type,
    handled(async (params: ImageRemoveParams) => {
      return images.remove(caller, params.image, !!params.force, ownImagesInUse(caller, containers), containers.imagesInUse());
    }),
  );
  connection.onRequest(ImageLoadRequest.type, async (params: ImageLoadParams, token) => {
    return handled(async () => {
      const input = checkClientPath(params.input, 'input');
      const wd = params.workDoneToken;
      let last = 0;
      const onProgress = (read: number, total: number): void => {
        const now = Date.now();
        if (wd === undefined || now - last < 100) return;
        last = now;
        const report: WorkDoneProgressReport = { kind: 'report', message: `${formatBytes(read)} of ${formatBytes(total)}`, percentage: total ? Math.floor((read / total) * 100) : 0 };
        sendProgressSafely(connection, wd, report);
      };
      return cancellable(token, wd, `Loading ${input}`, (signal) => images.load(caller, input, { signal, onProgress }));
    })(undefined);
  });

  connection.onRequest(ImageSaveRequest.type, async (params: ImageSaveParams, token) => {
    return handled(async () => {
      const output = checkClientPath(params.output, 'output');
      return cancellable(token, undefined, undefined, (signal) => images.save(caller, params.images, output, signal));
    })(undefined);
  });

  connection.onRequest(
    ImagePruneRequest.type,
    handled(async (raw: ImagePruneParams | undefined) => {
      const params = raw ?? {};
      return images.prune(caller, !!params.all, ownImagesInUse(caller, containers), containers.imagesInUse());
    }),
  );

  connection.onRequest(
    SystemDfRequest.type,
    // root's view: every container; a user's: its own
    handled(() => images.diskUsage(caller, containers.list(true, full ? 0 : caller.uid).map(containerSummary), ownImagesInUse(caller, containers))),
  );

  return () => {
    gone = true;
    images.off('event', onEvent);
    for (const a of running) a.abort();
  };
}
