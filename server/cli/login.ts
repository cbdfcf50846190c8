/**
 * `capsa login` / `capsa logout` and `capsa push`, as Docker's. Login asks
 * the helper to check the credentials against the registry (image/login:
 * it speaks HTTP, Basic or Bearer), then keeps them in the calling user's
 * own Docker config or credential helper (./dockerconfig); the helper keeps
 * nothing. Push (and pull, in ./images) send the user's credentials for the
 * image's registry with the request, as Docker's X-Registry-Auth.
 */
import * as readline from 'node:readline';
import { ProgressType, type MessageConnection } from 'vscode-jsonrpc/node';
import { InvalidArgumentError } from '../errors';
import { ImageLoginRequest, ImagePushRequest, type PushProgress, type RegistryAuth } from '../protocol';
import { parseFlags, usage, type FlagSpec } from './args';
import { interruptible, newId, str, type Command } from './command';
import { printable } from './format';
import { eraseCredentials, lookupCredentials, referenceHost, registryHost, storeCredentials } from './dockerconfig';

const LOGIN_FLAGS: FlagSpec[] = [
  { name: 'username', short: 'u', kind: 'value', help: 'Username' },
  { name: 'password', short: 'p', kind: 'value', help: 'Password' },
  { name: 'password-stdin', kind: 'bool', help: 'Take the password from stdin' },
  { name: 'help', kind: 'bool', help: 'Print usage' },
];

/** Must match the protocol's bound (protocol/images.ts registryAuth): refused here before anything is sent. */
const MAX_PASSWORD = 16384;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of process.stdin) {
    chunks.push(c as Buffer);
    n += (c as Buffer).length;
    if (n > MAX_PASSWORD + 2) throw new InvalidArgumentError(`the password on stdin is longer than ${MAX_PASSWORD} characters`);
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** One line typed at the terminal; `hidden` echoes nothing (a password). */
async function prompt(question: string, hidden: boolean): Promise<string> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: true });
  if (hidden) (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = (s: string) => void (s === question ? process.stdout.write(s) : undefined);
  try {
    return await new Promise<string>((resolve) => {
      rl.question(question, resolve);
      rl.once('close', () => resolve(''));
    });
  } finally {
    rl.close();
    if (hidden) process.stdout.write('\n');
  }
}

export const login: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, LOGIN_FLAGS, { stopAtPositional: false, verb: 'login' });
  if (flags.help) {
    process.stdout.write(usage('login', '[OPTIONS] [SERVER]', LOGIN_FLAGS) + '\n');
    return 0;
  }
  if (positionals.length > 1) throw new InvalidArgumentError("'capsa login' takes at most 1 argument: SERVER");
  const host = registryHost(positionals[0] ?? 'docker.io');
  let username = str(flags.username);
  let password = str(flags.password);
  if (password !== undefined && flags['password-stdin']) throw new InvalidArgumentError('--password and --password-stdin are mutually exclusive');
  if (password !== undefined) process.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
  if (flags['password-stdin']) {
    if (!username) throw new InvalidArgumentError('Must provide --username with --password-stdin');
    password = await readStdin();
  }
  if (username === undefined || password === undefined) {
    if (!process.stdin.isTTY) throw new InvalidArgumentError('Cannot perform an interactive login from a non TTY device');
    username ??= (await prompt('Username: ', false)).trim();
    password ??= await prompt('Password: ', true);
  }
  if (!username) throw new InvalidArgumentError('Error: Non-null Username Required');
  if (password === '') throw new InvalidArgumentError('Error: Password Required');
  if (password.length > MAX_PASSWORD) throw new InvalidArgumentError(`the password is longer than ${MAX_PASSWORD} characters`);
  const c = await conn();
  await c.sendRequest(ImageLoginRequest.type, { registry: host, auth: { username, password } });
  const where = await storeCredentials(host, { username, password });
  if (!where.helper) process.stderr.write(`WARNING! Your password will be stored unencrypted in ${where.file}.\n`);
  process.stdout.write('Login Succeeded\n');
  return 0;
};

export const logout: Command = async (argv) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'help', kind: 'bool', help: 'Print usage' }], { stopAtPositional: false, verb: 'logout' });
  if (flags.help) {
    process.stdout.write('Usage: capsa logout [SERVER]\n\nLog out from a registry (docker.io when none is given).\n');
    return 0;
  }
  if (positionals.length > 1) throw new InvalidArgumentError("'capsa logout' takes at most 1 argument: SERVER");
  const host = registryHost(positionals[0] ?? 'docker.io');
  if (await eraseCredentials(host)) process.stdout.write(`Removing login credentials for ${host === 'docker.io' ? 'https://index.docker.io/v1/' : host}\n`);
  else process.stdout.write(`Not logged in to ${host}\n`);
  return 0;
};

/** The user's credentials for the registry of `reference`, to send with a pull or push (none when not logged in). */
export async function credentialsFor(reference: string): Promise<RegistryAuth | undefined> {
  let host: string;
  try {
    host = registryHost(referenceHost(reference));
  } catch {
    return undefined; // the helper refuses the reference with its own words
  }
  try {
    return await lookupCredentials(host);
  } catch (err) {
    // A broken config or a missing credential helper costs the login, not the command: it goes anonymous, and says so.
    process.stderr.write(`WARNING! no credentials for ${host}: ${printable(err instanceof Error ? err.message : String(err))}\n`);
    return undefined;
  }
}

const PushProgressType = new ProgressType<{ kind: 'begin' | 'report' | 'end'; layers?: PushProgress['layers'] }>();

const FINAL: Partial<Record<PushProgress['layers'][number]['status'], string>> = { pushed: 'Pushed', exists: 'Layer already exists' };

/** One line per blob as its state changes, as docker push prints them (a plain log, terminal or not). */
function trackPush(c: MessageConnection, token: string): (layers: PushProgress['layers']) => void {
  const said = new Map<string, string>();
  const show = (blobs: PushProgress['layers']): void => {
    // the last blob is the image config, which docker push does not list either
    for (const l of blobs.slice(0, -1)) {
      const text = l.status === 'mounted' ? `Mounted from ${printable(l.from ?? '')}` : l.status === 'pushing' ? 'Pushing' : l.status === 'waiting' ? 'Preparing' : FINAL[l.status]!;
      if (said.get(l.digest) === text) continue;
      said.set(l.digest, text);
      process.stdout.write(`${l.digest.replace(/^sha256:/, '').slice(0, 12)}: ${text}\n`);
    }
  };
  c.onProgress(PushProgressType, token, (v) => {
    if (v.kind === 'report' && v.layers) show(v.layers);
  });
  return show;
}

export const push: Command = async (argv, conn) => {
  const spec: FlagSpec[] = [
    { name: 'quiet', short: 'q', kind: 'bool', help: 'Suppress verbose output' },
    { name: 'help', kind: 'bool', help: 'Print usage' },
  ];
  const { flags, positionals } = parseFlags(argv, spec, { stopAtPositional: false, verb: 'push' });
  if (flags.help) {
    process.stdout.write(usage('push', '[OPTIONS] NAME[:TAG]', spec) + '\n');
    return 0;
  }
  if (positionals.length !== 1) throw new InvalidArgumentError("'capsa push' requires exactly 1 argument: NAME[:TAG]");
  const reference = positionals[0];
  const auth = await credentialsFor(reference);
  const c = await conn();
  const token = newId('push');
  const show = flags.quiet ? undefined : trackPush(c, token);
  if (!flags.quiet) process.stdout.write(`The push refers to repository [${printable(reference.replace(/:[^:/@]*$/, ''))}]\n`);
  const sent = await interruptible(`push of ${printable(reference)}`, (cancel) => c.sendRequest(ImagePushRequest.type, { reference, workDoneToken: token, ...(auth ? { auth } : {}) }, cancel));
  if ('interrupted' in sent) return sent.interrupted;
  const r = sent.result;
  // the result's word is final: a progress report still in flight would say no more
  show?.(r.layers);
  process.stdout.write(flags.quiet ? `${r.reference}\n` : `${r.tag}: digest: ${r.digest} size: ${r.size}\n`);
  return 0;
};
