/**
 * `POST /containers/create`'s body (Docker's Config, with HostConfig and
 * NetworkingConfig) as Capsa's run options. Docker's clients send every
 * field, most of them empty; a field Capsa has no counterpart for is
 * refused with a 400 that names it only when it is set to something (a
 * container silently run without what was asked for is worse than none).
 */
import type { RunOptions } from '../protocol';
import { CapsaError } from '../errors';
import { EngineRequestError } from './errors';

/** A request field set to something Capsa does not have; the 400 names every one. */
export class UnsupportedFieldsError extends CapsaError {
  constructor(readonly names: string[]) {
    super('E_UNSUPPORTED', `Capsa does not support ${names.join(', ')} (set in the request): leave ${names.length === 1 ? 'it' : 'them'} unset`);
  }
}

type Obj = Record<string, unknown>;

/** Whether Docker's client sent `v` as "not set": null, false, 0, '', and arrays and objects of nothing but such. */
export function isUnset(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === '') return true;
  if (Array.isArray(v)) return v.every(isUnset);
  if (typeof v === 'object') return Object.values(v as Obj).every(isUnset);
  return false;
}

function bad(field: string, expected: string): EngineRequestError {
  return new EngineRequestError(400, `invalid ${field}: expected ${expected}`);
}

const str = (o: Obj, k: string, where: string): string | undefined => {
  const v = o[k];
  if (v === null || v === undefined || v === '') return undefined;
  if (typeof v !== 'string') throw bad(`${where}${k}`, 'a string');
  return v;
};
const bool = (o: Obj, k: string, where: string): boolean | undefined => {
  const v = o[k];
  if (v === null || v === undefined) return undefined;
  if (typeof v !== 'boolean') throw bad(`${where}${k}`, 'true or false');
  return v;
};
const num = (o: Obj, k: string, where: string): number | undefined => {
  const v = o[k];
  if (v === null || v === undefined || v === 0) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(`${where}${k}`, 'a number');
  return v;
};
const strings = (o: Obj, k: string, where: string): string[] | undefined => {
  const v = o[k];
  if (v === null || v === undefined) return undefined;
  // Docker takes a single string for Cmd and Entrypoint too
  if (typeof v === 'string') return [v];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw bad(`${where}${k}`, 'an array of strings');
  return v as string[];
};
const object = (o: Obj, k: string, where: string): Obj | undefined => {
  const v = o[k];
  if (v === null || v === undefined) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw bad(`${where}${k}`, 'an object');
  return v as Obj;
};
const stringMap = (o: Obj, k: string, where: string): Record<string, string> | undefined => {
  const m = object(o, k, where);
  if (!m) return undefined;
  for (const v of Object.values(m)) if (typeof v !== 'string') throw bad(`${where}${k}`, 'a map of strings');
  return Object.keys(m).length ? (m as Record<string, string>) : undefined;
};

/** Config fields read here, or harmless to take as they come (the attach flags: attaching is its own request). */
const CONFIG_FIELDS = new Set([
  'Image', 'Cmd', 'Entrypoint', 'Env', 'WorkingDir', 'User', 'Tty', 'OpenStdin', 'Labels', 'Hostname',
  'AttachStdin', 'AttachStdout', 'AttachStderr', 'StdinOnce', 'ExposedPorts', 'ArgsEscaped',
  'HostConfig', 'NetworkingConfig', 'Platform',
]);
const HOST_FIELDS = new Set([
  'Binds', 'Mounts', 'PortBindings', 'NetworkMode', 'AutoRemove', 'Memory', 'MemorySwap', 'NanoCpus', 'CpuShares', 'PidsLimit',
  'CapAdd', 'CapDrop', 'Privileged', 'SecurityOpt', 'ReadonlyRootfs', 'Init', 'Dns', 'Tmpfs', 'Devices', 'GroupAdd', 'PidMode', 'IpcMode',
  'UsernsMode', 'Ulimits', 'RestartPolicy', 'LogConfig', 'ConsoleSize', 'CgroupnsMode', 'Isolation',
]);

/** Fields that are maps: any key sets them (`Volumes: {"/data": {}}` asks for an anonymous volume). */
const MAP_FIELDS = new Set(['Volumes', 'HostConfig.Sysctls', 'HostConfig.StorageOpt', 'HostConfig.Annotations', 'HostConfig.Links', 'HostConfig.VolumesFrom']);

/** Values of fields Docker fills with a default that means "as usual". */
function isDefault(field: string, v: unknown): boolean {
  if (MAP_FIELDS.has(field) && typeof v === 'object' && v !== null && Object.keys(v).length > 0) return false;
  if (isUnset(v)) return true;
  const o = (typeof v === 'object' && v !== null ? v : {}) as Obj;
  switch (field) {
    case 'HostConfig.RestartPolicy':
      return (o.Name === 'no' || o.Name === '' || o.Name === undefined) && isUnset(o.MaximumRetryCount);
    case 'HostConfig.LogConfig':
      return (o.Type === 'json-file' || o.Type === '' || o.Type === undefined) && isUnset(o.Config);
    case 'HostConfig.CgroupnsMode':
      return v === 'private';
    case 'HostConfig.IpcMode':
      return v === 'private' || v === 'shareable';
    case 'HostConfig.Isolation':
      return v === 'default';
    case 'HostConfig.UsernsMode':
      return v === 'host';
    // -1: the kernel's default swappiness, which is what a container gets here
    case 'HostConfig.MemorySwappiness':
      return v === -1;
    default:
      return false;
  }
}

/** A `HostConfig.Mounts` entry as Capsa's `--mount` spec. */
function mountSpec(m: unknown, i: number): string {
  if (typeof m !== 'object' || m === null) throw bad(`HostConfig.Mounts[${i}]`, 'an object');
  const o = m as Obj;
  const where = `HostConfig.Mounts[${i}].`;
  const type = str(o, 'Type', where) ?? 'volume';
  const target = str(o, 'Target', where);
  if (!target) throw bad(`${where}Target`, 'a container path');
  const parts = [`type=${type}`, `target=${target}`];
  const source = str(o, 'Source', where);
  if (source) parts.push(`source=${source}`);
  if (bool(o, 'ReadOnly', where)) parts.push('readonly');
  const tmpfs = object(o, 'TmpfsOptions', where);
  if (tmpfs) {
    const size = num(tmpfs, 'SizeBytes', `${where}TmpfsOptions.`);
    if (size) parts.push(`tmpfs-size=${size}`);
    const mode = num(tmpfs, 'Mode', `${where}TmpfsOptions.`);
    if (mode) parts.push(`tmpfs-mode=${mode.toString(8)}`);
  }
  const rest = Object.keys(o).filter((k) => !['Type', 'Target', 'Source', 'ReadOnly', 'TmpfsOptions', 'Consistency'].includes(k) && !isUnset(o[k]));
  if (rest.length) throw new UnsupportedFieldsError(rest.map((k) => `${where}${k}`));
  return parts.join(',');
}

/** `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}` as `-p` specs. */
function publishSpecs(bindings: Obj): string[] {
  const out: string[] = [];
  for (const [port, list] of Object.entries(bindings)) {
    if (!/^\d{1,5}(\/(tcp|udp))?$/.test(port)) throw bad('HostConfig.PortBindings', `container ports such as "80/tcp", not ${JSON.stringify(port.slice(0, 32))}`);
    for (const b of Array.isArray(list) ? list : []) {
      const o = (typeof b === 'object' && b !== null ? b : {}) as Obj;
      const ip = str(o, 'HostIp', 'HostConfig.PortBindings.');
      const hostPort = str(o, 'HostPort', 'HostConfig.PortBindings.');
      out.push([ip, hostPort ?? '', port].filter((x) => x !== undefined).join(':').replace(/^:/, ''));
    }
  }
  return out;
}

/**
 * The run options of a create request; `name` is the query's. Throws
 * UnsupportedFieldsError naming every field set that Capsa cannot honour.
 */
export function runOptionsOf(body: Obj, name: string | undefined): RunOptions {
  const unsupported: string[] = [];
  for (const [k, v] of Object.entries(body)) if (!CONFIG_FIELDS.has(k) && !isDefault(k, v)) unsupported.push(k);
  const host = object(body, 'HostConfig', '') ?? {};
  for (const [k, v] of Object.entries(host)) if (!HOST_FIELDS.has(k) && !isDefault(`HostConfig.${k}`, v)) unsupported.push(`HostConfig.${k}`);
  for (const k of ['RestartPolicy', 'LogConfig', 'CgroupnsMode', 'IpcMode', 'Isolation', 'UsernsMode']) {
    if (k in host && !isDefault(`HostConfig.${k}`, host[k]) && !(k === 'IpcMode' && host[k] === 'host')) unsupported.push(`HostConfig.${k}`);
  }
  if (unsupported.length) throw new UnsupportedFieldsError(unsupported);

  const image = str(body, 'Image', '');
  if (!image) throw new EngineRequestError(400, 'Config.Image is required');
  const opts: RunOptions = { image, pull: 'never' };
  if (name) opts.name = name.replace(/^\//, '');
  const cmd = strings(body, 'Cmd', '');
  if (cmd?.length) opts.cmd = cmd;
  const entrypoint = strings(body, 'Entrypoint', '');
  // `--entrypoint ""` comes as [""]: the image's entrypoint cleared
  if (entrypoint) opts.entrypoint = entrypoint.length === 1 && entrypoint[0] === '' ? [] : entrypoint;
  const env = strings(body, 'Env', '');
  if (env?.length) opts.env = env;
  opts.workdir = str(body, 'WorkingDir', '');
  opts.user = str(body, 'User', '');
  opts.hostname = str(body, 'Hostname', '');
  opts.tty = bool(body, 'Tty', '') || undefined;
  opts.interactive = bool(body, 'OpenStdin', '') || undefined;
  opts.labels = stringMap(body, 'Labels', '');

  const h = 'HostConfig.';
  const binds = strings(host, 'Binds', h);
  if (binds?.length) opts.volumes = binds;
  const mounts = host.Mounts;
  if (Array.isArray(mounts) && mounts.length) opts.mounts = mounts.map(mountSpec);
  else if (mounts !== undefined && mounts !== null && !Array.isArray(mounts)) throw bad(`${h}Mounts`, 'an array');
  const ports = object(host, 'PortBindings', h);
  if (ports && Object.keys(ports).length) opts.publish = publishSpecs(ports);
  const network = str(host, 'NetworkMode', h);
  if (network && network !== 'default') opts.network = network;
  opts.rm = bool(host, 'AutoRemove', h) || undefined;
  opts.memory = num(host, 'Memory', h);
  opts.memorySwap = num(host, 'MemorySwap', h);
  const nano = num(host, 'NanoCpus', h);
  if (nano) opts.cpus = nano / 1e9;
  opts.cpuShares = num(host, 'CpuShares', h);
  opts.pidsLimit = num(host, 'PidsLimit', h);
  const capAdd = strings(host, 'CapAdd', h);
  if (capAdd?.length) opts.capAdd = capAdd;
  const capDrop = strings(host, 'CapDrop', h);
  if (capDrop?.length) opts.capDrop = capDrop;
  opts.privileged = bool(host, 'Privileged', h) || undefined;
  const securityOpt = strings(host, 'SecurityOpt', h);
  if (securityOpt?.length) opts.securityOpt = securityOpt;
  opts.readOnly = bool(host, 'ReadonlyRootfs', h) || undefined;
  opts.init = bool(host, 'Init', h) || undefined;
  const dns = strings(host, 'Dns', h);
  if (dns?.length) opts.dns = dns;
  const tmpfs = stringMap(host, 'Tmpfs', h);
  if (tmpfs) opts.tmpfs = Object.entries(tmpfs).map(([p, o]) => (o ? `${p}:${o}` : p));
  const devices = host.Devices;
  if (Array.isArray(devices) && devices.length) {
    opts.devices = devices.map((d, i) => {
      const o = (typeof d === 'object' && d !== null ? d : {}) as Obj;
      const where = `${h}Devices[${i}].`;
      const from = str(o, 'PathOnHost', where);
      if (!from) throw bad(`${where}PathOnHost`, 'a host path');
      return [from, str(o, 'PathInContainer', where) ?? from, str(o, 'CgroupPermissions', where) ?? 'rwm'].join(':');
    });
  }
  const groupAdd = strings(host, 'GroupAdd', h);
  if (groupAdd?.length) opts.groupAdd = groupAdd;
  const pid = str(host, 'PidMode', h);
  if (pid === 'host') opts.pid = 'host';
  else if (pid) throw new UnsupportedFieldsError([`${h}PidMode (${pid.slice(0, 64)})`]);
  if (host.IpcMode === 'host') opts.ipc = 'host';
  const ulimits = host.Ulimits;
  if (Array.isArray(ulimits) && ulimits.length) {
    opts.ulimits = ulimits.map((u, i) => {
      const o = (typeof u === 'object' && u !== null ? u : {}) as Obj;
      const where = `${h}Ulimits[${i}].`;
      return `${str(o, 'Name', where) ?? ''}=${Number(o.Soft ?? 0)}:${Number(o.Hard ?? 0)}`;
    });
  }
  const size = host.ConsoleSize;
  if (opts.tty && Array.isArray(size) && typeof size[0] === 'number' && typeof size[1] === 'number' && size[0] > 0 && size[1] > 0) {
    opts.size = { rows: size[0], cols: size[1] };
  }
  const networking = object(body, 'NetworkingConfig', '');
  const endpoints = networking && object(networking, 'EndpointsConfig', 'NetworkingConfig.');
  for (const [net, cfg] of Object.entries(endpoints ?? {})) {
    // the endpoint of the network the container joins (NetworkMode) comes with it; its settings (aliases, addresses) are not Capsa's
    if (!isUnset(cfg)) throw new UnsupportedFieldsError([`NetworkingConfig.EndpointsConfig.${net.slice(0, 64)}`]);
  }
  for (const k of Object.keys(opts) as Array<keyof RunOptions>) if (opts[k] === undefined) delete opts[k];
  return opts;
}
