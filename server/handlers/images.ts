import { WorkDoneProgressCancelNotification, type Connection } from 'vscode-languageserver/node';
import { ImageListRequest, ImagePullRequest, ImageRemoveRequest, type ImagePullParams, type ImageRemoveParams } from '../protocol';
import { InvalidArgumentError } from '../errors';
import type { ImageService } from '../services/images';
import type { ContainerService } from '../runtime/containers';
import { handled, objectParams } from './errors';
import { pullProgress } from './progress';

export function registerImageHandlers(connection: Connection, images: ImageService, containers: ContainerService): () => void {
  // A pull is cancelled by `$/cancelRequest` (the request's token) or by the
  // client cancelling its work-done progress (VS Code's notification button).
  const byProgressToken = new Map<string | number, AbortController>();
  connection.onNotification(WorkDoneProgressCancelNotification.type, (p) => byProgressToken.get(p.token)?.abort());

  connection.onRequest(ImagePullRequest.type, async (raw: ImagePullParams, token) => {
    return handled(async () => {
      const params = objectParams<ImagePullParams>(raw, ImagePullRequest.method);
      if (typeof params.reference !== 'string') throw new InvalidArgumentError('reference must be a string');
      if (params.platform !== undefined && typeof params.platform !== 'string') throw new InvalidArgumentError('platform must be a string like linux/amd64');
      const abort = new AbortController();
      const sub = token.onCancellationRequested(() => abort.abort());
      if (params.workDoneToken !== undefined) byProgressToken.set(params.workDoneToken, abort);
      const progress = pullProgress(connection, params.workDoneToken, `Pulling ${params.reference}`);
      try {
        return await images.pull(params.reference, { platform: params.platform, signal: abort.signal, onProgress: (p) => progress.report(p) });
      } finally {
        sub.dispose();
        if (params.workDoneToken !== undefined) byProgressToken.delete(params.workDoneToken);
        progress.end();
      }
    })(undefined);
  });

  connection.onRequest(ImageListRequest.type, handled(() => images.list()));
  connection.onRequest(
    ImageRemoveRequest.type,
    handled(async (raw: ImageRemoveParams) => {
      const params = objectParams<ImageRemoveParams>(raw, ImageRemoveRequest.method);
      if (typeof params.image !== 'string') throw new InvalidArgumentError('image must be a string');
      return images.remove(params.image, !!params.force, containers.imagesInUse());
    }),
  );
  return () => {
    for (const a of byProgressToken.values()) a.abort();
  };
}
