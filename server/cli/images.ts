/**
 * The image verbs: `capsa pull`, `images`, `rmi`, `load`, `save`,
 * `image prune` and `system df`.
 */
import * as path from 'node:path';
import * as readline from 'node:readline';
import { InvalidArgumentError } from '../errors';
import { ImageListRequest, ImageLoadRequest, ImagePruneRequest, ImagePullRequest, ImageRemoveRequest, ImageSaveRequest, SystemDfRequest, platformProblem, type ImageSummary } from '../protocol';
import { parseFlags, usage, type FlagSpec } from './args';
import { errorMessage, interruptible, newId, str, type Command } from './command';
import { formatAge, formatBytes, ownerColumn, printable, table } from './format';
import { trackPull } from './progress';
import { credentialsFor } from './login';
import * as check from './validate';

/** Docker prints familiar names: `docker.io/library/busybox:latest` → `busybox:latest`. */
function familiar(ref: string): string {
  return ref.replace(/^docker\.io\/(library\/)?/, '');
}

/** The helper runs elsewhere in the file system's eyes: send it an absolute, normalised path. */
function absolute(p: string): string {
  return path.resolve(process.cwd(), p);
}

const LOAD_FLAGS: FlagSpec[] = [
  { name: 'input', short: 'i', kind: 'value', help: 'Read from an archive file (docker save or OCI image layout tar)' },
  { name: 'quiet', short: 'q', kind: 'bool', help: 'Suppress the load output' },
  { name: 'help', kind: 'bool', help: 'Print usage' },
];

export const load: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, LOAD_FLAGS, { stopAtPositional: false, verb: 'load' });
  if (flags.help) {
    process.stdout.write(usage('load', '[OPTIONS]', LOAD_FLAGS) + '\n');
    return 0;
  }
  if (positionals.length) throw new InvalidArgumentError(`'capsa load' accepts no arguments (use -i FILE)`);
  if (typeof flags.input !== 'string' || flags.input === '') throw new InvalidArgumentError("'capsa load' needs -i FILE: reading an archive from standard input is not supported");
  const c = await conn();
  const r = await c.sendRequest(ImageLoadRequest.type, { input: absolute(flags.input) });
  if (!flags.quiet) {
    for (const img of r.images) {
      if (img.references.length === 0) process.stdout.write(`Loaded image ID: ${img.id}\n`);
      for (const ref of img.references) process.stdout.write(`Loaded image: ${printable(familiar(ref))}\n`);
    }
  }
  return 0;
};

const SAVE_FLAGS: FlagSpec[] = [
  { name: 'output', short: 'o', kind: 'value', help: 'Write to a file' },
  { name: 'help', kind: 'bool', help: 'Print usage' },
];

export const save: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, SAVE_FLAGS, { stopAtPositional: false, verb: 'save' });
  if (flags.help) {
    process.stdout.write(usage('save', '[OPTIONS] IMAGE [IMAGE...]', SAVE_FLAGS) + '\n');
    return 0;
  }
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa save' requires at least 1 argument: IMAGE");
  if (typeof flags.output !== 'string' || flags.output === '') throw new InvalidArgumentError("'capsa save' needs -o FILE: writing the archive to standard output is not supported");
  const c = await conn();
  await c.sendRequest(ImageSaveRequest.type, { images: positionals, output: absolute(flags.output) });
  return 0;
};

const PRUNE_FLAGS: FlagSpec[] = [
  { name: 'all', short: 'a', kind: 'bool', help: 'Remove all unused images, not just untagged ones' },
  { name: 'force', short: 'f', kind: 'bool', help: 'Do not prompt for confirmation' },
  { name: 'help', kind: 'bool', help: 'Print usage' },
];

export async function confirm(question: string): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
  try {
    const answer = await new Promise<string>((resolve) => {
      rl.question(question, resolve);
      rl.once('close', () => resolve(''));
    });
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

export const imagePrune: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, PRUNE_FLAGS, { stopAtPositional: false, verb: 'image prune' });
  if (flags.help) {
    process.stdout.write(usage('image prune', '[OPTIONS]', PRUNE_FLAGS) + '\n');
    return 0;
  }
  if (positionals.length) throw new InvalidArgumentError(`'capsa image prune' accepts no arguments`);
  if (!flags.force) {
    const what = flags.all ? 'all images without at least one container associated to them' : 'all dangling images';
    if (!(await confirm(`WARNING! This will remove ${what}.\nAre you sure you want to continue? [y/N] `))) return 0;
  }
  const c = await conn();
  const r = await c.sendRequest(ImagePruneRequest.type, { all: !!flags.all });
  if (r.deleted.length) {
    process.stdout.write('Deleted Images:\n');
    for (const d of r.deleted) process.stdout.write(`deleted: ${d}\n`);
    process.stdout.write('\n');
  }
  process.stdout.write(`Total reclaimed space: ${formatBytes(r.reclaimed)}\n`);
  return 0;
};

function percent(part: number, whole: number): string {
  return whole > 0 ? ` (${Math.round((part / whole) * 100)}%)` : '';
}

export const systemDf: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'help', kind: 'bool', help: 'Print usage' }], { stopAtPositional: false, verb: 'system df' });
  check.noArguments('system df', positionals);
  if (flags.help) {
    process.stdout.write('Usage: capsa system df\n\nShow disk used by images, layers, blobs and containers.\n');
    return 0;
  }
  const c = await conn();
  const r = await c.sendRequest(SystemDfRequest.type);
  const rows = [
    ['Images', String(r.images.count), String(r.images.active), formatBytes(r.images.size), formatBytes(r.images.reclaimable) + percent(r.images.reclaimable, r.images.size)],
    ['Containers', String(r.containers.count), String(r.containers.running), formatBytes(r.containers.size), formatBytes(r.containers.reclaimable) + percent(r.containers.reclaimable, r.containers.size)],
    ['Layers (unpacked)', String(r.layers.count), '', formatBytes(r.layers.size), ''],
    ['Blobs (compressed)', String(r.blobs.count), '', formatBytes(r.blobs.size), ''],
  ];
  process.stdout.write(table(['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE'], rows));
  return 0;
};

export const system: Command = async (argv, conn) => {
  const [sub, ...rest] = argv;
  if (sub === 'df') return systemDf(rest, conn);
  const help = 'Usage: capsa system COMMAND\n\nCommands:\n  df         Show disk usage\n';
  if (sub) return check.unknownSubcommand('system', sub, help);
  process.stdout.write(help);
  return 0;
};

/** `--platform`, refused here as the helper would refuse it (server/protocol/platform.ts), before anything is sent. */
function checkedPlatform(flag: unknown): string | undefined {
  const p = str(flag);
  if (p === undefined) return undefined;
  const problem = platformProblem(p);
  if (problem !== undefined) throw new InvalidArgumentError(`invalid --platform ${printable(JSON.stringify(p))}: ${problem}`);
  return p;
}


export const pull: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'platform', kind: 'value', help: 'os/arch[/variant]' }, { name: 'quiet', short: 'q', kind: 'bool', help: 'Print only the reference' }], { stopAtPositional: false, verb: 'pull' });
  if (positionals.length !== 1) throw new InvalidArgumentError("'capsa pull' requires exactly 1 argument: IMAGE");
  if (str(flags.platform) !== undefined) check.checkPlatform(str(flags.platform)!);
  // the user's own login for the image's registry, read here, as the user (./login.ts)
  const auth = await credentialsFor(positionals[0]);
  const c = await conn();
  const token = newId('pull');
  // Progress goes to stdout, as Docker's does, and only when it is a terminal.
  if (!flags.quiet) trackPull(c, token, process.stdout);
  const sent = await interruptible(`pull of ${positionals[0]}`, (cancel) =>
    c.sendRequest(ImagePullRequest.type, { reference: positionals[0], platform: checkedPlatform(flags.platform), workDoneToken: token, ...(auth ? { auth } : {}) }, cancel),
  );
  if ('interrupted' in sent) return sent.interrupted;
  const r = sent.result;
  if (!flags.quiet) {
    process.stdout.write(`Digest: ${r.manifestDigest}\n`);
    process.stdout.write(`Status: ${r.upToDate ? 'Image is up to date' : 'Downloaded newer image'} for ${r.reference}\n`);
  }
  process.stdout.write(`${r.reference}\n`);
  return 0;
};

export const images: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(
    argv,
    [
      { name: 'all', short: 'a', kind: 'bool', help: 'Show all images (default hides intermediate images)' },
      { name: 'quiet', short: 'q', kind: 'bool', help: 'Only ids' },
      { name: 'digests', kind: 'bool', help: 'Show digests' },
    ],
    { stopAtPositional: false, verb: 'images' },
  );
  if (positionals.length > 1) throw new InvalidArgumentError("'capsa images' takes at most 1 argument: REPOSITORY[:TAG]");
  const c = await conn();
  const list = shownImages(await c.sendRequest(ImageListRequest.type), { all: !!flags.all, repository: positionals[0] });
  if (flags.quiet) {
    process.stdout.write(list.map((i) => shortId(i.id) + '\n').join(''));
    return 0;
  }
  const rows: string[][] = [];
  const owners: Array<number | undefined> = [];
  for (const img of list) {
    const names = img.names.length ? img.names : ['<none>:<none>'];
    for (const n of names) {
      if (positionals[0] !== undefined && img.names.length && !matchesRepository(n, positionals[0])) continue;
      const at = n.lastIndexOf(':');
      const repo = at > 0 && !n.slice(at).includes('/') ? n.slice(0, at) : n;
      const tag = at > 0 && !n.slice(at).includes('/') ? n.slice(at + 1) : '<none>';
      const row = [repo, tag];
      if (flags.digests) row.push(img.manifestDigest);
      row.push(shortId(img.id), formatAge(img.created), formatBytes(img.size));
      rows.push(row);
      owners.push(img.owner);
    }
  }
  const t = ownerColumn(['REPOSITORY', 'TAG', ...(flags.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'], rows, owners);
  process.stdout.write(table(t.header, t.rows));
  return 0;
};

export const rmi: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'force', short: 'f', kind: 'bool', help: 'Remove even if containers use it' }], { stopAtPositional: false, verb: 'rmi' });
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa rmi' requires at least 1 argument: IMAGE");
  const c = await conn();
  let status = 0;
  for (const image of positionals) {
    try {
      const r = await c.sendRequest(ImageRemoveRequest.type, { image, force: !!flags.force });
      for (const u of r.untagged) process.stdout.write(`Untagged: ${u}\n`);
      for (const d of r.deleted) process.stdout.write(`Deleted: ${d}\n`);
    } catch (err) {
      process.stderr.write(`capsa: ${errorMessage(err)}\n`);
      status = 1;
    }
  }
  return status;
};

/**
 * The rows `docker images` shows: without `all`, an untagged image that is
 * another image's parent (a build step's, a commit's) is an intermediate
 * image and hidden; untagged leaves stay, as `<none>` (dangling). With a
 * REPOSITORY[:TAG] only images with a matching name are shown.
 */
export function shownImages(list: ImageSummary[], opts: { all: boolean; repository?: string }): ImageSummary[] {
  const parents = new Set(list.map((i) => (i.parent ? `${i.owner ?? ''}/${i.parent}` : '')));
  return list.filter((i) => {
    if (opts.repository !== undefined) return i.names.some((n) => matchesRepository(n, opts.repository!));
    return opts.all || i.names.length > 0 || !parents.has(`${i.owner ?? ''}/${i.id}`);
  });
}

/** Whether the familiar name `busybox:latest` is what `images REPOSITORY[:TAG]` asked for. */
function matchesRepository(name: string, want: string): boolean {
  const split = (n: string) => {
    const at = n.lastIndexOf(':');
    return at > 0 && !n.slice(at).includes('/') ? { repo: n.slice(0, at), tag: n.slice(at + 1) } : { repo: n, tag: undefined };
  };
  const have = split(name);
  const w = split(want);
  const repo = (r: string) => r.replace(/^(docker\.io\/)?(library\/)?/, '');
  return repo(have.repo) === repo(w.repo) && (w.tag === undefined || w.tag === have.tag);
}

function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}
