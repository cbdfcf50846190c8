#!/usr/bin/env node
// A TCP relay through a Unix socket, for bench/run-users.sh: the benchmark
// runs in a network namespace of its own, and the local registry listens on
// the host's loopback. A Unix socket is reached by its path from any network
// namespace, so two halves carry it across without touching the host's
// network (no route, no firewall rule):
//
//   node relay.js listen-unix SOCKET HOST PORT   (host side) SOCKET -> HOST:PORT
//   node relay.js listen-tcp HOST PORT SOCKET    (namespace side) HOST:PORT -> SOCKET
'use strict';
const net = require('node:net');
const fs = require('node:fs');

const [mode, a, b, c] = process.argv.slice(2);
const pipe = (from, connectTo) => {
  const to = net.connect(connectTo);
  from.pipe(to).pipe(from);
  // either end failing ends both: a half-open relay would hang the client
  const end = () => { from.destroy(); to.destroy(); };
  from.on('error', end);
  to.on('error', end);
};
let server;
if (mode === 'listen-unix' && c) {
  fs.rmSync(a, { force: true });
  server = net.createServer((s) => pipe(s, { host: b, port: Number(c) })).listen(a);
} else if (mode === 'listen-tcp' && c) {
  server = net.createServer((s) => pipe(s, { path: c })).listen(Number(b), a);
} else {
  console.error('usage: relay.js listen-unix SOCKET HOST PORT | listen-tcp HOST PORT SOCKET');
  process.exit(2);
}
server.on('error', (err) => { console.error(`relay: ${err.message}`); process.exit(1); });
server.on('listening', () => console.log('listening'));
process.on('SIGTERM', () => process.exit(0));
