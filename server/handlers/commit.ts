/**
 * commit, diff, history and tag, for the connection's caller: a container
 * is named among the caller's own (another's is not found), names are the
 * caller's namespace (services/commit.ts). A commit still running when its
 * client goes away is cancelled.
 */
import {
  ContainerCommitRequest,
  ContainerDiffRequest,
  ImageHistoryRequest,
  ImageTagRequest,
  type ContainerCommitParams,
  type ContainerDiffParams,
  type ImageHistoryParams,
  type ImageTagParams,
} from '../protocol';
import type { CommitService } from '../services/commit';
import type { ClientConnection } from './access';
import { handled } from './errors';

export function registerCommitHandlers(connection: ClientConnection, commits: CommitService): () => void {
  const { caller } = connection;
  const running = new Set<AbortController>();
  connection.onRequest(ContainerCommitRequest.type, async (params: ContainerCommitParams, token) =>
    handled(async () => {
      const abort = new AbortController();
      const sub = token.onCancellationRequested(() => abort.abort());
      running.add(abort);
      try {
        return await commits.commit(caller, params, abort.signal);
      } finally {
        sub.dispose();
        running.delete(abort);
      }
    })(undefined),
  );
  connection.onRequest(ContainerDiffRequest.type, handled((p: ContainerDiffParams) => commits.diff(caller, p.container)));
  connection.onRequest(ImageHistoryRequest.type, handled((p: ImageHistoryParams) => commits.history(caller, p.image)));
  connection.onRequest(ImageTagRequest.type, handled((p: ImageTagParams) => commits.tag(caller, p.source, p.target)));
  return () => {
    for (const a of running) a.abort();
  };
}
