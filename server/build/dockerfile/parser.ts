/**
 * The Dockerfile parser: text → a list of instruction nodes, after
 * BuildKit's frontend/dockerfile/parser (parser.go, line_parsers.go,
 * directives), rule for rule, so that a Dockerfile that builds with Docker
 * parses here to the same words:
 *
 * - parser directives (`# syntax=`, `# escape=` with `\` or `` ` ``,
 *   `# check=`) are read only at the top, before any other comment, blank
 *   line or instruction; each at most once;
 * - a line ending in the escape token (trailing blanks allowed) continues;
 *   comment lines and blank lines inside a continuation are dropped (a blank
 *   one is reported as a warning, as BuildKit does);
 * - RUN, COPY and ADD in shell form may open heredocs (`<<EOF`, `<<-EOF`,
 *   quoted delimiters, several on one line), whose bodies follow the
 *   instruction;
 * - each instruction's text is split as BuildKit splits it (see words.ts)
 *   and no expansion happens here.
 *
 * Written here rather than taken from npm: `docker-file-parser` knows
 * neither heredocs nor `# escape=`, and `dockerfile-ast` is an editor's AST
 * (ranges, partial input) rather than BuildKit's split of the words.
 */
import { LIMITS, LimitExceededError, exceeded } from '../../limits';
import { DockerfileError } from '../errors';
import { lex } from '../shell/lex';
import { extractBuilderFlags, parseJsonForm, parseWords, splitOnce, splitWhitespace } from './words';

export interface Heredoc {
  /** The delimiter with its quotes removed. */
  name: string;
  /** The body as written, each line ending in `\n`; `<<-` tab stripping is applied by `heredocContent`. */
  content: string;
  /** False when any part of the delimiter was quoted (`<<'EOF'`, `<<"EOF"`): the body is not expanded. */
  expand: boolean;
  /** `<<-`: leading tabs of the body's lines and of the terminator are removed. */
  chomp: boolean;
  /** The file descriptor before `<<` (`3<<EOF`), 0 when none. */
  fd: number;
}

export interface Node {
  /** The instruction's name, lower case (`run`, `copy`). */
  cmd: string;
  /** The instruction as written (its first word keeps its case). */
  name: string;
  /** The `--flag[=value]` words before the arguments, quotes removed. */
  flags: string[];
  /**
   * The arguments as BuildKit splits them: the JSON array's strings; the
   * shell form's text as one string (RUN, CMD, ENTRYPOINT, SHELL, the
   * command of HEALTHCHECK CMD); whitespace-separated words (FROM, EXPOSE,
   * COPY, ADD, VOLUME); key, value pairs flattened (ENV, LABEL); words with
   * their quotes (ARG); the text (USER, WORKDIR, STOPSIGNAL, MAINTAINER).
   * HEALTHCHECK's first is `NONE` or `CMD`.
   */
  args: string[];
  /** The arguments were a JSON array (the exec form). */
  json: boolean;
  heredocs: Heredoc[];
  /** ONBUILD's trigger. */
  next?: Node;
  /** The instruction's text after joining continuation lines. */
  original: string;
  startLine: number;
  endLine: number;
}

export interface ParseResult {
  nodes: Node[];
  /** Directives found at the top, lower-case names: `syntax`, `escape`, `check`. */
  directives: Record<string, string>;
  escapeToken: string;
  /** Non-fatal findings, with their lines (empty continuation lines). */
  warnings: { line: number; message: string }[];
}

const DIRECTIVE = /^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$/;
const KNOWN_DIRECTIVES = new Set(['syntax', 'escape', 'check']);
const HEREDOC_WORD = /^(\d*)<<(-?)([^<]*)$/;

/** Instructions and how their arguments are split. */
const SPLITTERS: Record<string, (rest: string, esc: string) => Pick<Node, 'args' | 'json'> & { next?: Node }> = {
  add: maybeJsonToList,
  arg: (rest, esc) => ({ args: parseWords(rest, esc), json: false }),
  cmd: maybeJson,
  copy: maybeJsonToList,
  entrypoint: maybeJson,
  env: (rest, esc) => nameVal(rest, esc, 'ENV'),
  expose: (rest) => ({ args: splitWhitespace(rest), json: false }),
  from: (rest) => ({ args: splitWhitespace(rest), json: false }),
  healthcheck: healthConfig,
  label: (rest, esc) => nameVal(rest, esc, 'LABEL'),
  maintainer: str,
  onbuild: () => {
    throw new Error('unreachable: ONBUILD is parsed by its caller');
  },
  run: maybeJson,
  shell: maybeJson,
  stopsignal: str,
  user: str,
  volume: maybeJsonToList,
  workdir: str,
};

export const INSTRUCTIONS = Object.keys(SPLITTERS);

/** Thrown by the splitters; placed at its line by the caller. */
class SplitError extends Error {}

function str(rest: string): Pick<Node, 'args' | 'json'> {
  return { args: rest === '' ? [] : [rest], json: false };
}

function maybeJson(rest: string): Pick<Node, 'args' | 'json'> {
  const t = rest.trim();
  if (t === '') return { args: [], json: false };
  const j = parseJsonForm(t);
  if (j.kind === 'json') return { args: j.args, json: true };
  if (j.kind === 'not-strings') throw new SplitError('the JSON array may hold only strings');
  return { args: [t], json: false };
}

function maybeJsonToList(rest: string): Pick<Node, 'args' | 'json'> {
  const j = parseJsonForm(rest);
  if (j.kind === 'json') return { args: j.args, json: true };
  if (j.kind === 'not-strings') throw new SplitError('the JSON array may hold only strings');
  return { args: splitWhitespace(rest), json: false };
}

/** `KEY name value` (one pair, the value the rest of the line) or `KEY a=b c="d e"` (any number). */
function nameVal(rest: string, esc: string, key: string): Pick<Node, 'args' | 'json'> {
  const words = parseWords(rest, esc);
  if (words.length === 0) return { args: [], json: false };
  if (!words[0].includes('=')) {
    const [name, value] = splitOnce(rest.trim());
    if (value === undefined || value === '') throw new SplitError(`${key} must have two arguments`);
    return { args: [name, value], json: false };
  }
  const args: string[] = [];
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq < 0) throw new SplitError(`Syntax error - can't find = in ${JSON.stringify(w)}. Must be of the form: name=value`);
    args.push(w.slice(0, eq), w.slice(eq + 1));
  }
  return { args, json: false };
}

function healthConfig(rest: string): Pick<Node, 'args' | 'json'> {
  const m = /^(\S+)\s*/.exec(rest);
  if (!m) return { args: [], json: false };
  const cmd = maybeJson(rest.slice(m[0].length));
  return { args: [m[1], ...cmd.args], json: cmd.json };
}

/** `RUN`, `COPY`, `ADD` in shell form may carry heredocs. */
function canContainHeredoc(n: Node): boolean {
  // ONBUILD's trigger may carry them too; they are then the ONBUILD node's.
  const t = n.cmd === 'onbuild' && n.next ? n.next : n;
  return (t.cmd === 'run' || t.cmd === 'copy' || t.cmd === 'add') && !t.json;
}

/** The heredoc a word opens (`<<EOF`, `<<-"EOF"`, `3<<EOF`), if it is one. */
export function parseHeredoc(word: string): Omit<Heredoc, 'content'> | undefined {
  const m = HEREDOC_WORD.exec(word);
  if (!m || m[3] === '') return undefined;
  const empty = (): undefined => undefined;
  let words: string[];
  let raw: string[];
  try {
    words = lex(m[3], empty, { skipUnsetEnv: true }).words;
    raw = lex(m[3], empty, { skipUnsetEnv: true, rawQuotes: true }).words;
  } catch {
    return undefined;
  }
  if (words.length !== 1 || raw.length !== 1) return undefined;
  const quotes = (s: string): number => s.split(/['"]/).length - 1;
  return { name: words[0], expand: quotes(words[0]) === quotes(raw[0]), chomp: m[2] === '-', fd: m[1] === '' ? 0 : Number(m[1]) };
}

/** Every heredoc a line opens, in order. The line is read with `\`, whatever the escape directive. */
export function heredocsFromLine(line: string): Omit<Heredoc, 'content'>[] {
  let words: string[];
  try {
    words = lex(line, () => undefined, { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true }).words;
  } catch {
    return [];
  }
  return words.map(parseHeredoc).filter((h): h is Omit<Heredoc, 'content'> => h !== undefined);
}

/** A heredoc's body as the build uses it: with `<<-`, each line's leading tabs removed. */
export function heredocContent(h: Heredoc): string {
  return h.chomp ? h.content.replace(/^\t+/gm, '') : h.content;
}

/** One instruction's text (continuations joined) → its node; `onbuild` parses its trigger the same way. */
function nodeFromLine(line: string, esc: string, file: string, startLine: number, endLine: number): Node {
  const trimmed = line.trim();
  const sp = /\s/.exec(trimmed);
  const name = sp ? trimmed.slice(0, sp.index) : trimmed;
  const after = sp ? trimmed.slice(sp.index + 1) : '';
  const cmd = name.toLowerCase();
  const where = { file, line: startLine, endLine: endLine !== startLine ? endLine : undefined };
  if (!Object.prototype.hasOwnProperty.call(SPLITTERS, cmd)) throw new DockerfileError(where, `unknown instruction: ${name}`);
  const { flags, rest } = sp ? extractBuilderFlags(after) : { flags: [], rest: '' };
  const node: Node = { cmd, name, flags, args: [], json: false, heredocs: [], original: line, startLine, endLine };
  if (cmd === 'onbuild') {
    if (rest.trim() === '') throw new DockerfileError(where, 'ONBUILD requires at least one argument');
    node.next = nodeFromLine(rest, esc, file, startLine, endLine);
    node.args = [rest.trim()];
    return node;
  }
  try {
    Object.assign(node, SPLITTERS[cmd](rest, esc));
  } catch (err) {
    if (err instanceof SplitError) throw new DockerfileError(where, err.message);
    throw err;
  }
  return node;
}

const trimNewline = (s: string): string => s.replace(/[\r\n]+$/, '');
const isComment = (s: string): boolean => /^[ \t]*#/.test(s);
const isBlank = (s: string): boolean => /^[ \t\v\f\r]*$/.test(s);

/**
 * Parses a Dockerfile. `file` is the name errors give (`Dockerfile:7: …`).
 * Input over LIMITS.dockerfile is refused before anything is parsed; bytes
 * that are not UTF-8 read as U+FFFD, which then fails as an unknown
 * instruction or stays inside a word.
 */
export function parseDockerfile(input: string | Buffer, file = 'Dockerfile'): ParseResult {
  const size = typeof input === 'string' ? Buffer.byteLength(input) : input.length;
  if (size > LIMITS.dockerfile.bytes) throw exceeded(LIMITS.dockerfile, file, size);
  let text = typeof input === 'string' ? input : input.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.includes('\0')) {
    const line = text.slice(0, text.indexOf('\0')).split('\n').length;
    throw new DockerfileError({ file, line }, 'the file holds a NUL byte: it is not a text Dockerfile');
  }
  const lines = text.split('\n');
  // Every line but the last ended in \n; a heredoc keeps each line as it was (a CRLF file's bodies keep their \r).
  const lastHadNewline = lines.length > 0 && lines[lines.length - 1] === '';
  if (lastHadNewline) lines.pop();
  const directives: Record<string, string> = {};
  let directivesDone = false;
  let esc = '\\';
  // The escape token last on a line continues it, unless it is itself escaped (`a\\\\` ends the line).
  let continuation = /([^\\])\\[ \t]*$|^\\[ \t]*$/;
  const warnings: ParseResult['warnings'] = [];
  const nodes: Node[] = [];

  const directive = (raw: string, lineNo: number): void => {
    if (directivesDone) return;
    const m = DIRECTIVE.exec(raw);
    const key = m?.[1].toLowerCase();
    if (!m || !key || !KNOWN_DIRECTIVES.has(key)) {
      directivesDone = true;
      return;
    }
    if (Object.prototype.hasOwnProperty.call(directives, key)) {
      throw new DockerfileError({ file, line: lineNo }, `only one ${key} parser directive can be used`);
    }
    directives[key] = m[2];
    if (key === 'escape') {
      if (m[2] !== '\\' && m[2] !== '`') {
        throw new DockerfileError({ file, line: lineNo }, `invalid escape token '${m[2]}' does not match \` or \\`);
      }
      esc = m[2];
      continuation = esc === '`' ? /([^`])`[ \t]*$|^`[ \t]*$/ : /([^\\])\\[ \t]*$|^\\[ \t]*$/;
    }
  };
  /** Strips a continuation token: [text, ended]. */
  const cont = (s: string): [string, boolean] => {
    const m = continuation.exec(s);
    return m ? [s.slice(0, m.index) + (m[1] ?? ''), false] : [s, true];
  };

  let i = 0;
  while (i < lines.length) {
    const raw = trimNewline(lines[i]);
    i++;
    directive(raw.trimStart(), i);
    const first = raw.trimStart();
    const startLine = i;
    let [line, ended] = cont(isComment(first) ? '' : first);
    if (ended && line === '') continue;
    let emptyContinuation = false;
    while (!ended && i < lines.length) {
      const next = trimNewline(lines[i]);
      i++;
      if (isComment(next)) continue;
      if (isBlank(next)) {
        emptyContinuation = true;
        continue;
      }
      const [part, end] = cont(next);
      line += part;
      ended = end;
    }
    if (emptyContinuation) warnings.push({ line: startLine, message: 'empty continuation line' });
    const node = nodeFromLine(line, esc, file, startLine, i);
    if (canContainHeredoc(node) && line.includes('<<')) {
      for (const h of heredocsFromLine(line)) {
        let content = '';
        let terminated = false;
        while (i < lines.length) {
          const body = lines[i];
          const eol = i < lines.length - 1 || lastHadNewline ? '\n' : '';
          i++;
          const term = trimNewline(h.chomp ? body.replace(/^\t+/, '') : body);
          if (term === h.name) {
            terminated = true;
            break;
          }
          content += body + eol;
        }
        if (!terminated) throw new DockerfileError({ file, line: startLine, endLine: i }, `unterminated heredoc ${h.name}`);
        node.heredocs.push({ ...h, content });
      }
      node.endLine = i;
    }
    if (nodes.length === LIMITS.dockerfile.entries) {
      throw new LimitExceededError(LIMITS.dockerfile, `${file}:${startLine}: more than the ${LIMITS.dockerfile.name} limit of ${LIMITS.dockerfile.entries} instructions`);
    }
    nodes.push(node);
  }
  return { nodes, directives, escapeToken: esc, warnings };
}
