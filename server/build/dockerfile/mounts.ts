/**
 * `RUN --mount=…` as typed objects, after BuildKit's
 * frontend/dockerfile/instructions/commands_runmount.go: the value is one
 * CSV record of `key=value` fields (and the bare `ro`, `rw`, `required`);
 * `type` defaults to `bind`; bind and secret/ssh mounts are read-only and
 * cache and tmpfs read-write unless said otherwise; `mode`, `uid`, `gid` only
 * for cache, secret and ssh; `sharing` only for cache.
 */

export type MountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';

export interface RunMount {
  type: MountType;
  /** Where in the container (secret: /run/secrets/ID, ssh: /run/buildkit/ssh_agent.N, when not given). */
  target: string;
  /** Path in `from` (bind, cache), or the secret/ssh id's source. */
  source?: string;
  /** A stage name or index, or an image, for bind and cache. */
  from?: string;
  readOnly: boolean;
  /** The cache's id (defaults to its target), or the secret's or ssh agent's id. */
  id?: string;
  /** cache only: `shared` (default), `private`, `locked`. */
  sharing: 'shared' | 'private' | 'locked';
  mode?: number;
  uid?: number;
  gid?: number;
  /** secret, ssh: the build fails when it is not provided. */
  required: boolean;
  /** tmpfs: its size in bytes. */
  size?: number;
  /** secret: also (or instead) expose it as this environment variable. */
  env?: string;
}

const TYPES = new Set<MountType>(['bind', 'cache', 'tmpfs', 'secret', 'ssh']);

/** One CSV record (Go's encoding/csv: `"` quotes a field, `""` is a quote inside one). */
export function parseCsvRecord(text: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw new Error(`extraneous or missing " in quoted-field: ${text}`);
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += text[i++];
      }
      if (i < text.length && text[i] !== ',') throw new Error(`extraneous or missing " in quoted-field: ${text}`);
    } else {
      while (i < text.length && text[i] !== ',') {
        if (text[i] === '"') throw new Error(`bare " in non-quoted-field: ${text}`);
        field += text[i++];
      }
    }
    fields.push(field);
    if (i >= text.length) return fields;
    i++; // the comma
  }
}

function bool(key: string, value: string): boolean {
  const v = value.toLowerCase();
  if (['1', 't', 'true'].includes(v)) return true;
  if (['0', 'f', 'false'].includes(v)) return false;
  throw new Error(`invalid value for ${key}: ${value}`);
}

function uint(key: string, value: string, radix: 8 | 10): number {
  const re = radix === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  const n = re.test(value) ? parseInt(value, radix) : NaN;
  if (!Number.isSafeInteger(n) || n > 0xffffffff) throw new Error(`invalid value ${value} for ${key}`);
  return n;
}

/** docker/go-units RAMInBytes: `64m`, `1.5g`, `100kb`, binary multiples. */
export function ramInBytes(value: string): number {
  const m = /^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$/.exec(value);
  if (!m) throw new Error(`invalid size: '${value}'`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Math.floor(Number(m[1]) * mult);
}

/** Parses one `--mount` value; `sshIndex` numbers ssh mounts without a target. Throws Error with BuildKit's wording. */
export function parseMount(value: string, sshIndex = 0): RunMount {
  const fields = parseCsvRecord(value);
  let type: MountType = 'bind';
  let roAuto = true;
  let readOnly = false;
  let required = false;
  const m: Partial<RunMount> = {};
  let sharing: string | undefined;
  for (const field of fields) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    const v = eq < 0 ? undefined : field.slice(eq + 1);
    if (v === undefined) {
      if (key === 'readonly' || key === 'ro') {
        readOnly = true;
        roAuto = false;
        continue;
      }
      if (key === 'readwrite' || key === 'rw') {
        readOnly = false;
        roAuto = false;
        continue;
      }
      if (key === 'required') {
        if (type !== 'secret' && type !== 'ssh') throw new Error(`unexpected key '${key}' for mount type '${type}'`);
        required = true;
        continue;
      }
      throw new Error(`invalid field '${field}' must be a key=value pair`);
    }
    switch (key) {
      case 'type':
        if (!TYPES.has(v.toLowerCase() as MountType)) throw new Error(`unsupported mount type ${JSON.stringify(v)}`);
        type = v.toLowerCase() as MountType;
        break;
      case 'from':
        m.from = v;
        break;
      case 'source':
      case 'src':
        m.source = v;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        m.target = v;
        break;
      case 'readonly':
      case 'ro':
        readOnly = bool(key, v);
        roAuto = false;
        break;
      case 'readwrite':
      case 'rw':
        readOnly = !bool(key, v);
        roAuto = false;
        break;
      case 'required':
        required = bool(key, v);
        break;
      case 'sharing':
        if (v !== '' && !['shared', 'private', 'locked'].includes(v.toLowerCase())) throw new Error(`unsupported sharing value ${JSON.stringify(v)}`);
        sharing = v.toLowerCase() || undefined;
        break;
      case 'mode':
        m.mode = uint('mode', v, 8);
        break;
      case 'uid':
        m.uid = uint('uid', v, 10);
        break;
      case 'gid':
        m.gid = uint('gid', v, 10);
        break;
      case 'id':
        m.id = v;
        break;
      case 'size':
        if (type !== 'tmpfs') throw new Error(`unexpected key 'size' for mount type '${type}'`);
        m.size = ramInBytes(v);
        break;
      case 'env':
        m.env = v;
        break;
      default:
        throw new Error(`unexpected key '${key}' in '${field}'`);
    }
  }
  const fileInfo = type === 'secret' || type === 'ssh' || type === 'cache';
  if (!fileInfo) {
    for (const k of ['mode', 'uid', 'gid'] as const) if (m[k] !== undefined) throw new Error(`${k} not allowed for ${JSON.stringify(type)} type mounts`);
  }
  if (sharing !== undefined && type !== 'cache') throw new Error(`invalid cache sharing set for ${type} mount`);
  if (roAuto) readOnly = !(type === 'cache' || type === 'tmpfs');
  if (type === 'secret') {
    if (m.from !== undefined) throw new Error('secret mount should not have a from');
    if (m.source === undefined && m.target === undefined && m.id === undefined && m.env === undefined) {
      throw new Error('invalid secret mount. one of source, target required');
    }
    if (m.source !== undefined && m.id !== undefined) throw new Error("both source and id can't be set");
    m.id ??= m.source ?? (m.target !== undefined ? m.target.split('/').filter(Boolean).pop() : undefined) ?? m.env;
    if (m.target === undefined && m.env === undefined) m.target = `/run/secrets/${m.id}`;
  }
  if (type === 'ssh') {
    m.id ??= 'default';
    m.target ??= `/run/buildkit/ssh_agent.${sshIndex}`;
  }
  if (m.target === undefined || m.target === '') {
    if (type !== 'secret') throw new Error(`mount of type ${type} requires a target`);
  }
  if (type === 'cache') m.id ??= m.target;
  return {
    type,
    target: m.target ?? '',
    readOnly,
    sharing: (sharing ?? 'shared') as RunMount['sharing'],
    required,
    ...(m.source !== undefined ? { source: m.source } : {}),
    ...(m.from !== undefined ? { from: m.from } : {}),
    ...(m.id !== undefined ? { id: m.id } : {}),
    ...(m.mode !== undefined ? { mode: m.mode } : {}),
    ...(m.uid !== undefined ? { uid: m.uid } : {}),
    ...(m.gid !== undefined ? { gid: m.gid } : {}),
    ...(m.size !== undefined ? { size: m.size } : {}),
    ...(m.env !== undefined ? { env: m.env } : {}),
  };
}
