/**
 * .dockerignore, with Docker's rules: the file is read as moby/buildkit's
 * dockerignore.ReadAll reads it (lines starting with `#` are comments,
 * blanks trimmed, `!` marks an exception, each pattern cleaned as
 * filepath.Clean and its leading `/` dropped), and paths are matched as
 * moby/patternmatcher matches them (`*` and `?` stop at `/`, `**` crosses
 * directories, `[…]` classes, `\` escapes; a pattern matches a path or any
 * of its parents; the last pattern that matches decides).
 *
 * `*.log` therefore matches only at the context's root; `**\/*.log` at any
 * depth.
 */
import * as path from 'node:path';
import { LIMITS, LimitExceededError, exceeded } from '../limits';
import { BuildContextError } from './errors';

/** Go's filepath.Clean for slash paths: `''` → `.`, no trailing `/`, `.` and `..` resolved lexically. */
export function goClean(p: string): string {
  if (p === '') return '.';
  let c = path.posix.normalize(p);
  if (c.length > 1 && c.endsWith('/')) c = c.slice(0, -1);
  return c;
}

/** Go's filepath.Dir: everything before the last `/`, cleaned (`file/` → `file`, `file` → `.`). */
function goDir(p: string): string {
  return goClean(p.slice(0, p.lastIndexOf('/') + 1));
}

/** The patterns of a .dockerignore's text, as ReadAll returns them. */
export function readDockerignore(text: string | Buffer, what = '.dockerignore'): string[] {
  const size = typeof text === 'string' ? Buffer.byteLength(text) : text.length;
  if (size > LIMITS.dockerignore.bytes) throw exceeded(LIMITS.dockerignore, what, size);
  let s = typeof text === 'string' ? text : text.toString('utf8');
  if (s.charCodeAt(0) === 0xfeff) s = s.slice(1);
  const out: string[] = [];
  for (const raw of s.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.startsWith('#')) continue;
    let p = line.trim();
    if (p === '') continue;
    const invert = p.startsWith('!');
    if (invert) p = p.slice(1).trim();
    if (p.length > 0) {
      p = goClean(p);
      if (p.length > 1 && p.startsWith('/')) p = p.slice(1);
    }
    out.push(invert ? '!' + p : p);
    if (out.length > (LIMITS.dockerignore.entries ?? Infinity)) {
      throw new LimitExceededError(LIMITS.dockerignore, `${what} has more than the ${LIMITS.dockerignore.name} limit of ${LIMITS.dockerignore.entries} patterns`);
    }
  }
  return out;
}

type MatchType = 'exact' | 'prefix' | 'suffix' | 'regexp';

interface Pattern {
  cleaned: string;
  exclusion: boolean;
  type: MatchType;
  re?: RegExp;
}

const ESCAPE = '.+()|{}$';

function compile(cleaned: string): { type: MatchType; re?: RegExp } {
  let re = '^';
  let type: MatchType = 'exact';
  const cs = [...cleaned];
  let i = 0;
  for (let n = 0; i < cs.length; n++) {
    const ch = cs[i++];
    if (ch === '*') {
      if (cs[i] === '*') {
        i++;
        if (cs[i] === '/') i++;
        if (i >= cs.length) {
          if (type === 'exact') type = 'prefix';
          else {
            re += '.*';
            type = 'regexp';
          }
        } else {
          re += '(.*/)?';
          type = 'regexp';
        }
        if (n === 0) type = 'suffix';
      } else {
        re += '[^/]*';
        type = 'regexp';
      }
    } else if (ch === '?') {
      re += '[^/]';
      type = 'regexp';
    } else if (ESCAPE.includes(ch)) {
      re += '\\' + ch;
    } else if (ch === '\\') {
      if (i < cs.length) {
        re += '\\' + cs[i++];
        type = 'regexp';
      } else re += '\\\\';
    } else if (ch === '[' || ch === ']') {
      re += ch;
      type = 'regexp';
    } else {
      re += ch;
    }
  }
  if (type !== 'regexp') return { type };
  try {
    return { type, re: new RegExp(re + '$') };
  } catch {
    throw new BuildContextError(`.dockerignore: syntax error in pattern ${JSON.stringify(cleaned)}`);
  }
}

/** Go's filepath.Match syntax check: an unclosed `[` or a trailing `\` is a bad pattern. */
function checkSyntax(p: string): void {
  let inClass = false;
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === '\\') {
      if (i + 1 >= p.length) throw new BuildContextError(`.dockerignore: syntax error in pattern ${JSON.stringify(p)}`);
      i++;
    } else if (c === '[' && !inClass) {
      inClass = true;
      if (p[i + 1] === '^') i++;
      if (p[i + 1] === ']') throw new BuildContextError(`.dockerignore: syntax error in pattern ${JSON.stringify(p)}`);
    } else if (c === ']' && inClass) inClass = false;
  }
  if (inClass) throw new BuildContextError(`.dockerignore: syntax error in pattern ${JSON.stringify(p)}`);
}

function matchOne(p: Pattern, file: string): boolean {
  switch (p.type) {
    case 'exact':
      return file === p.cleaned;
    case 'prefix':
      return file.startsWith(p.cleaned.slice(0, -2));
    case 'suffix': {
      const suffix = p.cleaned.slice(2);
      if (file.endsWith(suffix)) return true;
      return suffix.startsWith('/') && file === suffix.slice(1);
    }
    case 'regexp':
      return (p.re as RegExp).test(file);
  }
}

export class PatternMatcher {
  private readonly patterns: Pattern[] = [];
  /** Whether any `!` pattern exists: an excluded directory may then hold included entries. */
  readonly hasExclusions: boolean;

  constructor(patterns: readonly string[]) {
    let exclusions = false;
    for (const raw of patterns) {
      let p = raw.trim();
      if (p === '') continue;
      p = goClean(p);
      const exclusion = p.startsWith('!');
      if (exclusion) {
        if (p.length === 1) throw new BuildContextError('.dockerignore: illegal exclusion pattern: "!"');
        p = p.slice(1);
        exclusions = true;
      }
      checkSyntax(p);
      this.patterns.push({ cleaned: p, exclusion, ...compile(p) });
    }
    this.hasExclusions = exclusions;
  }

  /** Whether `file` (slash-separated, relative to the context) or one of its parents is excluded. */
  matches(file: string): boolean {
    let matched = false;
    const parent = goDir(file);
    const dirs = parent.split('/');
    for (const p of this.patterns) {
      if (p.exclusion !== matched) continue;
      let m = matchOne(p, file);
      if (!m && parent !== '.') {
        for (let i = 0; i < dirs.length && !m; i++) m = matchOne(p, dirs.slice(0, i + 1).join('/'));
      }
      if (m) matched = !p.exclusion;
    }
    return matched;
  }
}

/**
 * Which ignore file applies: `<Dockerfile name>.dockerignore` beside the
 * Dockerfile when it exists, else `.dockerignore` at the context's root.
 * `exists` is asked as the caller (it may be a walk of the caller's tree).
 */
export function ignoreFileFor(dockerfilePath: string, contextRoot: string, exists: (p: string) => boolean): string | undefined {
  const specific = path.join(path.dirname(dockerfilePath), path.basename(dockerfilePath) + '.dockerignore');
  if (exists(specific)) return specific;
  const root = path.join(contextRoot, '.dockerignore');
  return exists(root) ? root : undefined;
}
