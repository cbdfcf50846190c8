/**
 * A build's progress as Docker draws it, from the helper's step events
 * (protocol BuildStepEvent).
 *
 * - plain (`--progress=plain`, or auto when stdout is not a terminal): the
 *   classic builder's lines, `Step N/TOTAL : INSTRUCTION`, the step's output
 *   as it comes, ` ---> Using cache`, ` ---> ID`. While steps of stages
 *   built side by side run at once, each of their lines is prefixed `#N `
 *   (BuildKit's plain form), so every line says which step wrote it.
 * - tty (`--progress=tty`, or auto on a terminal): BuildKit's compact view,
 *   redrawn in place: `[+] Building 3.2s (5/9)`, one line per step with its
 *   state and time, the last lines of each running step's output under it,
 *   and the view as it ended (`FINISHED`, or the failed step with its output).
 */
import type { BuildStepEvent } from '../protocol';

export type ProgressMode = 'plain' | 'tty';

export interface BuildView {
  event(e: BuildStepEvent): void;
  /** Text outside any step (warnings). */
  text(t: string): void;
  /** The build ended (`ok` false: it failed or was cancelled). */
  end(ok: boolean): void;
}

const short = (id: string): string => id.replace(/^sha256:/, '').slice(0, 12);

/** `auto` is tty on a terminal, else plain; BUILDKIT_PROGRESS gives the default, as for docker. */
export function progressMode(flag: string | undefined, isTTY: boolean, env: NodeJS.ProcessEnv = process.env): ProgressMode {
  const want = flag ?? env.BUILDKIT_PROGRESS ?? 'auto';
  if (want === 'plain' || want === 'tty') return want;
  return isTTY ? 'tty' : 'plain';
}

export function buildView(mode: ProgressMode, out: NodeJS.WritableStream & { columns?: number; rows?: number }): BuildView {
  return mode === 'tty' ? new TtyView(out) : new PlainView(out);
}

export class PlainView implements BuildView {
  private readonly running = new Set<number>();
  private readonly partial = new Map<number, string>();
  /** The step whose text was written last, and whether it left the cursor at a line's start. */
  private owner = 0;
  private atLineStart = true;

  constructor(private readonly out: NodeJS.WritableStream) {}

  event(e: BuildStepEvent): void {
    switch (e.kind) {
      case 'start':
        this.line(0, `Step ${e.step}/${e.total} : ${e.instruction}\n`);
        this.running.add(e.step);
        return;
      case 'output':
        return this.stepText(e.step, e.text);
      case 'cached':
        return this.stepText(e.step, ' ---> Using cache\n');
      case 'done':
        if (e.id) this.stepText(e.step, ` ---> ${short(e.id)}\n`);
        return this.finish(e.step);
      case 'failed':
      case 'cancelled':
        return this.finish(e.step);
    }
  }

  text(t: string): void {
    this.line(0, t);
  }

  end(): void {
    for (const step of [...this.partial.keys()]) this.finish(step);
    if (!this.atLineStart) this.write('\n');
  }

  private stepText(step: number, text: string): void {
    if (this.running.size <= 1 && !this.partial.has(step)) return this.line(step, text);
    // side by side: whole lines only, each with its step's number
    const lines = ((this.partial.get(step) ?? '') + text).split('\n');
    const rest = lines.pop() as string;
    if (rest) this.partial.set(step, rest);
    else this.partial.delete(step);
    for (const l of lines) this.line(step, `#${step} ${l}\n`);
  }

  private finish(step: number): void {
    const rest = this.partial.get(step);
    this.partial.delete(step);
    if (rest) this.line(step, `#${step} ${rest}\n`);
    this.running.delete(step);
  }

  /** `text` from `step` (0: the build's own), on a line of its own when another step's line was left open. */
  private line(step: number, text: string): void {
    if (text === '') return;
    if (!this.atLineStart && this.owner !== step) this.write('\n');
    this.write(text);
    this.owner = step;
    this.atLineStart = text.endsWith('\n');
  }

  private write(s: string): void {
    this.out.write(s);
  }
}

interface StepState {
  name: string;
  state: 'running' | 'done' | 'cached' | 'error' | 'cancelled';
  started: number;
  ms?: number;
  log: string[];
  partial: string;
}

/** Lines of a running step's output shown under it, as BuildKit's tty view. */
const LOG_LINES = 6;
const REDRAW_MS = 150;

export class TtyView implements BuildView {
  private readonly steps = new Map<number, StepState>();
  private readonly started = Date.now();
  private total = 0;
  private drawn = 0;
  private notes: string[] = [];
  private finished: 'no' | 'ok' | 'failed' = 'no';
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly out: NodeJS.WritableStream & { columns?: number; rows?: number }) {
    this.timer = setInterval(() => this.draw(), REDRAW_MS);
    this.timer.unref();
  }

  event(e: BuildStepEvent): void {
    const s = this.steps.get(e.step);
    if (e.kind === 'start') {
      this.total = e.total;
      const where = `${e.stage ? e.stage + ' ' : ''}${e.pos}/${e.count}`;
      this.steps.set(e.step, { name: `[${where}] ${e.instruction}`, state: 'running', started: Date.now(), log: [], partial: '' });
      return this.draw();
    }
    if (!s) return;
    if (e.kind === 'output') {
      const lines = (s.partial + e.text.replace(/\r\n?/g, '\n')).split('\n');
      s.partial = lines.pop() as string;
      // the container's own lines belong to the classic view, not to the step's output
      s.log.push(...lines.filter((l) => !/^( ---> Running in |Removing intermediate container )/.test(l)));
      if (s.log.length > 200) s.log.splice(0, s.log.length - 200);
      return;
    }
    if (e.kind === 'cached') s.state = 'cached';
    else {
      if (s.partial) s.log.push(s.partial);
      s.partial = '';
      s.ms = e.ms;
      if (e.kind === 'failed') s.state = 'error';
      else if (e.kind === 'cancelled') s.state = 'cancelled';
      else if (s.state === 'running') s.state = 'done';
    }
    this.draw();
  }

  text(t: string): void {
    this.notes.push(...t.split('\n').filter(Boolean));
    this.draw();
  }

  end(ok: boolean): void {
    clearInterval(this.timer);
    this.finished = ok ? 'ok' : 'failed';
    this.draw();
  }

  private draw(): void {
    const width = Math.max(20, (this.out.columns ?? 80) - 1);
    const secs = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
    const ended = [...this.steps.values()].filter((s) => s.state !== 'running').length;
    const head = `[+] Building ${secs(Date.now() - this.started)} (${ended}/${this.total || this.steps.size})${this.finished === 'ok' ? ' FINISHED' : ''}`;
    const lines = [head];
    for (const [, s] of [...this.steps.entries()].sort((a, b) => a[0] - b[0])) {
      const mark = s.state === 'cached' ? 'CACHED ' : s.state === 'error' ? 'ERROR ' : s.state === 'cancelled' ? 'CANCELED ' : '';
      const time = secs(s.ms ?? Date.now() - s.started);
      const left = fit(` => ${mark}${s.name}`, width - time.length - 1);
      lines.push(left + ' '.repeat(Math.max(1, width - left.length - time.length)) + time);
      if (s.state === 'running' || s.state === 'error') for (const l of s.log.slice(-LOG_LINES)) lines.push(fit(` => => # ${l}`, width));
    }
    for (const n of this.notes) lines.push(fit(n, width));
    // while redrawing, the frame must fit the screen (the cursor cannot go up past its top): the newest lines stay
    const rows = this.out.rows ?? 24;
    if (this.finished === 'no' && lines.length > rows - 1) lines.splice(1, lines.length - (rows - 1));
    let frame = this.drawn > 0 ? `\x1b[${this.drawn}A\r` : '';
    for (const l of lines) frame += `\x1b[2K${l}\n`;
    // a frame shorter than the last one clears what the last one left below it
    frame += '\x1b[J';
    this.drawn = lines.length;
    this.out.write(frame);
  }
}

/** `s` cut to `n` characters, controls shown as `?` so that the cursor arithmetic holds. */
function fit(s: string, n: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/\t/g, ' ').replace(/[\x00-\x1f\x7f]/g, '?');
  return clean.length <= n ? clean : clean.slice(0, Math.max(0, n - 3)) + '...';
}
