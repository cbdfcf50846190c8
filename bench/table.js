#!/usr/bin/env node
// Prints a hyperfine --export-json file as a table of medians and ratios
// (to the fastest and to the first command), Markdown so it can go into the
// README as it is.
'use strict';
const fs = require('node:fs');

const [file, name = ''] = process.argv.slice(2);
const { results } = JSON.parse(fs.readFileSync(file, 'utf8'));
const fmt = (s) => (s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1000).toFixed(1)} ms`);
const fastest = Math.min(...results.map((r) => r.median));
const first = results[0].median;
// p95: the spread target is p95 ≤ 2× median
const p95 = (r) => {
  const t = [...(r.times ?? [])].sort((a, b) => a - b);
  return t.length ? fmt(t[Math.min(t.length - 1, Math.floor(0.95 * t.length))]) : '-';
};
const rows = [['command', 'median', 'mean ± σ', 'min', 'p95', 'max', '× fastest', `× ${results[0].command}`]];
for (const r of results) {
  rows.push([
    r.command,
    fmt(r.median),
    `${fmt(r.mean)} ± ${fmt(r.stddev ?? 0)}`,
    fmt(r.min),
    p95(r),
    fmt(r.max),
    (r.median / fastest).toFixed(2),
    (r.median / first).toFixed(2),
  ]);
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
const line = (row) => '| ' + row.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |';
if (name) console.log(`\n${name} (${results[0].times?.length ?? '?'} runs each)\n`);
console.log(line(rows[0]));
console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
for (const row of rows.slice(1)) console.log(line(row));
