#!/usr/bin/env node
// Runs several commands round-robin (round 1: each command once, round 2:
// each again, ...) instead of hyperfine's all runs of one command, then all
// of the next: on a shared machine the load drifts over minutes, and a
// long benchmark (pulls take seconds) would otherwise hand each tool a
// different machine. Each run may have a prepare command, run untimed just
// before it. Writes hyperfine's --export-json shape, so bench/table.js
// prints it.
//
//   node bench/interleave.js --runs N --warmup W --export-json FILE \
//     --command-name NAME [--prepare CMD] CMD  [--command-name NAME ...]
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');

function parse(argv) {
  const o = { runs: 5, warmup: 1, json: undefined, commands: [] };
  let pending = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--runs') o.runs = Number(argv[++i]);
    else if (a === '--warmup') o.warmup = Number(argv[++i]);
    else if (a === '--export-json') o.json = argv[++i];
    else if (a === '--command-name') pending.name = argv[++i];
    else if (a === '--prepare') pending.prepare = argv[++i];
    else if (a.startsWith('--')) throw new Error(`unknown flag ${a}`);
    else {
      o.commands.push({ name: pending.name ?? a, prepare: pending.prepare, command: a });
      pending = {};
    }
  }
  if (!o.json || o.commands.length === 0 || !(o.runs > 0)) throw new Error('usage: interleave.js --runs N --export-json FILE [--command-name NAME] [--prepare CMD] CMD ...');
  return o;
}

function sh(cmd, what) {
  const r = spawnSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status}): ${cmd}\n${(r.stderr ?? '').trim().split('\n').slice(-3).join('\n')}`);
}

function timed(c) {
  if (c.prepare) sh(c.prepare, `prepare of ${c.name}`);
  const t0 = process.hrtime.bigint();
  sh(c.command, c.name);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function stats(name, times) {
  const s = [...times].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  const stddev = Math.sqrt(s.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, s.length - 1));
  return { command: name, median, mean, stddev, min: s[0], max: s[s.length - 1], times };
}

const o = parse(process.argv.slice(2));
for (let w = 0; w < o.warmup; w++) for (const c of o.commands) timed(c);
const times = o.commands.map(() => []);
for (let r = 0; r < o.runs; r++) {
  o.commands.forEach((c, i) => times[i].push(timed(c)));
  process.stderr.write(`round ${r + 1}/${o.runs}: ${o.commands.map((c, i) => `${c.name} ${times[i][r].toFixed(2)} s`).join(', ')}\n`);
}
fs.writeFileSync(o.json, JSON.stringify({ results: o.commands.map((c, i) => stats(c.name, times[i])) }, null, 2));
