/**
 * A small declarative checker for the params of protocol messages: each
 * message declares its params' shape next to its type (`params` in its
 * namespace), and the helper checks every message against it before a
 * handler sees it (server/handlers/validated.ts). Nothing here knows about
 * the helper; a failed check throws {@link ParamsError}.
 *
 * ```ts
 * v.object({ image: v.string(), labels: v.optional(v.record(v.string())) })
 * ```
 * Objects are strict: a field the message does not declare is refused, so a
 * misspelt option is an error, not silently ignored.
 */

/** A failed check: where in the params (`labels.foo`, `cmd[2]`), what was expected there, what came. */
export class ParamsError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(path ? `${path} ${problem}` : `params ${problem}`);
    this.name = 'ParamsError';
  }
}

export interface Schema<T = unknown> {
  /** What a value must be, as a message says it: "a string", "a list of strings". */
  readonly expected: string;
  /** Set by {@link optional}: the field may be absent (or undefined). */
  readonly optional?: boolean;
  /** Throws ParamsError unless `value` fits; `path` names it in the message. */
  check(value: unknown, path: string): void;
  /** Never set: carries T for {@link Infer}. */
  readonly _type?: T;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

/** "a string", "null", "a list": how a message names what it got. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  switch (typeof value) {
    case 'object':
      return 'an object';
    case 'undefined':
      return 'nothing';
    case 'number':
      return Number.isFinite(value) ? `the number ${value}` : 'a number';
    default:
      return `a ${typeof value}`;
  }
}

function fail(path: string, expected: string, value: unknown): never {
  throw new ParamsError(path, `must be ${expected}, got ${describe(value)}`);
}

function at(path: string, key: string): string {
  const k = /^[A-Za-z_$][\w$-]*$/.test(key) ? key : JSON.stringify(key.length > 64 ? `${key.slice(0, 63)}…` : key);
  return path ? `${path}.${k}` : k;
}

function schema<T>(expected: string, check: (value: unknown, path: string) => void): Schema<T> {
  return { expected, check };
}

export interface StringOptions {
  /** Fewest characters; 1 refuses the empty string. */
  min?: number;
  /** Most characters. */
  max?: number;
  /** A further check of the content: returns why the string is refused, or undefined. */
  refine?: (s: string) => string | undefined;
  /** What the string stands for, added to the description: "an image reference". */
  expected?: string;
}

function string(o: StringOptions = {}): Schema<string> {
  const parts = [o.min ? 'a non-empty string' : 'a string'];
  if (o.max !== undefined) parts.push(`of at most ${o.max} characters`);
  const expected = parts.join(' ') + (o.expected ? ` (${o.expected})` : '');
  return schema(expected, (value, path) => {
    if (typeof value !== 'string' || value.length < (o.min ?? 0) || (o.max !== undefined && value.length > o.max)) {
      if (typeof value === 'string') throw new ParamsError(path, `must be ${expected}, got ${value.length ? `${value.length} characters` : 'an empty string'}`);
      fail(path, expected, value);
    }
    const why = o.refine?.(value);
    if (why !== undefined) throw new ParamsError(path, why);
  });
}

export interface NumberOptions {
  /** Only whole numbers. */
  integer?: boolean;
  min?: number;
  max?: number;
}

function number(o: NumberOptions = {}): Schema<number> {
  let expected = o.integer ? 'a whole number' : 'a number';
  if (o.min !== undefined && o.max !== undefined) expected += ` from ${o.min} to ${o.max}`;
  else if (o.min !== undefined) expected += ` >= ${o.min}`;
  else if (o.max !== undefined) expected += ` <= ${o.max}`;
  return schema(expected, (value, path) => {
    if (typeof value !== 'number' || !Number.isFinite(value) || (o.integer && !Number.isInteger(value))) fail(path, expected, value);
    if ((o.min !== undefined && value < o.min) || (o.max !== undefined && value > o.max)) fail(path, expected, value);
  });
}

function boolean(): Schema<boolean> {
  return schema('a boolean', (value, path) => {
    if (typeof value !== 'boolean') fail(path, 'a boolean', value);
  });
}

function literal<L extends string>(...values: L[]): Schema<L> {
  const expected = values.length === 1 ? JSON.stringify(values[0]) : `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`;
  return schema(expected, (value, path) => {
    if (!(values as unknown[]).includes(value)) fail(path, expected, value);
  });
}

function array<T>(item: Schema<T>, o: { max?: number; min?: number } = {}): Schema<T[]> {
  const expected = `${o.min ? 'a non-empty list' : 'a list'} of ${plural(item.expected)}${o.max !== undefined ? ` (at most ${o.max})` : ''}`;
  return schema(expected, (value, path) => {
    if (!Array.isArray(value) || value.length < (o.min ?? 0)) fail(path, expected, value);
    if (o.max !== undefined && value.length > o.max) throw new ParamsError(path, `must be ${expected}, got ${value.length} items`);
    value.forEach((x, i) => item.check(x, `${path}[${i}]`));
  });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function record<T>(item: Schema<T>, o: { maxKeys?: number } = {}): Schema<Record<string, T>> {
  const expected = `an object of ${plural(item.expected)}`;
  return schema(expected, (value, path) => {
    if (!isPlainObject(value)) fail(path, expected, value);
    const keys = Object.keys(value);
    if (o.maxKeys !== undefined && keys.length > o.maxKeys) throw new ParamsError(path, `must have at most ${o.maxKeys} entries, got ${keys.length}`);
    for (const k of keys) item.check(value[k], at(path, k));
  });
}

type Shape = Record<string, Schema>;
type ObjectOf<S extends Shape> = { [K in keyof S as S[K] extends { optional: true } ? never : K]: Infer<S[K]> } & {
  [K in keyof S as S[K] extends { optional: true } ? K : never]?: Infer<S[K]>;
};

/** An object with exactly these fields (`strict: false` lets others through unchecked). */
function object<S extends Shape>(shape: S, o: { strict?: boolean } = {}): Schema<ObjectOf<S>> & { readonly shape: S } {
  const strict = o.strict ?? true;
  return {
    expected: 'an object',
    shape,
    check(value, path) {
      if (!isPlainObject(value)) fail(path, 'an object', value);
      for (const [k, s] of Object.entries(shape)) {
        const present = Object.prototype.hasOwnProperty.call(value, k) && value[k] !== undefined;
        if (present) s.check(value[k], at(path, k));
        else if (!s.optional) throw new ParamsError(at(path, k), `is required (${s.expected})`);
      }
      if (!strict) return;
      for (const k of Object.keys(value)) {
        if (!Object.prototype.hasOwnProperty.call(shape, k)) throw new ParamsError(at(path, k), 'is not a known field');
      }
    },
  };
}

function optional<T>(s: Schema<T>): Schema<T | undefined> & { optional: true } {
  return { ...s, check: s.check, optional: true };
}

function union<A, B>(a: Schema<A>, b: Schema<B>): Schema<A | B> {
  const expected = `${a.expected} or ${b.expected}`;
  return schema(expected, (value, path) => {
    try {
      a.check(value, path);
    } catch {
      try {
        b.check(value, path);
      } catch {
        fail(path, expected, value);
      }
    }
  });
}

/** A message without params: absent, null, or an empty object. */
function none(): Schema<undefined> {
  return schema('no params', (value, path) => {
    if (value === undefined || value === null) return;
    if (isPlainObject(value)) {
      const k = Object.keys(value)[0];
      if (k === undefined) return;
      throw new ParamsError(at(path, k), 'is not a known field (this message takes no params)');
    }
    fail(path, 'absent or an empty object', value);
  });
}

function plural(expected: string): string {
  return expected.replace(/^an? /, '').replace(/\b(string|number|boolean|object|list)\b/, '$1s');
}

export const v = { string, number, boolean, literal, array, record, object, optional, union, none };
