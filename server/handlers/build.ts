/**
 * `capsa/image/build` and `capsa/builder/prune` for the connection's caller
 * (services/build.ts). The build's output goes to the client as
 * notifications named by its token; a client that goes away, or cancels the
 * request, cancels the build (its RUN container killed and removed).
 */
import { BuilderPruneRequest, ImageBuildOutputNotification, ImageBuildRequest, type ImageBuildParams } from '../protocol';
import type { BuildService } from '../services/build';
import type { ClientConnection } from './access';
import { handled } from './errors';

export function registerBuildHandlers(connection: ClientConnection, builds: BuildService): () => void {
  const { caller } = connection;
  const running = new Set<AbortController>();
  let gone = false;
  connection.onRequest(ImageBuildRequest.type, async (params: ImageBuildParams, token) =>
    handled(async () => {
      const abort = new AbortController();
      if (gone) abort.abort();
      const sub = token.onCancellationRequested(() => abort.abort());
      running.add(abort);
      const out = (text: string): void => {
        try {
          connection.sendNotification(ImageBuildOutputNotification.type, { token: params.token, text }).catch(() => undefined);
        } catch {
          // the client went away; the abort follows
        }
      };
      try {
        return await builds.build(caller, params, out, abort.signal);
      } finally {
        sub.dispose();
        running.delete(abort);
      }
    })(undefined),
  );
  connection.onRequest(BuilderPruneRequest.type, handled(() => builds.prune(caller)));
  return () => {
    gone = true;
    for (const a of running) a.abort();
  };
}
