/**
 * The files that name things inside a container: /etc/hosts (its own name,
 * id and address; on user-defined networks its peers too) and
 * /etc/resolv.conf. Content builders are pure.
 */
import { readFileSync } from 'node:fs';

export interface HostEntry {
  address: string;
  names: string[];
}

/** /etc/hosts: loopback entries, then the container itself, then its peers. */
export function hostsFile(self: HostEntry | undefined, peers: HostEntry[] = []): string {
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback'];
  for (const e of [...(self ? [self] : []), ...peers]) lines.push(`${e.address}\t${[...new Set(e.names)].join(' ')}`);
  return lines.join('\n') + '\n';
}

const LOOPBACK_NS = /^\s*nameserver\s+(127\.|::1\s*$)/;

/** Upstream resolvers systemd-resolved writes for programs that must bypass its stub. */
const UPSTREAM_FILES = ['/run/systemd/resolve/resolv.conf'];

/** Docker's fallback when the host knows only loopback resolvers. */
const FALLBACK_DNS = ['8.8.8.8', '8.8.4.4'];

/**
 * resolv.conf for a container in its own network namespace, Docker's way: the
 * host's file without loopback name servers (a 127.x stub cannot be reached
 * from the container); if none is left, the stub's upstream servers, then
 * public ones. `dns` replaces the name servers altogether.
 */
export function containerResolvConf(opts: { dns?: string[]; host?: string; readFile?: (p: string) => string | undefined } = {}): string {
  const read = opts.readFile ?? ((p: string) => {
    try {
      return readFileSync(p, 'utf8');
    } catch {
      // no host file to copy from: the caller's defaults stand
      return undefined;
    }
  });
  const host = opts.host ?? read('/etc/resolv.conf') ?? '';
  const others = host.split('\n').filter((l) => !/^\s*nameserver\s/.test(l) && l.trim() !== '');
  let servers: string[];
  if (opts.dns && opts.dns.length) {
    servers = opts.dns;
  } else {
    servers = nameservers(host).filter((s) => !LOOPBACK_NS.test(`nameserver ${s}`));
    for (const f of UPSTREAM_FILES) {
      if (servers.length) break;
      servers = nameservers(read(f) ?? '').filter((s) => !LOOPBACK_NS.test(`nameserver ${s}`));
    }
    if (!servers.length) servers = FALLBACK_DNS;
  }
  return [...others, ...servers.map((s) => `nameserver ${s}`)].join('\n') + '\n';
}

function nameservers(text: string): string[] {
  return text
    .split('\n')
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((s): s is string => !!s);
}
