#!/usr/bin/env node
// Run in Container, timed the way a user feels it: from invoking the command
// to the script's first output line. Speaks the protocol calls the extension
// makes (list the workspace container; if there is none, run the keep-alive
// container with the workspace bind-mounted, pulling the image; then exec the
// script with a pty) against a helper that is already running, and does the
// same with `podman run --rm -v WS:/workspaces/x IMAGE sh hello.sh`.
//   node bench/editor-run.js IMAGE [COLD_RUNS] [WARM_RUNS]
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const repo = path.resolve(__dirname, '..');
const { createMessageConnection, StreamMessageReader, StreamMessageWriter } = require(path.join(repo, 'node_modules', 'vscode-jsonrpc', 'node'));
const P = require(path.join(repo, 'out', 'server', 'protocol'));

const [image, coldRuns = '5', warmRuns = '10'] = process.argv.slice(2);
if (!image) throw new Error('usage: editor-run.js IMAGE [COLD_RUNS] [WARM_RUNS]');
const registry = image.split('/')[0];
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-bench-editor-'));
const ws = path.join(work, 'sample');
fs.mkdirSync(ws);
fs.writeFileSync(path.join(ws, 'hello.sh'), 'echo "hello from $(hostname)"\n');
const KEEP_ALIVE = ['/bin/sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done'];
const cgroupParent = `capsa-bench-editor-${process.pid}`;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function startHelper(root) {
  const socket = path.join(root, 'capsa.sock');
  fs.mkdirSync(root, { recursive: true });
  const env = { ...process.env, CAPSA_ROOT: path.join(root, 'root'), CAPSA_SOCKET: socket, CAPSA_CONFIG: path.join(root, 'config.json'), CAPSA_REGISTRY_MIRROR: `docker.io=http://${registry}`, CAPSA_CGROUP_PARENT: cgroupParent };
  fs.writeFileSync(env.CAPSA_CONFIG, '{}');
  const child = spawn(process.execPath, [path.join(repo, 'out', 'server', 'main.js')], { env, stdio: ['ignore', 'ignore', fs.openSync(path.join(root, 'helper.log'), 'a')] });
  for (let i = 0; i < 400; i++) {
    const s = net.connect(socket);
    const ok = await new Promise((r) => { s.once('connect', () => r(true)); s.once('error', () => r(false)); });
    if (ok) {
      const conn = createMessageConnection(new StreamMessageReader(s), new StreamMessageWriter(s));
      conn.listen();
      const stop = async () => {
        const list = await conn.sendRequest(P.ContainerListRequest.type, { all: true });
        for (const c of list) await conn.sendRequest(P.ContainerRemoveRequest.type, { container: c.id, force: true }).catch(() => undefined);
        conn.dispose();
        s.destroy();
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      };
      return { conn, stop };
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`helper did not start (${root}/helper.log)`);
}

/** The extension's sequence; resolves with ms from the call to the first output line. */
async function runInContainer(conn) {
  const t0 = process.hrtime.bigint();
  const name = 'capsa-sample-bench';
  const all = await conn.sendRequest(P.ContainerListRequest.type, { all: true });
  let container = all.find((c) => c.name === name && c.state === 'running')?.id;
  if (!container) {
    ({ id: container } = await conn.sendRequest(P.ContainerRunRequest.type, { image, name, entrypoint: [], cmd: KEEP_ALIVE, volumes: [`${ws}:/workspaces/sample`], workdir: '/workspaces/sample' }));
  }
  const attachId = `bench-${Date.now()}-${Math.random()}`;
  let text = '';
  const first = new Promise((resolve, reject) => {
    const a = conn.onNotification(P.StreamOutputNotification.type, (p) => {
      if (p.attachId !== attachId) return;
      text += Buffer.from(p.data, 'base64').toString();
      if (text.includes('\n')) {
        a.dispose();
        resolve(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    });
    const e = conn.onNotification(P.StreamExitNotification.type, (p) => {
      if (p.attachId !== attachId) return;
      e.dispose();
      if (!text.includes('\n')) reject(new Error(`exited ${p.exitCode} before a line: ${p.error ?? text}`));
    });
  });
  await conn.sendRequest(P.ContainerExecRequest.type, { container, cmd: ['sh', '-c', 'sh hello.sh'], workdir: '/workspaces/sample', env: ['TERM=xterm-256color'], tty: true, interactive: true, size: { rows: 24, cols: 80 }, attachId });
  const ms = await first;
  if (!/hello from/.test(text)) throw new Error(`unexpected output ${JSON.stringify(text)}`);
  return ms;
}

function podmanFirstLine() {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('podman', ['run', '--rm', '--tls-verify=false', '--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '-v', `${ws}:/workspaces/x`, '-w', '/workspaces/x', image, 'sh', 'hello.sh'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let ms;
    child.stdout.on('data', (d) => {
      out += d;
      if (ms === undefined && out.includes('\n')) ms = Number(process.hrtime.bigint() - t0) / 1e6;
    });
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => (ms !== undefined && /hello from/.test(out) ? resolve(ms) : reject(new Error(`podman exited ${code}: ${err}`))));
  });
}

(async () => {
  const results = {};
  const cold = [];
  for (let i = 0; i < Number(coldRuns); i++) {
    const h = await startHelper(path.join(work, `cold-${i}`)); // a fresh root: the image is not there
    try {
      cold.push(await runInContainer(h.conn));
    } finally {
      await h.stop();
    }
  }
  results['capsa Run in Container, cold (pull + create + exec)'] = cold;
  const h = await startHelper(path.join(work, 'warm'));
  const warm = [];
  try {
    await runInContainer(h.conn); // creates the warm container
    for (let i = 0; i < Number(warmRuns); i++) warm.push(await runInContainer(h.conn));
  } finally {
    await h.stop();
  }
  results['capsa Run in Container, warm (exec in the workspace container)'] = warm;

  let havePodman = true;
  try {
    execFileSync('podman', ['--version'], { stdio: 'ignore' });
  } catch {
    havePodman = false;
    console.log('skip: podman is not installed');
  }
  if (havePodman) {
    const pcold = [];
    for (let i = 0; i < Number(coldRuns); i++) {
      try { execFileSync('podman', ['rmi', '-f', image], { stdio: 'ignore' }); } catch { /* not there */ }
      pcold.push(await podmanFirstLine());
    }
    results['podman run --rm -v, cold (pull + run)'] = pcold;
    const pwarm = [];
    for (let i = 0; i < Number(warmRuns); i++) pwarm.push(await podmanFirstLine());
    results['podman run --rm -v, image present'] = pwarm;
  }
  console.log(`\n| ${'to the first output line'.padEnd(66)} | median ms | runs |`);
  console.log(`|${'-'.repeat(68)}|----------:|-----:|`);
  for (const [label, xs] of Object.entries(results)) console.log(`| ${label.padEnd(66)} | ${median(xs).toFixed(0).padStart(9)} | ${String(xs.length).padStart(4)} |`);
  console.log(`\nall samples (ms): ${JSON.stringify(Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.map((x) => Math.round(x))])))}`);
  for (const c of ['', ...fs.readdirSync('/sys/fs/cgroup')]) {
    try {
      fs.rmdirSync(path.join('/sys/fs/cgroup', c, cgroupParent));
    } catch {
      // not created under this controller
    }
  }
  fs.rmSync(work, { recursive: true, force: true });
})().catch((err) => {
  console.error(`editor-run: ${err.stack ?? err}`);
  process.exit(1);
});
