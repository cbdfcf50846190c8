/** Signal names a client may give (`kill -s`, an image's StopSignal), as numbers. */
import { InvalidArgumentError } from '../../errors';

const SIGNALS: Record<string, number> = {
  HUP: 1, INT: 2, QUIT: 3, KILL: 9, USR1: 10, USR2: 12, TERM: 15, CONT: 18, STOP: 19, WINCH: 28,
};

export const SIGHUP = 1;
export const SIGKILL = 9;
export const SIGTERM = 15;

/** `TERM`, `SIGTERM`, `15` or 15 → 15; an unknown name or a number out of 1–64 is refused. */
export function signalNumber(signal: string | number): number {
  if (typeof signal === 'number' || /^\d+$/.test(signal)) {
    const n = Number(signal);
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError(`invalid signal ${signal}`);
    return n;
  }
  const n = SIGNALS[signal.toUpperCase().replace(/^SIG/, '')];
  if (n === undefined) throw new InvalidArgumentError(`invalid signal ${JSON.stringify(signal)}`);
  return n;
}

/** The image's StopSignal (SIGTERM when it has none or names one this helper does not know). */
export function stopSignalNumber(stopSignal: string | undefined): number {
  try {
    return stopSignal ? signalNumber(stopSignal) : SIGTERM;
  } catch {
    // a StopSignal this helper cannot name must not leave the container unstoppable
    return SIGTERM;
  }
}
