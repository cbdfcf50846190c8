/**
 * `capsa volume create|ls|rm|inspect|prune`: named volumes, as Docker's
 * `docker volume` verbs print them.
 */
import { InvalidArgumentError } from '../errors';
import { VolumeCreateRequest, VolumeInspectRequest, VolumeListRequest, VolumePruneRequest, VolumeRemoveRequest } from '../protocol';
import { parseFlags, usage, type FlagSpec } from './args';
import type { Command } from './command';
import { formatBytes, json, ownerColumn, table } from './format';
import * as check from './validate';
import { confirm } from './images';
import { errorLine } from './exit';

const HELP = 'Usage: capsa volume COMMAND\n\nCommands:\n  create     Create a volume\n  ls         List volumes\n  rm         Remove one or more volumes\n  inspect    Show details of volumes\n  prune      Remove volumes no container uses\n';

const FLAGS: Record<string, FlagSpec[]> = {
  create: [
    { name: 'label', kind: 'multi', help: 'Set metadata on the volume (KEY=VALUE)' },
    { name: 'driver', short: 'd', kind: 'value', help: 'Only local is supported' },
  ],
  ls: [{ name: 'quiet', short: 'q', kind: 'bool', help: 'Only volume names' }],
  rm: [{ name: 'force', short: 'f', kind: 'bool', help: 'Remove volumes even while containers mount them' }],
  inspect: [],
  prune: [{ name: 'force', short: 'f', kind: 'bool', help: 'Do not prompt for confirmation' }],
};
const ALIASES: Record<string, string> = { list: 'ls', remove: 'rm' };

export const volume: Command = async (argv, conn) => {
  const [given, ...rest] = argv;
  const sub = given === undefined ? undefined : (ALIASES[given] ?? given);
  if (sub === undefined || !(sub in FLAGS)) {
    if (given !== undefined && given !== '--help') return check.unknownSubcommand('volume', given, HELP);
    process.stdout.write(HELP);
    return 0;
  }
  const specs = [...FLAGS[sub], { name: 'help', kind: 'bool', help: 'Print usage' } as FlagSpec];
  const { flags, positionals } = parseFlags(rest, specs, { stopAtPositional: false, verb: `volume ${sub}` });
  if (flags.help) {
    const synopsis = { create: '[OPTIONS] [VOLUME]', ls: '[OPTIONS]', rm: '[OPTIONS] VOLUME [VOLUME...]', inspect: 'VOLUME [VOLUME...]', prune: '[OPTIONS]' }[sub]!;
    process.stdout.write(usage(`volume ${sub}`, synopsis, specs) + '\n');
    return 0;
  }
  switch (sub) {
    case 'create': {
      if (positionals.length > 1) throw new InvalidArgumentError("'capsa volume create' takes at most 1 argument: VOLUME");
      if (flags.driver !== undefined && flags.driver !== 'local') throw new InvalidArgumentError(`volume driver ${check.shown(String(flags.driver))} is not supported: only local`);
      if (positionals.length) check.checkObjectName('volume', positionals[0]);
      const labels = check.checkLabels('label', (flags.label as string[] | undefined) ?? []);
      const c = await conn();
      const v = await c.sendRequest(VolumeCreateRequest.type, { name: positionals[0], ...(Object.keys(labels).length ? { labels } : {}) });
      process.stdout.write(`${v.name}\n`);
      return 0;
    }
    case 'ls': {
      if (positionals.length) throw new InvalidArgumentError("'capsa volume ls' takes no arguments");
      const list = await (await conn()).sendRequest(VolumeListRequest.type);
      if (flags.quiet) process.stdout.write(list.map((v) => `${v.name}\n`).join(''));
      else {
        const t = ownerColumn(['DRIVER', 'VOLUME NAME'], list.map((v) => [v.driver, v.name]), list.map((v) => v.owner));
        process.stdout.write(table(t.header, t.rows));
      }
      return 0;
    }
    case 'inspect': {
      if (positionals.length === 0) throw new InvalidArgumentError("'capsa volume inspect' requires at least 1 argument: VOLUME");
      const c = await conn();
      const out = [];
      let status = 0;
      for (const name of positionals) {
        try {
          const v = await c.sendRequest(VolumeInspectRequest.type, { volume: name });
          out.push({ CreatedAt: v.created, Driver: v.driver, Labels: v.labels ?? null, Mountpoint: v.mountpoint, Name: v.name, Options: null, Scope: 'local', UsedBy: v.usedBy });
        } catch (err) {
          process.stderr.write(`capsa: error: ${errorLine(err)}\n`);
          status = 1;
        }
      }
      process.stdout.write(json(out) + '\n');
      return status;
    }
    case 'rm': {
      if (positionals.length === 0) throw new InvalidArgumentError("'capsa volume rm' requires at least 1 argument: VOLUME");
      const c = await conn();
      let status = 0;
      for (const name of positionals) {
        try {
          await c.sendRequest(VolumeRemoveRequest.type, { volume: name, force: flags.force === true });
          process.stdout.write(`${name}\n`);
        } catch (err) {
          process.stderr.write(`capsa: error: ${errorLine(err)}\n`);
          status = 1;
        }
      }
      return status;
    }
    default: {
      if (positionals.length) throw new InvalidArgumentError("'capsa volume prune' takes no arguments");
      if (!flags.force && !(await confirm('WARNING! This will remove all volumes not used by at least one container.\nAre you sure you want to continue? [y/N] '))) return 0;
      const r = await (await conn()).sendRequest(VolumePruneRequest.type);
      if (r.deleted.length) process.stdout.write(`Deleted Volumes:\n${r.deleted.map((n) => `${n}\n`).join('')}\n`);
      process.stdout.write(`Total reclaimed space: ${formatBytes(r.reclaimed)}\n`);
      return 0;
    }
  }
};
