/**
 * IPv4 subnets as plain numbers: parsing, membership, overlap. Pure.
 */
import { InvalidArgumentError } from '../errors';

export interface Subnet {
  /** Network address as an unsigned 32-bit number. */
  base: number;
  prefix: number;
}

export function parseIPv4(text: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) throw new InvalidArgumentError(`invalid IPv4 address ${JSON.stringify(text)}`);
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) throw new InvalidArgumentError(`invalid IPv4 address ${JSON.stringify(text)}`);
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** `10.88.0.0/16`; host bits must be zero, and the prefix leave room for a gateway and a container (≤ /30). */
export function parseSubnet(text: string): Subnet {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  if (!m) throw new InvalidArgumentError(`invalid subnet ${JSON.stringify(text)}: expected an IPv4 CIDR such as 10.89.0.0/24`);
  const prefix = Number(m[2]);
  if (prefix < 8 || prefix > 30) throw new InvalidArgumentError(`invalid subnet ${text}: the prefix length must be between 8 and 30`);
  const addr = parseIPv4(m[1]);
  if ((addr & ~mask(prefix)) >>> 0 !== 0) throw new InvalidArgumentError(`invalid subnet ${text}: host bits are set (did you mean ${formatIPv4((addr & mask(prefix)) >>> 0)}/${prefix}?)`);
  return { base: addr, prefix };
}

export function formatSubnet(s: Subnet): string {
  return `${formatIPv4(s.base)}/${s.prefix}`;
}

export function contains(s: Subnet, addr: number): boolean {
  return (addr & mask(s.prefix)) >>> 0 === s.base;
}

export function overlaps(a: Subnet, b: Subnet): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return (a.base & mask(p)) >>> 0 === (b.base & mask(p)) >>> 0;
}

/** First usable address: the gateway by convention (Docker, podman). */
export function gatewayOf(s: Subnet): number {
  return (s.base + 1) >>> 0;
}

export function broadcastOf(s: Subnet): number {
  return (s.base | ~mask(s.prefix)) >>> 0;
}
