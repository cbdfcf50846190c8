/**
 * A container's life after create: start, restart, attach, stop, kill,
 * wait, rm and container prune.
 */
import { ContainerAttachRequest, ContainerInspectRequest, ContainerKillRequest, ContainerPruneRequest, ContainerRemoveRequest, ContainerRestartRequest, ContainerStartRequest, ContainerStopRequest, ContainerWaitRequest, StreamResizeNotification } from '../../protocol';
import { InvalidArgumentError } from '../../errors';
import { parseFlags } from '../args';
import { errorMessage, newId, str, type Command } from '../command';
import * as check from '../validate';
import { attachStreams, DETACH_KEYS_FLAG, detachKeysOf, restoreTerminal, terminalSize } from './streams';

export const rm: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'force', short: 'f', kind: 'bool', help: 'Kill a running container first' }], { stopAtPositional: false, verb: 'rm' });
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa rm' requires at least 1 argument: CONTAINER");
  const c = await conn();
  let status = 0;
  for (const container of positionals) {
    try {
      await c.sendRequest(ContainerRemoveRequest.type, { container, force: !!flags.force });
      process.stdout.write(`${container}\n`);
    } catch (err) {
      process.stderr.write(`capsa: ${errorMessage(err)}\n`);
      status = 1;
    }
  }
  return status;
};

export const stop: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'time', short: 't', kind: 'value', help: 'Seconds to wait before killing' }], { stopAtPositional: false, verb: 'stop' });
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa stop' requires at least 1 argument: CONTAINER");
  const timeout = str(flags.time) !== undefined ? check.checkSeconds('time', str(flags.time)!) : undefined;
  const c = await conn();
  for (const container of positionals) {
    await c.sendRequest(ContainerStopRequest.type, { container, timeout });
    process.stdout.write(`${container}\n`);
  }
  return 0;
};

export const kill: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'signal', short: 's', kind: 'value', help: 'Signal to send (default KILL)' }], { stopAtPositional: false, verb: 'kill' });
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa kill' requires at least 1 argument: CONTAINER");
  if (str(flags.signal) !== undefined) check.checkSignal(str(flags.signal)!);
  const c = await conn();
  for (const container of positionals) {
    await c.sendRequest(ContainerKillRequest.type, { container, signal: str(flags.signal) });
    process.stdout.write(`${container}\n`);
  }
  return 0;
};

export const start: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(
    argv,
    [
      { name: 'attach', short: 'a', kind: 'bool', help: "Attach to the container's output" },
      { name: 'interactive', short: 'i', kind: 'bool', help: "Attach the container's STDIN" },
      DETACH_KEYS_FLAG,
    ],
    { stopAtPositional: false, verb: 'start' },
  );
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa start' requires at least 1 argument: CONTAINER");
  const detachKeys = detachKeysOf(flags);
  const c = await conn();
  if (flags.attach || flags.interactive) {
    if (positionals.length !== 1) throw new InvalidArgumentError('you cannot start and attach multiple containers at once');
    const info = await c.sendRequest(ContainerInspectRequest.type, { container: positionals[0] });
    const attachId = newId('start');
    const tty = !!info.config.tty;
    const streams = attachStreams(c, attachId, { tty, interactive: !!flags.interactive && !!info.config.interactive, detachKeys });
    await c.sendRequest(ContainerStartRequest.type, { container: positionals[0], attachId });
    streams.start();
    const code = await streams.done;
    restoreTerminal();
    return code;
  }
  let status = 0;
  for (const container of positionals) {
    try {
      await c.sendRequest(ContainerStartRequest.type, { container });
      process.stdout.write(`${container}\n`);
    } catch (err) {
      process.stderr.write(`capsa: ${errorMessage(err)}\n`);
      status = 1;
    }
  }
  return status;
};

export const restart: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'time', short: 't', kind: 'value', help: 'Seconds to wait before killing' }], { stopAtPositional: false, verb: 'restart' });
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa restart' requires at least 1 argument: CONTAINER");
  const timeout = str(flags.time) !== undefined ? check.checkSeconds('time', str(flags.time)!) : undefined;
  const c = await conn();
  for (const container of positionals) {
    await c.sendRequest(ContainerRestartRequest.type, { container, timeout });
    process.stdout.write(`${container}\n`);
  }
  return 0;
};

export const attach: Command = async (argv, conn) => {
  const { flags, positionals } = parseFlags(argv, [{ name: 'no-stdin', kind: 'bool', help: 'Do not attach STDIN' }, DETACH_KEYS_FLAG], { stopAtPositional: false, verb: 'attach' });
  if (positionals.length !== 1) throw new InvalidArgumentError("'capsa attach' requires exactly 1 argument: CONTAINER");
  const detachKeys = detachKeysOf(flags);
  const c = await conn();
  const info = await c.sendRequest(ContainerInspectRequest.type, { container: positionals[0] });
  if (info.state !== 'running') throw new InvalidArgumentError('you cannot attach to a stopped container, start it first');
  const attachId = newId('attach');
  const tty = !!info.config.tty;
  const streams = attachStreams(c, attachId, { tty, interactive: !flags['no-stdin'] && !!info.config.interactive, detachKeys });
  await c.sendRequest(ContainerAttachRequest.type, { container: positionals[0], attachId });
  const size = tty ? terminalSize() : undefined;
  if (size) void c.sendNotification(StreamResizeNotification.type, { attachId, ...size });
  streams.start();
  const code = await streams.done;
  restoreTerminal();
  return code;
};

export const containerPrune: Command = async (argv, conn) => {
  const { positionals } = parseFlags(argv, [{ name: 'force', short: 'f', kind: 'bool', help: 'Do not prompt for confirmation' }], { stopAtPositional: false, verb: 'container prune' });
  check.noArguments('container prune', positionals);
  const c = await conn();
  const r = await c.sendRequest(ContainerPruneRequest.type, {});
  if (r.deleted.length) process.stdout.write(`Deleted Containers:\n${r.deleted.map((id) => `${id}\n`).join('')}\n`);
  process.stdout.write(`Total: ${r.deleted.length} containers removed\n`);
  return 0;
};

export const wait: Command = async (argv, conn) => {
  const { positionals } = parseFlags(argv, [], { stopAtPositional: false, verb: 'wait' });
  if (positionals.length === 0) throw new InvalidArgumentError("'capsa wait' requires at least 1 argument: CONTAINER");
  const c = await conn();
  let last = 0;
  for (const container of positionals) {
    const r = await c.sendRequest(ContainerWaitRequest.type, { container });
    process.stdout.write(`${r.exitCode}\n`);
    last = r.exitCode;
  }
  return last;
};
