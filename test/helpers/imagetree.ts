/**
 * An image as a comparable value: a docker-archive (`docker save` layout,
 * what `capsa save` and `podman save --format docker-archive` write) read
 * into its config and its flattened root tree, the layers applied in order
 * with their whiteouts (`.wh.NAME` removes NAME, `.wh..wh..opq` empties the
 * directory of what lower layers put there), as an overlay mount shows it.
 *
 * Each path keeps what two builders must agree on: type, mode, owner, size,
 * content hash, link target, xattrs, and which other paths are the same
 * inode (hard links, however each tar orders them). Mtimes are left out.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { readTar } from '../../server/image/tar';
import type { ImageConfig } from '../../server/image/types';

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo';
  /** Permission bits with setuid/setgid/sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  sha256?: string;
  linkTarget?: string;
  xattrs: Record<string, string>;
  /** The other paths of the same inode, sorted (hard links). */
  hardLinks?: string[];
}

export interface FlatImage {
  config: ImageConfig;
  tree: Map<string, TreeEntry>;
}

interface Node extends Omit<TreeEntry, 'hardLinks'> {
  /** Shared by the paths of one inode. */
  inode: object;
}

const clean = (p: string): string => path.posix.normalize('/' + p).replace(/\/+$/, '') || '/';

/** Reads a docker-archive file into its config and flattened tree. */
export async function readDockerArchive(file: string): Promise<FlatImage> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-imagetree-'));
  try {
    execFileSync('tar', ['-xf', file, '-C', dir]);
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { Config: string; Layers: string[] }[];
    if (manifest.length !== 1) throw new Error(`${file}: ${manifest.length} images in the archive, expected 1`);
    const config = JSON.parse(fs.readFileSync(path.join(dir, manifest[0].Config), 'utf8')) as ImageConfig;
    const nodes = new Map<string, Node>();
    for (const l of manifest[0].Layers) await applyLayer(nodes, path.join(dir, l));
    return { config, tree: flatten(nodes) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function layerStream(file: string): AsyncIterable<Uint8Array> {
  const fd = fs.openSync(file, 'r');
  const magic = Buffer.alloc(4);
  fs.readSync(fd, magic, 0, 4, 0);
  fs.closeSync(fd);
  const raw = fs.createReadStream(file);
  if (magic[0] === 0x1f && magic[1] === 0x8b) return raw.pipe(zlib.createGunzip());
  if (magic.readUInt32LE(0) === 0xfd2fb528) throw new Error(`${file}: zstd layers are not read by this helper`);
  return raw;
}

async function applyLayer(nodes: Map<string, Node>, file: string): Promise<void> {
  const removeUnder = (p: string, keep: (q: string) => boolean): void => {
    for (const q of [...nodes.keys()]) if (q.startsWith(p === '/' ? '/' : p + '/') && q !== p && keep(q)) nodes.delete(q);
  };
  // Paths this layer wrote: an opaque marker only hides what lower layers put there.
  const mine = new Set<string>();
  const opaque: string[] = [];
  for await (const e of readTar(layerStream(file))) {
    const h = e.header;
    const p = clean(h.name);
    const base = path.posix.basename(p);
    const parent = path.posix.dirname(p);
    if (base === '.wh..wh..opq') {
      opaque.push(parent);
      continue;
    }
    if (base.startsWith('.wh.')) {
      const victim = path.posix.join(parent, base.slice(4));
      nodes.delete(victim);
      removeUnder(victim, () => true);
      continue;
    }
    mine.add(p);
    const xattrs = Object.fromEntries(h.xattrs.map(([k, v]) => [k, v.toString('base64')]));
    if (h.type === 'link') {
      const target = nodes.get(clean(h.linkname ?? ''));
      if (!target) throw new Error(`${file}: hard link ${p} to ${h.linkname}, which is not there`);
      nodes.set(p, target);
      continue;
    }
    const types: Record<string, TreeEntry['type']> = { file: 'file', 'contiguous-file': 'file', directory: 'dir', symlink: 'symlink', 'character-device': 'char', 'block-device': 'block', fifo: 'fifo' };
    const type = types[h.type] as TreeEntry['type'] | undefined;
    if (!type) continue;
    const old = nodes.get(p);
    if (old && old.type !== 'dir') nodes.delete(p);
    if (type !== 'dir') removeUnder(p, () => true);
    let sha256: string | undefined;
    let size = 0;
    if (type === 'file') {
      const hash = createHash('sha256');
      for await (const c of e.body()) {
        hash.update(c);
        size += c.length;
      }
      sha256 = hash.digest('hex');
    }
    const node: Node = {
      type, mode: h.mode & 0o7777, uid: h.uid, gid: h.gid, size, xattrs, inode: {},
      ...(sha256 ? { sha256 } : {}),
      ...(type === 'symlink' ? { linkTarget: h.linkname ?? '' } : {}),
    };
    // A directory entry over an existing directory changes its metadata, in place.
    if (old && old.type === 'dir' && type === 'dir') Object.assign(old, { ...node, inode: old.inode });
    else nodes.set(p, node);
  }
  for (const d of opaque) removeUnder(d, (q) => !mine.has(q));
}

function flatten(nodes: Map<string, Node>): Map<string, TreeEntry> {
  const byInode = new Map<object, string[]>();
  for (const [p, n] of nodes) byInode.set(n.inode, [...(byInode.get(n.inode) ?? []), p]);
  const out = new Map<string, TreeEntry>();
  for (const p of [...nodes.keys()].sort()) {
    if (p === '/') continue;
    const { inode, ...rest } = nodes.get(p) as Node;
    const others = (byInode.get(inode) ?? []).filter((q) => q !== p).sort();
    out.set(p, { ...rest, ...(others.length ? { hardLinks: others } : {}) });
  }
  return out;
}

const show = (e: TreeEntry): string => {
  const parts = [e.type, '0' + e.mode.toString(8), `${e.uid}:${e.gid}`];
  if (e.type === 'file') parts.push(`${e.size}B`, (e.sha256 ?? '').slice(0, 12));
  if (e.linkTarget !== undefined) parts.push(`-> ${e.linkTarget}`);
  if (Object.keys(e.xattrs).length) parts.push(`xattrs=${JSON.stringify(e.xattrs)}`);
  if (e.hardLinks) parts.push(`links=${e.hardLinks.join(',')}`);
  return parts.join(' ');
};

/** The paths on which two trees differ, one readable line each (empty when they agree). */
export function diffTrees(a: Map<string, TreeEntry>, b: Map<string, TreeEntry>, names: [string, string] = ['a', 'b']): string[] {
  const out: string[] = [];
  for (const p of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const x = a.get(p);
    const y = b.get(p);
    if (!x) out.push(`${p}: only in ${names[1]} (${show(y as TreeEntry)})`);
    else if (!y) out.push(`${p}: only in ${names[0]} (${show(x)})`);
    else if (show(x) !== show(y)) out.push(`${p}: ${names[0]} ${show(x)} | ${names[1]} ${show(y)}`);
  }
  return out;
}

/** The config fields two builders must agree on, normalised (absent, null and empty are one). */
export const CONFIG_FIELDS = ['Env', 'Cmd', 'Entrypoint', 'WorkingDir', 'User', 'ExposedPorts', 'Labels', 'Volumes', 'StopSignal', 'Healthcheck', 'OnBuild', 'Shell'] as const;

function normalField(v: unknown): unknown {
  if (v === undefined || v === null || v === '') return undefined;
  if (Array.isArray(v) && v.length === 0) return undefined;
  if (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0) return undefined;
  if (typeof v === 'object' && !Array.isArray(v)) return Object.fromEntries(Object.entries(v as object).sort(([k1], [k2]) => (k1 < k2 ? -1 : 1)));
  return v;
}

/** The config fields on which two images differ, one readable line each. */
export function diffConfigs(a: ImageConfig, b: ImageConfig, names: [string, string] = ['a', 'b'], ignoreLabels: string[] = []): string[] {
  const out: string[] = [];
  const ca = (a.config ?? {}) as Record<string, unknown>;
  const cb = (b.config ?? {}) as Record<string, unknown>;
  for (const f of CONFIG_FIELDS) {
    let x = ca[f];
    let y = cb[f];
    if (f === 'Labels') {
      const drop = (l: unknown): unknown => (l ? Object.fromEntries(Object.entries(l as Record<string, string>).filter(([k]) => !ignoreLabels.includes(k))) : l);
      x = drop(x);
      y = drop(y);
    }
    // WorkingDir "" and "/" both mean the root.
    if (f === 'WorkingDir') {
      x = x === '/' ? undefined : x;
      y = y === '/' ? undefined : y;
    }
    const jx = JSON.stringify(normalField(x));
    const jy = JSON.stringify(normalField(y));
    if (jx !== jy) out.push(`config.${f}: ${names[0]} ${jx ?? '(none)'} | ${names[1]} ${jy ?? '(none)'}`);
  }
  if (a.architecture !== b.architecture || a.os !== b.os) out.push(`platform: ${names[0]} ${a.os}/${a.architecture} | ${names[1]} ${b.os}/${b.architecture}`);
  return out;
}
