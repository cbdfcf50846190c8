/**
 * Parser nodes → typed instructions, with each instruction's own checks
 * (argument counts, flags, ONBUILD's refusals) worded as BuildKit's
 * frontend/dockerfile/instructions/parse.go words them. Values stay as
 * written: expansion happens per stage (../stages.ts), where ARG and ENV
 * are known.
 */
import { DockerfileError, type SourceLocation } from '../errors';
import { parseDuration, parseFlags, type FlagKind, type FlagValues } from './flags';
import { parseMount, type RunMount } from './mounts';
import { heredocContent, type Node } from './parser';

export interface KeyValue {
  key: string;
  value: string;
}

/** A file COPY/ADD writes from a heredoc (`COPY <<EOF /dest`). */
export interface InlineSource {
  name: string;
  /** The body, `<<-` tabs already stripped. */
  data: string;
  /** Expand variables in it (its delimiter was not quoted). */
  expand: boolean;
}

interface Base {
  loc: SourceLocation;
  /** The instruction's text as written (continuations joined). */
  original: string;
}

export type Instruction =
  | (Base & { kind: 'from'; image: string; stageName?: string; platform?: string })
  | (Base & { kind: 'run'; shell: boolean; cmd: string[]; heredocs: InlineSource[]; mounts: RunMount[]; mountTexts: string[]; network?: string; security?: string })
  | (Base & { kind: 'cmd' | 'entrypoint'; shell: boolean; cmd: string[] })
  | (Base & { kind: 'shell'; shell: string[] })
  | (Base & { kind: 'env' | 'label'; pairs: KeyValue[] })
  | (Base & { kind: 'maintainer'; maintainer: string })
  | (Base & { kind: 'expose'; ports: string[] })
  | (Base & { kind: 'add' | 'copy'; sources: string[]; dest: string; inline: InlineSource[]; from?: string; chown?: string; chmod?: string; link: boolean; parents: boolean; exclude: string[]; keepGitDir?: boolean; checksum?: string; unpack?: boolean })
  | (Base & { kind: 'volume'; paths: string[] })
  | (Base & { kind: 'user'; user: string })
  | (Base & { kind: 'workdir'; path: string })
  | (Base & { kind: 'stopsignal'; signal: string })
  | (Base & { kind: 'arg'; args: { name: string; default?: string }[] })
  | (Base & { kind: 'onbuild'; trigger: string; instruction: Instruction })
  | (Base & { kind: 'healthcheck'; none: true })
  | (Base & { kind: 'healthcheck'; none: false; shell: boolean; cmd: string[]; intervalMs?: number; timeoutMs?: number; startPeriodMs?: number; startIntervalMs?: number; retries?: number });

const FLAGS: Record<string, Record<string, FlagKind>> = {
  from: { platform: 'string' },
  run: { mount: 'strings', network: 'string', security: 'string' },
  copy: { from: 'string', chown: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'strings' },
  add: { chown: 'string', chmod: 'string', link: 'bool', 'keep-git-dir': 'bool', checksum: 'string', exclude: 'strings', unpack: 'bool' },
  healthcheck: { interval: 'string', timeout: 'string', 'start-period': 'string', 'start-interval': 'string', retries: 'string' },
};

const STAGE_NAME = /^[a-z][a-z0-9\-_.]*$/;

function fail(n: Node, file: string, message: string): never {
  throw new DockerfileError({ file, line: n.startLine, endLine: n.endLine !== n.startLine ? n.endLine : undefined }, message);
}

/** Types one node; `file` names the Dockerfile in errors. */
export function parseInstruction(n: Node, file = 'Dockerfile'): Instruction {
  const loc: SourceLocation = { file, line: n.startLine, ...(n.endLine !== n.startLine ? { endLine: n.endLine } : {}) };
  const base = { loc, original: n.original };
  const upper = n.cmd.toUpperCase();
  let flags: FlagValues;
  try {
    flags = parseFlags(n.flags, FLAGS[n.cmd] ?? {});
  } catch (err) {
    return fail(n, file, `${upper}: ${(err as Error).message}`);
  }
  const atLeast = (k: number, what = 'argument'): void => {
    if (n.args.length < k) fail(n, file, `${upper} requires at least ${k === 1 ? 'one' : k} ${what}${k === 1 ? '' : 's'}`);
  };
  const exactlyOne = (): string => {
    if (n.args.length !== 1) fail(n, file, `${upper} requires exactly one argument`);
    return n.args[0];
  };
  const inline = (): InlineSource[] => n.heredocs.map((h) => ({ name: h.name, data: heredocContent(h), expand: h.expand }));
  switch (n.cmd) {
    case 'from': {
      if (n.args.length !== 1 && !(n.args.length === 3 && n.args[1].toLowerCase() === 'as')) fail(n, file, 'FROM requires either one or three arguments');
      let stageName: string | undefined;
      if (n.args.length === 3) {
        stageName = n.args[2].toLowerCase();
        if (!STAGE_NAME.test(stageName)) fail(n, file, `invalid name for build stage: ${JSON.stringify(n.args[2])}, name can't start with a number or contain symbols`);
      }
      const platform = flags.strings.get('platform');
      return { ...base, kind: 'from', image: n.args[0], ...(stageName !== undefined ? { stageName } : {}), ...(platform !== undefined ? { platform } : {}) };
    }
    case 'run': {
      if (n.args.length === 0 && n.heredocs.length === 0) fail(n, file, 'RUN requires at least one argument');
      const mountTexts = flags.lists.get('mount') ?? [];
      const mounts: RunMount[] = [];
      let ssh = 0;
      for (const t of mountTexts) {
        try {
          const m = parseMount(t, ssh);
          if (m.type === 'ssh') ssh++;
          mounts.push(m);
        } catch (err) {
          fail(n, file, `RUN --mount=${t}: ${(err as Error).message}`);
        }
      }
      const network = flags.strings.get('network');
      if (network !== undefined && !['default', 'none', 'host'].includes(network)) fail(n, file, `RUN: unsupported network mode ${JSON.stringify(network)} (default, none or host)`);
      const security = flags.strings.get('security');
      if (security !== undefined && !['sandbox', 'insecure'].includes(security)) fail(n, file, `RUN: unsupported security mode ${JSON.stringify(security)} (sandbox or insecure)`);
      return {
        ...base, kind: 'run', shell: !n.json, cmd: n.args, heredocs: inline(), mounts, mountTexts,
        ...(network !== undefined ? { network } : {}), ...(security !== undefined ? { security } : {}),
      };
    }
    case 'cmd':
    case 'entrypoint':
      return { ...base, kind: n.cmd, shell: !n.json, cmd: n.args };
    case 'shell':
      if (!n.json) fail(n, file, 'SHELL requires the arguments to be in JSON form');
      if (n.args.length === 0) fail(n, file, 'SHELL requires at least one argument');
      return { ...base, kind: 'shell', shell: n.args };
    case 'env':
    case 'label': {
      atLeast(1);
      const pairs: KeyValue[] = [];
      for (let i = 0; i < n.args.length; i += 2) {
        if (n.args[i] === '') fail(n, file, `${upper} names can not be blank`);
        pairs.push({ key: n.args[i], value: n.args[i + 1] });
      }
      return { ...base, kind: n.cmd, pairs };
    }
    case 'maintainer':
      return { ...base, kind: 'maintainer', maintainer: exactlyOne() };
    case 'expose':
      atLeast(1);
      return { ...base, kind: 'expose', ports: n.args };
    case 'add':
    case 'copy': {
      if (n.args.length < 2) {
        fail(n, file, `${upper} requires at least two arguments, but only one was provided. Destination could not be determined`);
      }
      const heredocNames = new Set(n.heredocs.map((h) => h.name));
      // The heredoc words (`<<EOF`) stand for the inline sources and are not paths.
      const words = n.heredocs.length > 0 ? n.args.filter((a) => !(/^\d*<<-?/.test(a) && heredocNames.size > 0)) : n.args;
      const dest = words[words.length - 1];
      if (dest === undefined) fail(n, file, `${upper} requires a destination`);
      const from = n.cmd === 'copy' ? flags.strings.get('from') : undefined;
      const opt = <T>(k: string, v: T | undefined): Record<string, T> => (v !== undefined ? { [k]: v } : {});
      return {
        ...base, kind: n.cmd, sources: words.slice(0, -1), dest, inline: inline(),
        ...opt('from', from), ...opt('chown', flags.strings.get('chown')), ...opt('chmod', flags.strings.get('chmod')),
        link: flags.bools.get('link') ?? false, parents: flags.bools.get('parents') ?? false, exclude: flags.lists.get('exclude') ?? [],
        ...opt('keepGitDir', flags.bools.get('keep-git-dir')), ...opt('checksum', flags.strings.get('checksum')), ...opt('unpack', flags.bools.get('unpack')),
      };
    }
    case 'volume':
      atLeast(1);
      for (const p of n.args) if (p.trim() === '') fail(n, file, 'VOLUME specified can not be an empty string');
      return { ...base, kind: 'volume', paths: n.args };
    case 'user':
      return { ...base, kind: 'user', user: exactlyOne() };
    case 'workdir':
      return { ...base, kind: 'workdir', path: exactlyOne() };
    case 'stopsignal':
      return { ...base, kind: 'stopsignal', signal: exactlyOne() };
    case 'arg': {
      atLeast(1);
      const args = n.args.map((w) => {
        const eq = w.indexOf('=');
        const name = eq < 0 ? w : w.slice(0, eq);
        if (name === '') fail(n, file, 'ARG names can not be blank');
        return eq < 0 ? { name } : { name, default: w.slice(eq + 1) };
      });
      return { ...base, kind: 'arg', args };
    }
    case 'onbuild': {
      const t = n.next;
      if (!t) return fail(n, file, 'ONBUILD requires at least one argument');
      if (t.cmd === 'onbuild') fail(n, file, 'Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
      if (t.cmd === 'from' || t.cmd === 'maintainer') fail(n, file, `${t.cmd.toUpperCase()} isn't allowed as an ONBUILD trigger`);
      // A trigger's heredocs follow it as written, so that the build that runs it parses them again.
      const trigger = n.args[0] + n.heredocs.map((h) => `\n${h.content}${h.name}`).join('');
      return { ...base, kind: 'onbuild', trigger, instruction: parseInstruction({ ...t, heredocs: n.heredocs }, file) };
    }
    case 'healthcheck': {
      atLeast(1);
      const typ = n.args[0].toUpperCase();
      if (typ === 'NONE') {
        if (n.args.length > 1) fail(n, file, 'HEALTHCHECK NONE takes no arguments');
        if (n.flags.length > 0) fail(n, file, 'HEALTHCHECK NONE takes no options');
        return { ...base, kind: 'healthcheck', none: true };
      }
      if (typ !== 'CMD') fail(n, file, `Unknown type ${JSON.stringify(n.args[0])} in HEALTHCHECK (try CMD)`);
      if (n.args.length < 2) fail(n, file, 'Missing command after HEALTHCHECK CMD');
      const dur = (k: string): number | undefined => {
        const v = flags.strings.get(k);
        if (v === undefined) return undefined;
        let ms: number;
        try {
          ms = parseDuration(v);
        } catch (err) {
          return fail(n, file, `HEALTHCHECK --${k}: ${(err as Error).message}`);
        }
        if (ms !== 0 && ms < 1) fail(n, file, `Interval "${k}" cannot be less than 1ms`);
        if (ms < 0) fail(n, file, `Interval "${k}" cannot be negative`);
        return ms;
      };
      const r = flags.strings.get('retries');
      let retries: number | undefined;
      if (r !== undefined) {
        if (!/^-?\d+$/.test(r)) fail(n, file, `HEALTHCHECK --retries: invalid number ${JSON.stringify(r)}`);
        retries = Number(r);
        if (retries < 0) fail(n, file, `--retries cannot be negative (${retries})`);
      }
      const o = <T>(k: string, v: T | undefined): Record<string, T> => (v !== undefined ? { [k]: v } : {});
      return {
        ...base, kind: 'healthcheck', none: false, shell: !n.json, cmd: n.args.slice(1),
        ...o('intervalMs', dur('interval')), ...o('timeoutMs', dur('timeout')), ...o('startPeriodMs', dur('start-period')),
        ...o('startIntervalMs', dur('start-interval')), ...o('retries', retries),
      };
    }
    default:
      return fail(n, file, `unknown instruction: ${n.name}`);
  }
}
