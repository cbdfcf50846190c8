/**
 * The image pin: the first run resolves the configured tag to a manifest
 * digest and records it next to the configuration (`capsa-lock.json`); later
 * runs use the digest, so every machine runs the same bytes even when the tag
 * moves. No dependency on the vscode module.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

export const LOCK_FILE_NAME = 'capsa-lock.json';
export const LOCK_VERSION = 1;

export interface LockEntry {
  /** Normalised reference the tag resolved from (`docker.io/library/busybox:latest`). */
  resolved: string;
  /** Manifest digest (`sha256:…`). */
  digest: string;
  /** ISO time of the resolution. */
  pinnedAt: string;
}

export interface LockFile {
  version: number;
  /** Keyed by the image as written in the configuration. */
  images: Record<string, LockEntry>;
}

export class LockFileError extends Error {
  readonly code = 'E_LOCK_FILE';
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'LockFileError';
  }
}

/** Where the lock of a configuration lives: beside devcontainer.json, else in the workspace root. */
export function lockPathFor(configFile: string | undefined, workspaceFolder: string): string {
  return path.join(configFile ? path.dirname(configFile) : workspaceFolder, LOCK_FILE_NAME);
}

export function parseLock(text: string, file: string): LockFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new LockFileError(file, `invalid JSON: ${(err as Error).message}`);
  }
  const o = raw as Partial<LockFile> | null;
  if (typeof o !== 'object' || o === null || typeof o.images !== 'object' || o.images === null) {
    throw new LockFileError(file, 'expected {"version": 1, "images": {…}}');
  }
  if (o.version !== LOCK_VERSION) throw new LockFileError(file, `unsupported version ${String(o.version)} (expected ${LOCK_VERSION})`);
  for (const [image, e] of Object.entries(o.images)) {
    if (typeof e?.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(e.digest) || typeof e.resolved !== 'string') {
      throw new LockFileError(file, `entry ${JSON.stringify(image)} needs "resolved" and a sha256 "digest"`);
    }
  }
  return { version: LOCK_VERSION, images: o.images };
}

export function serializeLock(lock: LockFile): string {
  const images: Record<string, LockEntry> = {};
  for (const key of Object.keys(lock.images).sort()) images[key] = lock.images[key];
  return JSON.stringify({ version: LOCK_VERSION, images }, null, 2) + '\n';
}

export function readLock(file: string): LockFile {
  if (!existsSync(file)) return { version: LOCK_VERSION, images: {} };
  return parseLock(readFileSync(file, 'utf8'), file);
}

/** Atomic: a reader never sees half a file. */
export function writeLock(file: string, lock: LockFile): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, serializeLock(lock));
  renameSync(tmp, file);
}

/** `docker.io/library/busybox:latest` + digest → `docker.io/library/busybox@sha256:…`. */
export function pinnedReference(resolved: string, digest: string): string {
  const at = resolved.indexOf('@');
  let name = at >= 0 ? resolved.slice(0, at) : resolved;
  const slash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  if (colon > slash) name = name.slice(0, colon);
  return `${name}@${digest}`;
}

/** Whether an image reference already names a digest (nothing to pin). */
export function isDigestReference(ref: string): boolean {
  return /@sha256:[0-9a-f]{64}$/.test(ref);
}

/** Human lines describing what an update of the pins changed. */
export function describeChanges(before: LockFile, after: LockFile): string[] {
  const lines: string[] = [];
  const keys = new Set([...Object.keys(before.images), ...Object.keys(after.images)]);
  for (const k of [...keys].sort()) {
    const a = before.images[k];
    const b = after.images[k];
    if (a && !b) lines.push(`${k}: unpinned (was ${a.digest})`);
    else if (!a && b) lines.push(`${k}: pinned to ${b.digest}`);
    else if (a && b && a.digest !== b.digest) lines.push(`${k}: ${a.digest} → ${b.digest}`);
    else if (a && b) lines.push(`${k}: unchanged (${b.digest})`);
  }
  return lines;
}
