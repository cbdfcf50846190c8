import { printable } from '../protocol';

export { formatBytes } from '../util/bytes';
export { printable, printableLines } from '../protocol';

/** "3 minutes ago", as Docker prints ages. */
export function formatAge(iso: string | undefined, now = Date.now()): string {
  if (!iso) return 'N/A';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (Number.isNaN(s)) return 'N/A';
  if (s < 60) return s <= 1 ? 'Less than a second ago' : `${s} seconds ago`;
  const m = Math.round(s / 60);
  if (m < 60) return m === 1 ? 'About a minute ago' : `${m} minutes ago`;
  const h = Math.round(m / 60);
  if (h < 48) return h === 1 ? 'About an hour ago' : `${h} hours ago`;
  const d = Math.round(h / 24);
  if (d < 14) return `${d} days ago`;
  const w = Math.round(d / 7);
  if (d < 60) return `${w} weeks ago`;
  const mo = Math.round(d / 30);
  return mo < 24 ? `${mo} months ago` : `${Math.round(d / 365)} years ago`;
}

/** A plain-text table with columns padded to the widest cell, as `docker ps` prints. */
export function table(header: string[], rows: string[][]): string {
  // names, labels, commands and references come from clients and images: a cell is one inert line
  rows = rows.map((r) => r.map((c) => printable(c ?? '')));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] + 3))).join('').trimEnd();
  return [fmt(header), ...rows.map(fmt)].join('\n') + '\n';
}

/**
 * JSON as `inspect` prints it. JSON.stringify escapes C0 controls but leaves
 * DEL, C1 controls (U+009B is a CSI to many terminals) and bidirectional
 * overrides raw; they are escaped too, and the output is still valid JSON.
 */
export function json(value: unknown): string {
  return JSON.stringify(value, null, 4).replace(/[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Root's lists hold every user's objects, each with its owner's uid. When
 * any row is another user's, an OWNER column (the uid) is added last, so
 * root can tell whose a container, image, volume or network is; a list of
 * root's own objects prints exactly as Docker's does, and a user's list
 * (its own objects alone, with no owner field) never gets the column.
 */
export function ownerColumn(header: string[], rows: string[][], owners: ReadonlyArray<number | undefined>): { header: string[]; rows: string[][] } {
  if (!owners.some((o) => o !== undefined && o !== 0)) return { header, rows };
  return { header: [...header, 'OWNER'], rows: rows.map((r, i) => [...r, owners[i] === undefined ? '' : String(owners[i])]) };
}
