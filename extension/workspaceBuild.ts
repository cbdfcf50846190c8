/**
 * Builds a workspace's image from its devcontainer.json `build` through the
 * helper's builder (`capsa/image/build`): the context is listed and packed
 * here, as the VS Code user, by the same code as `capsa build`
 * (server/client/buildcontext.ts), and the build's steps are streamed as
 * text the user can read (the classic builder's lines). No dependency on the
 * vscode module.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { NotificationType, RequestType } from 'vscode-jsonrpc';
import { ImageBuildOutputNotification, ImageBuildRequest, ImageBuildStepNotification, printable, printableLines, type BuildStepEvent, type ImageBuildResult } from '../server/protocol';
import { packBuildContext } from '../server/client/buildcontext';
import type { DevcontainerBuild } from './devcontainer';

/** What a workspace build needs of the helper's connection (a LanguageClient or a plain MessageConnection). */
export interface HelperRequests {
  sendRequest<P, R>(type: RequestType<P, R, void>, params: P): Promise<R>;
  onNotification<P>(type: NotificationType<P>, handler: (params: P) => void): { dispose(): void };
}

/** A build that failed: the step that failed (when one did) and the builder's message. */
export class WorkspaceBuildError extends Error {
  readonly code = 'E_WORKSPACE_BUILD';
  constructor(
    message: string,
    /** `Step 2/3 : RUN make`, the instruction as the build output showed it. */
    readonly step?: string,
  ) {
    super(message);
    this.name = 'WorkspaceBuildError';
  }
}

export interface WorkspaceBuildResult extends ImageBuildResult {
  /** Wall time of the build request, ms. */
  ms: number;
}

/**
 * Builds `build` and tags it `image` (and the options' extra tags).
 * `noCache` (Rebuild Without Cache) also pulls the bases again, as
 * @devcontainers/cli does with `--no-cache` on BuildKit.
 */
export async function buildWorkspaceImage(
  conn: HelperRequests,
  build: DevcontainerBuild,
  image: string,
  opts: { noCache?: boolean },
  write: (text: string) => void,
): Promise<WorkspaceBuildResult> {
  let dockerfile: string;
  try {
    dockerfile = readFileSync(build.dockerfile, 'utf8');
  } catch (err) {
    throw new WorkspaceBuildError(`cannot read the Dockerfile ${build.dockerfile}: ${(err as Error).message}`);
  }
  if (!statSync(build.context, { throwIfNoEntry: false })?.isDirectory()) throw new WorkspaceBuildError(`the build context ${build.context} is not a directory`);
  const packed = await packBuildContext(build.context, build.dockerfile);
  const token = `vscode-build-${randomUUID()}`;
  const steps = new Map<number, string>();
  let failed: { step: string; message: string } | undefined;
  const subs = [
    conn.onNotification(ImageBuildOutputNotification.type, (p) => {
      if (p.token === token) write(printableLines(p.text));
    }),
    conn.onNotification(ImageBuildStepNotification.type, (p) => {
      if (p.token !== token) return;
      const line = describeStep(p.event, steps);
      if (p.event.kind === 'failed') failed ??= { step: steps.get(p.event.step) ?? `step ${p.event.step}`, message: p.event.message };
      if (line) write(line);
    }),
  ];
  const started = Date.now();
  write(`Building ${image} from ${build.dockerfile} (context ${build.context})${opts.noCache ? ' without the cache' : ''}\n`);
  try {
    const result = await conn.sendRequest(ImageBuildRequest.type, {
      context: packed.tarFile,
      dockerfile,
      dockerfileName: path.basename(build.dockerfile),
      token,
      tags: [image, ...build.tags],
      buildArgs: build.args,
      ...(Object.keys(build.labels).length > 0 ? { labels: build.labels } : {}),
      ...(build.target ? { target: build.target } : {}),
      noCache: build.noCache || opts.noCache === true,
      pull: build.pull || opts.noCache === true,
      ...(build.platform ? { platform: build.platform } : {}),
    });
    const ms = Date.now() - started;
    write(`Built ${image} (${result.id.replace(/^sha256:/, '').slice(0, 12)}): ${result.ran} steps run, ${result.cached} from the cache, in ${ms} ms\n`);
    return { ...result, ms };
  } catch (err) {
    const message = (err as Error).message;
    write(`The build failed${failed ? ` at ${failed.step}` : ''}: ${message}\n`);
    if (failed) throw new WorkspaceBuildError(`the image build failed at ${failed.step}: ${failed.message}`, failed.step);
    throw new WorkspaceBuildError(`the image build failed: ${message}`);
  } finally {
    for (const s of subs) s.dispose();
    packed.dispose();
  }
}

/** One step event as the classic builder prints it; `steps` remembers each step's heading. */
export function describeStep(e: BuildStepEvent, steps: Map<number, string>): string | undefined {
  switch (e.kind) {
    case 'start': {
      const heading = `Step ${e.step}/${e.total} : ${printable(e.instruction)}`;
      steps.set(e.step, heading);
      return `${heading}${e.stage ? ` (stage ${printable(e.stage)})` : ''}\n`;
    }
    case 'output':
      return printableLines(e.text);
    case 'cached':
      return ' ---> Using cache\n';
    case 'done':
      return e.id ? ` ---> ${e.id.replace(/^sha256:/, '').slice(0, 12)}\n` : undefined;
    case 'failed':
      return `${steps.get(e.step) ?? `Step ${e.step}`} failed: ${printable(e.message)}\n`;
    case 'cancelled':
      return undefined;
  }
}
