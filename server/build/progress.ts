/**
 * What the executor tells about each step as it goes, for a client to draw
 * (the classic builder's lines, or BuildKit's in-place view). Steps are
 * numbered once, in plan order (`Step N/TOTAL`), so a number names the same
 * step whatever order the scheduler runs stages in; every event names its
 * step, so the output of steps that run side by side stays apart.
 *
 * The wire has the same union (protocol/build.ts BuildStepEvent, which this
 * layer may not import); the handler hands these to it, so the compiler
 * holds the two to one shape.
 */
export type BuildStepEvent =
  | {
      kind: 'start';
      step: number;
      total: number;
      /** The stage as BuildKit names it: its name, `stage-N`, or '' for an unnamed target. */
      stage: string;
      /** The step's place in its stage (FROM is 1) and the stage's step count. */
      pos: number;
      count: number;
      /** The instruction as written. */
      instruction: string;
    }
  /** Text the step printed (a RUN's output, a container's id), as it came. */
  | { kind: 'output'; step: number; text: string }
  /** The step's result came from the cache. */
  | { kind: 'cached'; step: number }
  /** The step ended; `id` is the image it left (none for FROM scratch). */
  | { kind: 'done'; step: number; id?: string; ms: number }
  /** The step failed with `message`. */
  | { kind: 'failed'; step: number; message: string; ms: number }
  /** The step was stopped: the build was cancelled, or another step failed. */
  | { kind: 'cancelled'; step: number; ms: number };
