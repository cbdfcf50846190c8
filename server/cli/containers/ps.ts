/**
 * What a container shows: ps, logs and top (inspect: ../inspect.ts).
 */
import { ContainerListRequest, ContainerLogsRequest, ContainerTopRequest } from '../../protocol';
import { InvalidArgumentError } from '../../errors';
import { parseFlags } from '../args';
import { newId, str, type Command } from '../command';
import { formatAge, ownerColumn, table } from '../format';
import * as check from '../validate';
import { attachStreams } from './streams';

export const ps: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'all', short: 'a', kind: 'bool', help: 'Show all containers' }, { name: 'quiet', short: 'q', kind: 'bool', help: 'Only ids' }], { stopAtPositional: false, verb: 'ps' });
  check.noArguments('ps', positionals);
  const c = await conn();
  const list = await c.sendRequest(ContainerListRequest.type, { all: !!flags.all });
  if (flags.quiet) {
    process.stdout.write(list.map((x) => x.id.slice(0, 12) + '\n').join(''));
    return 0;
  }
  const rows = list.map((x) => [
    x.id.slice(0, 12),
    x.image,
    JSON.stringify(x.command.join(' ').slice(0, 20)),
    formatAge(x.created),
    x.state === 'running' ? `Up ${formatAge(x.startedAt).replace(/ ago$/, '')}` : x.state === 'exited' ? `Exited (${x.exitCode ?? 0}) ${formatAge(x.finishedAt)}` : capitalise(x.state),
    (x.ports ?? []).join(', '),
    x.name,
  ]);
  const t = ownerColumn(['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'], rows, list.map((x) => x.owner));
  process.stdout.write(table(t.header, t.rows));
  return 0;
};

export const logs: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(
    argv,
    [
      { name: 'follow', short: 'f', kind: 'bool', help: 'Follow output' },
      { name: 'tail', short: 'n', kind: 'value', help: 'Number of lines from the end' },
      { name: 'timestamps', short: 't', kind: 'bool', help: 'Show timestamps' },
    ],
    { stopAtPositional: false, verb: 'logs' },
  );
  if (positionals.length !== 1) throw new InvalidArgumentError("'capsa logs' requires exactly 1 argument: CONTAINER");
  const tail = str(flags.tail) !== undefined ? check.checkTail(str(flags.tail)!) : undefined;
  const c = await conn();
  const followAttachId = flags.follow ? newId('logs') : undefined;
  const streams = followAttachId ? attachStreams(c, followAttachId, { tty: false, interactive: false, timestamps: !!flags.timestamps }) : undefined;
  const r = await c.sendRequest(ContainerLogsRequest.type, { container: positionals[0], tail, followAttachId });
  for (const e of r.entries) {
    const out = e.stream === 'stderr' ? process.stderr : process.stdout;
    if (flags.timestamps) out.write(`${e.time} `);
    out.write(Buffer.from(e.data, 'base64'));
  }
  if (!streams) return 0;
  // what the container wrote after the logged part came while that was on its way: it follows it
  streams.start();
  await streams.done;
  return 0;
};

export const top: Command = async (argv, conn) => {
  const { positionals } = parseFlags(argv, [], { stopAtPositional: true, verb: 'top' });
  if (positionals.length < 1) throw new InvalidArgumentError("'capsa top' requires at least 1 argument: CONTAINER");
  const c = await conn();
  const r = await c.sendRequest(ContainerTopRequest.type, { container: positionals[0] });
  process.stdout.write(table(r.titles, r.processes));
  return 0;
};

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
