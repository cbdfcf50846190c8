/**
 * `capsa commit`, `diff`, `history` and `tag`: images from containers and
 * what images tell of their making, printed as Docker prints them.
 */
import { InvalidArgumentError } from '../errors';
import { ContainerCommitRequest, ContainerDiffRequest, ImageHistoryRequest, ImageTagRequest } from '../protocol';
import { parseFlags, usage, type FlagSpec } from './args';
import type { Command } from './command';
import { formatAge, formatBytes, printable, table } from './format';

const HELP: FlagSpec = { name: 'help', kind: 'bool', help: 'Print usage' };

const COMMIT_FLAGS: FlagSpec[] = [
  { name: 'author', short: 'a', kind: 'value', help: 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")' },
  { name: 'change', short: 'c', kind: 'multi', help: 'Apply Dockerfile instruction to the created image' },
  { name: 'message', short: 'm', kind: 'value', help: 'Commit message' },
  { name: 'pause', short: 'p', kind: 'bool', help: 'Pause container during commit (default true)' },
  HELP,
];

/** SOURCE_DATE_EPOCH of the CLI's environment, as reproducible-builds.org defines it (decimal seconds). */
function sourceDateEpoch(env: NodeJS.ProcessEnv): number | undefined {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,12}$/.test(raw)) throw new InvalidArgumentError(`SOURCE_DATE_EPOCH must be a whole number of seconds, got ${JSON.stringify(printable(raw.slice(0, 40)))}`);
  return Number(raw);
}

export const commit: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, COMMIT_FLAGS, { stopAtPositional: false, verb: 'commit' });
  if (flags.help) {
    process.stdout.write(usage('commit', '[OPTIONS] CONTAINER [REPOSITORY[:TAG]]', COMMIT_FLAGS) + '\n');
    return 0;
  }
  if (positionals.length < 1 || positionals.length > 2) throw new InvalidArgumentError("'capsa commit' requires at least 1 and at most 2 arguments: CONTAINER [REPOSITORY[:TAG]]");
  const epoch = sourceDateEpoch(process.env);
  const c = await conn();
  const r = await c.sendRequest(ContainerCommitRequest.type, {
    container: positionals[0],
    ...(positionals[1] ? { reference: positionals[1] } : {}),
    ...(typeof flags.author === 'string' ? { author: flags.author } : {}),
    ...(typeof flags.message === 'string' ? { message: flags.message } : {}),
    ...(Array.isArray(flags.change) ? { changes: flags.change } : {}),
    pause: flags.pause !== false,
    ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
  });
  process.stdout.write(`${r.id}\n`);
  return 0;
};

export const diff: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [HELP], { stopAtPositional: false, verb: 'diff' });
  if (flags.help) {
    process.stdout.write(usage('diff', 'CONTAINER', [HELP]) + '\n');
    return 0;
  }
  if (positionals.length !== 1) throw new InvalidArgumentError("'capsa diff' requires exactly 1 argument: CONTAINER");
  const c = await conn();
  const r = await c.sendRequest(ContainerDiffRequest.type, { container: positionals[0] });
  process.stdout.write(r.changes.map((ch) => `${ch.kind} ${printable(ch.path)}\n`).join(''));
  return 0;
};

const HISTORY_FLAGS: FlagSpec[] = [
  { name: 'human', short: 'H', kind: 'bool', help: 'Print sizes and dates in human readable format (default true)' },
  { name: 'no-trunc', kind: 'bool', help: "Don't truncate output" },
  { name: 'quiet', short: 'q', kind: 'bool', help: 'Only show image IDs' },
  HELP,
];

/** Docker's history cell: `sha256:` dropped and 12 hex digits unless --no-trunc. */
function shortImageId(id: string, noTrunc: boolean): string {
  if (id === '<missing>' || noTrunc) return id;
  return id.replace(/^sha256:/, '').slice(0, 12);
}

/** Docker cuts CREATED BY to 45 characters, ending in an ellipsis. */
export function ellipsis(s: string, max: number): string {
  const chars = [...s];
  return chars.length <= max ? s : `${chars.slice(0, max - 1).join('')}…`;
}

export const history: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, HISTORY_FLAGS, { stopAtPositional: false, verb: 'history' });
  if (flags.help) {
    process.stdout.write(usage('history', '[OPTIONS] IMAGE', HISTORY_FLAGS) + '\n');
    return 0;
  }
  if (positionals.length !== 1) throw new InvalidArgumentError("'capsa history' requires exactly 1 argument: IMAGE");
  const noTrunc = !!flags['no-trunc'];
  const human = flags.human !== false;
  const c = await conn();
  const entries = await c.sendRequest(ImageHistoryRequest.type, { image: positionals[0] });
  if (flags.quiet) {
    process.stdout.write(entries.map((e) => `${shortImageId(e.id, noTrunc)}\n`).join(''));
    return 0;
  }
  const rows = entries.map((e) => {
    const createdBy = e.createdBy.replace(/\s+/g, ' ');
    return [
      shortImageId(e.id, noTrunc),
      human ? formatAge(e.created) : (e.created ?? ''),
      noTrunc ? createdBy : ellipsis(createdBy, 45),
      human ? formatBytes(e.size) : String(e.size),
      e.comment,
    ];
  });
  process.stdout.write(table(['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'], rows));
  return 0;
};

export const tag: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [HELP], { stopAtPositional: false, verb: 'tag' });
  if (flags.help) {
    process.stdout.write(usage('tag', 'SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]', [HELP]) + '\n');
    return 0;
  }
  if (positionals.length !== 2) throw new InvalidArgumentError("'capsa tag' requires exactly 2 arguments: SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]");
  const c = await conn();
  await c.sendRequest(ImageTagRequest.type, { source: positionals[0], target: positionals[1] });
  return 0;
};
