/** Running a process inside a running container's namespaces (`capsa exec`). */
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ConflictError, InvalidArgumentError } from '../../errors';
import { buildExecPlan, mergeEnv } from '../spec';
import { resolveImageUser } from '../users';
import { planLayerDirs } from '../userns';
import type { Entry } from './entry';
import type { ShimLauncher } from './launcher';
import { checkSize, type ExecOptions } from './options';
import { SIGHUP } from './signals';
import { streamEnd, type StreamSink } from './streams';

export interface ExecSession {
  execId: string;
  input(data: Buffer, eof: boolean): void;
  resize(rows: number, cols: number): void;
  /** Hangs up: SIGHUP to the process, as when its terminal closes. */
  hangup(): void;
  exited: Promise<number>;
}

/**
 * Starts opts.cmd in container e. Resolves once it runs; rejects with the
 * shim's setup error as it is (an exec's failure is not the container's, and
 * is not recorded).
 */
export async function execIn(e: Entry, launcher: ShimLauncher, opts: ExecOptions, sink: StreamSink, execId = randomBytes(8).toString('hex')): Promise<ExecSession> {
  if (!e.live || e.state.pid === undefined) throw new ConflictError(`container ${e.record.name} is not running`);
  if (!Array.isArray(opts.cmd) || opts.cmd.length === 0) throw new InvalidArgumentError('exec needs a command');
  if (opts.size) checkSize(opts.size.rows, opts.size.cols);
  const { plan: runPlan } = e.record;
  const user = await resolveImageUser(opts.user ?? e.record.options.user, [path.join(path.dirname(runPlan.rootfs), 'upper'), ...planLayerDirs(runPlan)]);
  const plan = buildExecPlan({
    pid: e.state.pid,
    rootfs: runPlan.rootfs,
    cmd: opts.cmd,
    env: mergeEnv(runPlan.env, opts.tty ? ['TERM=xterm'] : [], opts.env),
    cwd: opts.workdir ?? runPlan.cwd,
    user,
    tty: !!opts.tty,
    winsize: opts.size,
    // a prepared netns is not in the run plan's list, but exec must join it too
    namespaces: [...runPlan.namespaces, ...(runPlan.netnsPath ? ['net' as const] : []), ...(runPlan.userns ? ['user' as const] : [])],
    confinement: runPlan,
  });
  const shim = launcher.launchExec(plan, { stdin: !!opts.interactive });
  shim.stdout?.on('data', (d: Buffer) => sink.output('stdout', d));
  shim.stderr?.on('data', (d: Buffer) => sink.output('stderr', d));
  const drained = Promise.all([streamEnd(shim.stdout), streamEnd(shim.stderr)]);
  await shim.started;
  const exited = shim.exited.then(async (code) => {
    await drained;
    sink.exit(code);
    return code;
  });
  return {
    execId,
    input: (data, eof) => {
      if (!shim.stdin || shim.stdin.destroyed) return;
      if (data.length) shim.stdin.write(data);
      if (eof) shim.stdin.end();
    },
    resize: (rows, cols) => {
      checkSize(rows, cols);
      shim.resize(rows, cols);
    },
    hangup: () => shim.signal(SIGHUP),
    exited,
  };
}
