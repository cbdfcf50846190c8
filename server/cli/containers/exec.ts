/**
 * `capsa exec`: a command in a running container, on our streams.
 */
import { ContainerExecRequest } from '../../protocol';
import { InvalidArgumentError } from '../../errors';
import { parseFlags, usage, type FlagSpec } from '../args';
import { newId, str, type Command } from '../command';
import * as check from '../validate';
import { resolveEnv } from './run';
import { attachStreams, DETACH_KEYS_FLAG, detachKeysOf, restoreTerminal, terminalSize } from './streams';

const EXEC_FLAGS: FlagSpec[] = [
  { name: 'interactive', short: 'i', kind: 'bool', help: 'Keep STDIN open' },
  { name: 'tty', short: 't', kind: 'bool', help: 'Allocate a pseudo-TTY' },
  { name: 'env', short: 'e', kind: 'multi', help: 'Set an environment variable' },
  { name: 'workdir', short: 'w', kind: 'value', help: 'Working directory inside the container' },
  { name: 'user', short: 'u', kind: 'value', help: 'User (name|uid[:group|gid])' },
  DETACH_KEYS_FLAG,
  { name: 'help', kind: 'bool', help: 'Print usage' },
];

export const exec: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, EXEC_FLAGS, { stopAtPositional: true, verb: 'exec' });
  if (flags.help) {
    process.stdout.write(usage('exec', '[OPTIONS] CONTAINER COMMAND [ARG...]', EXEC_FLAGS) + '\n');
    return 0;
  }
  const [container, ...cmd] = positionals;
  if (!container || cmd.length === 0) throw new InvalidArgumentError("'capsa exec' requires at least 2 arguments: CONTAINER COMMAND");
  const tty = !!flags.tty;
  const interactive = !!flags.interactive;
  const detachKeys = detachKeysOf(flags);
  const env = flags.env ? resolveEnv(check.checkEnv('env', flags.env as string[])) : undefined;
  const workdir = str(flags.workdir) === undefined ? undefined : check.checkWorkdir('workdir', str(flags.workdir)!);
  const user = str(flags.user) === undefined ? undefined : check.checkUser('user', str(flags.user)!);
  const c = await conn();
  const attachId = newId('exec');
  const streams = attachStreams(c, attachId, { tty, interactive, detachKeys });
  await c.sendRequest(ContainerExecRequest.type, {
    container,
    cmd,
    env,
    workdir,
    user,
    tty,
    interactive,
    size: tty ? terminalSize() : undefined,
    attachId,
  });
  streams.start();
  const code = await streams.done;
  restoreTerminal();
  return code;
};
