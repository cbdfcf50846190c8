#!/usr/bin/env node
/**
 * What hostile sizes and files cost the helper: for each oversized input
 * (a registry, a token server, an archive, a flag that sends more than its
 * limit), the helper's peak and settled RSS above its idle level, from
 * /proc/PID/status (VmHWM, reset before each case through clear_refs, and
 * VmRSS), printed beside the limit that input passes; then how long
 * `image/list` takes to answer while 6 other clients each ask to load a
 * FIFO that never writes.
 *
 * Self-contained: it starts its own registry (Debian's docker-registry on
 * 127.0.0.1), a front server before it that answers the hostile paths, a
 * token server, and its own helper on a temporary root, as the tests do
 * (out/test/helpers), and stops them all. Run as root after `npx tsc -p .`:
 *
 *   node bench/hostile-memory.js [--json]
 */
const { execFileSync, spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const out = path.join(__dirname, '..', 'out');
const { startHelper, connectProtocol, REPO_ROOT } = require(path.join(out, 'test', 'helpers', 'capsa.js'));
const { startRegistry } = require(path.join(out, 'test', 'helpers', 'registry.js'));
const { seedBusybox } = require(path.join(out, 'test', 'helpers', 'oci.js'));
const P = require(path.join(out, 'server', 'protocol', 'index.js'));
const { LIMITS, formatLimit } = require(path.join(out, 'server', 'limits.js'));

const MiB = 1024 * 1024;

function memory(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (f) => Number(new RegExp(`^${f}:\\s+(\\d+) kB$`, 'm').exec(status)[1]) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

async function stream(res, total, fill = 0x61) {
  const chunk = Buffer.alloc(256 * 1024, fill);
  let sent = 0;
  while (sent < total && !res.destroyed) {
    const n = Math.min(chunk.length, total - sent);
    sent += n;
    if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
      await new Promise((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
  }
  res.end();
}

async function serve(handler) {
  const server = http.createServer(handler);
  const sockets = new Set();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${server.address().port}`,
    stop: () => new Promise((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

async function main() {
  const json = process.argv.includes('--json');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-bench-hostile-'));
  const registry = await startRegistry();
  const cleanups = [() => registry.stop(), () => fs.rmSync(work, { recursive: true, force: true })];
  try {
    const busybox = await seedBusybox(registry);
    const manifest = JSON.parse(busybox.manifest.toString('utf8'));
    const configDigest = 'sha256:' + crypto.createHash('sha256').update('a config that never ends').digest('hex');
    const configSize = Math.floor(1.1 * 1024 * MiB);
    const token = await serve((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"token":"');
      void stream(res, 300 * MiB);
    });
    cleanups.push(() => token.stop());
    const upstream = new URL(registry.url);
    const front = await serve((req, res) => {
      const p = (req.url || '').split('?')[0];
      if (p === '/v2/big/manifest/manifests/latest') {
        res.writeHead(200, { 'content-type': 'application/vnd.docker.distribution.manifest.v2+json' });
        return void stream(res, 64 * MiB, 0x20);
      }
      if (p === '/v2/big/index/manifests/latest') {
        res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json' });
        res.write('{"schemaVersion":2,"manifests":[');
        return void stream(res, 64 * MiB, 0x20);
      }
      if (p === '/v2/big/config/manifests/latest') {
        res.writeHead(200, { 'content-type': 'application/vnd.docker.distribution.manifest.v2+json' });
        return void res.end(JSON.stringify({ ...manifest, config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: configDigest, size: configSize } }));
      }
      if (p === `/v2/big/config/blobs/${configDigest}`) {
        res.writeHead(200, { 'content-length': String(configSize) });
        return void stream(res, configSize, 0x7b);
      }
      if (p === '/v2/big/error/manifests/latest') {
        res.writeHead(400, { 'content-type': 'application/json' });
        return void stream(res, 2048 * MiB, 0x20);
      }
      if (p.startsWith('/v2/big/token/')) {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${token.host}/token",service="front"` });
        return void res.end();
      }
      const up = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent: false }, (r) => {
        res.writeHead(r.statusCode || 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    cleanups.push(() => front.stop());

    const h = await startHelper({});
    cleanups.unshift(() => h.stop());
    const pid = h.process.pid;
    const conn = await connectProtocol(h.socket);
    cleanups.unshift(() => conn.dispose());
    await conn.sendRequest(P.ImageListRequest.type);
    await conn.sendRequest(P.ImagePullRequest.type, { reference: `${registry.host}/library/busybox:latest` });
    const idle = memory(pid).rss;

    const dirInput = path.join(work, 'dir');
    fs.mkdirSync(dirInput);
    const bigArchive = path.join(work, 'big-index.tar');
    writeOciArchiveWithBigIndex(bigArchive);
    const pull = (ref) => () => conn.sendRequest(P.ImagePullRequest.type, { reference: `${front.host}/${ref}` });
    const load = (input) => () => conn.sendRequest(P.ImageLoadRequest.type, { input });
    const cases = [
      ['manifest, 64 MiB chunked', LIMITS.manifest, pull('big/manifest:latest')],
      ['index, 64 MiB chunked', LIMITS.index, pull('big/index:latest')],
      ['config claiming 1.1 GiB', LIMITS.config, pull('big/config:latest')],
      ['token response, 300 MiB', LIMITS.tokenResponse, pull('big/token:latest')],
      ['error body, up to 2 GiB', LIMITS.errorBody, pull('big/error:latest')],
      ['archive index.json, 5 MiB', LIMITS.index, load(bigArchive)],
      ['load of /dev/zero', undefined, load('/dev/zero')],
      ['load of a directory', undefined, load(dirInput)],
    ];
    const rows = [];
    for (const [name, limit, act] of cases) {
      fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
      const before = memory(pid).rss;
      const t0 = process.hrtime.bigint();
      let error = '';
      try {
        await act();
        error = 'accepted (!)';
      } catch (err) {
        error = err.message;
      }
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      await new Promise((r) => setTimeout(r, 200));
      const after = memory(pid);
      rows.push({ case: name, limit: limit ? `${limit.name} ${formatLimit(limit.bytes)}` : 'not a regular file', peakMiB: (after.hwm - before) / MiB, settledMiB: (after.rss - idle) / MiB, ms, error });
    }

    // The warm CLI reading --env-file /dev/zero.
    rows.push(await envFileCase(h, registry));

    // image/list while 6 clients load FIFOs that never write.
    const fifos = Array.from({ length: 6 }, (_, i) => path.join(work, `fifo${i}`));
    for (const f of fifos) execFileSync('mkfifo', [f]);
    const conns = await Promise.all(fifos.map(() => connectProtocol(h.socket)));
    const lists = [];
    for (let round = 0; round < 10; round++) {
      const loads = fifos.map((f, i) => conns[i].sendRequest(P.ImageLoadRequest.type, { input: f }).catch((e) => e.message));
      const t0 = process.hrtime.bigint();
      await conn.sendRequest(P.ImageListRequest.type);
      lists.push(Number(process.hrtime.bigint() - t0) / 1e6);
      // Without a limit on the wait, a helper that blocks would hang the benchmark: release the FIFOs.
      const release = setTimeout(() => fifos.forEach((f) => fs.closeSync(fs.openSync(f, fs.constants.O_RDWR | fs.constants.O_NONBLOCK))), 5000);
      await Promise.all(loads);
      clearTimeout(release);
    }
    for (const c of conns) c.dispose();
    lists.sort((a, b) => a - b);
    const list = { medianMs: lists[Math.floor(lists.length / 2)], maxMs: lists[lists.length - 1], limitMs: 1000 };
    const final = memory(pid);
    const same = h.process.exitCode === null && h.process.pid === pid;

    if (json) {
      console.log(JSON.stringify({ bench: 'hostile-memory', idleMiB: idle / MiB, rows, list, finalRssMiB: final.rss / MiB, sameHelper: same }));
      return;
    }
    console.log(`helper idle RSS ${(idle / MiB).toFixed(1)} MiB`);
    console.log(['case'.padEnd(34), 'limit'.padEnd(26), 'peak +MiB'.padStart(10), 'settled +MiB'.padStart(13), 'ms'.padStart(8), '  answer'].join(''));
    for (const r of rows) {
      console.log([r.case.padEnd(34), r.limit.padEnd(26), r.peakMiB.toFixed(1).padStart(10), r.settledMiB.toFixed(1).padStart(13), r.ms.toFixed(0).padStart(8), '  ' + r.error.slice(0, 110)].join(''));
    }
    console.log(`image/list with 6 clients loading FIFOs that never write: median ${list.medianMs.toFixed(1)} ms, max ${list.maxMs.toFixed(1)} ms (limit ${list.limitMs} ms)`);
    console.log(`helper after all cases: RSS ${(final.rss / MiB).toFixed(1)} MiB (idle ${(idle / MiB).toFixed(1)}), same process: ${same ? 'yes' : 'NO'}`);
  } finally {
    for (const c of cleanups) await Promise.resolve(c()).catch(() => undefined);
  }
}

/** An OCI layout archive whose index.json is 5 MiB of valid JSON. */
function writeOciArchiveWithBigIndex(file) {
  const header = (name, size) => {
    const b = Buffer.alloc(512);
    b.write(name, 0);
    b.write('0000644\0', 100);
    b.write('0000000\0', 108);
    b.write('0000000\0', 116);
    b.write(size.toString(8).padStart(11, '0') + '\0', 124);
    b.write('00000000000\0', 136);
    b.write('        ', 148);
    b.write('0', 156);
    b.write('ustar\0', 257);
    b.write('00', 263);
    let sum = 0;
    for (const x of b) sum += x;
    b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    return b;
  };
  const entry = (name, content) => [header(name, content.length), content, Buffer.alloc((512 - (content.length % 512)) % 512)];
  const index = Buffer.concat([Buffer.from('{"schemaVersion":2,"manifests":[]'), Buffer.alloc(5 * MiB, 0x20), Buffer.from('}')]);
  fs.writeFileSync(file, Buffer.concat([...entry('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}')), ...entry('index.json', index), Buffer.alloc(1024)]));
}

/** `capsa run --env-file /dev/zero` through the compiled client: the largest RSS of any warm CLI process meanwhile. */
async function envFileCase(h, registry) {
  const warm = () => {
    const pids = [];
    for (const p of fs.readFileSync(`/proc/${h.process.pid}/task/${h.process.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) {
      try {
        if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes('--warm')) pids.push(Number(p));
      } catch {
        // gone
      }
    }
    return pids;
  };
  for (let i = 0; i < 100 && warm().length === 0; i++) await new Promise((r) => setTimeout(r, 100));
  const idle = Math.max(0, ...warm().map((p) => memory(p).rss));
  let peak = idle;
  const sampler = setInterval(() => {
    for (const p of warm()) {
      try {
        peak = Math.max(peak, memory(p).hwm);
      } catch {
        // exited
      }
    }
  }, 20);
  const t0 = process.hrtime.bigint();
  const stderr = await new Promise((resolve) => {
    const c = spawn(path.join(REPO_ROOT, 'bin', 'capsa'), ['run', '--rm', '--env-file', '/dev/zero', `${registry.host}/library/busybox:latest`, 'true'], { env: h.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => (err += d));
    c.on('close', () => resolve(err.trim()));
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  clearInterval(sampler);
  const settled = Math.max(0, ...warm().map((p) => memory(p).rss));
  return { case: 'warm CLI: --env-file /dev/zero', limit: `${LIMITS.envFile.name} ${formatLimit(LIMITS.envFile.bytes)}`, peakMiB: (peak - idle) / MiB, settledMiB: (settled - idle) / MiB, ms, error: stderr };
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
