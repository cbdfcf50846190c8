/**
 * `capsa/image/build` and `capsa/builder/prune` for the connection's caller
 * (services/build.ts). The build's output goes to the client as
 * notifications named by its token: each step's start, output and end
 * (ImageBuildStepNotification), warnings as text; a client that goes away, or cancels the
 * request, cancels the build (its RUN container killed and removed).
 */
import { BuilderPruneRequest, ImageBuildOutputNotification, ImageBuildRequest, ImageBuildStepNotification, type ImageBuildParams } from '../protocol';
import type { BuildStepEvent } from '../build/progress';
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
      // a cancel that came with the request (before it was dispatched) left the token cancelled already
      if (gone || token.isCancellationRequested) abort.abort();
      const sub = token.onCancellationRequested(() => abort.abort());
      running.add(abort);
      const send = (f: () => Promise<void>): void => {
        try {
          f().catch(() => undefined);
        } catch {
          // the client went away; the abort follows
        }
      };
      const out = (text: string): void => send(() => connection.sendNotification(ImageBuildOutputNotification.type, { token: params.token, text }));
      const progress = (event: BuildStepEvent): void => send(() => connection.sendNotification(ImageBuildStepNotification.type, { token: params.token, event }));
      try {
        return await builds.build(caller, params, out, progress, abort.signal);
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
