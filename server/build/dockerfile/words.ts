/**
 * Splitting an instruction's text, as BuildKit's parser does before any
 * expansion (frontend/dockerfile/parser/line_parsers.go): leading
 * `--flag[=value]` words, words that keep their quotes and escapes (ENV,
 * LABEL, ARG: the quotes are removed later, by expansion), whitespace lists
 * (FROM, EXPOSE, shell-form COPY), and the JSON (exec) form.
 */

const isSpace = (c: string): boolean => /^\s$/u.test(c);

/**
 * The `--name[=value]` words at the start of `line` and the rest. Quotes
 * inside a flag are removed (`--chown="a b"` is `--chown=a b`), a backslash
 * takes the next character as it is, and a bare `--` ends the flags.
 */
export function extractBuilderFlags(line: string): { flags: string[]; rest: string } {
  const words: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  for (let pos = 0; pos <= line.length; pos++) {
    const ch = pos < line.length ? line[pos] : '';
    if (phase === 'spaces') {
      if (pos === line.length) break;
      if (isSpace(ch)) continue;
      if (ch !== '-' || pos + 1 === line.length || line[pos + 1] !== '-') return { flags: words, rest: line.slice(pos) };
      phase = 'word';
    }
    if (pos === line.length) {
      if (word !== '--' && (blankOK || word.length > 0)) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch)) {
        phase = 'spaces';
        if (word === '--') return { flags: words, rest: line.slice(pos).trimStart() };
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
        continue;
      }
      if (ch === '\\') {
        if (pos + 1 === line.length) continue;
        pos++;
        word += line[pos];
        continue;
      }
      word += ch;
      continue;
    }
    // In quotes.
    if (ch === quote) {
      phase = 'word';
      continue;
    }
    if (ch === '\\') {
      if (pos + 1 === line.length) {
        phase = 'word';
        continue;
      }
      pos++;
      word += line[pos];
      continue;
    }
    word += ch;
  }
  return { flags: words, rest: '' };
}

/**
 * Words separated by unquoted whitespace, quotes and escape tokens kept
 * (`a="b c" d` → `a="b c"`, `d`). An escape token before any character,
 * a quote included, keeps both; inside single quotes nothing escapes.
 */
export function parseWords(rest: string, escapeToken: string): string[] {
  const words: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  const cs = [...rest];
  for (let pos = 0; pos <= cs.length; pos++) {
    let ch = pos < cs.length ? cs[pos] : '';
    if (phase === 'spaces') {
      if (pos === cs.length) break;
      if (isSpace(ch)) continue;
      phase = 'word';
    }
    if (pos === cs.length) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
      }
      if (ch === escapeToken) {
        if (pos + 1 === cs.length) continue;
        word += ch;
        pos++;
        ch = cs[pos];
      }
      word += ch;
      continue;
    }
    if (ch === quote) phase = 'word';
    if (ch === escapeToken && quote !== "'") {
      if (pos + 1 === cs.length) {
        phase = 'word';
        continue;
      }
      word += ch;
      pos++;
      ch = cs[pos];
    }
    word += ch;
  }
  return words;
}

/** Whitespace other than newlines, as BuildKit's `[\t\v\f\r ]+`. */
export const WHITESPACE = /[\t\v\f\r ]+/;

/** `rest` split at runs of whitespace, nothing removed. */
export function splitWhitespace(rest: string): string[] {
  const t = rest.trim();
  return t === '' ? [] : t.split(WHITESPACE);
}

/** Splits at the first run of whitespace: `ENV a b c` → `a`, `b c`. */
export function splitOnce(rest: string): [string, string] | [string] {
  const m = WHITESPACE.exec(rest);
  if (!m) return [rest];
  return [rest.slice(0, m.index), rest.slice(m.index + m[0].length)];
}

export type JsonForm = { kind: 'json'; args: string[] } | { kind: 'not-json' } | { kind: 'not-strings' };

/**
 * The exec form: a JSON array of strings. Text that is not a JSON array is
 * the shell form (not an error); an array holding anything but strings is.
 */
export function parseJsonForm(rest: string): JsonForm {
  const t = rest.trimStart();
  if (!t.startsWith('[')) return { kind: 'not-json' };
  let v: unknown;
  try {
    v = JSON.parse(t);
  } catch {
    return { kind: 'not-json' };
  }
  if (!Array.isArray(v)) return { kind: 'not-json' };
  if (!v.every((x) => typeof x === 'string')) return { kind: 'not-strings' };
  return { kind: 'json', args: v as string[] };
}
