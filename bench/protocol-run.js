#!/usr/bin/env node
/**
 * What the editor pays to run a container: on one warm connection to the
 * helper, `capsa/container/run` of IMAGE CMD… with --rm, attached, timed from
 * the request to the `capsa/stream/exit` notification. Prints the median and
 * quartiles in ms, and one JSON line for the table.
 *
 *   node bench/protocol-run.js [-n RUNS] IMAGE CMD…      (CAPSA_SOCKET, CAPSA_ROOT as for the CLI)
 *   node bench/protocol-run.js --exec CONTAINER [-n RUNS] CMD…   (capsa/container/exec instead)
 *   --userns auto: runs with a user namespace, as every container of a user other than root has
 *   --network MODE: the run's network (none, host, …); the helper's default bridge otherwise
 *   --gap MS: a pause between runs (back to back by default: each run then
 *             overlaps the previous --rm container's removal, which follows its exit)
 */
const path = require('node:path');
const out = path.join(__dirname, '..', 'out', 'server');
const { connect } = require(path.join(out, 'cli', 'client.js'));
const { loadConfig } = require(path.join(out, 'config.js'));
const P = require(path.join(out, 'protocol', 'index.js'));

async function main() {
  const argv = process.argv.slice(2);
  let runs = 30;
  let exec;
  let userns;
  let network;
  let gap = 0;
  while (argv[0]?.startsWith('-')) {
    const f = argv.shift();
    if (f === '-n') runs = Number(argv.shift());
    else if (f === '--exec') exec = argv.shift();
    else if (f === '--userns') userns = argv.shift();
    else if (f === '--network') network = argv.shift();
    else if (f === '--gap') gap = Number(argv.shift());
    else throw new Error(`unknown flag ${f}`);
  }
  const c = await connect(loadConfig(), { autoStart: false });
  const waiting = new Map();
  c.onNotification(P.StreamExitNotification.type, (p) => waiting.get(p.attachId)?.(p.exitCode));
  c.onNotification(P.StreamOutputNotification.type, () => undefined);
  const once = async (i) => {
    const attachId = `bench-${i}`;
    const done = new Promise((r) => waiting.set(attachId, r));
    const t0 = process.hrtime.bigint();
    if (exec) await c.sendRequest(P.ContainerExecRequest.type, { container: exec, cmd: argv, attachId });
    else await c.sendRequest(P.ContainerRunRequest.type, { image: argv[0], cmd: argv.slice(1), rm: true, attachId, ...(userns ? { userns } : {}), ...(network ? { network } : {}) });
    const code = await done;
    if (code !== 0) throw new Error(`exit status ${code}`);
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  for (let i = 0; i < 3; i++) await once(`warm${i}`);
  const times = [];
  for (let i = 0; i < runs; i++) {
    if (gap) await new Promise((r) => setTimeout(r, gap));
    times.push(await once(i));
  }
  times.sort((a, b) => a - b);
  const q = (f) => times[Math.min(times.length - 1, Math.floor(f * times.length))];
  const label = exec ? `protocol exec ${argv.join(' ')}` : `protocol run --rm${userns ? ` --userns ${userns}` : ''}${network ? ` --network ${network}` : ''}${gap ? ` (${gap} ms apart)` : ''} ${argv.join(' ')}`;
  console.log(`${label}: median ${q(0.5).toFixed(1)} ms (q1 ${q(0.25).toFixed(1)}, q3 ${q(0.75).toFixed(1)}, p95 ${q(0.95).toFixed(1)}, min ${times[0].toFixed(1)}), ${runs} runs`);
  console.log(JSON.stringify({ label, median: q(0.5), q1: q(0.25), q3: q(0.75), p95: q(0.95), min: times[0], runs }));
  c.dispose();
  process.exit(0);
}
main().catch((e) => {
  console.error(`protocol-run: ${e.message}`);
  process.exit(1);
});
