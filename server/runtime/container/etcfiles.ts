/** The /etc/hosts and /etc/resolv.conf a container gets (bind-mounted from its directory). */
import { readFileSync } from 'node:fs';

export function hostsFile(hostname: string, name: string): string {
  return [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    `127.0.1.1\t${hostname}${name !== hostname ? ` ${name}` : ''}`,
    '',
  ].join('\n');
}

/**
 * The host's resolv.conf, minus loopback name servers: a container in its
 * own network namespace cannot reach the host's 127.x stub resolver (as Docker does).
 */
export function resolvConf(hostText?: string): string {
  let text = hostText;
  if (text === undefined) {
    try {
      text = readFileSync('/etc/resolv.conf', 'utf8');
    } catch {
      text = '';
    }
  }
  const lines = text.split('\n').filter((l) => !/^\s*nameserver\s+(127\.|::1\b)/.test(l));
  return lines.join('\n').trimEnd() + '\n';
}
