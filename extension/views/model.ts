/**
 * How images and containers from the helper are shown: plain data derived
 * from protocol summaries, with no dependency on the vscode module so it can
 * be unit tested and reused by the tree nodes.
 */
import type { ContainerState, ContainerSummary, ImageSummary } from '../../server/protocol';

/** One row of a tree, in the terms TreeItem uses. */
export interface Row {
  label: string;
  description: string;
  tooltip: string;
  /** Gates context menus (`viewItem == …` in package.json). */
  contextValue: string;
  /** Codicon id for a ThemeIcon. */
  icon: string;
  /** Theme color id for the icon, if any. */
  color?: string;
}

export interface ImageTagRow extends Row {
  /** The reference to act on (`busybox:latest`, or the id when untagged). */
  reference: string;
  image: ImageSummary;
}

export interface ImageGroup {
  /** Repository as Docker prints it (`busybox`, `ghcr.io/o/r`), or `<none>`. */
  repository: string;
  tags: ImageTagRow[];
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

/** Decimal units, as `docker images` prints sizes. */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '?';
  let v = bytes;
  let u = 0;
  while (v >= 1000 && u < UNITS.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${v} B` : `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : Math.round(v)} ${UNITS[u]}`;
}

/** `sha256:abcdef…` → first 12 hex digits. */
export function shortId(id: string): string {
  const hex = id.includes(':') ? id.slice(id.indexOf(':') + 1) : id;
  return hex.slice(0, 12);
}

/** Human age of an ISO time relative to `now` ("3 minutes", "2 days"). */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const steps: Array<[number, string]> = [
    [365 * 86400, 'year'],
    [30 * 86400, 'month'],
    [7 * 86400, 'week'],
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
  ];
  for (const [size, name] of steps) {
    if (s >= size) {
      const n = Math.floor(s / size);
      return `${n} ${name}${n === 1 ? '' : 's'}`;
    }
  }
  return s < 2 ? 'a second' : `${s} seconds`;
}

export function formatAge(iso: string | undefined, now: number): string | undefined {
  if (!iso) return undefined;
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return undefined;
  return `${formatDuration(now - t)} ago`;
}

/** Splits `repo:tag` (the tag is after the last colon that follows the last slash). */
export function splitReference(ref: string): { repository: string; tag: string } {
  const at = ref.indexOf('@');
  const base = at >= 0 ? ref.slice(0, at) : ref;
  const slash = base.lastIndexOf('/');
  const colon = base.lastIndexOf(':');
  if (colon > slash) return { repository: base.slice(0, colon), tag: base.slice(colon + 1) };
  return { repository: base, tag: at >= 0 ? ref.slice(at + 1) : 'latest' };
}

/** Images grouped by repository, repositories and tags sorted by name. */
export function groupImages(images: readonly ImageSummary[], now: number): ImageGroup[] {
  const groups = new Map<string, ImageTagRow[]>();
  for (const image of images) {
    const names = image.names.length > 0 ? image.names : image.references;
    const refs = names.length > 0 ? names : [undefined];
    for (const name of refs) {
      const { repository, tag } = name ? splitReference(name) : { repository: '<none>', tag: '<none>' };
      const age = formatAge(image.created, now);
      const size = formatSize(image.size);
      const row: ImageTagRow = {
        label: tag,
        description: [size, shortId(image.id), age].filter(Boolean).join(' · '),
        tooltip: [
          name ?? shortId(image.id),
          `id: ${image.id}`,
          `digest: ${image.manifestDigest}`,
          `size: ${size}`,
          `platform: ${image.os}/${image.architecture}`,
          image.created ? `created: ${image.created}` : undefined,
        ]
          .filter(Boolean)
          .join('\n'),
        contextValue: 'image',
        icon: 'tag',
        reference: name ?? image.id,
        image,
      };
      let list = groups.get(repository);
      if (!list) groups.set(repository, (list = []));
      list.push(row);
    }
  }
  return [...groups.entries()]
    .sort(([a], [b]) => (a === '<none>' ? 1 : b === '<none>' ? -1 : a.localeCompare(b)))
    .map(([repository, tags]) => ({ repository, tags: tags.sort((a, b) => a.label.localeCompare(b.label)) }));
}

const STATE_LOOK: Record<ContainerState, { icon: string; color?: string }> = {
  running: { icon: 'debug-start', color: 'testing.iconPassed' },
  exited: { icon: 'debug-stop', color: 'testing.iconFailed' },
  created: { icon: 'circle-large-outline', color: 'disabledForeground' },
  paused: { icon: 'debug-pause', color: 'list.warningForeground' },
  removing: { icon: 'trash', color: 'disabledForeground' },
  dead: { icon: 'error', color: 'errorForeground' },
};

/** Short state text, like `docker ps`'s STATUS column. */
export function containerStatus(c: ContainerSummary, now: number): string {
  switch (c.state) {
    case 'running': {
      const up = c.startedAt ? Date.parse(c.startedAt) : NaN;
      return Number.isNaN(up) ? 'running' : `up ${formatDuration(now - up)}`;
    }
    case 'exited': {
      const ago = formatAge(c.finishedAt, now);
      return `exited (${c.exitCode ?? '?'})${ago ? ` ${ago}` : ''}`;
    }
    default:
      return c.state;
  }
}

export function containerRow(c: ContainerSummary, now: number): Row {
  const look = STATE_LOOK[c.state] ?? { icon: 'question' };
  // A clean exit is not an error: only a non-zero code gets the failure color.
  const color = c.state === 'exited' && c.exitCode === 0 ? 'disabledForeground' : look.color;
  const status = containerStatus(c, now);
  return {
    label: c.name,
    description: `${c.image} · ${status}`,
    tooltip: [
      `${c.name} (${shortId(c.id)})`,
      `image: ${c.image}`,
      `command: ${c.command.join(' ')}`,
      `state: ${status}`,
      `created: ${c.created}`,
      c.ports && c.ports.length > 0 ? `ports: ${c.ports.join(', ')}` : undefined,
    ]
      .filter(Boolean)
      .join('\n'),
    contextValue: `container.${c.state}`,
    icon: look.icon,
    color,
  };
}

// One collator for every name comparison: localeCompare builds one per call, which dominates sorting a long list.
const collator = new Intl.Collator();

/** Running containers first, then by creation time, newest first. */
export function sortContainers(list: readonly ContainerSummary[]): ContainerSummary[] {
  const rank = (s: ContainerState) => (s === 'running' ? 0 : s === 'paused' ? 1 : 2);
  // creation times are ISO 8601 in UTC: their plain string order is time order
  const newer = (a: string, b: string) => (a > b ? -1 : a < b ? 1 : 0);
  return [...list].sort((a, b) => rank(a.state) - rank(b.state) || newer(a.created, b.created) || collator.compare(a.name, b.name));
}
