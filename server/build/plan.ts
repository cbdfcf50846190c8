/**
 * The build plan: what the builder's front (parse → stages → expansion)
 * hands to the executor. Plain data, like the runtime's run plan: every
 * decision about words, variables, stages and what each step needs is made
 * here and unit-tested; the executor only carries steps out (a container
 * for RUN, a copy for COPY/ADD, a config change for the rest) and commits
 * layers.
 *
 * Stages appear in the order they must be built; `waves` groups stages that
 * depend on nothing built in the same or a later wave, so the stages of one
 * wave may be built side by side.
 */
import type { ContainerConfig } from '../image/types';
import type { KeyValue, InlineSource } from './dockerfile/instructions';
import type { RunMount } from './dockerfile/mounts';
import type { SourceLocation } from './errors';

/** What a base image contributes to planning, once the executor has resolved it. */
export interface BaseImage {
  /** The image's config digest (`sha256:…`): the first cache key's parent. */
  digest: string;
  /** Its runtime config: ENV for expansion, WORKDIR, USER, SHELL, and ONBUILD triggers to run first. */
  config: ContainerConfig & { OnBuild?: string[] | null };
}

/** Where a stage starts. */
export type StageBase =
  | { kind: 'scratch' }
  | { kind: 'image'; ref: string; platform?: string }
  | { kind: 'stage'; index: number };

/** Where COPY/ADD sources or a `--mount` come from. */
export type SourceOrigin = { kind: 'context' } | { kind: 'stage'; index: number } | { kind: 'image'; ref: string };

/** The image config a stage has built so far (Docker's names); what CMD/ENV/… steps change. */
export interface StageConfig {
  env: string[];
  workdir: string;
  user: string;
  shell: string[];
  cmd?: string[];
  entrypoint?: string[];
  labels: Record<string, string>;
  exposedPorts: string[];
  volumes: string[];
  stopSignal?: string;
  healthcheck?: { test: string[]; intervalMs?: number; timeoutMs?: number; startPeriodMs?: number; startIntervalMs?: number; retries?: number };
  onBuild: string[];
  maintainer?: string;
}

/** One instruction after expansion: what the executor does. */
export type StepAction =
  | {
      kind: 'run';
      /** The argv to run: the shell and the command for the shell form, the array itself for the exec form. */
      argv: string[];
      /** Heredoc bodies the command reads (files a heredoc-fed shell gets), unexpanded: the shell expands them. */
      heredocs: InlineSource[];
      /** A lone heredoc whose body starts with `#!`: written as the executable `/dev/pipes/NAME`, which `argv` runs (BuildKit's rule). */
      script?: { name: string; data: string };
      /** The mounts, each that names a stage or an image with where it resolved (`origin`). */
      mounts: (RunMount & { origin?: SourceOrigin })[];
      network: 'default' | 'none' | 'host';
      security: 'sandbox' | 'insecure';
      /** The process environment: the stage's ENV, then its ARGs (ENV wins). Proxy build args are in `proxyEnv`. */
      env: string[];
      /** HTTP_PROXY and its family from --build-arg: given to the process, left out of cache keys and history, as Docker does. */
      proxyEnv: string[];
      workdir: string;
      user: string;
    }
  | {
      kind: 'copy' | 'add';
      origin: SourceOrigin;
      /** Cleaned source paths (context- or stage-relative, no leading `/`, wildcards kept), or URLs for ADD. */
      sources: string[];
      inline: InlineSource[];
      /** Absolute destination, WORKDIR applied; a trailing `/` kept (it means "into this directory"). */
      dest: string;
      chown?: string;
      chmod?: string;
      link: boolean;
      parents: boolean;
      exclude: string[];
      checksum?: string;
      keepGitDir?: boolean;
      unpack?: boolean;
      user: string;
    }
  | { kind: 'workdir'; path: string; user: string }
  /** A change to the image config only: no layer. */
  | { kind: 'config'; instruction: string; set: Partial<StageConfig> };

export interface Step {
  /** The instruction as written, with its place. */
  loc: SourceLocation;
  original: string;
  /** The instruction after expansion, as history shows it (`RUN /bin/sh -c make`, `COPY src/ /app/`). */
  createdBy: string;
  action: StepAction;
  /** Whether the step writes a layer (RUN, COPY, ADD, WORKDIR) or only changes the config. */
  layer: boolean;
  /** What the step needs before it can run, beyond its parent step. */
  needs: { context: boolean; stages: number[]; images: string[] };
  /** The ARG values in scope that the step's cache key covers (RUN sees them all as environment). */
  args: KeyValue[];
  /** The step came from a base image's ONBUILD trigger. */
  fromOnBuild?: boolean;
}

export interface PlannedStage {
  /** The stage's index in the Dockerfile (what `COPY --from=N` names). */
  index: number;
  name?: string;
  base: StageBase;
  /** The platform the stage builds for (`--platform` of FROM, else the target's). */
  platform: string;
  steps: Step[];
  /** Stages (by index) that must be built before this one. */
  dependsOn: number[];
  /** The config at the end of the stage: the image config the executor writes. */
  config: StageConfig;
}

export interface BuildWarning {
  loc?: SourceLocation;
  message: string;
}

export interface BuildPlan {
  /** The stages the target needs, each after every stage it depends on; the last is the target. */
  stages: PlannedStage[];
  /** Stage indices by wave: a stage depends only on stages of earlier waves. */
  waves: number[][];
  target: number;
  warnings: BuildWarning[];
}
