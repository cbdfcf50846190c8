/**
 * Runs a build's stages as a graph: a stage starts once every stage it needs
 * (its FROM stage, `COPY --from`, `RUN --mount from=`) is done, at most
 * `limit` at a time. The first failure aborts `stop` (the siblings' steps see
 * it and end: a RUN's container is killed), no further stage starts, and once
 * every running stage has ended the first failure is what is thrown: a
 * sibling's "cancelled" that followed it is not the cause.
 */
import { BuildStepError } from './steperror';

export interface Schedulable {
  index: number;
  dependsOn: number[];
}

/** Stages built side by side at most: a RUN is a container each, on a machine that may have two cores. */
export const DEFAULT_PARALLEL_STAGES = 4;

export async function scheduleStages<S extends Schedulable>(stages: readonly S[], limit: number, stop: AbortController, build: (stage: S) => Promise<void>): Promise<void> {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`stage parallelism ${limit}: expected a whole number of at least 1`);
  const done = new Set<number>();
  const pending = [...stages];
  const running = new Map<number, Promise<void>>();
  let failure: { err: unknown } | undefined;
  for (;;) {
    if (!failure && !stop.signal.aborted) {
      for (let i = 0; i < pending.length && running.size < limit; ) {
        const st = pending[i];
        if (!st.dependsOn.every((d) => done.has(d))) {
          i++;
          continue;
        }
        pending.splice(i, 1);
        const p = build(st)
          .then(
            () => void done.add(st.index),
            (err: unknown) => {
              if (!failure) {
                failure = { err };
                stop.abort();
              }
            },
          )
          .finally(() => running.delete(st.index));
        running.set(st.index, p);
      }
    }
    if (running.size === 0) break;
    await Promise.race(running.values());
  }
  if (failure) throw failure.err;
  if (stop.signal.aborted) throw new BuildStepError('the build was cancelled');
  if (pending.length > 0) throw new BuildStepError(`stages ${pending.map((s) => s.index).join(', ')} wait for stages outside the plan`);
}
