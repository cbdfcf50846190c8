/**
 * Published ports: Docker's `-p` syntax, and the forwarder that makes them
 * work.
 *
 * Two mechanisms, as Docker with its userland proxy enabled:
 *  - DNAT in the kernel (firewall.ts) carries the traffic: bytes never cross
 *    user space, and a client on another host keeps its address (the
 *    container sees it as the peer). For the default 127.0.0.1 binding the
 *    helper turns on route_localnet on Capsa's own bridge (a per-device
 *    setting in the helper's namespace, not a host-wide one, turned off when
 *    the last such port goes) and masquerades the 127.0.0.0/8 source to the
 *    gateway, since a container cannot answer 127.0.0.1: local clients are
 *    seen as the gateway, as they were through the proxy.
 *  - A userland proxy (this file) listens on every published address and
 *    port. It holds the port, so a port that is taken fails loudly at `run`
 *    (EADDRINUSE) instead of being silently shadowed by a rule, and shows in
 *    `ss -ltnp`; and it serves what the rules do not reach: other hosts, and
 *    containers calling a published port through a host address (hairpin),
 *    when the host does not forward IPv4 (DNAT to a bridge needs forwarding,
 *    which Capsa does not turn on), and every client when neither nft nor
 *    iptables is usable. Through the proxy the container sees the gateway as
 *    the client.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { ConflictError, InvalidArgumentError } from '../../errors';
import { parseIPv4 } from '../../util/subnet';

export interface PortMapping {
  /** Address the host side listens on; default 127.0.0.1. */
  hostIp: string;
  /** 0 until bound when the user asked for a random port. */
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

export const DEFAULT_PUBLISH_IP = '127.0.0.1';

function port(text: string, what: string, spec: string, allowZero: boolean): number {
  if (!/^\d{1,5}$/.test(text)) throw new InvalidArgumentError(`invalid port mapping ${JSON.stringify(spec)}: ${what} ${JSON.stringify(text)} is not a number`);
  const n = Number(text);
  if (n > 65535 || (n === 0 && !allowZero)) throw new InvalidArgumentError(`invalid port mapping ${JSON.stringify(spec)}: ${what} ${n} is out of range 1-65535`);
  return n;
}

/** `[IP:][HOSTPORT:]CTRPORT[/tcp|udp]`; a missing or empty HOSTPORT means a random free port. */
export function parsePublish(spec: string): PortMapping {
  if (typeof spec !== 'string' || spec.length === 0) throw new InvalidArgumentError('a port mapping must be a non-empty string');
  let rest = spec;
  let protocol: 'tcp' | 'udp' = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const p = rest.slice(slash + 1);
    if (p !== 'tcp' && p !== 'udp') throw new InvalidArgumentError(`invalid port mapping ${JSON.stringify(spec)}: protocol must be tcp or udp, not ${JSON.stringify(p)}`);
    protocol = p;
    rest = rest.slice(0, slash);
  }
  const parts = rest.split(':');
  if (parts.length > 3) throw new InvalidArgumentError(`invalid port mapping ${JSON.stringify(spec)}: expected [IP:][HOSTPORT:]CONTAINERPORT[/PROTOCOL]`);
  const containerPort = port(parts[parts.length - 1], 'container port', spec, false);
  const hostPort = parts.length >= 2 && parts[parts.length - 2] !== '' ? port(parts[parts.length - 2], 'host port', spec, true) : 0;
  let hostIp = DEFAULT_PUBLISH_IP;
  if (parts.length === 3) {
    hostIp = parts[0] === '' ? DEFAULT_PUBLISH_IP : parts[0];
    try {
      parseIPv4(hostIp);
    } catch (err) {
      throw new InvalidArgumentError(`invalid port mapping ${JSON.stringify(spec)}: ${JSON.stringify(hostIp)} is not an IPv4 address`, { cause: err });
    }
  }
  return { hostIp, hostPort, containerPort, protocol };
}

/** `127.0.0.1:8080->80/tcp`, as `docker ps` shows it. */
export function formatMapping(m: PortMapping): string {
  return `${m.hostIp}:${m.hostPort}->${m.containerPort}/${m.protocol}`;
}

/** Fails when two mappings want the same host address, port and protocol. */
export function checkDistinct(list: PortMapping[]): void {
  const seen = new Set<string>();
  for (const m of list) {
    if (m.hostPort === 0) continue;
    const key = `${m.hostIp}:${m.hostPort}/${m.protocol}`;
    if (seen.has(key)) throw new InvalidArgumentError(`host port ${key} is published twice`);
    seen.add(key);
  }
}

/** A running forwarder for one mapping. */
export interface Forwarder {
  mapping: PortMapping;
  close(): Promise<void>;
}

function inUse(m: PortMapping, err: NodeJS.ErrnoException): Error {
  const where = `${m.hostIp}:${m.hostPort}/${m.protocol}`;
  if (err.code === 'EADDRINUSE') return new ConflictError(`cannot publish ${where} -> container port ${m.containerPort}: host port ${m.hostPort} is already in use on ${m.hostIp}`);
  if (err.code === 'EADDRNOTAVAIL') return new ConflictError(`cannot publish ${where}: ${m.hostIp} is not an address of this host`);
  if (err.code === 'EACCES') return new ConflictError(`cannot publish ${where}: permission denied`);
  return new ConflictError(`cannot publish ${where}: ${err.message}`);
}

/**
 * Listens on the mapping's host address and forwards to target:containerPort.
 * Resolves once listening (with the real port when a random one was asked for).
 */
export function startForwarder(mapping: PortMapping, target: string): Promise<Forwarder> {
  return mapping.protocol === 'tcp' ? tcpForwarder(mapping, target) : udpForwarder(mapping, target);
}

function tcpForwarder(mapping: PortMapping, target: string): Promise<Forwarder> {
  const conns = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host: target, port: mapping.containerPort, noDelay: true });
    conns.add(client);
    conns.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      conns.delete(client);
      conns.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    // end → end keeps half-closed connections (a request whose client shut down its writes) working
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(inUse(mapping, err)));
    server.listen({ host: mapping.hostIp, port: mapping.hostPort, exclusive: true }, () => {
      // once listening, an accept that fails costs that client, not the helper
      server.removeAllListeners('error');
      server.on('error', () => undefined);
      const bound = { ...mapping, hostPort: (server.address() as net.AddressInfo).port };
      resolve({
        mapping: bound,
        close: () =>
          new Promise<void>((r) => {
            for (const c of conns) c.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}

/** UDP: one upstream socket per client address, so replies find their way back; idle ones expire. */
function udpForwarder(mapping: PortMapping, target: string, idleMs = 30_000): Promise<Forwarder> {
  const server = dgram.createSocket({ type: 'udp4', reuseAddr: false });
  const peers = new Map<string, { sock: dgram.Socket; timer: NodeJS.Timeout }>();
  server.on('message', (msg, rinfo) => {
    const key = `${rinfo.address}:${rinfo.port}`;
    let peer = peers.get(key);
    if (!peer) {
      const sock = dgram.createSocket('udp4');
      sock.on('message', (reply) => server.send(reply, rinfo.port, rinfo.address));
      sock.on('error', () => undefined);
      peer = { sock, timer: setTimeout(() => undefined, 0) };
      peers.set(key, peer);
    }
    const p = peer;
    clearTimeout(p.timer);
    p.timer = setTimeout(() => {
      p.sock.close();
      peers.delete(key);
    }, idleMs).unref();
    p.sock.send(msg, mapping.containerPort, target);
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(inUse(mapping, err)));
    server.bind({ address: mapping.hostIp, port: mapping.hostPort, exclusive: true }, () => {
      server.removeAllListeners('error');
      server.on('error', () => undefined);
      resolve({
        mapping: { ...mapping, hostPort: server.address().port },
        close: () =>
          new Promise<void>((r) => {
            for (const p of peers.values()) {
              clearTimeout(p.timer);
              p.sock.close();
            }
            peers.clear();
            server.close(() => r());
          }),
      });
    });
  });
}
