/**
 * Reads a workspace's `.devcontainer/devcontainer.json` (or `.devcontainer.json`)
 * into the run options Capsa supports. JSON with comments and trailing commas,
 * as the Dev Containers spec allows. No dependency on the vscode module.
 *
 * Spec: https://containers.dev/implementors/json_reference/
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parse, printParseErrorCode, type ParseError } from 'jsonc-parser';
import type { IdmapMount } from '../server/protocol';

export class DevcontainerError extends Error {
  readonly code = 'E_DEVCONTAINER';
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'DevcontainerError';
  }
}

/** What Capsa does with a workspace's container, after variable substitution. */
export interface DevcontainerConfig {
  /** Absolute path of the file read, or undefined for settings-only defaults. */
  file?: string;
  /** The image to run: the configured one, or for a build the name the build tags (`vsc-…`). */
  image: string;
  /** Set when the image is built from a Dockerfile (`build`, or the legacy `dockerFile`). */
  build?: DevcontainerBuild;
  /** Folder inside the container where the workspace appears. */
  workspaceFolder: string;
  /** `HOST:CTR[:ro]` bind of the workspace. */
  workspaceMount: string;
  /** `KEY=VALUE`, set on the container (containerEnv). */
  containerEnv: string[];
  /** `KEY=VALUE`, set on each process Capsa starts in it (remoteEnv). */
  remoteEnv: string[];
  /** Extra binds, `HOST:CTR[:ro]`. */
  mounts: string[];
  containerUser?: string;
  remoteUser?: string;
  /** Published ports, `-p` syntax. */
  publish: string[];
  network?: string;
  hostname?: string;
  labels: Record<string, string>;
  /** Each command is an argv; a string command becomes `sh -c STRING`. */
  postCreateCommand: string[][];
  postStartCommand: string[][];
  /** Keys and runArgs present but not supported, to report once. */
  unsupported: string[];
}

/** `build` (or `dockerFile` + `context`), resolved: paths absolute, variables substituted. */
export interface DevcontainerBuild {
  /** The Dockerfile's absolute path (relative to the devcontainer.json's folder in the file). */
  dockerfile: string;
  /** The context directory's absolute path (relative to the devcontainer.json's folder in the file, default "."). */
  context: string;
  args: Record<string, string>;
  target?: string;
  /** From `build.options`: the flags of `docker build` that Capsa's builder has. */
  noCache: boolean;
  pull: boolean;
  platform?: string;
  labels: Record<string, string>;
  /** Further names for the image (`-t`), besides the workspace's. */
  tags: string[];
}

export interface WorkspaceInfo {
  /** Absolute host path of the workspace folder. */
  folder: string;
  /** Fallback image when the file names none (the `capsa.defaultImage` setting). */
  defaultImage: string;
  env?: NodeJS.ProcessEnv;
}

/** Keys read; `name` and `$schema` are accepted and have nothing to do. */
const SUPPORTED = new Set([
  'image',
  'containerEnv',
  'remoteEnv',
  'mounts',
  'workspaceMount',
  'workspaceFolder',
  'containerUser',
  'remoteUser',
  'forwardPorts',
  'postCreateCommand',
  'postStartCommand',
  'runArgs',
  'build',
  'dockerFile',
  'context',
  'name',
  '$schema',
]);

/**
 * The name a workspace's built image is tagged with, as @devcontainers/cli
 * names it (`getFolderImageName`): `vsc-<folder>-<md5 of the folder's path>`,
 * made a valid repository name.
 */
export function workspaceImageName(folder: string): string {
  const hash = createHash('md5').update(folder).digest('hex');
  return `vsc-${path.basename(folder)}-${hash}`
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '')
    .replace(/\.{2,}/g, '.')
    .replace(/_{3,}/g, '__')
    .replace(/-+/g, '-')
    .replace(/^[._-]+/, '');
}

/** The configuration file of a workspace, by the spec's search order. */
export function findDevcontainerFile(folder: string): string | undefined {
  for (const rel of ['.devcontainer/devcontainer.json', '.devcontainer.json']) {
    const p = path.join(folder, rel);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Defaults when a workspace has no devcontainer.json. */
export function defaultConfig(ws: WorkspaceInfo): DevcontainerConfig {
  const workspaceFolder = `/workspaces/${path.basename(ws.folder)}`;
  return {
    image: ws.defaultImage,
    workspaceFolder,
    workspaceMount: `${ws.folder}:${workspaceFolder}`,
    containerEnv: [],
    remoteEnv: [],
    mounts: [],
    publish: [],
    labels: {},
    postCreateCommand: [],
    postStartCommand: [],
    unsupported: [],
  };
}

export function loadDevcontainer(ws: WorkspaceInfo): DevcontainerConfig {
  const file = findDevcontainerFile(ws.folder);
  if (!file) return defaultConfig(ws);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new DevcontainerError(file, `cannot read: ${(err as Error).message}`);
  }
  return parseDevcontainer(text, file, ws);
}

/** Line and column (1-based) of an offset, for error messages. */
function position(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const col = offset - before.lastIndexOf('\n');
  return `${line}:${col}`;
}

export function parseDevcontainer(text: string, file: string, ws: WorkspaceInfo): DevcontainerConfig {
  const errors: ParseError[] = [];
  const raw: unknown = parse(text, errors, { allowTrailingComma: true, disallowComments: false });
  if (errors.length > 0) {
    const e = errors[0];
    throw new DevcontainerError(file, `invalid JSON at ${position(text, e.offset)}: ${printParseErrorCode(e.error)}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new DevcontainerError(file, 'must contain a JSON object');
  }
  const o = raw as Record<string, unknown>;
  const config = defaultConfig(ws);
  config.file = file;
  config.unsupported = Object.keys(o).filter((k) => !SUPPORTED.has(k));

  const local = ws.folder;
  const env = ws.env ?? process.env;
  // containerWorkspaceFolder depends on workspaceFolder, so that one is read first.
  const vars = (s: string): string =>
    s.replace(/\$\{([^}]+)\}/g, (whole, name: string) => {
      if (name === 'localWorkspaceFolder') return local;
      if (name === 'localWorkspaceFolderBasename') return path.basename(local);
      if (name === 'containerWorkspaceFolder') return config.workspaceFolder;
      if (name === 'containerWorkspaceFolderBasename') return path.posix.basename(config.workspaceFolder);
      const m = /^(?:localEnv|env):([^:]+)(?::(.*))?$/.exec(name);
      if (m) return env[m[1]] ?? m[2] ?? '';
      return whole;
    });
  const str = (key: string): string | undefined => {
    const v = o[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') throw new DevcontainerError(file, `${key} must be a non-empty string`);
    return vars(v);
  };

  const image = str('image');
  if ('dockerComposeFile' in o) throw new DevcontainerError(file, 'dockerComposeFile is not supported: choose the container image with "image" or "build"');
  if (image) config.image = image;
  else if ('build' in o || 'dockerFile' in o) {
    config.build = readBuild(file, o, vars, config.unsupported);
    config.image = workspaceImageName(local);
  }
  const wf = str('workspaceFolder');
  if (wf) {
    if (!wf.startsWith('/')) throw new DevcontainerError(file, `workspaceFolder must be an absolute path, got ${JSON.stringify(wf)}`);
    config.workspaceFolder = wf;
    config.workspaceMount = `${local}:${wf}`;
  }
  const wm = str('workspaceMount');
  if (wm) config.workspaceMount = mountToVolume(file, 'workspaceMount', wm);

  config.containerEnv = envList(file, 'containerEnv', o.containerEnv, vars);
  config.remoteEnv = envList(file, 'remoteEnv', o.remoteEnv, vars);
  config.containerUser = str('containerUser');
  config.remoteUser = str('remoteUser');

  if (o.mounts !== undefined) {
    if (!Array.isArray(o.mounts)) throw new DevcontainerError(file, 'mounts must be a list');
    config.mounts = o.mounts.map((m, i) => {
      if (typeof m === 'string') return mountToVolume(file, `mounts[${i}]`, vars(m));
      if (typeof m === 'object' && m !== null) {
        const mo = m as Record<string, unknown>;
        const parts = Object.entries(mo).map(([k, v]) => (typeof v === 'boolean' ? (v ? k : '') : `${k}=${String(v)}`)).filter(Boolean);
        return mountToVolume(file, `mounts[${i}]`, vars(parts.join(',')));
      }
      throw new DevcontainerError(file, `mounts[${i}] must be a string or an object`);
    });
  }

  if (o.forwardPorts !== undefined) {
    if (!Array.isArray(o.forwardPorts)) throw new DevcontainerError(file, 'forwardPorts must be a list');
    config.publish = o.forwardPorts.map((p, i) => {
      if (typeof p === 'number' && Number.isInteger(p) && p > 0 && p < 65536) return `${p}:${p}`;
      if (typeof p === 'string' && /^\d+$/.test(p)) return `${p}:${p}`;
      if (typeof p === 'string' && /^[\w.-]+:\d+$/.test(p)) {
        const port = p.slice(p.lastIndexOf(':') + 1);
        return `${port}:${port}`;
      }
      throw new DevcontainerError(file, `forwardPorts[${i}] must be a port number or "host:port", got ${JSON.stringify(p)}`);
    });
  }

  config.postCreateCommand = commands(file, 'postCreateCommand', o.postCreateCommand, vars);
  config.postStartCommand = commands(file, 'postStartCommand', o.postStartCommand, vars);

  if (o.runArgs !== undefined) {
    if (!Array.isArray(o.runArgs) || !o.runArgs.every((a) => typeof a === 'string')) {
      throw new DevcontainerError(file, 'runArgs must be a list of strings');
    }
    applyRunArgs(config, (o.runArgs as string[]).map(vars));
  }
  return config;
}

const BUILD_KEYS = new Set(['dockerfile', 'context', 'args', 'target', 'cacheFrom', 'options']);

/** `build` or the legacy `dockerFile`/`context`, as @devcontainers/cli reads them. */
function readBuild(file: string, o: Record<string, unknown>, vars: (s: string) => string, unsupported: string[]): DevcontainerBuild {
  const b = o.build ?? {};
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new DevcontainerError(file, 'build must be an object');
  const bo = b as Record<string, unknown>;
  for (const k of Object.keys(bo)) if (!BUILD_KEYS.has(k)) unsupported.push(`build.${k}`);
  const text = (where: string, v: unknown): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') throw new DevcontainerError(file, `${where} must be a non-empty string`);
    return vars(v);
  };
  const dockerfile = text('build.dockerfile', bo.dockerfile) ?? text('dockerFile', o.dockerFile);
  if (!dockerfile) throw new DevcontainerError(file, 'build needs "dockerfile" (the Dockerfile, relative to the devcontainer.json)');
  const dir = path.dirname(file);
  const build: DevcontainerBuild = {
    dockerfile: path.resolve(dir, dockerfile),
    context: path.resolve(dir, text('build.context', bo.context) ?? text('context', o.context) ?? '.'),
    args: {},
    target: text('build.target', bo.target),
    noCache: false,
    pull: false,
    labels: {},
    tags: [],
  };
  if (bo.args !== undefined) {
    if (typeof bo.args !== 'object' || bo.args === null || Array.isArray(bo.args)) throw new DevcontainerError(file, 'build.args must be an object of strings');
    for (const [k, v] of Object.entries(bo.args as Record<string, unknown>)) {
      if (typeof v !== 'string') throw new DevcontainerError(file, `build.args.${k} must be a string`);
      build.args[k] = vars(v);
    }
  }
  if (bo.cacheFrom !== undefined) {
    if (typeof bo.cacheFrom !== 'string' && !(Array.isArray(bo.cacheFrom) && bo.cacheFrom.every((c) => typeof c === 'string'))) {
      throw new DevcontainerError(file, 'build.cacheFrom must be a string or a list of strings');
    }
    // As @devcontainers/cli on a local builder without a registry cache: nothing to import from; the builder's own cache is used
    unsupported.push("build.cacheFrom (Capsa's builder uses its own cache on this machine)");
  }
  if (bo.options !== undefined) {
    if (!Array.isArray(bo.options) || !bo.options.every((a) => typeof a === 'string')) throw new DevcontainerError(file, 'build.options must be a list of strings');
    applyBuildOptions(file, build, (bo.options as string[]).map(vars));
  }
  return build;
}

/** The `docker build` flags of `build.options` that Capsa's builder has; any other is an error naming it. */
const BUILD_OPTIONS = ['--build-arg', '--label', '--target', '--tag', '-t', '--platform', '--no-cache', '--pull', '--progress'];

function applyBuildOptions(file: string, build: DevcontainerBuild, args: string[]): void {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      if (eq > 0) return a.slice(eq + 1);
      if (i + 1 >= args.length) throw new DevcontainerError(file, `build.options: ${flag} needs a value`);
      return args[++i];
    };
    const keyValue = (into: Record<string, string>): void => {
      const kv = value();
      const k = kv.indexOf('=');
      if (k <= 0) throw new DevcontainerError(file, `build.options: ${flag} ${JSON.stringify(kv)}: expected KEY=VALUE`);
      into[kv.slice(0, k)] = kv.slice(k + 1);
    };
    switch (flag) {
      case '--build-arg':
        keyValue(build.args);
        break;
      case '--label':
        keyValue(build.labels);
        break;
      case '--target':
        build.target = value();
        break;
      case '-t':
      case '--tag':
        build.tags.push(value());
        break;
      case '--platform':
        build.platform = value();
        break;
      case '--no-cache':
        build.noCache = true;
        break;
      case '--pull':
        build.pull = true;
        break;
      case '--progress':
        value(); // the build's steps are streamed to the build output whatever the mode
        break;
      default:
        throw new DevcontainerError(file, `build.options: ${JSON.stringify(a)} is not a flag Capsa's build supports (it supports ${BUILD_OPTIONS.join(', ')})`);
    }
  }
}

function envList(file: string, key: string, v: unknown, vars: (s: string) => string): string[] {
  if (v === undefined) return [];
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DevcontainerError(file, `${key} must be an object of strings`);
  const out: string[] = [];
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (val === null) continue; // remoteEnv: null unsets, which for a fresh process means "leave out"
    if (typeof val !== 'string') throw new DevcontainerError(file, `${key}.${k} must be a string`);
    out.push(`${k}=${vars(val)}`);
  }
  return out;
}

function commands(file: string, key: string, v: unknown, vars: (s: string) => string): string[][] {
  if (v === undefined) return [];
  if (typeof v === 'string') return v.trim() === '' ? [] : [['sh', '-c', vars(v)]];
  if (Array.isArray(v)) {
    if (!v.every((a) => typeof a === 'string') || v.length === 0) throw new DevcontainerError(file, `${key} must be a non-empty list of strings`);
    return [(v as string[]).map(vars)];
  }
  if (typeof v === 'object' && v !== null) {
    // The spec runs the object's commands in parallel; Capsa runs them in key order.
    return Object.entries(v as Record<string, unknown>).flatMap(([name, c]) => commands(file, `${key}.${name}`, c, vars));
  }
  throw new DevcontainerError(file, `${key} must be a string, a list of strings or an object`);
}

/**
 * `source=/a,target=/b,type=bind[,readonly]` (the `--mount` syntax) or
 * `/a:/b[:ro]` → `/a:/b[:ro]`. Only bind mounts are supported.
 */
export function mountToVolume(file: string, where: string, spec: string): string {
  if (!spec.includes('=')) {
    if (!/^[^:]+:\/[^:]*(:ro|:rw)?$/.test(spec)) throw new DevcontainerError(file, `${where}: expected "source=…,target=…,type=bind" or "HOST:CONTAINER", got ${JSON.stringify(spec)}`);
    return spec;
  }
  const fields: Record<string, string> = {};
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) fields[part.trim()] = 'true';
    else fields[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  const type = fields.type ?? 'bind';
  if (type !== 'bind') throw new DevcontainerError(file, `${where}: only type=bind mounts are supported, got type=${type}`);
  const source = fields.source ?? fields.src;
  const target = fields.target ?? fields.destination ?? fields.dst;
  if (!source || !target) throw new DevcontainerError(file, `${where}: needs source and target, got ${JSON.stringify(spec)}`);
  if (!target.startsWith('/')) throw new DevcontainerError(file, `${where}: target must be absolute, got ${JSON.stringify(target)}`);
  const ro = fields.readonly === 'true' || fields.readonly === '1' || fields.ro === 'true';
  return `${source}:${target}${ro ? ':ro' : ''}`;
}

/** The `docker run` flags Capsa maps; anything else is reported as unsupported. */
function applyRunArgs(config: DevcontainerConfig, args: string[]): void {
  const take = (i: number, flag: string): [string, number] => {
    const a = args[i];
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) return [a.slice(eq + 1), i];
    if (!a.startsWith('--') && a.length > 2) return [a.slice(2), i];
    if (i + 1 >= args.length) throw new DevcontainerError(config.file ?? 'devcontainer.json', `runArgs: ${flag} needs a value`);
    return [args[i + 1], i + 1];
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const flag = a.startsWith('--') ? a.split('=')[0] : a.slice(0, 2);
    let v: string;
    switch (flag) {
      case '-e':
      case '--env':
        [v, i] = take(i, flag);
        config.containerEnv.push(v);
        break;
      case '-v':
      case '--volume':
        [v, i] = take(i, flag);
        config.mounts.push(v);
        break;
      case '-p':
      case '--publish':
        [v, i] = take(i, flag);
        config.publish.push(v);
        break;
      case '--network':
      case '--net':
        [v, i] = take(i, flag);
        config.network = v;
        break;
      case '-h':
      case '--hostname':
        [v, i] = take(i, flag);
        config.hostname = v;
        break;
      case '-u':
      case '--user':
        [v, i] = take(i, flag);
        config.containerUser = v;
        break;
      case '-l':
      case '--label': {
        [v, i] = take(i, flag);
        const eq = v.indexOf('=');
        config.labels[eq < 0 ? v : v.slice(0, eq)] = eq < 0 ? '' : v.slice(eq + 1);
        break;
      }
      default:
        config.unsupported.push(`runArgs ${a}`);
    }
  }
}

/**
 * The workspace bind's idmapping, so what the container writes there belongs
 * to the VS Code user on the host (`owner`: this process's uid/gid) with
 * nothing chowned. None when VS Code runs as root (root's files stay root's),
 * when the workspace mount is not a host bind, or when the container user is
 * a name (only the helper can resolve it, and a user outside the mapping
 * could not create files there); a numeric `uid[:gid]` is mapped as is.
 */
export function workspaceIdmap(config: DevcontainerConfig, owner: { uid: number; gid: number } | undefined): IdmapMount[] | undefined {
  if (!owner || owner.uid === 0) return undefined;
  const [source, target] = config.workspaceMount.split(':');
  if (!source?.startsWith('/') || !target?.startsWith('/')) return undefined;
  const user = config.remoteUser ?? config.containerUser ?? 'root';
  let containerUid = 0;
  let containerGid = 0;
  if (user !== 'root') {
    const m = /^(\d+)(?::(\d+))?$/.exec(user);
    if (!m) return undefined;
    containerUid = Number(m[1]);
    containerGid = m[2] !== undefined ? Number(m[2]) : containerUid;
  }
  return [{ target, uid: owner.uid, gid: owner.gid, containerUid, containerGid }];
}
