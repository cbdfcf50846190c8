/**
 * The table of a traced run's phases (capsa/stream/timings; the helper's log
 * with CAPSA_TRACE=1): each phase, when it ended (ms since the first) and
 * how long since the one before.
 *
 *   phase               at ms      +ms
 *   request parsed       0.00     0.00
 *   image resolved       0.41     0.41
 */
export function formatTimings(phases: Array<{ phase: string; ms: number }>): string {
  const width = Math.max(5, ...phases.map((p) => p.phase.length));
  const row = (a: string, b: string, c: string): string => `${a.padEnd(width)}  ${b.padStart(8)}  ${c.padStart(7)}`.trimEnd();
  const lines = [row('phase', 'at ms', '+ms')];
  let prev = phases.length ? phases[0].ms : 0;
  for (const p of phases) {
    lines.push(row(p.phase, p.ms.toFixed(2), (p.ms - prev).toFixed(2)));
    prev = p.ms;
  }
  if (phases.length) lines.push(row('total', phases[phases.length - 1].ms.toFixed(2), ''));
  return lines.join('\n') + '\n';
}
