/**
 * `capsa build` and `capsa builder prune`, printed as the classic builder
 * prints them (`Step 1/4 : FROM …`, ` ---> Using cache`, …).
 *
 * The context: this process runs as the user, so it lists the context
 * (.dockerignore applied) and packs it as a tar with the user's own rights,
 * into a temporary file of the user's (a 0700 directory), with the code the
 * editor's workspace build uses too (server/client/buildcontext.ts). The
 * helper opens that one file with the caller's rights
 * (hostfile.openRegularFileAs), as `load -i` does, and never walks the
 * user's tree. A file rather than a
 * stream of chunks over the socket: the helper reads it at its own pace
 * (no flow control to write), and a context the user cannot read fails here,
 * naming the file, before the helper is asked anything.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InvalidArgumentError } from '../errors';
import { BuilderPruneRequest, ImageBuildOutputNotification, ImageBuildRequest, ImageBuildStepNotification } from '../protocol';
import { contextFromStdin } from '../build/stdincontext';
import { writeBuildContext } from '../client/buildcontext';
import { parseFlags, usage, type FlagSpec } from './args';
import { buildView, progressMode } from './buildprogress';
import { interruptible, newId, str, type Command } from './command';
import * as check from './validate';

const BUILD_FLAGS: FlagSpec[] = [
  { name: 'tag', short: 't', kind: 'multi', help: 'Name and optionally a tag in the name:tag format' },
  { name: 'file', short: 'f', kind: 'value', help: "Name of the Dockerfile (default: 'PATH/Dockerfile'); '-' reads standard input" },
  { name: 'build-arg', kind: 'multi', help: 'Set build-time variables' },
  { name: 'label', kind: 'multi', help: 'Set metadata for an image' },
  { name: 'target', kind: 'value', help: 'Set the target build stage to build' },
  { name: 'no-cache', kind: 'bool', help: 'Do not use cache when building the image' },
  { name: 'pull', kind: 'bool', help: 'Always attempt to pull a newer version of the image' },
  { name: 'platform', kind: 'value', help: 'Set the target platform for the build (os/arch[/variant])' },
  { name: 'quiet', short: 'q', kind: 'bool', help: 'Suppress the build output and print image ID on success' },
  { name: 'iidfile', kind: 'value', help: 'Write the image ID to the file' },
  { name: 'secret', kind: 'multi', help: 'Secret to expose to the build (format: "id=mysecret[,src=/local/secret]" or "id=X,env=VAR")' },
  { name: 'progress', kind: 'value', help: "Set type of progress output (auto, plain, tty): auto is tty on a terminal, else plain" },
  { name: 'help', kind: 'bool', help: 'Print usage' },
];

function keyValues(list: unknown, what: string): Record<string, string> | undefined {
  if (!Array.isArray(list)) return undefined;
  const out: Record<string, string> = {};
  for (const kv of list as string[]) {
    const eq = kv.indexOf('=');
    if (eq <= 0) {
      // `--build-arg NAME` takes NAME from the environment, as Docker does
      if (what === 'build-arg' && eq < 0 && process.env[kv] !== undefined) out[kv] = process.env[kv] as string;
      else if (what === 'build-arg' && eq < 0) continue;
      else throw new InvalidArgumentError(`--${what} ${JSON.stringify(kv)}: expected KEY=VALUE`);
    } else out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

/**
 * `--secret id=X[,src=FILE|,env=VAR][,type=file|env]`, as docker buildx reads
 * it: the file (read here, as the user) or the environment variable; with
 * neither, the variable named X. Content base64, by id.
 */
export function readSecrets(list: unknown, env: NodeJS.ProcessEnv = process.env): Record<string, string> | undefined {
  if (!Array.isArray(list)) return undefined;
  const out: Record<string, string> = {};
  for (const spec of list as string[]) {
    const f = new Map<string, string>();
    for (const part of spec.split(',')) {
      const eq = part.indexOf('=');
      if (eq <= 0) throw new InvalidArgumentError(`--secret ${JSON.stringify(spec)}: expected id=ID[,src=FILE|,env=VAR]`);
      const k = part.slice(0, eq).trim().toLowerCase();
      if (!['id', 'src', 'source', 'env', 'type'].includes(k)) throw new InvalidArgumentError(`--secret ${JSON.stringify(spec)}: unexpected key ${JSON.stringify(k)}`);
      f.set(k === 'source' ? 'src' : k, part.slice(eq + 1));
    }
    const type = f.get('type') ?? (f.has('src') ? 'file' : 'env');
    const id = f.get('id') ?? (type === 'file' ? f.get('src') && path.basename(f.get('src') as string) : f.get('env'));
    if (!id) throw new InvalidArgumentError(`--secret ${JSON.stringify(spec)}: id is required`);
    if (type === 'file') {
      const src = f.get('src') ?? id;
      out[id] = fs.readFileSync(path.resolve(src)).toString('base64');
    } else if (type === 'env') {
      const name = f.get('env') ?? id;
      const value = env[name];
      if (value === undefined) throw new InvalidArgumentError(`--secret ${JSON.stringify(spec)}: environment variable ${name} is not set`);
      out[id] = Buffer.from(value, 'utf8').toString('base64');
    } else throw new InvalidArgumentError(`--secret ${JSON.stringify(spec)}: type must be file or env`);
  }
  return out;
}

/** The Dockerfile `file` of a context extracted from standard input: it must be a file inside `root`, through no symlink out of it. */
function readInside(root: string, file: string): string {
  const rel = path.relative(root, path.resolve(file));
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw new InvalidArgumentError(`the Dockerfile ${JSON.stringify(rel)} is outside the build context on standard input`);
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch {
    throw new InvalidArgumentError(`Cannot locate specified Dockerfile: ${rel} (in the build context on standard input)`);
  }
  const realRel = path.relative(fs.realpathSync(root), real);
  if (realRel.startsWith('..') || path.isAbsolute(realRel) || !fs.statSync(real).isFile()) throw new InvalidArgumentError(`the Dockerfile ${JSON.stringify(rel)} of the build context on standard input is not a file inside it`);
  return fs.readFileSync(real, 'utf8');
}

/** SOURCE_DATE_EPOCH as buildx reads it: whole seconds since 1970; empty is unset. */
export function sourceDateEpoch(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^\d{1,12}$/.test(value) || Number(value) > 253402300799) throw new InvalidArgumentError(`SOURCE_DATE_EPOCH ${JSON.stringify(value.slice(0, 40))}: expected whole seconds since 1970-01-01`);
  return Number(value);
}

/** `read()` of a path the user named, read with the user's own rights: a failure names the path and the errno, not a stack. */
function userSide<T>(read: () => T, what: string): T {
  try {
    return read();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!code) throw err;
    throw new InvalidArgumentError(`${what}: ${code === 'EACCES' || code === 'EPERM' ? `permission denied for uid ${process.getuid?.() ?? '?'}` : code === 'ENOENT' ? 'no such file or directory' : code}`);
  }
}

export const build: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, BUILD_FLAGS, { stopAtPositional: false, verb: 'build' });
  if (flags.help) {
    process.stdout.write(usage('build', '[OPTIONS] PATH', BUILD_FLAGS) + '\n');
    return 0;
  }
  if (positionals.length !== 1) throw new InvalidArgumentError("'capsa build' requires exactly 1 argument: PATH (the build context) or - (standard input)");
  if (typeof flags.progress === 'string' && !['auto', 'plain', 'tty'].includes(flags.progress)) throw new InvalidArgumentError(`--progress ${flags.progress}: expected auto, plain or tty`);
  const fromStdin = positionals[0] === '-';
  if (fromStdin && flags.file === '-') throw new InvalidArgumentError("cannot read both the build context and the Dockerfile from standard input (PATH - and -f -)");
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-build-'));
  const quiet = flags.quiet === true;
  try {
    let root: string;
    let file: string;
    let dockerfile: string;
    if (fromStdin) {
      // `docker build -`: an archive is the context (its Dockerfile inside, -f relative to it), anything else the Dockerfile
      const ctx = await contextFromStdin(process.stdin, tmp);
      root = ctx.root;
      file = ctx.kind === 'dockerfile' ? '-' : path.join(root, typeof flags.file === 'string' ? flags.file : 'Dockerfile');
      dockerfile = ctx.kind === 'dockerfile' ? ctx.dockerfile : readInside(root, file);
    } else {
      root = path.resolve(positionals[0]);
      if (!userSide(() => fs.statSync(root, { throwIfNoEntry: false }), `build context ${root}`)?.isDirectory()) throw new InvalidArgumentError(`build context ${root}: not a directory`);
      file = typeof flags.file === 'string' ? flags.file : path.join(root, 'Dockerfile');
      dockerfile = file === '-' ? fs.readFileSync(0, 'utf8') : userSide(() => fs.readFileSync(path.resolve(file), 'utf8'), `Dockerfile ${path.resolve(file)}`);
    }
    const dfPath = file === '-' ? path.join(root, 'Dockerfile') : path.resolve(file);
    const tarFile = path.join(tmp, 'context.tar');
    await writeBuildContext(root, dfPath, tarFile);
    const c = await conn();
    const token = newId('build');
    const view = quiet ? undefined : buildView(progressMode(str(flags.progress), !!process.stdout.isTTY), process.stdout);
    c.onNotification(ImageBuildOutputNotification.type, (p) => {
      if (p.token === token) view?.text(p.text);
    });
    c.onNotification(ImageBuildStepNotification.type, (p) => {
      if (p.token === token) view?.event(p.event);
    });
    const buildArgs = flags['build-arg'] ? keyValues(flags['build-arg'], 'build-arg') : undefined;
    const epoch = sourceDateEpoch(buildArgs?.SOURCE_DATE_EPOCH ?? process.env.SOURCE_DATE_EPOCH);
    const params = {
      context: tarFile,
      dockerfile,
      dockerfileName: file === '-' ? 'Dockerfile' : path.basename(file),
      token,
      ...(Array.isArray(flags.tag) ? { tags: flags.tag as string[] } : {}),
      ...(buildArgs || epoch !== undefined ? { buildArgs: { ...(epoch !== undefined ? { SOURCE_DATE_EPOCH: String(epoch) } : {}), ...buildArgs } } : {}),
      ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
      ...(flags.label ? { labels: keyValues(flags.label, 'label') } : {}),
      ...(typeof flags.target === 'string' ? { target: flags.target } : {}),
      noCache: flags['no-cache'] === true,
      pull: flags.pull === true,
      ...(typeof flags.platform === 'string' ? { platform: check.checkPlatform(flags.platform) } : {}),
      ...(flags.secret ? { secrets: readSecrets(flags.secret) } : {}),
    };
    // Ctrl-C cancels the build in the helper, which kills a running step and keeps only the steps that finished
    const sent = await interruptible('build', (cancel) => c.sendRequest(ImageBuildRequest.type, params, cancel)).catch((err: unknown) => {
      view?.end(false);
      throw err;
    });
    view?.end('result' in sent);
    if (!('result' in sent)) return sent.interrupted;
    const r = sent.result;
    if (typeof flags.iidfile === 'string') fs.writeFileSync(flags.iidfile, r.id);
    if (quiet) process.stdout.write(`${r.id}\n`);
    else {
      process.stdout.write(`Successfully built ${r.id.replace(/^sha256:/, '').slice(0, 12)}\n`);
      for (const t of r.tags) process.stdout.write(`Successfully tagged ${t}\n`);
    }
    return 0;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
};

export const builder: Command = async (argv, conn) => {
  if (argv[0] !== 'prune') {
    process.stdout.write('Usage: capsa builder prune\n\nRemove the build cache\n');
    return argv.length === 0 || argv[0] === '--help' ? 0 : 1;
  }
  const c = await conn();
  const r = await c.sendRequest(BuilderPruneRequest.type, {});
  process.stdout.write(`Deleted build cache objects: ${r.entries} entries, ${r.deleted.length} images${r.cacheMounts ? `, ${r.cacheMounts} cache mounts` : ''}\n`);
  return 0;
};
