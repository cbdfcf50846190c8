/**
 * The Docker Engine API, the helper's second front door: the same services
 * as the JSON-RPC protocol's handlers, each request acting as the caller
 * the kernel names (docs/ARCHITECTURE.md, "One implementation, two front
 * doors").
 */
import type { ContainerService } from '../runtime/container';
import type { CommitService } from '../services/commit';
import type { ImageService } from '../services/images';
import { Attachments } from './attach';
import { containerRoutes } from './containers';
import { Execs, execRoutes } from './exec';
import { imageRoutes } from './images';
import type { Route } from './router';
import { EngineServer } from './server';
import { systemRoutes } from './system';

export { EngineServer } from './server';
export { API_VERSION, MIN_API_VERSION } from './router';

export interface EngineDeps {
  containers: ContainerService;
  images: ImageService;
  commit: CommitService;
  /** The Capsa root, as `info` reports it. */
  root: string;
}

/** Every route, in the order they are tried (fixed paths before the ones with a name in them). */
export function engineRoutes(deps: EngineDeps): Route[] {
  const attachments = new Attachments(deps.containers);
  const execs = new Execs(deps.containers);
  return [...systemRoutes(deps), ...imageRoutes(deps), ...containerRoutes({ containers: deps.containers, attachments }), ...execRoutes({ containers: deps.containers, execs })];
}

/** The Engine API server over `deps`, not yet listening. */
export function createEngine(deps: EngineDeps, log: (message: string) => void): EngineServer {
  return new EngineServer(engineRoutes(deps), log);
}
