/**
 * Text from outside Capsa (registry error bodies, platform strings of an
 * index, labels and names a client sent) made safe to print: a terminal
 * interprets ESC, CSI (U+009B) and friends, so such text could retitle the
 * window, clear the screen or forge lines in a log. Only Capsa's own messages
 * go through here; a container's output streams are its program's bytes and
 * stay raw.
 */

/**
 * C0 controls, DEL and C1 controls, plus the Unicode bidirectional overrides
 * and isolates that reorder what a terminal or an editor shows
 * ("Trojan Source", CVE-2021-42574).
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_KEEP_NEWLINES = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

function escape(c: string): string {
  const code = c.charCodeAt(0);
  if (c === '\n') return '\\n';
  if (c === '\r') return '\\r';
  if (c === '\t') return '\\t';
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * `s` with every control character shown as an escape (`\x1b`, `\n`,
 * `\u202e`), so that it prints as one inert line; other text, non-ASCII
 * letters included, is left as it is.
 */
export function printable(s: string): string {
  return s.replace(UNSAFE, escape);
}

/** As {@link printable}, but keeps line breaks: for a message Capsa itself wrote on several lines. */
export function printableLines(s: string): string {
  return s.replace(UNSAFE_KEEP_NEWLINES, escape);
}

/**
 * At most `max` items, each made {@link printable} and cut to `width`
 * characters, joined with ", ", and "… and N more" for the rest: a list taken
 * from an untrusted document (an index of 15,000 platforms) stays a line.
 */
export function listed(items: readonly string[], max = 10, width = 80): string {
  const shown = items.slice(0, Math.max(0, max)).map((i) => printable(clip(i, width)));
  const rest = items.length - shown.length;
  if (rest <= 0) return shown.join(', ');
  const more = `… and ${rest.toLocaleString('en-US')} more`;
  return shown.length ? `${shown.join(', ')}, ${more}` : more;
}

/** `s` cut to `max` characters (not splitting a surrogate pair), with "…" when it was longer. */
export function clip(s: string, max: number): string {
  if (s.length <= max) return s;
  let end = Math.max(0, max - 1);
  const c = s.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end--;
  return `${s.slice(0, end)}…`;
}
