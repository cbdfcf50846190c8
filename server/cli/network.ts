/**
 * `capsa network create|ls|rm|inspect` and `capsa port`.
 */
import { InvalidArgumentError } from '../errors';
import { ContainerInspectRequest, NetworkCreateRequest, NetworkInspectRequest, NetworkListRequest, NetworkRemoveRequest } from '../protocol';
import { parseFlags, usage, type FlagSpec } from './args';
import type { Command } from './command';
import { json, ownerColumn, table } from './format';
import * as check from './validate';
import { errorLine } from './exit';

const CREATE_FLAGS: FlagSpec[] = [
  { name: 'subnet', kind: 'value', help: 'Subnet in CIDR form, e.g. 10.90.0.0/24 (default: the next free 10.89.N.0/24)' },
  { name: 'gateway', kind: 'value', help: 'Gateway address (default: the first of the subnet)' },
  { name: 'driver', short: 'd', kind: 'value', help: 'Only bridge is supported' },
  { name: 'help', kind: 'bool', help: 'Print usage' },
];

const SUBCOMMANDS = ['create', 'ls', 'list', 'rm', 'remove', 'inspect'];

export const network: Command = async (argv, conn) => {
  const [sub, ...rest] = argv;
  if (!sub || !SUBCOMMANDS.includes(sub)) {
    const help = 'Usage: capsa network COMMAND\n\nCommands:\n  create     Create a network\n  ls         List networks\n  rm         Remove one or more networks\n  inspect    Show details of networks\n';
    if (sub) return check.unknownSubcommand('network', sub, help);
    process.stdout.write(help);
    return 0;
  }
  if (sub === 'create') {
    const { flags, positionals } = parseFlags(rest, CREATE_FLAGS, { stopAtPositional: false, verb: 'network create' });
    if (flags.help) {
      process.stdout.write(usage('network create', '[OPTIONS] NETWORK', CREATE_FLAGS) + '\n');
      return 0;
    }
    if (positionals.length !== 1) throw new InvalidArgumentError("'capsa network create' requires exactly 1 argument: NETWORK");
    if (flags.driver !== undefined && flags.driver !== 'bridge') throw new InvalidArgumentError(`network driver ${check.shown(String(flags.driver))} is not supported: only bridge`);
    check.checkObjectName('network', positionals[0]);
    if (typeof flags.subnet === 'string') check.checkSubnet(flags.subnet);
    if (typeof flags.gateway === 'string') check.checkGateway(flags.gateway);
    const c = await conn();
    const n = await c.sendRequest(NetworkCreateRequest.type, { name: positionals[0], subnet: flags.subnet as string | undefined, gateway: flags.gateway as string | undefined });
    process.stdout.write(`${n.id}\n`);
    return 0;
  }
  if (sub === 'ls' || sub === 'list') {
    const { flags, positionals } = parseFlags(rest, [{ name: 'quiet', short: 'q', kind: 'bool', help: 'Only ids' }], { stopAtPositional: false, verb: 'network ls' });
    check.noArguments('network ls', positionals);
    const c = await conn();
    const list = await c.sendRequest(NetworkListRequest.type);
    if (flags.quiet) process.stdout.write(list.map((n) => n.id.slice(0, 12) + '\n').join(''));
    else {
      const t = ownerColumn(['NETWORK ID', 'NAME', 'DRIVER', 'SUBNET', 'GATEWAY', 'BRIDGE'], list.map((n) => [n.id.slice(0, 12), n.name, 'bridge', n.subnet, n.gateway, n.bridge]), list.map((n) => n.owner));
      process.stdout.write(table(t.header, t.rows));
    }
    return 0;
  }
  if (rest.length === 0) throw new InvalidArgumentError(`'capsa network ${sub}' requires at least 1 argument: NETWORK`);
  const c = await conn();
  if (sub === 'inspect') {
    const out = [];
    for (const name of rest) out.push(await c.sendRequest(NetworkInspectRequest.type, { network: name }));
    process.stdout.write(json(out) + '\n');
    return 0;
  }
  let status = 0;
  for (const name of rest) {
    try {
      await c.sendRequest(NetworkRemoveRequest.type, { network: name });
      process.stdout.write(`${name}\n`);
    } catch (err) {
      process.stderr.write(`capsa: ${errorLine(err)}\n`);
      status = 1;
    }
  }
  return status;
};

/** `capsa port CONTAINER [PRIVATE_PORT[/PROTO]]`, printed as Docker does. */
export const port: Command = async (argv, conn) => {
  const [container, filter] = argv;
  if (!container || argv.length > 2) throw new InvalidArgumentError("'capsa port' requires 1 or 2 arguments: CONTAINER [PRIVATE_PORT[/PROTO]]");
  if (filter !== undefined && !/^([1-9]\d{0,4})(\/(tcp|udp))?$/.test(filter) || Number(filter?.split('/')[0]) > 65535) {
    throw new InvalidArgumentError(`invalid port ${check.shown(filter!)}: expected PRIVATE_PORT[/tcp|udp] with a port from 1 to 65535`);
  }
  const c = await conn();
  const info = await c.sendRequest(ContainerInspectRequest.type, { container });
  const ports = Object.entries(info.networkSettings?.ports ?? {});
  if (filter !== undefined) {
    const key = filter.includes('/') ? filter : `${filter}/tcp`;
    const hit = ports.find(([k]) => k === key);
    if (!hit) {
      process.stderr.write(`capsa: no public port '${key}' published for ${container}\n`);
      return 1;
    }
    process.stdout.write(`${hit[1]}\n`);
    return 0;
  }
  for (const [k, v] of ports) process.stdout.write(`${k} -> ${v}\n`);
  return 0;
};
