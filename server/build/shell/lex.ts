/**
 * The shell-word lexer of Dockerfile variable expansion, after BuildKit's
 * frontend/dockerfile/shell/lex.go, rule for rule: `$VAR`, `${VAR}`,
 * `${VAR:-w}` `${VAR-w}` `${VAR:+w}` `${VAR+w}` `${VAR:?w}` `${VAR?w}`,
 * `${VAR#p}` `${VAR##p}` `${VAR%p}` `${VAR%%p}`, single quotes (literal),
 * double quotes (only `$`, `"` and the escape token are special), the escape
 * token (`\` or the one `# escape=` chose) outside quotes.
 *
 * It is not a shell: no command substitution, no arithmetic, no field
 * splitting of expanded values except in `words` (the words form EXPOSE and
 * VOLUME lists use), where unquoted expansions split on whitespace.
 *
 * Bounded: nested `${a:-${b:-…}}` may go MAX_DEPTH deep, and a result may
 * not pass LIMITS.buildWord, so neither a hostile Dockerfile nor doubling
 * ENVs (`ENV a=$a$a` forty times) can exhaust memory.
 */
import { LIMITS, exceeded } from '../../limits';
import { ExpansionError } from '../errors';

/** Nesting of `${…}` inside `${…}` a word may have. */
export const MAX_DEPTH = 64;

export interface LexOptions {
  /** `\` or `` ` ``. */
  escapeToken?: string;
  /** Keep quote characters in the result (heredoc detection uses it). */
  rawQuotes?: boolean;
  /** Keep escape tokens in the result. */
  rawEscapes?: boolean;
  /** An unset variable stays as written (`$X`, `${X:-y}`) rather than becoming empty. */
  skipUnsetEnv?: boolean;
}

/** Variable lookup: undefined when unset (unset and empty differ for `-`, `+`, `?`). */
export type Env = (name: string) => string | undefined;

export function envOf(map: ReadonlyMap<string, string> | Record<string, string>): Env {
  if (map instanceof Map) return (n) => map.get(n);
  const rec = map as Record<string, string>;
  return (n) => (Object.prototype.hasOwnProperty.call(rec, n) ? rec[n] : undefined);
}

export interface LexResult {
  /** The word with quotes removed and variables replaced. */
  word: string;
  /** The same split into words at unquoted whitespace (quoted and escaped spaces do not split). */
  words: string[];
  /** Names the word referred to, set or not (for "unused build-arg" and cache inputs). */
  used: Set<string>;
}

const EOF = '';
const isSpace = (c: string): boolean => /^\s$/u.test(c);
const isDigit = (c: string): boolean => c >= '0' && c <= '9';
const isNameChar = (c: string): boolean => /^[\p{L}\p{Nd}_]$/u.test(c);
/** Shell special parameters: `$@` `$*` `$#` … are names of one character. */
const SPECIAL = new Set(['@', '*', '#', '?', '-', '$', '!', '0']);

class Words {
  word = '';
  words: string[] = [];
  inWord = false;
  addChar(c: string): void {
    if (isSpace(c)) {
      if (this.inWord && this.word.length > 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else this.addRawChar(c);
  }
  addRawChar(c: string): void {
    this.word += c;
    this.inWord = true;
  }
  addString(s: string): void {
    for (const c of s) this.addChar(c);
  }
  addRawString(s: string): void {
    this.word += s;
    this.inWord = true;
  }
  get(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

class Lexer {
  private pos = 0;
  private depth = 0;
  readonly used = new Set<string>();
  private readonly esc: string;

  constructor(
    private readonly chars: string[],
    private readonly env: Env,
    private readonly opts: LexOptions,
  ) {
    this.esc = opts.escapeToken ?? '\\';
  }

  private peek(): string {
    return this.pos < this.chars.length ? this.chars[this.pos] : EOF;
  }
  private next(): string {
    return this.pos < this.chars.length ? this.chars[this.pos++] : EOF;
  }

  private check(s: string): string {
    if (s.length > LIMITS.buildWord.bytes) throw exceeded(LIMITS.buildWord, 'an expanded word');
    return s;
  }

  /** Reads up to `stop` (consumed) or the end; `stop` EOF means the whole input. */
  processStopOn(stop: string, rawEscapes = this.opts.rawEscapes ?? false): { word: string; words: string[] } {
    let result = '';
    const words = new Words();
    while (this.peek() !== EOF) {
      const ch = this.peek();
      if (stop !== EOF && ch === stop) {
        this.next();
        return { word: result, words: words.get() };
      }
      if (ch === "'" || ch === '"' || ch === '$') {
        const tmp = ch === "'" ? this.singleQuote() : ch === '"' ? this.doubleQuote() : this.dollar();
        result = this.check(result + tmp);
        if (ch === '$') words.addString(tmp);
        else words.addRawString(tmp);
        continue;
      }
      let c = this.next();
      if (c === this.esc) {
        if (rawEscapes) {
          words.addRawChar(c);
          result += c;
        }
        c = this.next();
        // An escape token at the very end is dropped.
        if (c === EOF) break;
        words.addRawChar(c);
      } else {
        words.addChar(c);
      }
      result += c;
    }
    if (stop !== EOF) throw new ExpansionError(`unexpected end of statement while looking for matching ${stop}`);
    return { word: result, words: words.get() };
  }

  private singleQuote(): string {
    // Everything up to the next ' is literal; a ' cannot be escaped inside.
    let result = '';
    const open = this.next();
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const c = this.next();
      if (c === EOF) throw new ExpansionError('unexpected end of statement while looking for matching single-quote');
      if (c === "'") {
        if (this.opts.rawQuotes) result += c;
        return result;
      }
      result += c;
    }
  }

  private doubleQuote(): string {
    let result = '';
    const open = this.next();
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const p = this.peek();
      if (p === EOF) throw new ExpansionError('unexpected end of statement while looking for matching double-quote');
      if (p === '"') {
        const c = this.next();
        if (this.opts.rawQuotes) result += c;
        return result;
      }
      if (p === '$') {
        result = this.check(result + this.dollar());
        continue;
      }
      let c = this.next();
      if (c === this.esc) {
        if (this.opts.rawEscapes) result += c;
        const q = this.peek();
        // A trailing escape token is ignored; before " $ or itself it escapes; otherwise it stays.
        if (q === EOF) continue;
        if (q === '"' || q === '$' || q === this.esc) c = this.next();
      }
      result += c;
    }
  }

  private name(): string {
    let name = '';
    for (;;) {
      const c = this.peek();
      if (c === EOF) break;
      if (name.length === 0 && isDigit(c)) {
        while (this.peek() !== EOF && isDigit(this.peek())) name += this.next();
        return name;
      }
      if (name.length === 0 && SPECIAL.has(c)) return this.next();
      if (!isNameChar(c)) break;
      name += this.next();
    }
    return name;
  }

  private get(name: string): string | undefined {
    this.used.add(name);
    return this.env(name);
  }

  /** The word of `${name<op>word}` up to its `}`, itself expanded. */
  private operand(stop = '}', rawEscapes = false): string {
    if (++this.depth > MAX_DEPTH) throw new ExpansionError(`variable substitutions nested deeper than ${MAX_DEPTH}`);
    try {
      return this.processStopOn(stop, rawEscapes).word;
    } catch (err) {
      if (err instanceof ExpansionError && this.peek() === EOF && !err.message.startsWith('variable substitutions')) {
        throw new ExpansionError(stop === '}' ? "syntax error: missing '}'" : "syntax error: missing '/' in ${}");
      }
      throw err;
    } finally {
      this.depth--;
    }
  }

  private dollar(): string {
    this.next();
    if (this.peek() !== '{') {
      const name = this.name();
      if (name === '') return '$';
      const v = this.get(name);
      if (v === undefined && this.opts.skipUnsetEnv) return '$' + name;
      return v ?? '';
    }
    this.next();
    const first = this.peek();
    if (first === EOF) throw new ExpansionError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new ExpansionError('syntax error: bad substitution');
    const name = this.name();
    const ch = this.next();
    const value = this.get(name);
    const unsetRaw = (op: string, word: string): string | undefined =>
      value === undefined && this.opts.skipUnsetEnv ? `\${${name}${op}${word}}` : undefined;
    switch (ch) {
      case '}':
        if (value === undefined && this.opts.skipUnsetEnv) return `\${${name}}`;
        return value ?? '';
      case '?': {
        const word = this.operand();
        if (value === undefined) {
          const raw = unsetRaw('?', word);
          if (raw !== undefined) return raw;
          throw new ExpansionError(`${name}: ${word || 'is not allowed to be unset'}`);
        }
        return value;
      }
      case '-':
      case '+': {
        const word = this.operand();
        const raw = unsetRaw(ch, word);
        if (raw !== undefined) return raw;
        if (ch === '-') return value === undefined ? word : value;
        return value === undefined ? '' : word;
      }
      case ':': {
        const mod = this.next();
        if (mod === '#' || mod === '%') throw new ExpansionError(`unsupported modifier (:${mod}) in substitution`);
        const word = this.operand();
        if (mod === '+' || mod === '-') {
          const raw = unsetRaw(':' + mod, word);
          if (raw !== undefined) return raw;
          if (mod === '+') return value ? word : '';
          return value ? value : word;
        }
        if (mod === '?') {
          if (value === undefined) throw new ExpansionError(`${name}: ${word || 'is not allowed to be unset'}`);
          if (value === '') throw new ExpansionError(`${name}: ${word || 'is not allowed to be empty'}`);
          return value;
        }
        throw new ExpansionError(`unsupported modifier (:${mod}) in substitution`);
      }
      case '#':
      case '%': {
        // The pattern is read with its escapes kept: `\*` is a literal star for the pattern.
        let word = this.operand('}', true);
        const raw = unsetRaw(ch, word);
        if (raw !== undefined) return raw;
        let greedy = false;
        if (word.startsWith(ch)) {
          greedy = true;
          word = word.slice(1);
        }
        return ch === '#' ? trimPrefix(word, value ?? '', greedy) : trimSuffix(word, value ?? '', greedy);
      }
      case '/': {
        const all = this.peek() === '/';
        if (all) this.next();
        const pattern = this.operand('/', true);
        const replacement = this.operand('}', true);
        if (value === undefined && this.opts.skipUnsetEnv) return `\${${name}/${all ? '/' : ''}${pattern}/${replacement}}`;
        const re = shellPattern(pattern, true, false, all);
        const v = value ?? '';
        if (all) return v.replace(re, () => replacement);
        const m = re.exec(v);
        return m ? v.slice(0, m.index) + replacement + v.slice(m.index + m[0].length) : v;
      }
      default:
        throw new ExpansionError(`unsupported modifier (${ch === EOF ? 'end of word' : ch}) in substitution`);
    }
  }
}

/**
 * A `${v#p}` / `${v/p/r}` pattern as a regular expression, as BuildKit's
 * convertShellPatternToRegex: `*` (shortest unless greedy), `?`, and `\`
 * escaping only `*`, `?` and itself (`\}` and `\/` are the characters);
 * no bracket expressions.
 */
function shellPattern(pattern: string, greedy: boolean, anchored: boolean, global = false): RegExp {
  let out = anchored ? '^' : '';
  const cs = [...pattern];
  for (let i = 0; i < cs.length; i++) {
    const c = cs[i];
    if (c === '*') out += greedy ? '[^\\n]*' : '[^\\n]*?';
    else if (c === '?') out += '[^\\n]';
    else if (c === '\\') {
      if (cs[i + 1] === '}' || cs[i + 1] === '/') continue;
      const n = cs[++i];
      if (n !== '*' && n !== '?' && n !== '\\') throw new ExpansionError(`invalid pattern (${pattern}) in substitution: invalid escape '\\${n ?? ''}'`);
      out += '\\' + n;
    } else out += c.replace(/[[\]{}.+()|^$\/]/g, '\\$&');
  }
  return new RegExp(out, global ? 'g' : '');
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const m = shellPattern(pattern, greedy, true).exec(value);
  return m ? value.slice(m[0].length) : value;
}

/** Reverses a pattern keeping each escape before its character (`a\*c` → `c\*a`). */
function reversePattern(p: string): string {
  const cs = [...p];
  const out: string[] = [];
  for (let i = 0; i < cs.length; ) {
    if (cs[i] === '\\' && i !== cs.length - 1) {
      out.unshift(cs[i], cs[i + 1]);
      i += 2;
    } else out.unshift(cs[i++]);
  }
  return out.join('');
}

const reverse = (s: string): string => [...s].reverse().join('');

/** The shortest (or longest) matching suffix removed: a prefix match on the reversed value. */
function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  return reverse(trimPrefix(reversePattern(pattern), reverse(value), greedy));
}

/** Expands `word`: its single-word and its split form. Throws ExpansionError (or LimitExceededError). */
export function lex(word: string, env: Env, opts: LexOptions = {}): LexResult {
  const l = new Lexer([...word], env, opts);
  const { word: w, words } = l.processStopOn(EOF);
  return { word: w, words, used: l.used };
}

/** The word as one string (ENV values, paths, labels). */
export function processWord(word: string, env: Env, opts: LexOptions = {}): string {
  return lex(word, env, opts).word;
}

/** The word split at unquoted whitespace (EXPOSE, VOLUME lists). */
export function processWords(word: string, env: Env, opts: LexOptions = {}): string[] {
  return lex(word, env, opts).words;
}
